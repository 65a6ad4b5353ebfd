"""Verdicts from a value, its interval and a criterion (docs/overview.md)."""

from __future__ import annotations

import math
from typing import Any

from .. import wording as w
from ._types import _SEVERITY, Finding

# --------------------------------------------------------------------------- judging


def _ok(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _interval(entry: dict[str, Any] | None) -> tuple[float | None, float | None, float | None]:
    if not entry:
        return None, None, None
    ci = entry.get("ci") or [None, None]
    value = entry.get("value")
    lo, hi = (ci[0], ci[1]) if len(ci) == 2 else (None, None)
    return (value if _ok(value) else None, lo if _ok(lo) else None, hi if _ok(hi) else None)


def _more_needed(value: float, lo: float, hi: float, threshold: float, n: int | None) -> int | None:
    """Extra units that would shrink the interval clear of ``threshold`` if ``value`` held.

    Interval half-widths shrink like 1/√n, so n' = n·(half-width / distance)².
    """
    distance = abs(value - threshold)
    half = (hi - lo) / 2.0
    if not n or distance <= 1e-12 or half <= 0:
        return None
    return max(1, math.ceil(n * (half / distance) ** 2) - n)


def _straddle_reason(value: float, lo: float, hi: float, threshold: float, *, pct: bool,
                     n: int | None, unit: str) -> str:
    more = _more_needed(value, lo, hi, threshold, n)
    return w.overview_straddles(lo=lo, hi=hi, threshold=threshold, pct=pct, more=more, unit=unit)


def judge_at_least(value: float | None, low: float | None, high: float | None,
                   threshold: float, *, pct: bool = True, n: int | None = None,
                   unit: str = "patients") -> tuple[str, str]:
    """Verdict and reason for "at least ``threshold``" from a value and its interval."""
    if value is None:
        return "not assessed", "the value could not be computed from these data"
    if low is None or high is None:
        return "cannot tell", "no interval could be computed, so the data are too few to decide"
    if low >= threshold:
        return "meets", ""
    if high < threshold:
        return "concern", ""
    return "cannot tell", _straddle_reason(value, low, high, threshold, pct=pct, n=n, unit=unit)


def judge_at_most(value: float | None, low: float | None, high: float | None,
                  threshold: float, *, pct: bool = True, n: int | None = None,
                  unit: str = "patients") -> tuple[str, str]:
    """Verdict and reason for "at most ``threshold``" (mirror of :func:`judge_at_least`)."""
    if value is None:
        return "not assessed", "the value could not be computed from these data"
    if low is None or high is None:
        return "cannot tell", "no interval could be computed, so the data are too few to decide"
    if high <= threshold:
        return "meets", ""
    if low > threshold:
        return "concern", ""
    return "cannot tell", _straddle_reason(value, low, high, threshold, pct=pct, n=n, unit=unit)


def judge_beats_baseline(value: float | None, low: float | None, high: float | None,
                         baseline: float, *, pct: bool = True, n: int | None = None,
                         unit: str = "patients") -> tuple[str, str]:
    """The model must show it beats a trivial baseline: at or below it is a concern."""
    if value is None:
        return "not assessed", "the value could not be computed from these data"
    if value <= baseline:
        return "concern", ""
    if low is not None and low > baseline:
        return "meets", ""
    if low is None:
        return "cannot tell", "no interval could be computed, so the data are too few to decide"
    return "cannot tell", _straddle_reason(value, low, high if high is not None else value,
                                           baseline, pct=pct, n=n, unit=unit)


def _worst(findings: list[Finding]) -> str:
    if not findings:
        return "not assessed"
    return max((f.verdict for f in findings), key=lambda v: _SEVERITY[v])
