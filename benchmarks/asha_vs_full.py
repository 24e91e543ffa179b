"""ASHA against the same trials run to completion: best val accuracy and trial-epochs used.

Runs `rayspeed tune` on the sweep example twice in one run, with the same seed (so the same sampled
trials): once with its ASHA scheduler, once with FIFO (every trial to its last epoch). Prints both
side by side, and the ratios the target is stated in: ASHA within 0.5 points of the best accuracy
at <= 35% of the trial-epochs.

    python benchmarks/asha_vs_full.py [--config examples/digits_sweep.yaml] [section.key=value ...]
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rayspeed.config import load_config

ROOT = Path(__file__).resolve().parent.parent


def run_sweep(config: str, storage: str, name: str, overrides: list[str], *, mode: str) -> dict:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "rayspeed", "tune", config, f"run.name={name}",
                           f"run.storage_path={storage}", "tracking.mode=disabled", *overrides],
                          capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"{name} failed:\n{done.stdout}\n{done.stderr}")
    trials = json.loads((Path(storage) / name / "sweep.json").read_text())
    scored = [t["best"] for t in trials if t["best"] is not None]
    return {"best": (max if mode == "max" else min)(scored), "trial_epochs": sum(len(t["history"]) for t in trials),
            "stopped": sum(t["status"] == "stopped early" for t in trials), "trials": len(trials),
            "wall_s": time.perf_counter() - started}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "examples" / "digits_sweep.yaml"))
    parser.add_argument("overrides", nargs="*", help="applied to both sweeps, e.g. tune.num_samples=8")
    args = parser.parse_args()
    tune_cfg = load_config(args.config, args.overrides).tune
    with tempfile.TemporaryDirectory(prefix="rayspeed-asha-bench-") as storage:
        asha = run_sweep(args.config, storage, "asha", args.overrides, mode=tune_cfg.objective_mode)
        full = run_sweep(args.config, storage, "full", [*args.overrides, "tune.scheduler.name=fifo"],
                         mode=tune_cfg.objective_mode)
    print(f"| sweep | trials | stopped early | trial-epochs | best {tune_cfg.metric} | wall s |")
    print("|---|---|---|---|---|---|")
    for label, result in (("ASHA", asha), ("to completion", full)):
        print(f"| {label} | {result['trials']} | {result['stopped']} | {result['trial_epochs']} | "
              f"{result['best']:.4f} | {result['wall_s']:.0f} |")
    share = 100 * asha["trial_epochs"] / full["trial_epochs"]
    gap = 100 * (asha["best"] - full["best"])
    print(f"ASHA's best minus the full sweep's best: {gap:+.2f} points, at {share:.0f}% of its trial-epochs "
          f"(target for accuracy: no worse than -0.5 points, at <= 35%)")


if __name__ == "__main__":
    main()
