"""Tables of a comparison for pages and reports (one row per group; no formatting here)."""

from __future__ import annotations

from typing import Any

import pandas as pd

from .. import wording
from ._core import OVERALL

__all__ = ["family_versions", "flip_table", "forest_table", "gap_table", "trend_table"]


def _label(row: dict[str, Any]) -> str:
    if row["attribute"] == OVERALL[0]:
        return OVERALL[1]
    return f"{row['attribute'].replace('_', ' ')}: {row['group']}"


def _shown(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """Group rows a reviewer may see (withheld ones have no numbers left)."""
    return [r for r in doc["results"]["groups"] if not r.get("suppressed")]


def forest_table(doc: dict[str, Any], metric: str) -> pd.DataFrame:
    """Per group: B − A in ``metric`` with its own and its simultaneous interval.

    Columns: ``label``, ``attribute``, ``group``, ``n``, ``n_patients``, ``too_few``,
    ``a``, ``b``, ``difference``, ``low``, ``high`` (per-comparison interval),
    ``adj_low``, ``adj_high`` (simultaneous), ``p_adjusted``, ``change``,
    ``noninferiority`` (verdict word or None when not judged for this metric).
    """
    rows = []
    for r in _shown(doc):
        e = r["metrics"].get(metric)
        if e is None:
            continue
        ci = e.get("ci") or [None, None]
        adj = e.get("ci_adjusted") or [None, None]
        rows.append({"label": _label(r), "attribute": r["attribute"], "group": r["group"],
                     "n": r["n"], "n_patients": r.get("n_patients"), "too_few": r["too_few"],
                     "a": e["a"], "b": e["b"], "difference": e["difference"],
                     "low": ci[0], "high": ci[1], "adj_low": adj[0], "adj_high": adj[1],
                     "p_adjusted": e.get("p_adjusted"),
                     "change": (f"{e.get('change')} ({e['change_reason'].split(':')[0]})"
                                if e.get("change_reason") else e.get("change")),
                     "noninferiority": (e.get("noninferiority") or {}).get("verdict"),
                     "size": wording.fmt_n(r["n"], r.get("n_patients")),
                     "a_text": wording.fmt_interval(e["a"], e.get("a_ci")),
                     "b_text": wording.fmt_interval(e["b"], e.get("b_ci")),
                     "difference_text": wording.fmt_difference(e["difference"], ci),
                     "adjusted_text": wording.fmt_difference(e["difference"], adj)})
    return pd.DataFrame(rows)


def flip_table(doc: dict[str, Any]) -> pd.DataFrame:
    """Per group: images right→wrong and wrong→right, with McNemar's exact p (raw and Holm)."""
    rows = []
    for r in _shown(doc):
        f = r["flips"]
        rows.append({"label": _label(r), "n": r["n"], "both_right": f["both_right"],
                     "right_to_wrong": f["right_to_wrong"],
                     "wrong_to_right": f["wrong_to_right"], "both_wrong": f["both_wrong"],
                     "mcnemar_p": r["mcnemar"]["p_value"], "mcnemar_p_holm": r["mcnemar"]["p_holm"],
                     "too_few": r["too_few"]})
    return pd.DataFrame(rows)


def gap_table(doc: dict[str, Any], metric: str) -> pd.DataFrame:
    """Per attribute: worst-vs-best gap of A and B in ``metric``, the change and its interval."""
    rows = []
    for g in doc["results"]["gaps"]:
        if g["metric"] != metric:
            continue
        if g["status"] != "assessed":
            rows.append({"attribute": g["attribute"], "verdict": "not assessed",
                         "reason": g.get("reason")})
            continue
        rows.append({"attribute": g["attribute"], "gap_a": g["a"]["gap"],
                     "groups_a": f"{g['a']['best_group']} vs {g['a']['worst_group']}",
                     "gap_b": g["b"]["gap"],
                     "groups_b": f"{g['b']['best_group']} vs {g['b']['worst_group']}",
                     "change": g["change"], "low": g["ci"][0], "high": g["ci"][1],
                     "verdict": g["verdict"], "reason": None,
                     "gap_a_text": wording.fmt_signed_points(g["a"]["gap"]).lstrip("+"),
                     "gap_b_text": wording.fmt_signed_points(g["b"]["gap"]).lstrip("+"),
                     "change_text": wording.fmt_difference(g["change"], g["ci"])})
    return pd.DataFrame(rows)


def trend_table(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """:func:`~auditkit.compare.version_trend` rows as a table (one row per version)."""
    out = []
    for r in rows:
        head = r.get("headline") or {}
        worst = r.get("worst_group") or {}
        hci = head.get("ci") or [None, None]
        wci = worst.get("ci") or [None, None]
        out.append({"version": r["version"], "status": r["status"],
                    "headline": head.get("value"), "headline_low": hci[0],
                    "headline_high": hci[1], "n": head.get("n"),
                    "worst_group": (f"{worst['attribute'].replace('_', ' ')}: {worst['group']}"
                                    if worst else None),
                    "worst": worst.get("value"), "worst_low": wci[0], "worst_high": wci[1],
                    "worst_n": worst.get("n"),
                    "headline_text": wording.fmt_interval(head.get("value"), hci),
                    "worst_text": wording.fmt_interval(worst.get("value"), wci),
                    "reason": r.get("reason") or r.get("worst_group_reason")})
    return pd.DataFrame(out)


def family_versions(registry: Any = None) -> dict[str, list[str]]:
    """Model family name -> its versions, oldest first (registry order of versions)."""
    from ..models import _version_key, list_models

    out: dict[str, set[str]] = {}
    for m in list_models(registry):
        out.setdefault(m.card.name, set()).add(m.card.version)
    return {name: sorted(v, key=_version_key) for name, v in sorted(out.items())}
