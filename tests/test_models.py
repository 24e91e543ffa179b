"""Model errors are config errors before any worker starts: pre-flight (factory import and arguments)
and the driver's meta-device build (what the factory or the built-in does with the data's sizes)."""

import textwrap

import pytest
from conftest import TINY_DIGITS

from rayspeed.config.load import validate
from rayspeed.config.preflight import preflight
from rayspeed.datasets.preprocessing import InputSpec
from rayspeed.errors import ConfigError
from rayspeed.trainers.models import build_model, check_model_builds


def config(**model):
    return validate({**TINY_DIGITS, "model": model}, source="test")


def rows(features: int, classes: int) -> InputSpec:
    return InputSpec(task="classification", features=[], feature_shape=[features], feature_dtype="float32",
                     classes=list(range(classes)))


@pytest.fixture
def user_module(tmp_path):
    (tmp_path / "user_models.py").write_text(textwrap.dedent("""
        from torch import nn

        def build(*, num_features, num_classes, width=8):
            return nn.Sequential(nn.Linear(num_features, width), nn.ReLU(), nn.Linear(width, num_classes))

        def broken(*, num_features, num_classes):
            raise ValueError("this model needs 3 channels")
    """))
    return tmp_path


def test_factory_in_the_working_directory_is_found_and_shipped(user_module):
    checked = preflight(config(name=None, factory="user_models:build", args={"width": 4}), working_dir=str(user_module))
    assert checked.code_dir == str(user_module)
    model = build_model(checked.cfg.model, rows(5, 3))
    assert model[0].out_features == 4


def test_factory_argument_errors_name_model_args(user_module):
    with pytest.raises(ConfigError, match=r"model.args: user_models:build does not accept them: .*depth"):
        preflight(config(name=None, factory="user_models:build", args={"depth": 2}), working_dir=str(user_module))
    with pytest.raises(ConfigError, match=r"model.factory: module 'user_models' has no function 'absent'"):
        preflight(config(name=None, factory="user_models:absent"), working_dir=str(user_module))
    with pytest.raises(ConfigError, match=r"model.factory: cannot import 'no_such_module'"):
        preflight(config(name=None, factory="no_such_module:build"), working_dir=str(user_module))


def test_a_factory_that_raises_is_a_config_error_from_the_meta_build(user_module):
    checked = preflight(config(name=None, factory="user_models:broken"), working_dir=str(user_module))
    with pytest.raises(ConfigError, match="model.factory: building user_models:broken .* needs 3 channels"):
        check_model_builds(checked.cfg.model, rows(64, 10))


def test_builtin_models_that_cannot_hold_the_data_are_config_errors():
    with pytest.raises(ConfigError, match=r"model.args.image_shape: \[1, 4, 4\] does not hold the data's 64"):
        check_model_builds(config(name="cnn", args={"image_shape": [1, 4, 4]}).model, rows(64, 10))
    check_model_builds(config(name="cnn").model, rows(64, 10))


@pytest.mark.parametrize(("args", "named"), [
    ({"hiden_size": 32}, r"model.args.hiden_size: unknown key; did you mean 'hidden_size'\?"),
    ({"cell": "rnn"}, r"model.args.cell: Input should be 'lstm' or 'gru'"),
    ({"hidden_size": "wide"}, r"model.args.hidden_size: Input should be a valid integer"),
])
def test_bad_model_args_are_refused_naming_the_argument(args, named):
    text = {"source": "corpus", "format": "text", "task": "classification"}
    with pytest.raises(ConfigError, match=named):
        validate({**TINY_DIGITS, "data": text, "model": {"name": "rnn", "args": args}}, source="test")


def test_relative_data_paths_are_resolved_and_missing_ones_refused(tmp_path):
    (tmp_path / "rows.csv").write_text("a,label\n1,0\n")
    assert preflight(config(name="mlp"), working_dir=str(tmp_path)).code_dir is None  # nothing to ship
    cfg = validate({**TINY_DIGITS, "data": {"source": "rows.csv", "label_column": "label"}}, source="test")
    assert preflight(cfg, working_dir=str(tmp_path)).cfg.data.source == str(tmp_path / "rows.csv")
    missing = validate({**TINY_DIGITS, "data": {"source": "absent.csv"}}, source="test")
    with pytest.raises(ConfigError, match="data.source: no such file or directory: 'absent.csv'"):
        preflight(missing, working_dir=str(tmp_path))


def test_every_builtin_model_has_typed_args_and_a_builder():
    from rayspeed.config.load import TAGGED_MODELS
    from rayspeed.config.model import BUILTIN_MODELS
    from rayspeed.trainers.models import BUILDERS

    assert set(BUILTIN_MODELS) == set(BUILDERS) == {tag.strip("[]") for tag in TAGGED_MODELS} - {"factory"}
