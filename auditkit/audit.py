"""An audit: one model, one dataset, one configuration -> ``audit.json`` + evidence files.

Each check is a pure function ``run_check(context) -> dict`` of the model, the
dataset, the predictions and the configuration; it may write evidence files into
``context.out_dir`` and returns the JSON-ready entry stored under
``results[<check>]``. Checks are looked up by name in :data:`CHECKS` and imported
lazily, so ``import auditkit`` stays light. The schema is documented in
``docs/audit-schema.md`` and versioned by :data:`SCHEMA_VERSION`.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import math
import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from ._context import CHECKS, AuditConfig, CheckContext, ProgressFn
from ._version import __version__
from .data import Dataset
from .exceptions import ConfigError
from .export import IN_HOUSE_FILE
from .models import LoadedModel
from .predict import Executor, LocalExecutor, predict

__all__ = [
    "CHECKS",
    "IN_HOUSE_FILE",
    "SCHEMA_VERSION",
    "AuditConfig",
    "CheckContext",
    "available_checks",
    "run_audit",
]

SCHEMA_VERSION = "1.0"

def available_checks() -> list[str]:
    """Checks whose implementation is installed in this version."""
    found = []
    for name, target in CHECKS.items():
        module = target.split(":")[0]
        if importlib.util.find_spec(module) is not None:
            found.append(name)
    return found


def _load_check(name: str) -> Callable[[CheckContext], dict[str, Any]]:
    module_name, _, func = CHECKS[name].partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            raise ConfigError(
                f"Check {name!r} is not available in auditkit {__version__}; available: "
                f"{available_checks()}."
            ) from exc
        raise
    return getattr(module, func)


def _json_safe(value: Any) -> Any:
    """nan/inf -> None and numpy scalars -> Python, recursively (strict JSON)."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def check_compatible(model: LoadedModel, dataset: Dataset) -> None:
    """The dataset's classes must be among the model's classes."""
    missing = sorted(set(dataset.spec.classes) - set(model.card.class_names))
    if missing:
        raise ConfigError(
            f"Dataset {dataset.name!r} has classes {list(dataset.spec.classes)} but model "
            f"{model.card.ref} predicts {model.card.class_names}; classes {missing} are unknown "
            "to the model. Pick a dataset description for this model's task."
        )


def run_audit(
    *,
    model: LoadedModel,
    dataset: Dataset,
    config: AuditConfig | None = None,
    out_dir: str | os.PathLike[str] | None = None,
    executor: Executor | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    progress: ProgressFn | None = None,
    criteria: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run the configured checks and return (and, with ``out_dir``, write) the audit.

    Writes ``out_dir/audit.json`` and ``out_dir/predictions.csv`` plus each check's
    evidence files. ``audit.json`` is written last and atomically, so a failed check
    never leaves a half-written audit behind (nor destroys an earlier one).
    ``criteria`` (a :meth:`auditkit.criteria.Criteria.to_record`) is stored as
    ``audit["criteria"]``: the acceptance criteria fixed before the results were seen.
    """
    config = config or AuditConfig()
    check_compatible(model, dataset)
    executor = executor or LocalExecutor(batch_size=config.batch_size, precision=config.precision)
    out = Path(out_dir) if out_dir is not None else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    preds = predict(model, dataset, executor=executor, cache_dir=cache_dir, progress=progress)
    frame = preds.to_frame(model, dataset)
    # the model's classes may be a superset of the dataset's: index labels by the model
    ctx = CheckContext(model=model, dataset=dataset, predictions=preds, frame=frame,
                       config=config, out_dir=out, executor=executor, progress=progress)
    results: dict[str, Any] = {}
    for name in config.checks:
        results[name] = _load_check(name)(ctx)
    audit = {
        "schema_version": SCHEMA_VERSION,
        "auditkit_version": __version__,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "model": {
            "name": model.card.name,
            "version": model.card.version,
            "sha256": model.card.sha256,
            "task": model.card.task,
            "class_names": model.card.class_names,
            "positive_class": model.card.positive_class,
            "output": model.card.output,
            "pixel_pipeline": model.card.pixel_pipeline(),
        },
        "dataset": {
            "name": dataset.name,
            "hash": dataset.content_hash,
            "n_images": len(dataset),
            "n_rows_total": dataset.n_rows_total,
            "n_invalid_rows_dropped": dataset.n_rows_total - len(dataset),
            "n_patients": (int(dataset.records["patient_id"].nunique())
                           if dataset.has_patients else None),
            "attributes": {a.name: a.kind for a in dataset.spec.attributes},
        },
        "config": config.to_dict(),
        "execution": {**preds.settings, "device": str(model.device),
                      "predictions_from_cache": preds.from_cache,
                      "prediction_cache_key": preds.cache_key},
        "results": results,
    }
    if criteria is not None:
        audit["criteria"] = criteria
    if importlib.util.find_spec("auditkit.suppression") is not None:
        from .suppression import apply_small_cell_policy

        patient_ids = dataset.records["patient_id"].to_numpy() if dataset.has_patients else None
        # the committee inside the institution sees every group with its exact n
        # (audit.in-house.json); audit.json and predictions.csv are for release: a group
        # is small with fewer than k images or, where patients are known, fewer than k
        # patients (see auditkit.suppression, "Audiences")
        in_house, _ = apply_small_cell_policy(audit, None, k=config.small_cell_k,
                                              count_patients=True, audience="in-house")
        audit, frame = apply_small_cell_policy(audit, frame, k=config.small_cell_k,
                                               patient_ids=patient_ids, count_patients=True,
                                               audience="release")
    else:
        in_house = None
    audit = _json_safe(audit)
    if out is not None:
        frame.to_csv(out / "predictions.csv", index=False)
        if in_house is not None:
            tmp = out / ".audit.in-house.json.tmp"
            tmp.write_text(json.dumps(_json_safe(in_house), indent=2, allow_nan=False) + "\n",
                           encoding="utf-8")
            os.replace(tmp, out / IN_HOUSE_FILE)
        tmp = out / ".audit.json.tmp"
        tmp.write_text(json.dumps(audit, indent=2, allow_nan=False) + "\n", encoding="utf-8")
        os.replace(tmp, out / "audit.json")
    return audit
