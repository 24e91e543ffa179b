"""The experiment schema through its public loader: no Ray, no torch."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import TINY_DIGITS

from rayspeed.config import ExperimentConfig, load_config
from rayspeed.config.load import apply_overrides
from rayspeed.config.redact import REDACTED, redact
from rayspeed.config.saved import read_saved_config, read_saved_model
from rayspeed.errors import ConfigError

EXAMPLES = sorted(Path(__file__).parent.parent.glob("examples/*.yaml"))


def write(tmp_path, config: dict) -> Path:
    path = tmp_path / "experiment.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def problems(tmp_path, overrides=(), config=TINY_DIGITS) -> str:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, config), overrides)
    return str(caught.value)


def test_grad_accumulation_is_derived_from_global_micro_and_workers(tmp_path):
    cfg = load_config(write(tmp_path, TINY_DIGITS), ["train.global_batch=64", "train.micro_batch_per_worker=8"])
    ds = cfg.deepspeed_config()
    assert ds["gradient_accumulation_steps"] == 4
    assert ds["train_batch_size"] == 64 and ds["train_micro_batch_size_per_gpu"] == 8


def test_global_batch_that_cannot_split_is_rejected_naming_the_three_numbers(tmp_path):
    message = problems(tmp_path, ["train.global_batch=60", "train.micro_batch_per_worker=8"])
    assert "train.global_batch (60)" in message
    assert "train.micro_batch_per_worker (8)" in message
    assert "scaling.num_workers (2)" in message
    assert message.count("\n") == 0  # one problem, reported once


def test_all_three_batch_terms_must_agree(tmp_path):
    message = problems(tmp_path, ["train.global_batch=64", "train.micro_batch_per_worker=8",
                                  "train.grad_accumulation=2"])
    assert "train.grad_accumulation (2)" in message and "= 32" in message


def test_micro_batch_alone_means_no_accumulation(tmp_path):
    cfg = load_config(write(tmp_path, TINY_DIGITS), ["train.global_batch=null", "train.micro_batch_per_worker=8"])
    assert (cfg.batch.global_batch, cfg.batch.grad_accumulation) == (16, 1)


@pytest.mark.parametrize(
    "override, expected",
    [
        ("train.lrr=0.1", "train.lrr: unknown key; did you mean 'lr'?"),
        ("trian.lr=0.1", "trian: unknown section; did you mean 'train'?"),
        ("train.lr=-1", "train.lr: Input should be greater than 0"),
        ("model.name=resnet",
         "model.name: Input should be 'mlp', 'cnn', 'rnn' or 'transformer' (or set model.factory) (got 'resnet')"),
        ("train.zero_stage=4", "train.zero_stage: Input should be 0, 1, 2 or 3"),
        ("data.source=/no/such/file.txt", "cannot infer the format of '/no/such/file.txt'"),
        ("train.precision=fp16", "train.precision: fp16 runs on GPU workers only"),
        ("train.precision=bf16", "train.precision: bf16 runs on GPU workers only"),
        ("model.args.hidden_sizes=[64, -1]", "model.args.hidden_sizes.1: Input should be greater than 0"),
        ("model.args.depth=3", "model.args.depth: unknown key; did you mean 'dropout'?"),
        ("model.factory=not-a-module", "model.factory: must look like 'package.module:function'"),
        ("model.factory=pkg.mod:build", "model.name: must be null when model.factory is set (got 'mlp')"),
        ("checkpoint.score_mode=min", "checkpoint.score_mode: min would keep the worst"),
        ("train.epochs=null", "set exactly one of train.epochs and train.max_steps"),
    ],
)
def test_bad_values_name_the_field(tmp_path, override, expected):
    message = problems(tmp_path, [override])
    assert expected in message
    assert message.startswith(str(tmp_path / "experiment.yaml"))


def test_every_problem_is_reported_not_just_the_first(tmp_path):
    message = problems(tmp_path, ["train.lr=-1", "train.zero_stage=9", "scaling.num_wrkers=2"])
    assert len(message.splitlines()) == 3


def test_deepspeed_block_may_add_but_not_contradict(tmp_path):
    config = {**TINY_DIGITS, "deepspeed": {"wall_clock_breakdown": True, "zero_optimization": {"stage": 3}}}
    message = problems(tmp_path, config=config)
    assert "deepspeed.zero_optimization.stage: 3 contradicts" in message
    config["deepspeed"] = {"wall_clock_breakdown": True, "zero_optimization": {"stage": 2,
                                                                               "overlap_comm": False}}
    cfg = load_config(write(tmp_path, config))
    ds = cfg.deepspeed_config()
    assert ds["wall_clock_breakdown"] is True
    assert ds["zero_optimization"] == {"stage": 2, "overlap_comm": False}


def test_generated_optimizer_never_needs_a_cpp_build(tmp_path):
    cfg = load_config(write(tmp_path, TINY_DIGITS))
    assert cfg.deepspeed_config()["optimizer"]["params"]["torch_adam"] is True


def test_overrides_are_parsed_as_yaml_and_validated(tmp_path):
    cfg = load_config(write(tmp_path, TINY_DIGITS), ["model.args.hidden_sizes=[8, 4]", "train.lr=3e-4"])
    assert cfg.model.args.hidden_sizes == [8, 4] and cfg.train.lr == 3e-4
    assert "expected section.key=value" in problems(tmp_path, ["train.lr"])


def test_missing_file_and_non_mapping_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="no such experiment file"):
        load_config(tmp_path / "absent.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(tmp_path / "list.yaml")


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_example_validates(path):
    cfg = load_config(path)
    assert cfg.run.name


@pytest.mark.parametrize("sections", [
    {},
    {"data": {"source": "fashion_mnist", "image": {"augment": {"flip": {"probability": 0.5}}}},
     "model": {"name": "cnn"}},
    {"data": {"source": "corpus", "format": "text", "task": "language_modeling", "text": {"block_size": 64}},
     "model": {"name": "transformer"}, "checkpoint": {"score_metric": "val_perplexity", "score_mode": "min"}},
])
def test_resolved_config_round_trips_through_the_loader(tmp_path, sections):
    """A resolved config spells out every default (table settings of a picture run too) and loads again."""
    cfg = load_config(write(tmp_path, {**TINY_DIGITS, **sections}))
    again = load_config(write(tmp_path, cfg.resolved_dict()))
    assert again == cfg.model_copy(update={"train": again.train}) and again.batch == cfg.batch


def test_redact_blanks_secret_keys_and_uri_credentials():
    cleaned = redact({"api_key": "abc", "nested": {"AWS_SECRET_ACCESS_KEY": "s", "sessionToken": "t"},
                      "tokenizer": "bytes", "source": "s3://AKIA:pw@bucket/x?secret_key=zz&region=eu"})
    assert cleaned["api_key"] == REDACTED and cleaned["nested"]["AWS_SECRET_ACCESS_KEY"] == REDACTED
    assert cleaned["nested"]["sessionToken"] == REDACTED
    assert cleaned["tokenizer"] == "bytes"  # data.text.tokenizer names a file: the saved config loads back
    assert "pw" not in cleaned["source"] and "zz" not in cleaned["source"] and "region=eu" in cleaned["source"]


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_a_runs_saved_config_reads_back_as_the_same_experiment(path):
    """What a run saves (resolved, secrets removed) is what `evaluate` and `export` read back."""
    cfg = load_config(path)
    saved = yaml.safe_dump(redact(cfg.resolved_dict()), sort_keys=False)
    again = read_saved_config(saved, source="config.yaml")
    assert again.data == cfg.data and again.model == cfg.model and again.batch == cfg.batch
    assert again.train == cfg.train.model_copy(update=vars(cfg.batch))


def test_a_saved_config_missing_a_needed_value_names_it(tmp_path):
    raw = redact(load_config(write(tmp_path, TINY_DIGITS)).resolved_dict())
    raw["data"]["source"] = "s3://key:secret@bucket/digits.csv"
    with pytest.raises(ConfigError, match=r"config.yaml: data.source saved as <redacted>"):
        read_saved_config(yaml.safe_dump(redact(raw)), source="config.yaml")


def test_an_older_runs_saved_model_reads_back_for_export(tmp_path):
    raw = redact(load_config(write(tmp_path, TINY_DIGITS)).resolved_dict())
    raw["data"]["text"]["tokenizer"] = REDACTED  # an older rayspeed redacted `tokenizer`
    model, zero_stage = read_saved_model(yaml.safe_dump(raw), source="config.yaml")
    assert model.args.hidden_sizes == [64] and zero_stage == 2
    with pytest.raises(ConfigError, match="data.text.tokenizer saved as <redacted>"):
        read_saved_config(yaml.safe_dump(raw), source="config.yaml")


def test_freeze_needs_init_from(tmp_path):
    assert "model.freeze: only with model.init_from" in problems(tmp_path, ["model.freeze=[layers.0.]"])


def test_json_schema_documents_fields():
    schema = json.dumps(ExperimentConfig.model_json_schema())
    assert "Peak learning rate." in schema


def test_config_layer_stays_light():
    """Validating a config, and the run directory's owner, must not pay for torch, deepspeed or Ray imports."""
    code = ("import sys, rayspeed.config, rayspeed.cli, rayspeed.config.preflight, rayspeed.runs.guard, "
            "rayspeed.runs.metrics_log, rayspeed.runs.output, rayspeed.runs.progress, rayspeed.runs.summary; "
            "print(sorted(m for m in ('torch', 'deepspeed', 'ray.train', 'ray') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_imports_point_one_way():
    """config <- cluster/datasets <- trainers <- cli: the import-linter contract in pyproject.toml."""
    result = subprocess.run(["lint-imports"], capture_output=True, text=True, cwd=Path(__file__).parent.parent)
    assert result.returncode == 0, result.stdout


def test_validation_never_touches_the_file_system(tmp_path):
    """A config may be submitted to a cluster where paths differ: paths are checked by the verb that reads them."""
    cfg = load_config(write(tmp_path, TINY_DIGITS), ["data.source=/data/on/the/cluster.parquet",
                                                     "model.factory=cluster_only_module:build", "model.name=null",
                                                     "model.args={}"])
    assert cfg.data.source == "/data/on/the/cluster.parquet" and cfg.model.factory == "cluster_only_module:build"


def test_value_overrides_share_the_checks_of_string_overrides(tmp_path):
    cfg = load_config(write(tmp_path, TINY_DIGITS))
    changed = apply_overrides(cfg, {"train.lr": 0.01, "model.args.hidden_sizes": [8]})
    assert changed.train.lr == 0.01 and changed.model.args.hidden_sizes == [8] and cfg.train.lr == 3e-3
    with pytest.raises(ConfigError) as caught:
        apply_overrides(cfg, {"train.lr": -1, "train.lrr": 1}, source="trial 3")
    assert str(caught.value).splitlines() == ["trial 3: train.lr: Input should be greater than 0 (got -1)",
                                              "trial 3: train.lrr: unknown key; did you mean 'lr'?"]


def test_gpus_per_worker_other_than_one_is_refused_with_the_reason(tmp_path):
    message = problems(tmp_path, ["scaling.use_gpu=true", "scaling.gpus_per_worker=2"])
    assert "scaling.gpus_per_worker: must be 1: each DeepSpeed rank drives exactly one GPU" in message
    assert "(got 2)" in message


def test_sgd_under_zero_is_allowed_by_the_generated_deepspeed_config(tmp_path):
    ds = load_config(write(tmp_path, TINY_DIGITS), ["train.optimizer=sgd"]).deepspeed_config()
    assert ds["optimizer"]["type"] == "SGD" and ds["zero_allow_untested_optimizer"] is True
    assert "scheduler" not in ds  # rayspeed's own schedule: DeepSpeed's rejects warmup 0


def test_model_args_are_typed_per_model_and_documented(tmp_path):
    cfg = load_config(write(tmp_path, TINY_DIGITS), ["model.name=cnn", "model.args={channels: [4]}"])
    assert cfg.model.args.channels == [4] and cfg.model.args.image_shape is None
    schema = json.dumps(ExperimentConfig.model_json_schema())
    assert "Width of each hidden layer" in schema and "Output channels of each conv block" in schema
