"""Running the compared commands (from the repository root, where the examples' data paths start) and
reading what they measured; shared by every benchmark script.

A `rayspeed` command runs as a subprocess whose output lines and metrics rows are timestamped as
they appear (rows are committed to `metrics.jsonl` as the workers send them), so start-up and
recovery times come from the same run as the throughput."""

import json
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cpu_shares import CpuSampler

ROOT = Path(__file__).resolve().parent.parent
POLL_S = 0.05


@dataclass
class Timeline:
    """One command: when it started (unix seconds), its output lines and metrics rows as they appeared."""

    started: float
    wall_s: float = 0.0
    lines: list[tuple[float, str]] = field(default_factory=list)
    row_times: dict[int, float] = field(default_factory=dict)  # step -> when its row was committed
    rows: list[dict] = field(default_factory=list)
    cpu: dict[str, float] = field(default_factory=dict)  # share of all cores per process group, while training

    def seconds_to_line(self, text: str) -> float | None:
        return next((at - self.started for at, line in self.lines if text in line), None)

    def seconds_to_row(self, step: int) -> float | None:
        at = self.row_times.get(step)
        return None if at is None else at - self.started


def run_rayspeed(arguments: Sequence[str], *, run_dir: Path | None = None, env: dict | None = None) -> Timeline:
    """`rayspeed ARGUMENTS...`; exits the benchmark with the command's output when it fails."""
    timeline = Timeline(started=time.time())
    with CpuSampler() as cpu:
        _run(arguments, timeline, run_dir=run_dir, env=env)
    if len(timeline.row_times) > 1:
        timeline.cpu = cpu.shares(min(timeline.row_times.values()), max(timeline.row_times.values()))
    return timeline


def _run(arguments: Sequence[str], timeline: Timeline, *, run_dir: Path | None, env: dict | None) -> None:
    process = subprocess.Popen([sys.executable, "-m", "rayspeed", *arguments], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, env={**os.environ, **(env or {})}, cwd=ROOT)
    done = threading.Event()
    watcher = threading.Thread(target=_watch_rows, args=(run_dir, timeline, done), daemon=True)
    if run_dir is not None:
        watcher.start()
    for line in process.stdout:
        timeline.lines.append((time.time(), line.rstrip()))
    code = process.wait()
    timeline.wall_s = time.time() - timeline.started
    done.set()
    if run_dir is not None:
        watcher.join()
        timeline.rows = _rows(run_dir / "metrics.jsonl")
    if code != 0:
        tail = "\n".join(line for _, line in timeline.lines[-30:])
        sys.exit(f"rayspeed {' '.join(arguments)} failed (exit {code}):\n{tail}")


def train(config: str, overrides: Sequence[str], *, storage: Path, name: str, address: str | None = None) -> Timeline:
    """`rayspeed train` with W&B offline (what a user without a key gets) and the run in `storage`; a
    cluster's `address` is joined with its token (`rayspeed cluster up` turns token authentication on)."""
    arguments = ["train", config, f"run.storage_path={storage}", f"run.name={name}", "tracking.mode=offline",
                 *overrides, *(["--address", address] if address else [])]
    return run_rayspeed(arguments, run_dir=storage / name, env={"RAY_AUTH_MODE": "token"} if address else None)


def run_native(tensors: Path, config: str, overrides: Sequence[str], *, workers: int = 2) -> dict:
    """`torchrun native_deepspeed.py`: its rank 0's JSON plus when it started and its wall time."""
    env = {**os.environ, "DS_ACCELERATOR": "cpu", "PYTHONWARNINGS": "ignore::FutureWarning", "OMP_NUM_THREADS": "1"}
    started = time.time()
    script = ROOT / "benchmarks" / "native_deepspeed.py"
    with CpuSampler() as cpu:
        done = subprocess.run(["torchrun", "--nproc_per_node", str(workers), str(script), str(tensors), config,
                               *overrides], capture_output=True, text=True, env=env, cwd=ROOT)
    if done.returncode != 0:
        sys.exit(f"native_deepspeed.py failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    marks = result["marks"]
    return {**result, "started": started, "wall_s": time.time() - started,
            "cpu": cpu.shares(marks["first_window_end"], marks["train_end"])}


def prepare_tensors(config: str, overrides: Sequence[str], out: Path) -> Path:
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "prepared_tensors.py"), config, str(out), *overrides],
                   check=True, capture_output=True, cwd=ROOT)
    return out


def training_rate(rows: list[dict]) -> float:
    """Samples per second over every training window after the first (warm-up). Validation,
    reports and checkpoints fall between windows."""
    windows = _windows(rows)
    return sum(samples for samples, _, _ in windows) / sum(seconds for _, seconds, _ in windows)


def data_wait_share(rows: list[dict]) -> float:
    """Share of step time the workers waited for their next batch, over the windows after the first."""
    windows = _windows(rows)
    return sum(wait for _, _, wait in windows) / sum(seconds for _, seconds, _ in windows)


def _windows(rows: list[dict]) -> list[tuple[float, float, float]]:
    """(samples, seconds, seconds waiting for data) of each logged window after the first."""
    trained = [row for row in rows if "samples_per_s" in row]
    windows = []
    for before, row in zip(trained, trained[1:], strict=False):
        seconds = row["step_time_s"] * (row["step"] - before["step"])
        windows.append((row["samples_per_s"] * seconds, seconds, row["data_wait_s"]))
    return windows


def median(values) -> float:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else float("nan")


def table(header: Sequence[str], rows: Sequence[Sequence]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows])


def _watch_rows(run_dir: Path, timeline: Timeline, done: threading.Event) -> None:
    path, seen = run_dir / "metrics.jsonl", 0
    while not done.wait(POLL_S):
        if not path.exists():
            continue
        lines = path.read_text().splitlines()
        now = time.time()
        for line in lines[seen:]:
            try:
                timeline.row_times.setdefault(json.loads(line)["step"], now)
            except json.JSONDecodeError:  # a row being written
                break
            seen += 1


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
