"""Samples/s of the images CNN (compute-bound) with 1 and 2 training workers on this machine, from
the same run, alternately ROUNDS times; run_all.py adds the digits job on 2 nodes (overhead.py's
attached runs) and the memory of a dataset 3x the object store (data_at_scale.py).

    python benchmarks/scaling.py [--rounds 2]
"""

import argparse
import tempfile
from pathlib import Path

from harness import median, table, train, training_rate
from workloads import CNN, Workload


def samples_per_s(workload: Workload, *, workers: tuple[int, ...], rounds: int, work: Path) -> dict[int, float]:
    """Median samples/s per worker count; the global batch stays, so 1 worker accumulates twice as many."""
    rates: dict[int, list[float]] = {count: [] for count in workers}
    for index in range(rounds):
        for count in workers:
            run = train(workload.config, [*workload.overrides, f"scaling.num_workers={count}"],
                        storage=work / "runs", name=f"scaling-{count}-{index}")
            rates[count].append(training_rate(run.rows))
    return {count: median(values) for count, values in rates.items()}


def report(rates: dict[str, float]) -> str:
    base = next(iter(rates.values()))
    return table(["run", "samples/s", "x first"],
                 [(label, f"{rate:.0f}", f"{rate / base:.2f}") for label, rate in rates.items()])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="rayspeed-scaling-") as work:
        rates = samples_per_s(CNN, workers=(1, 2), rounds=args.rounds, work=Path(work))
    print(report({f"{CNN.name}, {count} worker{'s' * (count > 1)}": rate for count, rate in rates.items()}))


if __name__ == "__main__":
    main()
