"""One checkpoint of a run consolidated into a plain torch model: what `rayspeed evaluate` runs, and
what `rayspeed export` writes so that it loads without Ray or DeepSpeed (`trainers.exported`). It
imports neither Ray nor, for ZeRO 0, DeepSpeed."""

import contextlib
import io
import json
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pyarrow.fs as pafs
import torch
from safetensors.torch import save_model
from torch import nn

from rayspeed.config.model import ModelConfig
from rayspeed.errors import RunStateError
from rayspeed.runs.checkpoint_manifest import verify
from rayspeed.runs.layout import (
    DEEPSPEED_TAG,
    INPUT_SPEC_FILE,
    PREPROCESSING_FILE,
    RAY_SNAPSHOT,
    SUMMARY_FILE,
    TRAIN_STATE,
)
from rayspeed.runs.storage import RunStorage
from rayspeed.trainers.exported import MODEL_FILE, WEIGHTS_FILE, exported_model

LOCAL = pafs.LocalFileSystem()


@dataclass(frozen=True)
class Consolidated:
    """One checkpoint as a plain fp32 torch model, with what it needs to read raw rows."""

    model: nn.Module
    preprocessing: dict  # the fitted preprocessing, as saved with the checkpoint
    input_spec: dict  # what the model takes and gives, as saved with the checkpoint
    source: dict  # run, checkpoint and step


def consolidate_checkpoint(model_config: ModelConfig, storage: RunStorage, *, zero_stage: int, which: str,
                           warn: Callable[[str], None]) -> Consolidated:
    """Checkpoint `which` (best, latest, or a checkpoint's directory name) downloaded once, verified
    against its manifests and gathered from every rank's shards into one model.

    Raises:
        RunStateError: no such checkpoint, or a damaged one.
    """
    name = checkpoint_name(storage, which, warn=warn)
    with tempfile.TemporaryDirectory(prefix="rayspeed-checkpoint-") as local:
        storage.download(local, name)  # then verified and read locally: object storage is read once
        checkpoint = Path(local)
        found = verify(LOCAL, local)
        if found is None:
            warn(f"checkpoint {name} was written before rayspeed kept manifests: read unverified")
        elif found:
            raise RunStateError(f"checkpoint {storage.display(name)} is damaged: {'; '.join(found[:3])}")
        preprocessing = json.loads((checkpoint / PREPROCESSING_FILE).read_text())
        input_spec = json.loads((checkpoint / INPUT_SPEC_FILE).read_text())
        model = exported_model(model_config, preprocessing)
        model.load_state_dict(_fp32_state_dict(checkpoint, zero_stage=zero_stage), strict=True)
        step = json.loads((checkpoint / TRAIN_STATE).read_text())["step"]
    return Consolidated(model=model.eval(), preprocessing=preprocessing, input_spec=input_spec,
                        source={"run": storage.display(), "checkpoint": name, "step": step})


def export_checkpoint(model_config: ModelConfig, storage: RunStorage, *, zero_stage: int, which: str, out: Path,
                      warn: Callable[[str], None]) -> Consolidated:
    """Writes the export of checkpoint `which` into `out`, which must not exist or be empty; a failed
    export leaves no `out` behind. Returns the checkpoint it wrote.

    Raises:
        RunStateError: no such checkpoint, a damaged one, or `out` holds files.
    """
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise RunStateError(f"--out {out} is not an empty directory: an export never overwrites files")
    consolidated = consolidate_checkpoint(model_config, storage, zero_stage=zero_stage, which=which, warn=warn)
    created = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
        save_model(consolidated.model, str(out / WEIGHTS_FILE))  # tied weights (a GPT's embedding and head) once
        (out / MODEL_FILE).write_text(json.dumps({"model": model_config.model_dump(mode="json"),
                                                  "source": consolidated.source}, indent=2))
        (out / PREPROCESSING_FILE).write_text(json.dumps(consolidated.preprocessing, indent=2))
        (out / INPUT_SPEC_FILE).write_text(json.dumps(consolidated.input_spec, indent=2))
    except BaseException:
        if created:
            shutil.rmtree(out, ignore_errors=True)
        raise
    return consolidated


def checkpoint_name(storage: RunStorage, which: str, *, warn: Callable[[str], None]) -> str:
    """The directory name of checkpoint `which`. best: summary.json's best checkpoint (a run without a
    summary has not finished: its latest); latest: Ray's latest; else the name itself. It must still be
    in the run directory."""
    snapshot = json.loads(storage.read_text(RAY_SNAPSHOT) or "{}")
    latest = (snapshot.get("latest_checkpoint_result") or {}).get("checkpoint_dir_name")
    if which == "best":
        best = json.loads(storage.read_text(SUMMARY_FILE) or "{}").get("best_checkpoint")
        if not best:
            warn("the run has no summary.json with a best checkpoint (it has not finished): using its latest")
        name = best.rstrip("/").rsplit("/", 1)[-1] if best else latest
    else:
        name = latest if which == "latest" else which
    if not name or not storage.exists(name, TRAIN_STATE):
        raise RunStateError(f"--checkpoint {which}: run {storage.display()} has no such checkpoint"
                            + (f" ({name} is gone: checkpoint.keep removed it, or it was set aside)" if name else ""))
    return name


def _fp32_state_dict(checkpoint: Path, *, zero_stage: int) -> dict[str, torch.Tensor]:
    """ZeRO 1-3: DeepSpeed gathers the fp32 master weights from every rank's optimizer shards; frozen
    parameters (`model.freeze`), which no optimizer holds, come from the module's own states (ZeRO 2-3
    save them with the shards too). ZeRO 0: the module's own weights (under bf16 or fp16 the
    half-precision ones the run evaluated); load_state_dict casts them into the fp32 model."""
    module = checkpoint / DEEPSPEED_TAG / "mp_rank_00_model_states.pt"
    if zero_stage == 0:
        return torch.load(module, map_location="cpu", weights_only=False)["module"]
    chatter = io.StringIO()  # DeepSpeed's accelerator warning, its progress lines and bars: not for people
    with contextlib.redirect_stdout(chatter), contextlib.redirect_stderr(chatter):
        from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

        gathered = get_fp32_state_dict_from_zero_checkpoint(str(checkpoint), tag=DEEPSPEED_TAG)
    if zero_stage == 1 and module.exists():
        own = torch.load(module, map_location="cpu", weights_only=False)["module"]
        gathered = {name: tensor for name, tensor in own.items() if name not in gathered} | gathered
    return gathered
