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

from harness import ROOT, table

from rayspeed.config import load_config


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


def compare(config: str, overrides: list[str]) -> dict:
    mode = load_config(config, overrides).tune.objective_mode
    with tempfile.TemporaryDirectory(prefix="rayspeed-asha-bench-") as storage:
        asha = run_sweep(config, storage, "asha", overrides, mode=mode)
        full = run_sweep(config, storage, "full", [*overrides, "tune.scheduler.name=fifo"], mode=mode)
    return {"asha": asha, "full": full, "metric": load_config(config, overrides).tune.metric,
            "trial_epochs_share": asha["trial_epochs"] / full["trial_epochs"], "best_gap": asha["best"] - full["best"]}


def report(result: dict) -> str:
    rows = [(label, run["trials"], run["stopped"], run["trial_epochs"], f"{run['best']:.4f}", f"{run['wall_s']:.0f}")
            for label, run in (("ASHA", result["asha"]), ("to completion", result["full"]))]
    return (table(["sweep", "trials", "stopped early", "trial-epochs", f"best {result['metric']}", "wall s"], rows)
            + f"\nASHA's best minus the full sweep's best: {100 * result['best_gap']:+.2f} points, at "
            f"{result['trial_epochs_share']:.0%} of its trial-epochs (target for accuracy: no worse than -0.5 points, "
            "at <= 35%)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "examples" / "digits_sweep.yaml"))
    parser.add_argument("overrides", nargs="*", help="applied to both sweeps, e.g. tune.num_samples=8")
    args = parser.parse_args()
    print(report(compare(args.config, args.overrides)))


if __name__ == "__main__":
    main()
