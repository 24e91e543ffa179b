"""Where the machine's CPU goes while a run trains: seconds of CPU per group of processes, sampled
from /proc once a second by a thread of the benchmark, then summed over the training phase only."""

import os
import threading
import time
from collections import defaultdict

TICK_S = 1.0 / os.sysconf("SC_CLK_TCK")
# The first matching prefix of a process's command line names its group.
GROUPS = (
    ("training workers", ("ray::RayTrainWorker",)),
    ("Ray Data", ("ray::MapBatches", "ray::Read", "ray::SplitCoordinator", "ray::DatasetManager", "ray::_StatsActor",
                  "ray::_AutoscalingCoordinatorActor", "ray::IDLE", "ray::Filter", "ray::RandomizeBlockOrder")),
    ("Ray Train controller and rayspeed actors", (
        "ray::TrainController", "ray::SynchronizationActor", "ray::_QueueActor", "ray::_ControlState",
        "ray::PlacementGroupCleaner", "ray::PreemptionWatcher")),
    ("rayspeed driver and W&B", ("python -m rayspeed", "wandb", "/bin/rayspeed")),
    ("native script", ("native_deepspeed.py",)),
)


def group_of(command: str) -> str:
    for group, prefixes in GROUPS:
        if any(prefix in command for prefix in prefixes):
            return group
    ray_core = ("raylet", "gcs_server", "dashboard", "runtime_env", "log_monitor", "monitor.py", "ray::")
    return "Ray core (raylet, GCS, dashboard, agents)" if any(part in command for part in ray_core) else "other"


class CpuSampler:
    """`with CpuSampler() as cpu:` ... `cpu.shares(start, end)`: each group's share of all cores
    between two moments (unix seconds)."""

    def __init__(self, every_s: float = 1.0):
        self._every_s = every_s
        self._samples: list[tuple[float, dict[str, float]]] = []  # (when, CPU seconds per group since the last)
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> "CpuSampler":
        self._thread.start()
        return self

    def __exit__(self, *_) -> None:
        self._done.set()
        self._thread.join()

    def shares(self, start: float, end: float) -> dict[str, float]:
        used: dict[str, float] = defaultdict(float)
        for when, seconds in self._samples:
            if start < when <= end:
                for group, value in seconds.items():
                    used[group] += value
        available = (end - start) * (os.cpu_count() or 1)
        return {group: value / available for group, value in sorted(used.items(), key=lambda item: -item[1])}

    def _sample(self) -> None:
        previous = _cpu_seconds()
        while not self._done.wait(self._every_s):
            current = _cpu_seconds()
            per_group: dict[str, float] = defaultdict(float)
            for pid, (seconds, command) in current.items():
                per_group[group_of(command)] += seconds - previous.get(pid, (0.0, ""))[0]
            self._samples.append((time.time(), dict(per_group)))
            previous = current


def _cpu_seconds() -> dict[int, tuple[float, str]]:
    """Per process: user + system CPU seconds so far, and its command line."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat, open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                fields = stat.read().rsplit(")", 1)[1].split()
                command = cmdline.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # ended meanwhile
            continue
        found[int(entry)] = ((int(fields[11]) + int(fields[12])) * TICK_S, command)
    return found
