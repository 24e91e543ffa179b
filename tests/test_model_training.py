"""Every built-in model learns under 2-worker DeepSpeed ZeRO-2 (real Ray Train workers, gloo): a few
steps on a fixed learnable batch lower its loss. The L1 term and early stopping's counting are exact."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY_DIGITS, experiment, metrics, run_dir, train
from pydantic import TypeAdapter

from rayspeed.config.early_stopping import EarlyStoppingConfig
from rayspeed.config.load import validate
from rayspeed.config.model import ModelConfig
from rayspeed.datasets.preprocessing import InputSpec
from rayspeed.runs.layout import checkpoint_dir_name
from rayspeed.trainers.early_stopping import EarlyStopper
from rayspeed.trainers.models import build_model
from rayspeed.trainers.regularization import penalized_weights, training_objective
from rayspeed.trainers.tasks import task_for

STEPS, ROWS = 25, 16
TOKENS = dict(features=[], feature_shape=[12], feature_dtype="int32", classes=[0, 1], vocab_size=10, pad_id=9)


def token_rows(rng) -> dict:
    """Class 1: the sequence holds token 3 (others hold 4-8); sequences of 8 to 12 tokens, padded with 9."""
    ids = rng.integers(4, 9, size=(ROWS, 12))
    label = np.arange(ROWS) % 2
    ids[label == 1, rng.integers(0, 8, size=ROWS // 2)] = 3
    ids[np.arange(12) >= rng.integers(8, 13, size=(ROWS, 1))] = 9
    return {"features": ids.astype(np.int32), "label": label}


CASES = {
    "mlp": ({"name": "mlp", "args": {"hidden_sizes": [32], "dropout": 0.1}},
            InputSpec(task="classification", features=[f"x{i}" for i in range(8)], feature_shape=[8],
                      feature_dtype="float32", classes=[0, 1, 2]),
            lambda rng: (x := rng.normal(size=(ROWS, 8)).astype(np.float32), {"features": x,
                                                                              "label": x[:, :3].argmax(1)})[1]),
    "cnn": ({"name": "cnn", "args": {"channels": [4, 8], "dropout": 0.1}},
            InputSpec(task="classification", features=[], feature_shape=[64], feature_dtype="float32", classes=[0, 1],
                      image_shape=[1, 8, 8]),
            lambda rng: (x := rng.normal(size=(ROWS, 64)).astype(np.float32),
                         {"features": x, "label": (x[:, :32].mean(1) > x[:, 32:].mean(1)).astype(np.int64)})[1]),
    "rnn (lstm, text)": ({"name": "rnn", "args": {"cell": "lstm", "hidden_size": 16, "embedding_dim": 8}},
                         InputSpec(task="classification", **TOKENS), token_rows),
    "rnn (gru, bidirectional, windows)": (
        {"name": "rnn", "args": {"cell": "gru", "hidden_size": 16, "bidirectional": True, "layers": 2,
                                 "dropout": 0.1}},
        InputSpec(task="regression", features=["a", "b"], feature_shape=[12], feature_dtype="float32", classes=[],
                  sequence_shape=[6, 2]),
        lambda rng: (x := rng.normal(size=(ROWS, 12)).astype(np.float32),
                     {"features": x, "label": x[:, ::2].mean(1).astype(np.float32)})[1]),
    "transformer (text classifier)": ({"name": "transformer", "args": {"layers": 1, "heads": 2, "dim": 16}},
                                      InputSpec(task="classification", **TOKENS), token_rows),
    "transformer (language model)": (
        {"name": "transformer", "args": {"layers": 1, "heads": 2, "dim": 16}},
        InputSpec(task="language_modeling", features=[], feature_shape=[13], feature_dtype="int32", classes=[],
                  vocab_size=10),
        lambda rng: {"features": ((rng.integers(0, 10, size=(ROWS, 1)) + np.arange(13)) % 10).astype(np.int32)}),
}


def train_each_model(config: dict) -> None:
    """On every worker: each model through DeepSpeed for STEPS optimizer steps on its rank's fixed batch."""
    import ray.train

    from rayspeed.trainers.engine import build_engine
    from rayspeed.trainers.tasks import task_for

    rank = ray.train.get_context().get_world_rank()
    losses = {}
    for name, (model, spec, rows) in CASES.items():
        torch.manual_seed(0)
        network = build_model(TypeAdapter(ModelConfig).validate_python(model), spec)
        engine = build_engine(network, ds_config=config["ds_config"], lr_plan=config["lr_plan"], peak_lr=1e-2)
        batch = {key: torch.as_tensor(value, device=engine.device)
                 for key, value in rows(np.random.default_rng(rank)).items()}
        task = task_for(spec)
        seen = []
        for _ in range(STEPS):
            loss = task.loss(engine(*task.inputs(batch, dtype=config["dtype"])), batch)
            engine.backward(loss)
            engine.step()
            seen.append(loss.item())
        losses[name] = [float(np.mean(seen[:3])), float(np.mean(seen[-3:]))]
    (Path(config["out"]) / f"rank{rank}.json").write_text(json.dumps(losses))


def train_every_model(tmp_path: Path, *, use_gpu: bool = False) -> None:
    """Two Ray Train workers (gloo on CPU; NCCL and bf16 on GPUs, one where there is one GPU) train
    every case under ZeRO-2."""
    import ray.cloudpickle
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    from rayspeed.trainers.schedule import LrPlan

    workers = min(2, torch.cuda.device_count()) if use_gpu else 2
    cfg = validate({**TINY_DIGITS, "train": {**TINY_DIGITS["train"], "global_batch": workers * ROWS,
                                             "micro_batch_per_worker": ROWS, "lr_schedule": "constant",
                                             "precision": "bf16" if use_gpu else "fp32"},
                    "scaling": {"num_workers": workers, "use_gpu": use_gpu}}, source="test")
    assert cfg.deepspeed_config()["zero_optimization"]["stage"] == 2
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers cannot import tests/
    trainer = TorchTrainer(train_each_model, scaling_config=ScalingConfig(num_workers=workers, use_gpu=use_gpu),
                           torch_config=TorchConfig(backend="nccl" if use_gpu else "gloo"),
                           train_loop_config={"ds_config": cfg.deepspeed_config(), "out": str(tmp_path),
                                              "dtype": torch.bfloat16 if use_gpu else torch.float32,
                                              "lr_plan": LrPlan.from_config(cfg.train, total_steps=STEPS)},
                           run_config=RunConfig(storage_path=str(tmp_path), name="models"))
    trainer.fit()
    for rank in range(workers):
        losses = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert set(losses) == set(CASES)
        for name, (first, last) in losses.items():
            assert last < 0.6 * first, f"rank {rank}, {name}: loss {first:.4f} -> {last:.4f}"


def test_every_builtin_model_learns_under_two_worker_zero2(ray_session, tmp_path):
    train_every_model(tmp_path)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_every_builtin_model_learns_on_gpus_in_bf16(ray_session, tmp_path):
    train_every_model(tmp_path, use_gpu=True)


def test_the_l1_term_changes_the_loss_by_lambda_times_the_sum_of_absolute_weights():
    torch.manual_seed(0)
    model_config, spec, rows = CASES["mlp"]
    model = build_model(TypeAdapter(ModelConfig).validate_python(model_config), spec).eval()
    batch = {key: torch.as_tensor(value) for key, value in rows(np.random.default_rng(0)).items()}
    task = task_for(spec)
    loss = task.loss(model(*task.inputs(batch, dtype=torch.float32)), batch)
    weights = penalized_weights(model)
    assert [w.shape for w in weights] == [(32, 8), (3, 32)]  # matrices only: no biases
    absolute = sum(w.abs().sum().item() for w in (model[0].weight, model[3].weight))
    assert training_objective(loss, l1=0.0, weights=weights) is loss
    penalized = training_objective(loss, l1=0.01, weights=weights)
    assert penalized.item() - loss.item() == pytest.approx(0.01 * absolute, rel=1e-5)
    # Its gradient adds lambda x sign(w) to each weight's.
    plain = torch.autograd.grad(loss, model[0].weight, retain_graph=True)[0]
    assert torch.allclose(torch.autograd.grad(penalized, model[0].weight)[0], plain + 0.01 * model[0].weight.sign())


def test_early_stopping_counts_checkpoints_without_an_improvement_beyond_min_delta():
    stopper = EarlyStopper.of(EarlyStoppingConfig(patience=2, min_delta=0.1), metric="val_loss", mode="min")
    decisions = [stopper.update(score, step=step) for step, score in [(10, 1.0), (20, 0.95), (30, 0.85), (40, 0.9)]]
    # 0.95 is better but not by min_delta (stale 1); 0.85 is (reset); 0.9 is not (stale 1): no stop yet.
    assert decisions == [False, False, False, False] and stopper.best_step == 30
    assert stopper.update(0.86, step=50) and stopper.best_step == 30
    restarted = EarlyStopper.of(EarlyStoppingConfig(patience=2, min_delta=0.1), metric="val_loss", mode="min")
    restarted.load(stopper.state())
    assert restarted == stopper
    maximizing = EarlyStopper.of(EarlyStoppingConfig(patience=1), metric="val_f1", mode="max")
    assert not maximizing.update(float("nan"), step=1) and maximizing.best_step == 1  # NaN: the worst score
    assert not maximizing.update(0.6, step=2) and maximizing.update(0.6, step=3)  # a tie is no improvement,
    assert maximizing.best_step == 3  # but the later checkpoint is the best, as in Ray's ranking


def test_early_stopping_ends_every_rank_at_one_step_and_tests_the_best_checkpoint(tmp_path, ray_address):
    # A wide network on a third of digits overfits: val_loss turns up within a few epochs of 40.
    config = experiment(tmp_path, data={"split": {"train": 0.3, "val": 0.35, "test": 0.35}},
                        model={"name": "mlp", "args": {"hidden_sizes": [256, 256]}},
                        train={"epochs": 40, "lr": 1e-2, "lr_schedule": "constant", "early_stopping": {"patience": 2}},
                        checkpoint={"score_metric": "val_loss", "score_mode": "min", "keep": None})
    summary = train(config, ray_address)
    rows = metrics(run_dir(tmp_path, "tiny"))
    scored = [row for row in rows if "val_loss" in row]
    final, best = rows[-1], min(scored, key=lambda row: row["val_loss"])
    assert final["stopped_early"] and final["done"] and final["step"] < 40 * scored[0]["step"]
    # Patience 2 with min_delta 0: the run stops at the second checkpoint after its best.
    assert final["best_step"] == best["step"] == scored[-3]["step"]
    assert final["best_val_loss"] == pytest.approx(best["val_loss"], rel=1e-6)  # the best weights were loaded
    assert "test_accuracy" in final and summary.best_checkpoint.endswith(checkpoint_dir_name(best["step"]))
    stopped = run_dir(tmp_path, "tiny") / checkpoint_dir_name(final["step"])
    assert sorted(p.name for p in stopped.glob("rng_rank*.pt")) == ["rng_rank0.pt", "rng_rank1.pt"]
    state = json.loads((stopped / "train_state.json").read_text())
    assert state["early_stopping"]["stopped"] and state["step"] == final["step"]
    assert any(line.startswith("stopped early at step") for line in summary.lines())
