"""Every benchmark that applies on this machine, in one run of under 30 minutes, and one table.

1. steady samples/s against plain torchrun + DeepSpeed on three workloads (overhead.py)
2. start-up: embedded Ray, `--address` of a running cluster, native (overhead.py)
3. the input pipeline's share of step time, images with augmentation
4. checkpoint cost at the default interval; a killed worker's way back (recovery.py)
5. scaling: the CNN with 1 and 2 workers, the digits job on 1 and 2 nodes, a dataset 3x the object
   store (scaling.py, data_at_scale.py)
6. model FLOPs utilisation of the `lm` GPT (overhead.py)
7. ASHA against the same trials run to completion (asha_vs_full.py, the sweep example with 6 trials)

Writes every figure to --out (JSON) and prints the sections, then one table of targets.

    python benchmarks/run_all.py [--out benchmarks/results/latest.json] [--rounds 2]
"""

import argparse
import json
import os
import platform
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

import asha_vs_full
import data_at_scale
import overhead
import recovery
import scaling
from harness import ROOT, data_wait_share, table, train, training_rate
from workloads import CNN, GPT, MLP, NO_AUGMENTATION

TARGETS = {MLP.name: 0.90, CNN.name: 0.97, GPT.name: 0.97}  # samples/s of rayspeed over native
SWEEP = (str(ROOT / "examples" / "digits_sweep.yaml"), ["tune.num_samples=6"])  # its 9 epochs: rungs at 1, 3, 9


def augmented_input(*, work: Path) -> dict:
    """The CNN with the example's augmentation on: how long the workers wait for their batches."""
    overrides = [o for o in CNN.overrides if o not in NO_AUGMENTATION]
    run = train(CNN.config, overrides, storage=work / "runs", name="augmented")
    return {"data_wait_share": data_wait_share(run.rows), "samples_per_s": training_rate(run.rows)}


def measure(*, rounds: int, work: Path) -> dict:
    results: dict = {}

    def section(name: str, measuring):
        """One part; a failed part is reported as such and the others still run."""
        started = time.time()
        print(f"[{time.strftime('%H:%M:%S')}] {name} ...", flush=True)
        try:
            results[name] = measuring()
        except (Exception, SystemExit) as error:
            print(f"{name} failed: {error}", flush=True)
            results.setdefault("failed", {})[name] = str(error)[-2000:]
        print(f"[{time.strftime('%H:%M:%S')}] {name}: {time.time() - started:.0f} s", flush=True)

    section("overhead", lambda: overhead.measure([MLP, CNN, GPT], rounds=rounds, attached_rounds=rounds, work=work))
    section("input", lambda: augmented_input(work=work))
    section("checkpoints", lambda: recovery.checkpoint_cost(rounds=rounds, work=work))
    section("recovery", lambda: recovery.recovery(work=work))
    section("one_worker", lambda: scaling.samples_per_s(CNN, workers=(1,), rounds=1, work=work)[1])
    section("at_scale", lambda: data_at_scale.measure(object_store_mib=100, scale=3))
    section("tune", lambda: asha_vs_full.compare(*SWEEP))
    return results


def summary(results: dict) -> str:
    points = []
    for part in (_throughput, _start_up, _input, _checkpoints, _scaling, _mfu, _tune):
        try:
            points += part(results)
        except KeyError as missing:  # its section failed
            points.append((part.__name__.strip("_"), f"not measured ({missing} failed)", "", None))
    return table(["measure", "value", "target", "met"],
                 [(name, value, target, "" if met is None else ("yes" if met else "no"))
                  for name, value, target, met in points])


def _throughput(results: dict) -> list:
    return [(f"1. samples/s vs native, {name}", f"{run['ratio']:.2f}", f">= {TARGETS[name]:.2f}",
             run["ratio"] >= TARGETS[name]) for name, run in results["overhead"]["workloads"].items()]


def _start_up(results: dict) -> list:
    mlp, attached = results["overhead"]["workloads"][MLP.name], results["overhead"]["attached"]
    embedded, joined = mlp["rayspeed_wall_s"] / mlp["native_wall_s"], attached["wall_s"] / mlp["native_wall_s"]
    return [("2. wall vs native, embedded Ray (digits)", f"{embedded:.2f}", "<= 2.0", embedded <= 2.0),
            ("2. wall vs native, --address (digits)", f"{joined:.2f}", "<= 1.5", joined <= 1.5)]


def _input(results: dict) -> list:
    share = results["input"]["data_wait_share"]
    return [("3. step time waiting for data, images + augmentation", f"{share:.1%}", "< 2%", share < 0.02)]


def _checkpoints(results: dict) -> list:
    overhead, back = results["checkpoints"]["overhead"], results["recovery"]["kill_to_first_step_s"]
    return [("4. checkpoint overhead at the default interval (digits)", f"{overhead:.1%}", "< 3%", overhead < 0.03),
            ("4. SIGKILL of a worker to the first new step", f"{back:.1f} s", "", None)]


def _scaling(results: dict) -> list:
    runs = results["overhead"]["workloads"]
    cnn = runs[CNN.name]["rayspeed_samples_per_s"] / results["one_worker"]
    nodes = results["overhead"]["attached"]["samples_per_s"] / runs[MLP.name]["rayspeed_samples_per_s"]
    return [("5. CNN samples/s, 2 workers / 1 worker", f"{cnn:.2f}", "", None),
            ("5. digits samples/s, 2 nodes / 1 node", f"{nodes:.2f}", "", None),
            ("5. peak memory, dataset 3x the object store",
             f"{results['at_scale']['peak_memory_mib']:.0f} MiB above idle", "", None)]


def _mfu(results: dict) -> list:
    return [("6. lm GPT model FLOPs utilisation", f"{results['overhead']['mfu']['mfu']:.1%}", "", None)]


def _tune(results: dict) -> list:
    gap, share = results["tune"]["best_gap"], results["tune"]["trial_epochs_share"]
    return [("7. ASHA: best vs full sweep, share of trial-epochs", f"{100 * gap:+.2f} points, {share:.0%}",
             ">= -0.5 points, <= 35%", gap >= -0.005 and share <= 0.35)]


def sections(results: dict) -> list[str]:
    """Each part's own tables; a part whose measurement failed says so."""
    overhead_runs = results.get("overhead", {}).get("workloads", {})
    parts = [
        lambda: overhead.report(results["overhead"]),
        lambda: (f"Images with augmentation: {results['input']['samples_per_s']:.0f} samples/s, "
                 f"{results['input']['data_wait_share']:.1%} of step time waiting for data"),
        lambda: recovery.report(results["checkpoints"], results["recovery"]),
        lambda: scaling.report({f"{CNN.name}, 1 worker": results["one_worker"],
                                f"{CNN.name}, 2 workers": overhead_runs[CNN.name]["rayspeed_samples_per_s"]}),
        lambda: (f"{MLP.name} on 3 nodes of 1 CPU (--address, the 2 workers on different nodes): "
                 f"{results['overhead']['attached']['samples_per_s']:.0f} samples/s"),
        lambda: "Dataset 3x the object store:\n" + data_at_scale.report(results["at_scale"]),
        lambda: "ASHA vs full sweep:\n" + asha_vs_full.report(results["tune"]),
    ]
    texts = []
    for part in parts:
        try:
            texts.append(part())
        except KeyError as missing:
            texts.append(f"({missing} failed: {results.get('failed', {}).get(missing.args[0], '')[-300:]})")
    return texts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "latest.json"))
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="rayspeed-bench-") as work:
        results = measure(rounds=args.rounds, work=Path(work))
    for run in results.get("overhead", {}).get("workloads", {}).values():  # the figures, not the timelines
        del run["timelines"], run["tensors"]
    minutes = (time.time() - started) / 60
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"date": time.strftime("%Y-%m-%d"), "machine": platform.node(),
                                          "minutes": minutes, **results}, indent=2, default=str))
    print("\n\n".join([*sections(results), "Summary:\n" + summary(results)]))
    print(f"\n{time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores, " + ", ".join(
        f"{package} {version(package)}" for package in ("torch", "deepspeed", "ray")) + f": {minutes:.1f} min")


if __name__ == "__main__":
    main()
