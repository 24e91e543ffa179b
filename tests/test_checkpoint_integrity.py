"""Checkpoint manifests and the set-aside of damaged checkpoints before a resume, on real files and a
snapshot that Ray's own checkpoint-manager model parses (the end-to-end resume is in test_resume)."""

import json
import shutil
import tempfile
from pathlib import Path

import pyarrow.fs as pafs
import pytest

from rayspeed.errors import RunStateError
from rayspeed.runs.checkpoint_manifest import problems, write_manifest
from rayspeed.runs.checkpoint_recovery import set_aside_damaged
from rayspeed.runs.layout import RAY_SNAPSHOT
from rayspeed.runs.storage import RunStorage

LOCAL = pafs.LocalFileSystem()


def write_checkpoint(directory: Path, *, world: int = 2) -> Path:
    """What Ray's merge of the ranks' directories looks like: each rank's files and its manifest."""
    for rank in range(world):
        part = Path(tempfile.mkdtemp(prefix=f"rank{rank}-"))
        (part / "deepspeed").mkdir(parents=True)
        (part / "deepspeed" / f"zero_pp_rank_{rank}_optim_states.pt").write_bytes(bytes(range(256)) * (rank + 3))
        (part / f"rng_rank{rank}.pt").write_bytes(b"rng" * 10)
        if rank == 0:
            (part / "train_state.json").write_text('{"step": 10}')
        write_manifest(part, rank=rank, world_size=world)
        for path in part.rglob("*"):
            if path.is_file():
                target = directory / path.relative_to(part)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.move(path, target)
        shutil.rmtree(part)
    return directory


def test_an_intact_checkpoint_has_no_problems_and_each_kind_of_damage_is_named(tmp_path):
    checkpoint = write_checkpoint(tmp_path / "step_00000010")
    assert problems(LOCAL, str(checkpoint)) == []

    shard = checkpoint / "deepspeed" / "zero_pp_rank_1_optim_states.pt"
    size = shard.stat().st_size
    shard.write_bytes(shard.read_bytes()[:100])
    assert problems(LOCAL, str(checkpoint)) == [
        f"deepspeed/zero_pp_rank_1_optim_states.pt has 100 bytes, the manifest says {size}"]

    shard.write_bytes(bytes(size))  # same size, other bytes
    assert problems(LOCAL, str(checkpoint)) == [
        "deepspeed/zero_pp_rank_1_optim_states.pt does not match its sha256 in the manifest"]

    (checkpoint / "rng_rank0.pt").unlink()
    (checkpoint / "manifest_rank1.json").unlink()
    assert problems(LOCAL, str(checkpoint)) == [
        "manifest_rank1.json is missing: rank 1's part was not completely written", "rng_rank0.pt is missing"]

    (checkpoint / "manifest_rank0.json").write_text('{"rank": 0, "wor')
    assert problems(LOCAL, str(checkpoint)) == ["manifest_rank0.json is not readable JSON"]
    (checkpoint / "manifest_rank0.json").write_text('{"rank": 0}')
    assert problems(LOCAL, str(checkpoint)) == ["manifest_rank0.json is not a manifest"]


def snapshot(*names: str) -> dict:
    """A Ray 2.60 checkpoint-manager snapshot of `names` reported in this order, the last one latest,
    listed as Ray lists them when ranking by a score: not in report order."""
    results = [{"version": 0, "checkpoint_dir_name": name, "metrics": {"step": int(name[5:])}} for name in names]
    return {"ray_version": "2.60.0", "checkpoint_results": results[::-1],
            "checkpoint_report_indices": list(range(len(names), 0, -1)), "latest_checkpoint_result": results[-1],
            "pending_training_results": [], "pending_validation_specs": [], "current_report_index": len(names),
            "validated_checkpoint_dir_names": list(names), "timed_out_validation_checkpoint_dir_names": [],
            "failed_validation_checkpoint_dir_names": []}


def run_with_checkpoints(tmp_path: Path, *names: str) -> RunStorage:
    storage = RunStorage.open(str(tmp_path), "run")
    for name in names:
        write_checkpoint(Path(storage.join(name)))
    storage.write(json.dumps(snapshot(*names)), RAY_SNAPSHOT)
    return storage


def test_a_damaged_newest_checkpoint_is_set_aside_and_the_previous_one_becomes_latest(tmp_path):
    from ray.train.v2._internal.execution.checkpoint.checkpoint_manager import _CheckpointManagerState

    storage = run_with_checkpoints(tmp_path, "step_00000010", "step_00000020", "step_00000030")
    run = Path(storage.path)
    (run / "step_00000030" / "train_state.json").write_text("{}")
    (run / "step_00000020" / "rng_rank1.pt").write_bytes(b"")
    warnings = []

    assert set_aside_damaged(storage, warn=warnings.append) == ["step_00000030", "step_00000020"]
    assert "step_00000030 is damaged and is skipped: train_state.json has 2 bytes" in warnings[0]
    assert "step_00000020 is damaged and is skipped: rng_rank1.pt has 0 bytes" in warnings[1]
    assert "resuming from the newest intact checkpoint, step_00000010" in warnings[2]
    saved = json.loads(storage.read_text(RAY_SNAPSHOT))
    state = _CheckpointManagerState.parse_obj(saved)  # what Ray loads on resume
    assert state.latest_checkpoint_result.checkpoint_dir_name == "step_00000010"
    assert [r.checkpoint_dir_name for r in state.checkpoint_results] == ["step_00000010"]
    assert state.checkpoint_report_indices == [1]
    assert state.validated_checkpoint_dir_names == ["step_00000010"]
    assert sorted(p.name for p in run.iterdir()) == ["checkpoint_manager_snapshot.json", "corrupt", "step_00000010"]
    assert sorted(p.name for p in (run / "corrupt").iterdir()) == ["step_00000020", "step_00000030"]

    # Damaged again at a step already set aside once: nothing is overwritten.
    write_checkpoint(run / "step_00000020")
    saved["checkpoint_results"].append({"version": 0, "checkpoint_dir_name": "step_00000020", "metrics": {}})
    saved["checkpoint_report_indices"].append(4)
    storage.write(json.dumps(saved), RAY_SNAPSHOT)
    (run / "step_00000020" / "manifest_rank0.json").unlink()
    set_aside_damaged(storage, warn=warnings.append)
    assert sorted(p.name for p in (run / "corrupt").iterdir()) == ["step_00000020", "step_00000020.2",
                                                                    "step_00000030"]


def test_a_checkpoint_from_before_manifests_is_resumed_unverified(tmp_path):
    storage = run_with_checkpoints(tmp_path, "step_00000010", "step_00000020")
    before = storage.read_text(RAY_SNAPSHOT)
    for manifest in Path(storage.path).glob("step_00000020/manifest_rank*.json"):
        manifest.unlink()
    warnings = []
    assert set_aside_damaged(storage, warn=warnings.append) == []
    assert warnings == [f"checkpoint {storage.path}/step_00000020 was written before rayspeed kept manifests: "
                        "resuming from it unverified"]
    assert storage.read_text(RAY_SNAPSHOT) == before


def test_an_intact_newest_checkpoint_changes_nothing_and_no_intact_one_is_an_error(tmp_path):
    storage = run_with_checkpoints(tmp_path, "step_00000010", "step_00000020")
    before = storage.read_text(RAY_SNAPSHOT)
    (Path(storage.path) / "step_00000010" / "rng_rank0.pt").unlink()  # older ones are not looked at
    assert set_aside_damaged(storage, warn=print) == []
    assert storage.read_text(RAY_SNAPSHOT) == before

    (Path(storage.path) / "step_00000020" / "rng_rank0.pt").unlink()
    with pytest.raises(RunStateError, match="no intact checkpoint is left .* start a new run.name"):
        set_aside_damaged(storage, warn=print)
    assert storage.read_text(RAY_SNAPSHOT) == before  # refused without changing anything
