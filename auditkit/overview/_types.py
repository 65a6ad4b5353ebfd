"""The survey's records: questions, findings, answers, figure data."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from .. import wording as w

#: (key, question, detailed page, page label) in the order the committee reads them.
QUESTIONS: tuple[tuple[str, str, str, str], ...] = (
    ("accuracy", "Is it accurate enough for its intended use?", "Fairness", "Fairness page"),
    ("fairness", "Does it work equally well for every patient group?", "Fairness",
     "Fairness page"),
    ("evidence", "Is the evidence itself adequate?", "Fairness", "Fairness page"),
    ("explain", "Can we see why it decides what it decides, and can those explanations be "
                "trusted?", "Explanations", "Explanations page"),
    ("robustness", "Can it be fooled, by an attacker or by ordinary image variation?",
     "Robustness", "Robustness page"),
    ("privacy", "Does it leak who was in its training data? Do the inputs hold identifiers?",
     "Privacy", "Privacy page"),
    ("change", "What changed since the previous version?", "", ""),
)

_SEVERITY = {"concern": 3, "cannot tell": 2, "meets": 1, "not assessed": 0}


@dataclass
class Finding:
    """One criterion (or baseline) judged on one piece of evidence."""

    criterion: str
    verdict: str
    evidence: str
    reason: str = ""
    source: str = "criteria"  # "criteria", "baseline", "evidence alone"

    @property
    def label(self) -> str:
        return w.verdict_label(self.verdict)


@dataclass
class FigureData:
    """Points with intervals for one figure (drawn by plotly on the page, SVG in the report)."""

    title: str
    axis: str
    rows: list[dict[str, Any]]  # label, value, low, high (shares or plain numbers)
    reference: float | None = None
    reference_label: str = ""
    pct: bool = True


@dataclass
class Answer:
    """One question of the survey, answered."""

    key: str
    question: str
    verdict: str
    headline: str
    findings: list[Finding] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    figures: list[FigureData] = field(default_factory=list)
    page: str = ""
    page_label: str = ""

    @property
    def label(self) -> str:
        return w.verdict_label(self.verdict)


@dataclass
class Survey:
    """The seven answers for one audit under one criteria set."""

    model: dict[str, Any]
    dataset: dict[str, Any]
    audit_created_at: str
    n_images: int | None
    n_patients: int | None
    criteria: dict[str, Any]
    criteria_recorded_in_audit: bool
    answers: list[Answer]

    def answer(self, key: str) -> Answer:
        for a in self.answers:
            if a.key == key:
                return a
        raise KeyError(key)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for a, d in zip(self.answers, out["answers"]):
            d["label"] = a.label
            for f, fd in zip(a.findings, d["findings"]):
                fd["label"] = f.label
        return out
