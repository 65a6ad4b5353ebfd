"""What every check receives: the audit configuration and the check context.

Kept below both the orchestrator (:mod:`auditkit.audit`) and the checks, so a check
never imports the orchestrator that looks it up by name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .data import Dataset
from .exceptions import ConfigError
from .models import LoadedModel
from .predict import Executor, Predictions

__all__ = ["CHECKS", "DEFAULT_CHECKS", "AuditConfig", "CheckContext", "ProgressFn",
           "label_indices"]

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



def label_indices(ctx: CheckContext) -> np.ndarray:
    """True class index in the *model's* class order ``(N,)``."""
    classes = ctx.model.card.class_names
    return np.asarray([classes.index(c) for c in ctx.dataset.records["label"]], dtype=int)
