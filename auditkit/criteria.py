"""Acceptance criteria, written down before the results are seen.

A committee decides what "good enough" means *before* it looks at an audit, and writes it
in a small TOML file (documented in ``docs/overview.md``)::

    [criteria]
    name = "Radiology committee, COVID triage pilot"
    task = "binary"
    fixed_on = 2026-11-20
    fixed_by = "Medical AI committee"

    [performance]
    min_sensitivity = 0.80
    must_beat_majority_class = true

    [fairness]
    metrics = ["sensitivity"]
    max_gap = 0.10

The file is validated with pydantic (unknown keys and out-of-range values are refused with a
message naming the field, what was expected and what was found) and hashed: the hash is the
SHA-256 of the validated rules in canonical JSON, so reformatting the file or adding a
comment keeps the hash, and changing any rule changes it. Default sets ship per task type
(``auditkit/criteria/<task>.toml``).

The evaluation of criteria against an audit lives in :mod:`auditkit.overview`; this module
only loads, validates and hashes.
"""

from __future__ import annotations

import hashlib
import json
import os
import tomllib
from datetime import date
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .exceptions import ConfigError

__all__ = [
    "TASK_TYPES",
    "Criteria",
    "CriteriaSet",
    "default_criteria",
    "load_criteria",
    "parse_criteria",
    "task_type_of",
]

TaskType = Literal["binary", "multiclass", "multilabel", "segmentation"]
TASK_TYPES: tuple[str, ...] = ("binary", "multiclass", "multilabel", "segmentation")

Share = Field(default=None, ge=0.0, le=1.0)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Identity(_Section):
    """``[criteria]``: who fixed the set, when, and for which kind of model."""

    name: str = Field(min_length=1)
    task: TaskType
    fixed_on: date
    fixed_by: str = ""
    description: str = ""


class PerformanceCriteria(_Section):
    """``[performance]``: overall accuracy against the task and against trivial baselines.

    ``min_*`` values are shares in [0, 1]; sensitivity and specificity are about the card's
    positive class.
    """

    must_beat_majority_class: bool = True
    must_beat_chance: bool = True
    min_accuracy: float | None = Share
    min_balanced_accuracy: float | None = Share
    min_sensitivity: float | None = Share
    min_specificity: float | None = Share
    min_auroc: float | None = Share
    #: segmentation: patient-level mean Dice on slices with a lesion, at least
    min_dice: float | None = Share
    #: segmentation: share of lesion slices outlined not at all, at most
    max_missed_lesion_rate: float | None = Share
    #: segmentation: share of slices without a lesion where one is outlined, at most
    max_false_lesion_rate: float | None = Share


FAIRNESS_METRICS = ("accuracy", "balanced_accuracy", "sensitivity", "specificity", "ppv",
                    "npv", "auroc", "auroc_macro", "selection_rate", "dice")


class FairnessCriteria(_Section):
    """``[fairness]``: the largest gap between the best and worst group allowed per metric."""

    metrics: tuple[str, ...] = ("sensitivity", "accuracy")
    max_gap: float | None = Share

    @field_validator("metrics")
    @classmethod
    def _known_metrics(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [m for m in value if m not in FAIRNESS_METRICS]
        if unknown:
            raise ValueError(f"metrics must be among {list(FAIRNESS_METRICS)}; got {unknown}")
        return value


class EvidenceCriteria(_Section):
    """``[evidence]``: is the test data adequate to judge every group?"""

    max_unjudgeable_share: float | None = Share
    flag_groups_absent_from_training: bool = True
    min_skin_tone_agreement: float | None = Field(default=None, ge=-1.0, le=1.0)


class ExplainCriteria(_Section):
    """``[explain]``: can the explanations be trusted, and do they show shortcuts?"""

    require_sanity_check: bool = True
    require_beats_random: bool = True
    max_border_share: float | None = Share


class RobustnessCriteria(_Section):
    """``[robustness]``: how easily is it fooled, by an attacker or by ordinary variation?"""

    attack: str = "pgd"
    eps: str = "2/255"
    max_attack_success_rate: float | None = Share
    max_corruption_flip_rate: float | None = Share
    #: segmentation: the largest drop in mean Dice allowed under the attack / a corruption
    max_dice_drop: float | None = Share
    corruption_max_severity: int = Field(default=3, ge=1, le=5)


class PrivacyCriteria(_Section):
    """``[privacy]``: does it leak who was trained on, and do the inputs hold identifiers?"""

    max_membership_auc: float | None = Share
    max_tpr_at_1pct_fpr: float | None = Share
    allow_identifiers: bool = False


class CriteriaSet(_Section):
    """The whole validated criteria file."""

    criteria: Identity
    performance: PerformanceCriteria = PerformanceCriteria()
    fairness: FairnessCriteria = FairnessCriteria()
    evidence: EvidenceCriteria = EvidenceCriteria()
    explain: ExplainCriteria = ExplainCriteria()
    robustness: RobustnessCriteria = RobustnessCriteria()
    privacy: PrivacyCriteria = PrivacyCriteria()


class Criteria:
    """A validated criteria set with its hash and where it came from.

    Attributes
    ----------
    rules : CriteriaSet
        The validated rules.
    hash : str
        SHA-256 (hex) of the rules in canonical JSON (sorted keys, no whitespace).
    source : str
        The file it was read from, or ``"default:<task>"`` for a shipped set.
    """

    def __init__(self, rules: CriteriaSet, *, source: str) -> None:
        self.rules = rules
        self.source = source
        canonical = json.dumps(rules.model_dump(mode="json"), sort_keys=True,
                               separators=(",", ":"))
        self.hash = hashlib.sha256(canonical.encode("utf-8")).hexdigest()

    @property
    def name(self) -> str:
        return self.rules.criteria.name

    @property
    def fixed_on(self) -> str:
        return self.rules.criteria.fixed_on.isoformat()

    def to_record(self) -> dict[str, Any]:
        """The JSON record stored in ``audit.json`` and in each evaluation."""
        return {"name": self.name, "hash": self.hash, "source": self.source,
                "task": self.rules.criteria.task, "fixed_on": self.fixed_on,
                "fixed_by": self.rules.criteria.fixed_by,
                "rules": self.rules.model_dump(mode="json")}

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Criteria:
        """Rebuild from :meth:`to_record` output; the hash is recomputed and must match."""
        crit = parse_criteria(record.get("rules"), source=str(record.get("source", "record")))
        if record.get("hash") and record["hash"] != crit.hash:
            raise ConfigError(
                f"The stored criteria hash {record['hash'][:12]}… does not match its rules "
                f"(they hash to {crit.hash[:12]}…): the record was edited after it was written."
            )
        return crit

    def __repr__(self) -> str:
        return f"Criteria({self.name!r}, hash={self.hash[:12]}…)"


def _explain_validation(exc: ValidationError, source: str) -> str:
    lines = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        found = err.get("input")
        if err["type"] == "extra_forbidden":
            lines.append(f"{where}: unknown key (not a criterion auditkit knows)")
        else:
            lines.append(f"{where}: {err['msg']}; got {found!r} instead")
    return (f"Criteria file {source} is not valid ({len(lines)} problem"
            f"{'s' if len(lines) != 1 else ''}):\n  " + "\n  ".join(lines)
            + "\nSee docs/overview.md for the keys and their ranges.")


def parse_criteria(data: Any, *, source: str = "inline") -> Criteria:
    """Validate a parsed criteria mapping (e.g. from TOML) into :class:`Criteria`."""
    if not isinstance(data, dict):
        raise ConfigError(f"Criteria {source} must be a table of sections; got "
                          f"{type(data).__name__} instead.")
    try:
        rules = CriteriaSet.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_explain_validation(exc, source)) from None
    return Criteria(rules, source=source)


def load_criteria(path: str | os.PathLike[str]) -> Criteria:
    """Read and validate a criteria TOML file.

    Raises
    ------
    ConfigError
        The file is missing, is not TOML, or breaks a rule (every problem is listed).
    """
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"Criteria file must be an existing TOML file; got {str(p)!r}, "
                          "which does not exist.")
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"Criteria file {p} must be valid TOML; it is not ({exc}).") from None
    return parse_criteria(data, source=str(p))


def task_type_of(model: dict[str, Any]) -> str:
    """``binary``, ``multiclass``, ``multilabel`` or ``segmentation`` from an audit's
    ``model`` entry."""
    if model.get("output") == "multilabel_sigmoid":
        return "multilabel"
    if model.get("output") == "segmentation":
        return "segmentation"
    if model.get("output") == "binary_logit" or len(model.get("class_names") or []) <= 2:
        return "binary"
    return "multiclass"


def default_criteria(task: str) -> Criteria:
    """The criteria set shipped for a task type (``auditkit/criteria/<task>.toml``)."""
    if task not in TASK_TYPES:
        raise ConfigError(f"Task type must be one of {list(TASK_TYPES)}; got {task!r} instead.")
    text = resources.files("auditkit").joinpath("criteria", f"{task}.toml").read_text("utf-8")
    return parse_criteria(tomllib.loads(text), source=f"default:{task}")
