"""`rayspeed export`: one checkpoint of a run consolidated into a model that loads without Ray or
DeepSpeed (`trainers.exported`). DeepSpeed's own consolidation gathers the fp32 master weights of
every rank's ZeRO 1-3 shards; a ZeRO-0 checkpoint holds the whole model already."""

import json
import tempfile
from pathlib import Path

import torch
from safetensors.torch import save_model

from rayspeed.config.model import ModelConfig
from rayspeed.datasets.preprocessing import InputSpec, Preprocessing
from rayspeed.errors import RunStateError
from rayspeed.runs.checkpoint_manifest import has_manifests, problems
from rayspeed.runs.layout import PREPROCESSING_FILE, RAY_SNAPSHOT, SUMMARY_FILE
from rayspeed.runs.storage import RunStorage
from rayspeed.trainers.checkpointing import DEEPSPEED_TAG
from rayspeed.trainers.exported import MODEL_FILE, WEIGHTS_FILE
from rayspeed.trainers.exported import PREPROCESSING_FILE as EXPORTED_PREPROCESSING
from rayspeed.trainers.models import build_model


def export_checkpoint(model_config: ModelConfig, storage: RunStorage, *, zero_stage: int, which: str,
                      out: Path) -> dict:
    """Writes the export of checkpoint `which` (best, latest, or a checkpoint's directory name) into
    `out`, which must not exist or be empty. Returns what model.json says of its source.

    Raises:
        RunStateError: no such checkpoint, a damaged one, or `out` holds files.
    """
    if out.exists() and any(out.iterdir()):
        raise RunStateError(f"--out {out} is not empty: an export never overwrites files")
    name = _checkpoint_name(storage, which)
    if has_manifests(storage.filesystem, storage.join(name)) and (found := problems(storage.filesystem,
                                                                                   storage.join(name))):
        raise RunStateError(f"checkpoint {storage.display(name)} is damaged: {'; '.join(found[:3])}")
    preprocessing = json.loads(storage.read_text(PREPROCESSING_FILE))
    spec = InputSpec.of(Preprocessing.from_dict(preprocessing))
    model = build_model(model_config, spec)
    with tempfile.TemporaryDirectory(prefix="rayspeed-export-") as local:
        storage.download(local, name)
        state = json.loads((Path(local) / "train_state.json").read_text())
        model.load_state_dict(_fp32_state_dict(Path(local), zero_stage=zero_stage), strict=True)
    source = {"run": storage.display(), "checkpoint": name, "step": state["step"]}
    out.mkdir(parents=True, exist_ok=True)
    save_model(model, str(out / WEIGHTS_FILE))  # tied weights (a GPT's embedding and head) saved once
    (out / MODEL_FILE).write_text(json.dumps({"model": model_config.model_dump(mode="json"), "source": source,
                                              "input_spec": spec.to_dict()}, indent=2))
    (out / EXPORTED_PREPROCESSING).write_text(json.dumps(preprocessing, indent=2))
    return source


def _checkpoint_name(storage: RunStorage, which: str) -> str:
    """best: summary.json's best checkpoint; latest: Ray's latest; else the name itself."""
    snapshot = storage.read_text(RAY_SNAPSHOT)
    if snapshot is None:
        raise RunStateError(f"run {storage.display()} has no checkpoint to export")
    if which == "latest":
        return json.loads(snapshot)["latest_checkpoint_result"]["checkpoint_dir_name"]
    if which == "best":
        summary = json.loads(storage.read_text(SUMMARY_FILE) or "{}")
        best = summary.get("best_checkpoint")
        return best.rstrip("/").rsplit("/", 1)[-1] if best else _checkpoint_name(storage, "latest")
    if not storage.exists(which, "train_state.json"):
        raise RunStateError(f"--checkpoint {which}: run {storage.display()} has no such checkpoint")
    return which


def _fp32_state_dict(checkpoint: Path, *, zero_stage: int) -> dict[str, torch.Tensor]:
    if zero_stage == 0:
        states = torch.load(checkpoint / DEEPSPEED_TAG / "mp_rank_00_model_states.pt", map_location="cpu",
                            weights_only=False)
        return {key: value.float() if value.is_floating_point() else value for key, value in states["module"].items()}
    from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

    return get_fp32_state_dict_from_zero_checkpoint(str(checkpoint), tag=DEEPSPEED_TAG)
