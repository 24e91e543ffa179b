"""One epoch over a synthetic parquet dataset several times larger than the Ray object store.

Starts a local Ray head with a small object store (`--object-store-mib`), writes float32 parquet
files `--scale` times its size, trains one epoch of `rayspeed train` on it with 2 DeepSpeed workers
(`data.cache: none`: the splits are streamed, nothing materialized), and prints, measured in that run:
peak node memory above the idle baseline, bytes Ray spilled from the object store, and the share of
step time the workers spent waiting for data.

    python benchmarks/data_at_scale.py [--object-store-mib 256] [--scale 3]
"""

import argparse
import re
import tempfile
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import yaml
from harness import data_wait_share, run_rayspeed, table

FEATURES = 64
ROWS_PER_FILE = 250_000


def write_dataset(directory: Path, *, total_bytes: int, seed: int = 0) -> tuple[int, int]:
    """Float32 features and a label that a linear rule decides (with noise): (rows, bytes on disk)."""
    rng = np.random.default_rng(seed)
    weights = rng.normal(size=FEATURES)
    rows_needed = total_bytes // (FEATURES * 4) + 1
    rows = 0
    while rows < rows_needed:
        count = min(ROWS_PER_FILE, rows_needed - rows)
        features = rng.normal(size=(count, FEATURES)).astype(np.float32)
        label = (features @ weights + rng.normal(scale=2.0, size=count) > 0).astype(np.int64)
        frame = pd.DataFrame(features, columns=[f"f{i}" for i in range(FEATURES)]).assign(label=label)
        frame.to_parquet(directory / f"part-{rows // ROWS_PER_FILE:04d}.parquet", compression=None)
        rows += count
    return rows, sum(path.stat().st_size for path in directory.iterdir())


def experiment(source: Path, storage: Path) -> dict:
    return {
        "schema_version": 1,
        "data": {"source": str(source), "cache": "none", "split": {"train": 0.98, "val": 0.01, "test": 0.01}},
        "model": {"name": "mlp", "args": {"hidden_sizes": [64]}},
        "train": {"epochs": 1, "global_batch": 1024, "micro_batch_per_worker": 512, "lr": 3e-3, "zero_stage": 1},
        "scaling": {"num_workers": 2, "cpus_per_worker": 1, "data_cpus": 1},
        "tracking": {"mode": "disabled", "log_every_n_steps": 20},
        "run": {"name": "scale", "storage_path": str(storage)},
    }


class MemoryPeak:
    """Samples the node's used memory every half second in a thread."""

    def __init__(self):
        self.baseline = psutil.virtual_memory().used
        self.peak = self.baseline
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self):
        while not self._stop.wait(0.5):
            self.peak = max(self.peak, psutil.virtual_memory().used)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *_):
        self._stop.set()
        self._thread.join()


def spilled_bytes(address: str) -> int:
    """Ray's own object-store summary ("Spilled N MiB, M objects"); 0 when nothing was spilled."""
    import ray
    from ray._private.internal_api import memory_summary

    ray.init(address=address, logging_level="ERROR")
    try:
        summary = memory_summary(address=address, stats_only=True)
    finally:
        ray.shutdown()
    found = re.search(r"Spilled (\d+) MiB", summary)
    return int(found.group(1)) * 2**20 if found else 0


def measure(*, object_store_mib: int, scale: float) -> dict:
    """One epoch over parquet `scale` times a `object_store_mib` store, on its own local Ray head."""
    from ray.cluster_utils import Cluster

    store = object_store_mib * 2**20
    with tempfile.TemporaryDirectory(prefix="rayspeed-scale-") as work:
        work = Path(work)
        (work / "data").mkdir()
        rows, on_disk = write_dataset(work / "data", total_bytes=int(scale * store))
        print(f"dataset: {rows} rows x {FEATURES} float32 features, {on_disk / 2**20:.0f} MiB of parquet "
              f"= {on_disk / store:.1f}x the object store ({object_store_mib} MiB)", flush=True)
        config = work / "scale.yaml"
        config.write_text(yaml.safe_dump(experiment(work / "data", work / "runs")))
        cluster = Cluster(initialize_head=True, connect=False,
                          head_node_args={"num_cpus": 4, "object_store_memory": store})
        try:
            with MemoryPeak() as memory:
                run = run_rayspeed(["train", str(config), "--address", cluster.address],
                                   run_dir=work / "runs" / "scale")
            spilled = spilled_bytes(cluster.address)
        finally:
            cluster.shutdown()
    return {"dataset_mib": on_disk / 2**20, "store_mib": object_store_mib, "wall_s": run.wall_s,
            "peak_memory_mib": (memory.peak - memory.baseline) / 2**20, "spilled_mib": spilled / 2**20,
            "data_wait_share": data_wait_share(run.rows), "test_accuracy": run.rows[-1].get("test_accuracy")}


def report(result: dict) -> str:
    return table(["measure", "value"], [
        ("dataset / object store", f"{result['dataset_mib']:.0f} MiB / {result['store_mib']} MiB "
                                   f"({result['dataset_mib'] / result['store_mib']:.1f}x)"),
        ("wall time of the run", f"{result['wall_s']:.0f} s"),
        ("peak node memory above idle", f"{result['peak_memory_mib']:.0f} MiB"),
        ("spilled from the object store", f"{result['spilled_mib']:.0f} MiB"),
        ("step time waiting for data", f"{result['data_wait_share']:.1%}"),
        ("test accuracy", f"{result['test_accuracy']:.3f}")])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--object-store-mib", type=int, default=256)
    parser.add_argument("--scale", type=float, default=3.0)
    args = parser.parse_args()
    print(report(measure(object_store_mib=args.object_store_mib, scale=args.scale)))


if __name__ == "__main__":
    main()
