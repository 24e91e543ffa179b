"""What checkpoints cost the digits job, and how long a killed training worker takes to come back.

Checkpoint cost: the job with a checkpoint at every epoch end (the default interval) and with one
only at its last step, alternately ROUNDS times; both validate at every epoch end. Its training phase
is the seconds from the first logged row to the last; the overhead is the difference over the run
with one checkpoint, also per extra checkpoint. Recovery: the job for 40 epochs; once the row of
step 80 is in (after the checkpoint of step 66), one training worker gets SIGKILL; measured are the
seconds from the kill to the run's own line that every rank trained its first step after restoring.

    python benchmarks/recovery.py [--rounds 2]
"""

import argparse
import signal
import tempfile
import threading
import time
from pathlib import Path

import psutil
from harness import median, table, train
from workloads import MLP

from rayspeed.config import load_config

RESTARTED = "ranks continued after the checkpoint of step"


def checkpoint_cost(*, rounds: int, work: Path) -> dict:
    cfg = load_config(MLP.config, [])
    phases: dict[str, list[float]] = {"every epoch": [], "last step only": []}
    for index in range(rounds):
        for label, every in (("every epoch", "null"), ("last step only", str(10**9))):  # the last step always is
            run = train(MLP.config, [f"checkpoint.every_n_steps={every}"], storage=work / "runs",
                        name=f"checkpoints-{index}-{len(every)}")
            steps = sorted(run.row_times)
            phases[label].append(run.row_times[steps[-1]] - run.row_times[steps[0]])
    with_all, with_one = median(phases["every epoch"]), median(phases["last step only"])
    extra = cfg.train.epochs - 1
    return {"training_s_every_epoch": with_all, "training_s_last_only": with_one, "checkpoints": cfg.train.epochs,
            "overhead": with_all / with_one - 1, "seconds_per_checkpoint": (with_all - with_one) / extra,
            "epoch_s": with_one / cfg.train.epochs}


def recovery(*, work: Path) -> dict:
    """Seconds from SIGKILL of one training worker to every rank's first step after restoring."""
    killed: dict[str, float] = {}
    run_dir = work / "runs" / "killed"

    def kill_after_step_80() -> None:
        metrics = run_dir / "metrics.jsonl"
        while not (metrics.exists() and '"step": 80,' in metrics.read_text()):
            time.sleep(0.05)
        worker = next(p for p in psutil.process_iter(["cmdline"]) if (p.info["cmdline"] or [""])[0].startswith(
            "ray::RayTrainWorker"))
        worker.send_signal(signal.SIGKILL)
        killed["at"] = time.time()

    killer = threading.Thread(target=kill_after_step_80, daemon=True)
    killer.start()
    run = train(MLP.config, ["train.epochs=40", "checkpoint.every_n_steps=null"], storage=work / "runs",
                name="killed")
    back = run.seconds_to_line(RESTARTED)
    return {"kill_to_first_step_s": None if back is None else run.started + back - killed["at"],
            "wall_s": run.wall_s}


def report(cost: dict, back: dict) -> str:
    return "\n".join([
        "Checkpoint cost (digits job, training phase = first to last logged row, median of rounds):",
        table(["checkpoints", "training phase s"],
              [(f"{cost['checkpoints']} (every epoch, the default)", f"{cost['training_s_every_epoch']:.1f}"),
               ("1 (last step only)", f"{cost['training_s_last_only']:.1f}")]),
        f"overhead at the default interval: {cost['overhead']:.1%} (target < 3%); "
        f"{cost['seconds_per_checkpoint']:.2f} s per checkpoint, against an epoch of {cost['epoch_s']:.2f} s",
        f"SIGKILL of a training worker to every rank's first new step: {back['kill_to_first_step_s']:.1f} s",
    ])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="rayspeed-recovery-") as work:
        print(report(checkpoint_cost(rounds=args.rounds, work=Path(work)), recovery(work=Path(work))))


if __name__ == "__main__":
    main()
