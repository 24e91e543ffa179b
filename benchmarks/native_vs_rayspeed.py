"""rayspeed vs a plain torchrun + DeepSpeed script: same model, data, batch and ZeRO stage.

Runs both commands alternately ROUNDS times in one run and prints, per command, the median
steady-state samples/s (the first 10-step window left out) and the median wall time of the whole
command, then the ratio rayspeed / native. For rayspeed it also prints where the time before the
first training step goes, from the moments its [rayspeed] lines appear.

    python benchmarks/native_vs_rayspeed.py [--rounds 3] [--config examples/digits.yaml]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The [rayspeed] line that ends each start-up phase of `rayspeed train`.
PHASES = [("imports + config + run checks", "starting new run"), ("ray.init", "cluster:"),
          ("Ray Data pipeline", "data:"), ("Train controller, workers, DeepSpeed init, epoch 1", "step ")]


def run_native(config: str) -> dict:
    env = {**os.environ, "DS_ACCELERATOR": "cpu", "PYTHONWARNINGS": "ignore::FutureWarning"}
    started = time.perf_counter()
    done = subprocess.run(["torchrun", "--nproc_per_node", "2", str(ROOT / "benchmarks" / "native_deepspeed.py"),
                           config], capture_output=True, text=True, env=env, check=True)
    wall = time.perf_counter() - started
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return {"wall_s": wall, "samples_per_s": result["samples_per_s"]}


def run_rayspeed(config: str, storage: str, name: str) -> dict:
    started = time.perf_counter()
    process = subprocess.Popen(["rayspeed", "train", config, f"run.storage_path={storage}", f"run.name={name}"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    marks: dict[str, float] = {}
    for line in process.stdout:
        text = line.split("[rayspeed] ", 1)[-1] if "[rayspeed] " in line else None
        for _, prefix in PHASES:
            if text and text.startswith(prefix) and prefix not in marks:
                marks[prefix] = time.perf_counter() - started
    if process.wait() != 0:
        raise SystemExit(f"rayspeed train failed (exit {process.returncode})")
    wall = time.perf_counter() - started
    rows = [json.loads(line) for line in (Path(storage) / name / "metrics.jsonl").read_text().splitlines()]
    rates = [row["samples_per_s"] for row in rows if row["step"] % 10 == 0][1:]
    return {"wall_s": wall, "samples_per_s": statistics.median(rates), "marks": marks}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--config", default=str(ROOT / "examples" / "digits.yaml"))
    args = parser.parse_args()
    native, ours = [], []
    with tempfile.TemporaryDirectory(prefix="rayspeed-bench-") as storage:
        for round_index in range(args.rounds):
            native.append(run_native(args.config))
            ours.append(run_rayspeed(args.config, storage, f"bench-{round_index}"))
            print(f"round {round_index + 1}: native {native[-1]['samples_per_s']:.0f} samples/s "
                  f"{native[-1]['wall_s']:.1f} s | rayspeed {ours[-1]['samples_per_s']:.0f} samples/s "
                  f"{ours[-1]['wall_s']:.1f} s", flush=True)
    median = lambda runs, key: statistics.median(run[key] for run in runs)  # noqa: E731
    print("\n| command | steady samples/s (median) | wall s (median) |\n|---|---|---|")
    print(f"| torchrun + DeepSpeed | {median(native, 'samples_per_s'):.0f} | {median(native, 'wall_s'):.1f} |")
    print(f"| rayspeed train | {median(ours, 'samples_per_s'):.0f} | {median(ours, 'wall_s'):.1f} |")
    print(f"\nsamples/s ratio rayspeed / native: "
          f"{median(ours, 'samples_per_s') / median(native, 'samples_per_s'):.2f}")
    print(f"wall time ratio rayspeed / native: {median(ours, 'wall_s') / median(native, 'wall_s'):.2f}")
    print("\nrayspeed start-up, median seconds per phase:")
    previous = 0.0
    for label, prefix in PHASES:
        at = statistics.median(run["marks"].get(prefix, float("nan")) for run in ours)
        print(f"  {label}: {at - previous:.1f} s (at {at:.1f} s)")
        previous = at


if __name__ == "__main__":
    sys.exit(main())
