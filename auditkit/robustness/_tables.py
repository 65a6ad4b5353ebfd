"""Long-format tables of a ``results.robustness`` entry, for pages and reports."""

from __future__ import annotations

from typing import Any

import pandas as pd

__all__ = ["attack_table", "corruption_table", "min_perturbation_table"]


def _metric(entry: dict[str, Any], name: str) -> tuple[Any, Any, Any]:
    value = entry.get(name)
    if not isinstance(value, dict):  # suppressed (small-cell policy) or absent
        return None, None, None
    lo, hi = (value.get("ci") or [None, None])[:2]
    return value.get("value"), lo, hi


def _rows(entry: dict[str, Any], metrics: list[str], head: dict[str, Any]
          ) -> list[dict[str, Any]]:
    rows = []
    for attribute, group, cell in ([("overall", "all images", entry["overall"])]
                                   + [(g["attribute"], g["group"], g)
                                      for g in entry["by_group"]]):
        row = {**head, "attribute": attribute, "group": group, "n": cell.get("n"),
               "too_few": bool(cell.get("too_few", False)),
               "suppressed": bool(cell.get("suppressed", False))}
        for m in metrics:
            row[m], row[f"{m}_low"], row[f"{m}_high"] = _metric(cell, m)
        rows.append(row)
    return rows


def _frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows)
    if len(frame):
        frame["n"] = frame["n"].astype("Int64")  # null where the small-cell policy hid it
    return frame


def attack_table(result: dict[str, Any]) -> pd.DataFrame:
    """One row per attack, budget and group (``attribute == "overall"`` for all images).

    Columns: attack, label, norm, budget, budget_255 (L∞ budgets × 255), budget_label,
    variant, attribute, group, n, too_few, suppressed, robust_accuracy(_low/_high),
    attack_success_rate(_low/_high), positive_flip_rate(_low/_high).
    """
    rows: list[dict[str, Any]] = []
    for a in result.get("attacks", []):
        budget = a.get("budget")
        head = {"attack": a["attack"], "label": a["label"], "norm": a["norm"], "budget": budget,
                "budget_255": budget * 255 if budget is not None and a["norm"] == "Linf"
                else None, "budget_label": a.get("budget_label") or "smallest",
                "variant": a.get("variant")}
        rows += _rows(a, ["robust_accuracy", "attack_success_rate", "positive_flip_rate"], head)
    return _frame(rows)


def corruption_table(result: dict[str, Any]) -> pd.DataFrame:
    """One row per corruption, severity and group: accuracy and flip_rate with intervals."""
    rows: list[dict[str, Any]] = []
    for c in result.get("corruptions", []):
        head = {"corruption": c["corruption"], "label": c["label"], "severity": c["severity"],
                "parameter": c["parameter"], "unit": c["unit"]}
        rows += _rows(c, ["accuracy", "flip_rate"], head)
    return _frame(rows)


def min_perturbation_table(result: dict[str, Any]) -> pd.DataFrame:
    """Median smallest flipping change per group (L∞ in 1/255 units and L2)."""
    rows: list[dict[str, Any]] = []
    for m in result.get("min_perturbation", []):
        rows += _rows(m, ["median_linf_255", "median_l2"],
                      {"attack": m["attack"], "label": m["label"]})
    return _frame(rows)
