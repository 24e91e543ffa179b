"""A user's own model module next to the experiment file, through the real `rayspeed` command:
importable on every worker, identical initial weights but per-rank dropout masks, and a model that
fails in training ends the command with exit code 1."""

import json
import subprocess
import textwrap

import pytest
from conftest import experiment

pytestmark = pytest.mark.ray

PROBE = textwrap.dedent("""
    import json
    from pathlib import Path

    import torch
    import torch.distributed as dist
    from torch import nn


    class Probe(nn.Module):
        def __init__(self, num_features, num_classes, out_dir, fail_after):
            super().__init__()
            self.body = nn.Linear(num_features, num_classes)
            self.dropout = nn.Dropout(0.5)
            self.out_dir, self.fail_after, self.calls = out_dir, fail_after, 0

        def forward(self, x):
            self.calls += 1
            if self.training and self.calls == 1:
                mask = self.dropout(torch.ones(64)).ne(0).int().tolist()
                Path(self.out_dir, f"rank{dist.get_rank()}.json").write_text(json.dumps(
                    {"weights": self.body.weight.detach().double().sum().item(), "mask": mask}))
            if self.training and self.calls > self.fail_after:
                raise RuntimeError("probe model fails on purpose")
            return self.body(self.dropout(x))


    def build(*, num_features, num_classes, out_dir, fail_after):
        return Probe(num_features, num_classes, out_dir, fail_after)
""")


def test_user_model_from_the_working_directory_runs_on_every_worker(tmp_path, ray_address):
    (tmp_path / "probe_model.py").write_text(PROBE)
    config = experiment(tmp_path, run={"name": "probe", "max_failures": 0}, tracking={"mode": "disabled"},
                        model={"name": None, "factory": "probe_model:build",
                               "args": {"out_dir": str(tmp_path), "fail_after": 6}})
    result = subprocess.run(["rayspeed", "train", str(config), "--address", ray_address], cwd=tmp_path,
                            capture_output=True, text=True, timeout=300, env=_without_pythonpath())
    ranks = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    assert ranks[0]["weights"] == ranks[1]["weights"]  # one seed for the initial weights
    assert ranks[0]["mask"] != ranks[1]["mask"]  # but each rank draws its own dropout masks
    assert result.returncode == 1, result.stdout + result.stderr
    assert "training failed" in result.stderr and "probe model fails on purpose" in result.stderr
    assert "--resume" in result.stderr and "the full log is in" in result.stderr


def _without_pythonpath() -> dict:
    import os

    return {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
