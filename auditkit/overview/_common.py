"""Shared helpers of the questions: sizes, how to run a check, answers."""

from __future__ import annotations

from typing import Any

from .. import wording as w
from ._judge import _interval, _ok, _worst
from ._types import QUESTIONS, Answer, FigureData, Finding

# --------------------------------------------------------------------------- helpers


def _size(result: dict[str, Any], audit: dict[str, Any]) -> tuple[int | None, int | None]:
    n: Any = result.get("n")
    n_pat: Any = result.get("n_patients")
    return (int(n) if _ok(n) else None, int(n_pat) if _ok(n_pat) else None)


def _unit(n_patients: int | None) -> str:
    return "patients" if n_patients else "images"


def _how_to_run(audit: dict[str, Any], check: str) -> str:
    m, d = audit.get("model", {}), audit.get("dataset", {})
    return w.overview_how_to_run(f"{m.get('name')}@{m.get('version')}", d.get("name", "?"), check)


def _not_run(audit: dict[str, Any], key: str, check: str, extra: str = "") -> Answer:
    reason = w.overview_check_not_run(check)
    return _answer(key, [Finding(
        criterion=w.overview_check_criterion(check), verdict="not assessed",
        evidence=reason + extra, reason=_how_to_run(audit, check), source="evidence alone")],
        headline=w.not_assessed(f"the {check} check did not run in this audit",
                                _how_to_run(audit, check)))


def _answer(key: str, findings: list[Finding], *, headline: str | None = None,
            notes: list[str] | None = None, figures: list[FigureData] | None = None) -> Answer:
    spec = next(q for q in QUESTIONS if q[0] == key)
    verdict = _worst(findings)
    if headline is None:
        decisive = [f for f in findings if f.verdict == verdict]
        assessed = [f for f in findings if f.verdict != "not assessed"]
        headline = (w.overview_headline(verdict, criterion=decisive[0].criterion,
                                        evidence=decisive[0].evidence, n_same=len(decisive),
                                        n_assessed=len(assessed))
                    if decisive else w.not_assessed("nothing to judge"))
    return Answer(key=key, question=spec[1], verdict=verdict, headline=headline,
                  findings=findings, notes=notes or [], figures=figures or [],
                  page=spec[2], page_label=spec[3])


def _metric_evidence(name: str, entry: dict[str, Any] | None, n: int | None,
                     n_pat: int | None) -> str:
    value, lo, hi = _interval(entry)
    return f"{w.metric_name(name)} {w.fmt_interval(value, [lo, hi])}, {w.fmt_n(n, n_pat)}"
