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

__all__ = ["CHECKS", "DEFAULT_CHECKS", "AuditConfig", "CheckContext", "EvaluationScope",
           "ProgressFn", "label_indices"]

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
        Rows that performance and fairness are measured on. ``auto``: the held-out
        test split (the dataset's ``split_column`` or ``split.csv`` beside the model);
        a split that does not match the dataset stops the audit; with no split at all,
        every row, saying training images may be included. ``all``: every row, saying
        the same. ``test``: the split, required. See :meth:`CheckContext.evaluation_scope`.
    small_cell_k : int
        Small-cell protection: counts and metrics of groups with fewer than k images
        are suppressed in every export (0 turns it off, except for the privacy check,
        which refuses k below 1: its per-group exposure must never single out a
        patient). See :mod:`auditkit.suppression`.
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
        if "privacy" in self.checks and int(self.small_cell_k) < 1:
            from .wording import small_cell_k_refused

            raise ConfigError(small_cell_k_refused(int(self.small_cell_k)))
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


@dataclass(frozen=True)
class EvaluationScope:
    """Which rows are measured and why.

    Attributes
    ----------
    mask : numpy.ndarray
        Boolean ``(N,)``, True for the rows measured.
    description : str
        One plain phrase for reviewers; it starts with the warning when training
        images may be included.
    source : str
        ``"split.csv"``, ``"split column <name>"``, ``"all (asked)"`` or ``"all (no split)"``.
    may_include_training : bool
        True when nothing shows the measured images were held out from training.
    split : numpy.ndarray or None
        Each row's split (``train``, ``val``, ``test``, ``unused``; ``""`` when the split
        does not name the image), or None when no split was read. Written to
        ``predictions.csv`` so a reviewer can tell which rows were measured.
    """

    mask: np.ndarray
    description: str
    source: str
    may_include_training: bool
    split: np.ndarray | None = None


def _evaluation_scope(ctx: CheckContext) -> EvaluationScope:
    from .wording import evaluated_on_all, evaluated_on_split

    dataset, n = ctx.dataset, len(ctx.dataset)
    how = ctx.config.evaluate_on
    images = dataset.records["image"].astype(str)
    split_column = getattr(dataset.spec, "split_column", None)
    split_path = ctx.model.folder / "split.csv" if ctx.model.folder else None
    if how == "all":
        return EvaluationScope(np.ones(n, dtype=bool), evaluated_on_all(n, dataset.name, asked=True),
                               "all (asked)", True)
    if split_column:
        where = f"the dataset's split column {split_column!r}"
        lookup = dict(zip(images, dataset.records["split"].astype(str)))
        source = f"split column {split_column}"
    elif split_path is not None and split_path.is_file():
        where = f"the model's {split_path}"
        split = pd.read_csv(split_path, dtype=str, keep_default_na=False)
        missing_cols = {"image", "split"} - set(split.columns)
        if missing_cols:
            raise ConfigError(
                f"{split_path} must have columns 'image' and 'split'; found "
                f"{list(split.columns)}. See docs/models.md (the split file).")
        lookup = dict(zip(split["image"].astype(str), split["split"].str.strip().str.lower()))
        source = "split.csv"
    else:
        if how == "test":
            raise ConfigError(
                f"evaluate_on='test' needs a split: {split_path or 'split.csv beside the model'} "
                "was not found and the dataset names no split_column.")
        return EvaluationScope(np.ones(n, dtype=bool),
                               evaluated_on_all(n, dataset.name, asked=False), "all (no split)",
                               True)
    keys = set(lookup)
    # matched against the whole table: a slice of the dataset, or one without its invalid
    # rows, still fits the split its full table fits
    universe = dataset.table_images or frozenset(images)
    matched = len(keys & universe)
    test_keys = {k for k, v in lookup.items() if v == "test"}
    missing_test = sorted(test_keys - universe)
    example_split = next(iter(sorted(test_keys or keys)), "(none)")
    example_data = images.iloc[0] if n else "(none)"
    fix = ("Make the keys equal the table's image column (same relative paths), or pass "
           "--evaluate-on all (evaluate_on='all'), and the audit will say that training images "
           "may be included.")
    if matched == 0:
        raise ConfigError(
            f"The split in {where} matches none of the {len(universe)} images of dataset "
            f"{dataset.name!r}: "
            f"0 of {len(keys)} split keys match. Example split key: {example_split!r}; example "
            f"dataset image: {example_data!r}. {fix}")
    if missing_test:
        raise ConfigError(
            f"The split in {where} names {len(test_keys)} test image(s), of which "
            f"{len(missing_test)} are not in dataset {dataset.name!r} ({matched} of {len(keys)} "
            f"split keys match its {len(universe)} images). Example missing test key: "
            f"{missing_test[0]!r}; "
            f"example dataset image: {example_data!r}. {fix}")
    mask = images.map(lookup).eq("test").to_numpy()
    if not mask.any():
        raise ConfigError(
            f"The split in {where} names no test image among the {n} images of dataset "
            f"{dataset.name!r} ({matched} keys match its table; split values found: "
            f"{sorted(set(lookup.values()))}); expected some rows with split 'test'. {fix}")
    labels = images.map(lookup).fillna("").astype(str).to_numpy()
    return EvaluationScope(mask, evaluated_on_split(int(mask.sum()), n, dataset.name, source),
                           source, False, labels)


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
    _scope: EvaluationScope | None = field(default=None, init=False, repr=False)
    #: results shared between checks of one audit (e.g. the segmentation evaluation)
    shared: dict[str, Any] = field(default_factory=dict, init=False, repr=False)

    def evaluation_scope(self) -> EvaluationScope:
        """The rows to measure performance on, where that choice came from, and what it risks.

        The split comes from the dataset's ``split_column`` when its description names
        one, else from ``split.csv`` beside the model (columns ``image``, ``split``; keys
        equal to the table's image column). With ``evaluate_on="auto"``:

        - a split that shares no key with the dataset, or whose test keys are not all
          in the dataset, stops the audit (:class:`ConfigError`, saying how many keys
          matched and showing one key of each side), since measuring anyway would
          silently include training images;
        - no split at all measures every image, and says training images may be included.

        ``"all"`` measures every image and says the same; ``"test"`` needs a split.
        """
        if self._scope is None:
            self._scope = _evaluation_scope(self)
        return self._scope

    def evaluation_rows(self) -> tuple[np.ndarray, str]:
        """Boolean mask of the rows to measure performance on, and a plain description."""
        scope = self.evaluation_scope()
        return scope.mask, scope.description

    def options(self, check: str) -> dict[str, Any]:
        return dict(self.config.options.get(check, {}))

    def rng(self, salt: int = 0) -> np.random.Generator:
        """A generator seeded by the audit seed (plus ``salt`` for independent streams)."""
        return np.random.default_rng([self.config.seed, salt])



def label_indices(ctx: CheckContext) -> np.ndarray:
    """True class index in the *model's* class order ``(N,)``."""
    classes = ctx.model.card.class_names
    return np.asarray([classes.index(c) for c in ctx.dataset.records["label"]], dtype=int)
