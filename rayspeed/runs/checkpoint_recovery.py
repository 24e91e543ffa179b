"""Before a run resumes: the newest checkpoint Ray would restore is verified against its manifests,
and a damaged one is set aside (moved to `corrupt/`, dropped from Ray's checkpoint snapshot), so the
run continues from the newest intact checkpoint instead of failing in every rank's load, or loading
garbage.

Ray Train keeps its checkpoint list in `checkpoint_manager_snapshot.json` (Ray 2.60's
`_CheckpointManagerState`); the new snapshot is written before any directory moves, so a kill in
between leaves only a directory Ray no longer references.
"""

import json
from collections.abc import Callable

from rayspeed.errors import RunStateError
from rayspeed.runs.checkpoint_manifest import verify
from rayspeed.runs.layout import CORRUPT_DIR, RAY_SNAPSHOT
from rayspeed.runs.storage import RunStorage

# Snapshot lists of checkpoint directory names that must not name a checkpoint set aside.
_NAME_LISTS = ("validated_checkpoint_dir_names", "timed_out_validation_checkpoint_dir_names",
               "failed_validation_checkpoint_dir_names")


def set_aside_damaged(storage: RunStorage, *, warn: Callable[[str], None]) -> list[str]:
    """Verifies the snapshot's checkpoints newest first, setting aside each damaged one, up to the
    first intact one. Returns the names set aside.

    Raises:
        RunStateError: every checkpoint is damaged: resuming would silently start from scratch.
    """
    text = storage.read_text(RAY_SNAPSHOT)
    if text is None:
        return []
    snapshot = json.loads(text)
    results, indices = snapshot["checkpoint_results"], snapshot["checkpoint_report_indices"]
    newest_first = sorted(zip(indices, results, strict=True), key=lambda pair: pair[0], reverse=True)
    damaged, intact = [], None
    for _, result in newest_first:
        name = result["checkpoint_dir_name"]
        found = verify(storage.filesystem, storage.join(name))
        if found is None:
            warn(f"checkpoint {storage.display(name)} was written before rayspeed kept manifests: resuming from "
                 "it unverified")
        if not found:
            intact = result
            break
        warn(f"checkpoint {storage.display(name)} is damaged and is skipped: {'; '.join(found[:3])}"
             + (f" (and {len(found) - 3} more)" if len(found) > 3 else ""))
        damaged.append(name)
    if not damaged:
        return []
    if intact is None:
        raise RunStateError(f"no intact checkpoint is left in {storage.display()} ({', '.join(damaged)} are "
                            "damaged): resuming would start from scratch; start a new run.name instead")
    storage.write(json.dumps(_without(snapshot, damaged, latest=intact)), RAY_SNAPSHOT)
    for name in damaged:
        if storage.exists(name):
            storage.move(name, storage.unused(CORRUPT_DIR, name))  # numbered if an earlier resume set one aside
    warn(f"resuming from the newest intact checkpoint, {intact['checkpoint_dir_name']}; the damaged ones are "
         f"in {storage.display(CORRUPT_DIR)}")
    return damaged


def _without(snapshot: dict, names: list[str], *, latest: dict) -> dict:
    kept = [(index, result) for index, result in zip(snapshot["checkpoint_report_indices"],
                                                     snapshot["checkpoint_results"], strict=True)
            if result["checkpoint_dir_name"] not in names]
    pending = [(result, spec) for result, spec in zip(snapshot["pending_training_results"],
                                                      snapshot["pending_validation_specs"], strict=True)
               if result["checkpoint_dir_name"] not in names]
    return {**snapshot,
            "checkpoint_results": [result for _, result in kept],
            "checkpoint_report_indices": [index for index, _ in kept],
            "latest_checkpoint_result": latest,
            "pending_training_results": [result for result, _ in pending],
            "pending_validation_specs": [spec for _, spec in pending],
            **{key: [name for name in snapshot.get(key, []) if name not in names] for key in _NAME_LISTS}}
