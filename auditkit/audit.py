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
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ._version import __version__
from .data import Dataset
from .exceptions import ConfigError
from .models import LoadedModel
from .predict import Executor, LocalExecutor, Predictions, predict

__all__ = [
    "CHECKS",
    "SCHEMA_VERSION",
    "AuditConfig",
    "CheckContext",
    "available_checks",
    "run_audit",
]

SCHEMA_VERSION = "1.0"

#: check name -> "module:function". A check not importable here is "not available".
CHECKS: dict[str, str] = {
    "performance": "auditkit._performance:run_check",
    "fairness": "auditkit.fairness:run_check",
    "explain": "auditkit.explain:run_check",
    "robustness": "auditkit.robustness:run_check",
    "privacy": "auditkit.privacy:run_check",
}
DEFAULT_CHECKS = ("performance",)
ProgressFn = Callable[[int, int, str], None]


def available_checks() -> list[str]:
    """Checks whose implementation is installed in this version."""
    found = []
    for name, target in CHECKS.items():
        module = target.split(":")[0]
        if importlib.util.find_spec(module) is not None:
            found.append(name)
    return found


@dataclass
class AuditConfig:
    """Everything that decides an audit's numbers (stored in ``audit.json``).

    Parameters
    ----------
    checks : list of str
        Checks to run, among :func:`available_checks`.
    seed : int
        Seeds every random process of every check.
    n_boot : int
        Bootstrap resamples for intervals.
    confidence : float
        Interval level, e.g. 0.95.
    min_group_size : int
        Groups with fewer images (or patients, where known) are "too few to judge".
    device : str
        ``auto``, ``cpu`` or ``cuda[:N]``.
    batch_size : int
    precision : str
        ``auto``, ``float32``, ``bf16`` or ``fp16`` (GPU only).
    intersections : list of [str, str]
        Attribute pairs to audit jointly (fairness).
    evaluate_on : {"auto", "test", "all"}
        Rows that performance and fairness are measured on. ``auto``: the model's
        held-out test split when its folder has ``split.csv`` naming this dataset's
        images (training images would flatter the model), else all rows.
    small_cell_k : int
        Small-cell protection: counts and metrics of groups with fewer than k images
        are suppressed in every export (0 turns it off). See :mod:`auditkit.suppression`.
    options : dict
        Per-check settings, ``{"robustness": {...}, ...}``.
    """

    checks: list[str] = field(default_factory=lambda: list(DEFAULT_CHECKS))
    seed: int = 0
    n_boot: int = 1000
    confidence: float = 0.95
    min_group_size: int = 10
    device: str = "auto"
    batch_size: int = 64
    precision: str = "auto"
    intersections: list[list[str]] = field(default_factory=list)
    small_cell_k: int = 10
    evaluate_on: str = "auto"
    options: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = [c for c in self.checks if c not in CHECKS]
        if unknown:
            raise ConfigError(
                f"Unknown check(s) {unknown}; expected among {list(CHECKS)}."
            )
        if self.n_boot < 0:
            raise ConfigError(f"n_boot must be >= 0; got {self.n_boot} instead.")
        if not 0.5 <= self.confidence < 1:
            raise ConfigError(f"confidence must be in [0.5, 1); got {self.confidence} instead.")
        if self.min_group_size < 1:
            raise ConfigError(f"min_group_size must be >= 1; got {self.min_group_size} instead.")
        if self.evaluate_on not in ("auto", "test", "all"):
            raise ConfigError(
                f"evaluate_on must be auto, test or all; got {self.evaluate_on!r} instead."
            )
        self.intersections = [list(p) for p in self.intersections]
        for pair in self.intersections:
            if len(pair) != 2:
                raise ConfigError(f"each intersection names two attributes; got {pair!r}.")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class CheckContext:
    """What a check receives: the inputs and where to write evidence."""

    model: LoadedModel
    dataset: Dataset
    predictions: Predictions
    frame: pd.DataFrame
    config: AuditConfig
    out_dir: Path | None
    executor: Executor
    progress: ProgressFn | None = None

    def evaluation_rows(self) -> tuple[np.ndarray, str]:
        """Boolean mask of the rows to measure performance on, and a plain description."""
        n = len(self.dataset)
        split_path = self.model.folder / "split.csv" if self.model.folder else None
        if self.config.evaluate_on == "all" or split_path is None or not split_path.is_file():
            if self.config.evaluate_on == "test":
                raise ConfigError(
                    f"evaluate_on='test' needs {split_path or 'split.csv beside the model'}; "
                    "it was not found."
                )
            return np.ones(n, dtype=bool), f"all {n} images of {self.dataset.name}"
        split = pd.read_csv(split_path, dtype=str, keep_default_na=False)
        lookup = dict(zip(split["image"], split["split"]))
        known = self.dataset.records["image"].map(lookup)
        if known.isna().all():
            return np.ones(n, dtype=bool), (
                f"all {n} images of {self.dataset.name} (none is named in the model's split.csv)")
        mask = (known == "test").to_numpy()
        return mask, (f"the model's held-out test split: {int(mask.sum())} of {n} images "
                      f"of {self.dataset.name} (split.csv)")

    def options(self, check: str) -> dict[str, Any]:
        return dict(self.config.options.get(check, {}))

    def rng(self, salt: int = 0) -> np.random.Generator:
        """A generator seeded by the audit seed (plus ``salt`` for independent streams)."""
        return np.random.default_rng([self.config.seed, salt])


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
) -> dict[str, Any]:
    """Run the configured checks and return (and, with ``out_dir``, write) the audit.

    Writes ``out_dir/audit.json`` and ``out_dir/predictions.csv`` plus each check's
    evidence files. ``audit.json`` is written last and atomically, so a failed check
    never leaves a half-written audit behind (nor destroys an earlier one).
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
    if importlib.util.find_spec("auditkit.suppression") is not None:
        from .suppression import apply_small_cell_policy

        patient_ids = dataset.records["patient_id"].to_numpy() if dataset.has_patients else None
        # one rule for both exports: a group is small with fewer than k images or,
        # where patients are known, fewer than k patients
        audit, frame = apply_small_cell_policy(audit, frame, k=config.small_cell_k,
                                               patient_ids=patient_ids, count_patients=True)
    audit = _json_safe(audit)
    if out is not None:
        frame.to_csv(out / "predictions.csv", index=False)
        tmp = out / ".audit.json.tmp"
        tmp.write_text(json.dumps(audit, indent=2, allow_nan=False) + "\n", encoding="utf-8")
        os.replace(tmp, out / "audit.json")
    return audit


def label_indices(ctx: CheckContext) -> np.ndarray:
    """True class index in the *model's* class order ``(N,)``."""
    classes = ctx.model.card.class_names
    return np.asarray([classes.index(c) for c in ctx.dataset.records["label"]], dtype=int)
