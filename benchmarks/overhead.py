"""rayspeed against a plain torchrun + DeepSpeed script, and what rayspeed's start-up costs.

For each workload (`workloads.py`) both commands train the same model, batch, ZeRO stage and loss on
the same preprocessed train split (`prepared_tensors.py`), alternately, ROUNDS times in one run.
Steady-state samples/s is every training window after the first over its seconds (rayspeed's
validation, reports and checkpoints fall between windows; the native script has none). Start-up is
the seconds from the command to its first logged row (step 10 of the digits job: 10 steps take
~0.1 s) and the whole wall time, for an embedded local Ray, for `--address` of a running cluster,
and for native. The `lm` GPT's model FLOPs utilisation is its model FLOPs per second over this
machine's matmul peak, both measured in this run.

    python benchmarks/overhead.py [--rounds 2] [--workloads mlp,cnn,gpt] [--attached-rounds 2]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from harness import median, prepare_tensors, run_native, table, train, training_rate
from torch import nn
from workloads import CNN, GPT, MLP, WORKLOADS, Workload

from rayspeed.cluster.local_cluster import read_state
from rayspeed.config import load_config
from rayspeed.datasets.preprocessing import InputSpec
from rayspeed.trainers.models import build_model

# The [rayspeed] line that ends each start-up phase of `rayspeed train`.
PHASES = (("imports, config, run checks", "starting new run"), ("ray.init", "cluster:"),
          ("Ray Data pipeline", "data:"))


def compare(workload: Workload, *, rounds: int, work: Path) -> dict:
    """Both commands on one workload, alternately; medians over the rounds."""
    tensors = prepare_tensors(workload.config, workload.overrides, work / f"{workload.key}-tensors")
    native, ours = [], []
    for index in range(rounds):
        native.append(run_native(tensors, workload.config, workload.overrides))
        ours.append(train(workload.config, workload.overrides, storage=work / "runs", name=f"{workload.key}-{index}"))
        print(f"  {workload.name} round {index + 1}: native {native[-1]['samples_per_s']:.0f} samples/s, "
              f"{native[-1]['wall_s']:.1f} s | rayspeed {training_rate(ours[-1].rows):.0f} samples/s, "
              f"{ours[-1].wall_s:.1f} s", flush=True)
    native_rate = median(run["samples_per_s"] for run in native)
    our_rate = median(training_rate(run.rows) for run in ours)
    return {
        "native_samples_per_s": native_rate, "rayspeed_samples_per_s": our_rate, "ratio": our_rate / native_rate,
        "native_wall_s": median(run["wall_s"] for run in native), "rayspeed_wall_s": median(run.wall_s for run in ours),
        "native_to_first_row_s": median(run["marks"]["first_window_end"] - run["started"] for run in native),
        "rayspeed_to_first_row_s": median(run.seconds_to_row(workload.first_logged_step) for run in ours),
        "rayspeed_phases": {label: median(run.seconds_to_line(f"[rayspeed] {text}") for run in ours)
                            for label, text in PHASES},
        "cpu": {group: median(run.cpu.get(group, 0.0) for run in ours) for run in ours for group in run.cpu},
        "native_cpu": median(run["cpu"].get("native script", 0.0) for run in native),
        "tensors": str(tensors), "timelines": ours,
    }


def attached(workload: Workload, *, rounds: int, work: Path) -> dict:
    """The digits job with `--address` of a local cluster already running (a head and 2 worker nodes
    of 1 CPU each, so the two training workers run on different nodes)."""
    subprocess.run([sys.executable, "-m", "rayspeed", "cluster", "up", "--workers", "2", "--cpus-per-node", "1"],
                   check=True, capture_output=True)
    try:
        address = read_state(os.environ).gcs_address
        runs = [train(workload.config, workload.overrides, storage=work / "runs", name=f"attached-{index}",
                      address=address) for index in range(rounds)]
    finally:
        subprocess.run([sys.executable, "-m", "rayspeed", "cluster", "down"], check=True, capture_output=True)
    return {"wall_s": median(run.wall_s for run in runs),
            "to_first_row_s": median(run.seconds_to_row(workload.first_logged_step) for run in runs),
            "samples_per_s": median(training_rate(run.rows) for run in runs)}


def matmul_peak() -> tuple[float, str]:
    """FLOP/s of a large matmul on this machine's accelerator (bf16) or all its cores (fp32): the best of 5."""
    cuda = torch.cuda.is_available()
    device, dtype, size = ("cuda", torch.bfloat16, 8192) if cuda else ("cpu", torch.float32, 2048)
    torch.set_num_threads(os.cpu_count() or 1)
    a, b = (torch.randn(size, size, device=device, dtype=dtype) for _ in range(2))
    best = float("inf")
    for _ in range(5):
        if cuda:
            torch.cuda.synchronize()
        started = time.perf_counter()
        a @ b
        if cuda:
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - started)
    return 2 * size**3 / best, f"{'bf16 ' + torch.cuda.get_device_name() if cuda else f'fp32, {os.cpu_count()} cores'}"


def model_flops_per_sample(workload: Workload, tensors: Path) -> float:
    """Training FLOPs of one sequence: 6 per matmul weight per token (forward and backward) plus the
    attention scores' 12 x layers x context x width per token."""
    cfg = load_config(workload.config, list(workload.overrides))
    spec = InputSpec(**json.loads((tensors / "input_spec.json").read_text()))
    model = build_model(cfg.model, spec)
    weights = sum(module.weight.numel() for module in model.modules() if isinstance(module, nn.Linear))
    context, args = spec.num_features - 1, cfg.model.args
    return context * (6 * weights + 12 * args.layers * context * args.dim)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--attached-rounds", type=int, default=2)
    parser.add_argument("--workloads", default="mlp,cnn,gpt")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="rayspeed-bench-") as work:
        results = measure([WORKLOADS[name] for name in args.workloads.split(",")], rounds=args.rounds,
                          attached_rounds=args.attached_rounds, work=Path(work))
    print(report(results))


def measure(workloads: list[Workload], *, rounds: int, attached_rounds: int, work: Path) -> dict:
    results = {"workloads": {w.name: compare(w, rounds=rounds, work=work) for w in workloads}}
    if MLP in workloads and attached_rounds:
        results["attached"] = attached(MLP, rounds=attached_rounds, work=work)
    if GPT in workloads:
        peak, where = matmul_peak()
        gpt = results["workloads"][GPT.name]
        flops = model_flops_per_sample(GPT, Path(gpt["tensors"])) * gpt["rayspeed_samples_per_s"]
        results["mfu"] = {"model_flops_per_s": flops, "peak_flops_per_s": peak, "peak_of": where, "mfu": flops / peak}
    return results


def report(results: dict) -> str:
    targets = {MLP.name: 0.90, CNN.name: 0.97, GPT.name: 0.97}
    lines = ["Steady-state training throughput (samples/s, median of rounds):",
             table(["workload", "native", "rayspeed", "ratio", "target"],
                   [(name, f"{r['native_samples_per_s']:.0f}", f"{r['rayspeed_samples_per_s']:.0f}",
                     f"{r['ratio']:.2f}", f">= {targets[name]:.2f}") for name, r in results["workloads"].items()])]
    groups = sorted({group for r in results["workloads"].values() for group in r["cpu"]})
    lines += ["", "Where the cores went while rayspeed trained (share of all cores, median of rounds):",
              table(["workload", *groups, "idle", "native workers, for comparison"],
                    [(name, *(f"{r['cpu'].get(group, 0):.0%}" for group in groups), f"{1 - sum(r['cpu'].values()):.0%}",
                      f"{r['native_cpu']:.0%}") for name, r in results["workloads"].items()])]
    if MLP.name in results["workloads"]:
        mlp = results["workloads"][MLP.name]
        rows = [("native (torchrun)", f"{mlp['native_to_first_row_s']:.1f}", f"{mlp['native_wall_s']:.1f}", "1.00", ""),
                ("rayspeed, embedded Ray", f"{mlp['rayspeed_to_first_row_s']:.1f}", f"{mlp['rayspeed_wall_s']:.1f}",
                 f"{mlp['rayspeed_wall_s'] / mlp['native_wall_s']:.2f}", "<= 2.0")]
        if "attached" in results:
            run = results["attached"]
            rows.append(("rayspeed --address (running cluster)", f"{run['to_first_row_s']:.1f}", f"{run['wall_s']:.1f}",
                         f"{run['wall_s'] / mlp['native_wall_s']:.2f}", "<= 1.5"))
        lines += ["", "Start-up of the digits job (seconds from the command):",
                  table(["command", "to step 10", "wall", "wall / native", "target"], rows),
                  "rayspeed embedded, where the time to step 10 goes: " + ", ".join(
                      f"{label} until {at:.1f} s" for label, at in mlp["rayspeed_phases"].items())
                  + ", Train controller + workers + DeepSpeed + first steps until "
                  + f"{mlp['rayspeed_to_first_row_s']:.1f} s"]
    if "mfu" in results:
        mfu = results["mfu"]
        lines += ["", f"lm GPT model FLOPs utilisation: {mfu['model_flops_per_s'] / 1e9:.1f} GFLOP/s of a "
                      f"{mfu['peak_flops_per_s'] / 1e9:.1f} GFLOP/s matmul peak ({mfu['peak_of']}) = {mfu['mfu']:.1%}"]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
