"""The GPU path: NCCL, bf16, one GPU per worker. Runs only where CUDA GPUs exist."""

import pytest
import torch
from conftest import experiment, train

from rayspeed.config import load_config

needs_two_gpus = pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 CUDA GPUs")


@pytest.mark.gpu
@pytest.mark.ray
@needs_two_gpus
def test_two_gpu_workers_learn_digits_in_bf16_with_zero2(tmp_path):
    config = experiment(tmp_path, scaling={"use_gpu": True, "num_workers": 2},
                        train={"precision": "bf16", "zero_stage": 2}, run={"name": "gpu"})
    summary = train(config, None, wandb_mode="disabled")
    assert summary.final["val_accuracy"] > 0.8


def test_gpu_config_generates_bf16_deepspeed_config(tmp_path):
    cfg = load_config(experiment(tmp_path, scaling={"use_gpu": True}, train={"precision": "bf16"}))
    assert cfg.deepspeed_config()["bf16"] == {"enabled": True}
