"""The train split of an experiment as rayspeed's own pipeline makes it, saved for the native baseline.

Builds the splits with `rayspeed.datasets.build_datasets` in a small local Ray, then writes every
model-ready column of the train split (features, label) to `OUT/train.npz` and the input spec to
`OUT/input_spec.json`, so the plain DeepSpeed script trains on exactly the tensors rayspeed's
workers get (before augmentation, which the compared runs turn off).

    python benchmarks/prepared_tensors.py CONFIG OUT [section.key=value ...]
"""

import json
import sys
from pathlib import Path

import numpy as np
import ray

from rayspeed.config import load_config
from rayspeed.datasets import build_datasets

SKIPPED = ("row_hash",)  # rayspeed's row identity, not a model input


def main(config: str, out: str, *overrides: str) -> None:
    cfg = load_config(config, list(overrides))
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    try:
        prepared = build_datasets(cfg.data, seed=cfg.train.seed)
        columns: dict[str, list[np.ndarray]] = {}
        for batch in prepared.datasets["train"].iter_batches(batch_size=8192, batch_format="numpy"):
            for name, values in batch.items():
                if name not in SKIPPED:
                    columns.setdefault(name, []).append(values)
    finally:
        ray.shutdown()
    directory = Path(out)
    directory.mkdir(parents=True, exist_ok=True)
    np.savez(directory / "train.npz", **{name: np.concatenate(parts) for name, parts in columns.items()})
    (directory / "input_spec.json").write_text(json.dumps(prepared.input_spec.to_dict()))


if __name__ == "__main__":
    main(*sys.argv[1:])
