"""Small-cell protection: one policy for every number auditkit shows or exports.

A count or a metric of a group of fewer than ``k`` images (default 10) can point
at a handful of people ("the only two patients over 80 from site B"). The policy
replaces the counts and metrics of such a group by null and marks it
``"suppressed": true`` (optionally, groups of fewer than ``k`` *patients* too);
the group's name, its attribute and its ``too_few`` flag
stay, so a reviewer still sees that the group exists. Hiding one cell is not enough
when totals are published: with the total and all other cells known, the hidden
cell is a subtraction away. So whenever exactly one group of an attribute is
suppressed, the next-smallest group of that attribute is suppressed too
(*complementary suppression*, as statistical offices do for published tables).

Where it applies
----------------
* ``audit.json``: :func:`apply_small_cell_policy` walks every check's results.
  Any dict with ``"group"`` and ``"n"`` keys is a *group row*; its siblings are the
  group rows in the same list (or dict) with the same ``"attribute"``. Mappings
  ``{group: count}`` (or ``{attribute: {group: count}}``) stored under a key whose
  name contains ``group_counts`` are treated the same way. Shapes it does not
  recognise are left untouched.
* ``predictions.csv``: in each attribute column, the group label of groups with
  fewer than ``k`` images (plus the complementary group) becomes
  ``"suppressed (<k)"``, so a rare person cannot be singled out by their group;
  in those rows the exact age (``<age>_years``) is blanked, and ages over 89 are written as 90
  (the HIPAA safe-harbour rule). Patient ids and file paths are never written.
* Pages: :func:`suppress_group_table` applies the same rule to a table of group rows;
  :func:`images_may_be_shown` tells them whether patient images may be displayed
  (``AUDITKIT_SHOW_IMAGES=0`` switches every image off).

``k = 0`` (``AuditConfig(small_cell_k=0)``) turns the policy off.

Audiences
---------
Who reads a file decides what it may show (:data:`AUDIENCES`), and the audience is an
explicit argument of :func:`apply_small_cell_policy` and is written into its output:

* ``"in-house"``: signed-in reviewers inside the institution see every group with its
  exact n and its own "too few to judge" (a committee must see that a test set holds 3
  Black patients; hiding the count hides the finding). Patient ids and paths are still
  never written.
* ``"release"``: anything that leaves the institution (``auditkit export --release``)
  gets the small-cell rule above, with complementary suppression.
"""

from __future__ import annotations

import copy
import numbers
from collections.abc import Iterable
from typing import Any

import pandas as pd

__all__ = [
    "AUDIENCES",
    "KEEP_KEYS",
    "SUPPRESSED_LABEL",
    "apply_small_cell_policy",
    "images_may_be_shown",
    "suppress_counts",
    "suppress_frame",
    "suppress_group_rows",
    "suppress_group_table",
    "suppressed_label",
]

#: Who a file is written for: inside the institution, or for release outside it.
AUDIENCES = ("in-house", "release")
#: Keys of a group row kept when the row is suppressed; every other value becomes null.
KEEP_KEYS = frozenset({"attribute", "group", "too_few", "suppressed", "kind", "attributes"})
#: Template of the group label written in ``predictions.csv`` for suppressed groups.
SUPPRESSED_LABEL = "suppressed (<{k})"
#: Columns that must never be exported (patient identity, file locations).
NEVER_EXPORTED = ("patient_id", "path", "split_group", "line")
AGE_TOP_CODE = 90


def images_may_be_shown() -> bool:
    """False when ``$AUDITKIT_SHOW_IMAGES`` is ``0``, ``false``, ``no`` or ``off``.

    Pages that would display patient images (examples, attribution maps) check this
    first; deployments that must never show images set the variable once.
    """
    import os

    value = os.environ.get("AUDITKIT_SHOW_IMAGES", "1").strip().lower()
    return value not in ("0", "false", "no", "off")


def suppressed_label(k: int) -> str:
    """The group label written instead of a suppressed group, e.g. ``"suppressed (<10)"``."""
    return SUPPRESSED_LABEL.format(k=k)


def _count(value: Any) -> float | None:
    """A usable count (int/float, not bool, not nan) or None."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    value = float(value)
    return value if value == value else None  # nan


def _to_suppress(counts: list[float], k: int) -> set[int]:
    """Indices to hide among sibling cells with these counts (primary + complementary)."""
    hidden = {i for i, c in enumerate(counts) if c < k}
    if len(hidden) == 1 and len(counts) > 1:
        rest = sorted((c, i) for i, c in enumerate(counts) if i not in hidden)
        hidden.add(rest[0][1])
    return hidden


def _blank_row(row: dict[str, Any]) -> None:
    for key in list(row):
        if key not in KEEP_KEYS:
            row[key] = None
    row["suppressed"] = True


def _is_group_row(item: Any) -> bool:
    return isinstance(item, dict) and "group" in item and "n" in item


def _suppress_siblings(rows: Iterable[dict[str, Any]], k: int,
                       count_patients: bool = False) -> int:
    """Suppress in place among rows grouped by ``attribute``; returns rows suppressed."""
    families: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        if row.get("suppressed") is True:
            continue  # already handled (idempotent)
        if _count(row.get("n")) is None:
            continue
        families.setdefault(str(row.get("attribute")), []).append(row)
    n_hidden = 0
    for members in families.values():
        for i in _to_suppress([_row_size(r, count_patients) for r in members], k):
            _blank_row(members[i])
            n_hidden += 1
    return n_hidden


def _row_size(row: dict[str, Any], count_patients: bool) -> float:
    """Images of a group row, or the smaller of images and patients (``count_patients``)."""
    n = _count(row.get("n")) or 0.0
    patients = _count(row.get("n_patients")) if count_patients else None
    return min(n, patients) if patients is not None else n


def suppress_counts(counts: dict[str, Any], *, k: int) -> dict[str, Any]:
    """``{group: count}`` with counts below ``k`` (and the complementary cell) set to None.

    Non-numeric values are left as they are. Returns a new dict.
    """
    out = dict(counts)
    if k <= 0:
        return out
    keys = [g for g, c in out.items() if _count(c) is not None]
    for i in _to_suppress([_count(out[g]) or 0.0 for g in keys], k):
        out[keys[i]] = None
    return out


def suppress_group_rows(rows: list[dict[str, Any]], *, k: int, count_patients: bool = False
                        ) -> list[dict[str, Any]]:
    """A copy of ``rows`` (group rows: dicts with ``group`` and ``n``) with the policy applied.

    With ``count_patients``, a row is also small when its ``n_patients`` is below ``k``.
    """
    out = copy.deepcopy(rows)
    if k > 0:
        _suppress_siblings([r for r in out if _is_group_row(r)], k, count_patients)
    return out


def suppress_group_table(table: pd.DataFrame, *, k: int, n_column: str = "n",
                         attribute_column: str = "attribute", count_patients: bool = False
                         ) -> pd.DataFrame:
    """Apply the policy to a DataFrame of group rows (for pages).

    Parameters
    ----------
    table : pandas.DataFrame
        One row per group, with a count column ``n_column`` and (optionally) an
        ``attribute_column``; siblings are rows with the same attribute.
    k : int
        Threshold; 0 disables.
    count_patients : bool
        Also treat rows with ``n_patients < k`` as small.

    Returns
    -------
    pandas.DataFrame
        A copy with every column except ``attribute``, ``group``, ``too_few``
        blanked (None) in suppressed rows, and a boolean ``suppressed`` column.
    """
    out = table.copy()
    out["suppressed"] = False
    if k <= 0 or n_column not in out.columns or out.empty:
        return out
    keys = (out[attribute_column].astype(str) if attribute_column in out.columns
            else pd.Series("", index=out.index))
    hide: list[Any] = []
    for _attr, idx in out.groupby(keys, sort=False).groups.items():
        labels = list(idx)
        counts = [_count(out.at[i, n_column]) for i in labels]
        if count_patients and "n_patients" in out.columns:
            counts = [c if c is None or _count(out.at[i, "n_patients"]) is None
                      else min(c, _count(out.at[i, "n_patients"]) or 0.0)
                      for i, c in zip(labels, counts)]
        valid = [(lab, c) for lab, c in zip(labels, counts) if c is not None]
        for j in _to_suppress([c for _, c in valid], k):
            hide.append(valid[j][0])
    if hide:
        blank = [c for c in out.columns if c not in KEEP_KEYS and c != "suppressed"]
        out[blank] = out[blank].astype(object)
        out.loc[hide, blank] = None
        out.loc[hide, "suppressed"] = True
    return out


def _walk(node: Any, k: int, cp: bool = False) -> int:
    """Suppress group rows and group-count mappings anywhere under ``node`` (in place)."""
    n_hidden = 0
    if isinstance(node, list):
        n_hidden += _suppress_siblings([x for x in node if _is_group_row(x)], k, cp)
        for item in node:
            if not (isinstance(item, dict) and item.get("suppressed") is True):
                n_hidden += _walk(item, k, cp)
    elif isinstance(node, dict):
        n_hidden += _suppress_siblings([v for v in node.values() if _is_group_row(v)], k, cp)
        for key, value in list(node.items()):
            if "group_counts" in str(key) and isinstance(value, dict):
                n_hidden += _suppress_count_mapping(value, k)
            elif not (isinstance(value, dict) and value.get("suppressed") is True):
                n_hidden += _walk(value, k, cp)
    return n_hidden


def _suppress_count_mapping(mapping: dict[str, Any], k: int) -> int:
    """``{group: count}`` or ``{attribute: {group: count}}`` in place."""
    if all(isinstance(v, dict) for v in mapping.values()):
        return sum(_suppress_count_mapping(v, k) for v in mapping.values())
    new = suppress_counts(mapping, k=k)
    n_hidden = sum(1 for g in mapping if mapping[g] is not None and new[g] is None)
    mapping.update(new)
    return n_hidden


def suppress_frame(frame: pd.DataFrame, *, k: int, attributes: Iterable[str],
                   age_attributes: Iterable[str] = (), patient_ids: Any = None
                   ) -> tuple[pd.DataFrame, dict[str, list[str]]]:
    """The per-image table with rare groups relabelled; returns it and what was hidden.

    Parameters
    ----------
    frame : pandas.DataFrame
        One row per image with one column per attribute holding the group label.
    k : int
        Groups with fewer than ``k`` rows (and the complementary group when only one
        is rare) become :func:`suppressed_label`; 0 disables this (ids are still dropped).
    attributes : iterable of str
        Attribute columns.
    age_attributes : iterable of str
        Age attributes whose ``<name>_years`` column holds exact ages: blanked in
        every row with a relabelled group (the rare people) and top-coded at 90.
    patient_ids : array-like, optional
        Patient id of each row (never written): a group then counts as small when it
        has fewer than ``k`` images *or* fewer than ``k`` patients.

    Returns
    -------
    frame : pandas.DataFrame
        A copy, without patient id or path columns.
    hidden : dict
        Attribute -> groups relabelled.
    """
    out = frame.drop(columns=[c for c in NEVER_EXPORTED if c in frame.columns])
    hidden: dict[str, list[str]] = {}
    label = suppressed_label(k)
    rare_rows = pd.Series(False, index=out.index)
    for attr in attributes:
        if attr not in out.columns or k <= 0:
            continue
        col = out[attr].astype(object)
        counts = col.value_counts(dropna=False)
        if patient_ids is not None:
            people = pd.Series(list(patient_ids), index=out.index).groupby(col).nunique()
            counts = pd.concat([counts, people.reindex(counts.index)], axis=1).min(axis=1)
        groups = list(counts.index)
        rare = [groups[i] for i in sorted(_to_suppress([float(c) for c in counts], k))]
        if rare:
            mask = col.isin(rare)
            hidden[attr] = sorted(str(g) for g in rare)
            out[attr] = col.where(~mask, label)
            rare_rows |= mask
    for attr in age_attributes:
        years = f"{attr}_years"
        if years in out.columns:
            vals = pd.to_numeric(out[years], errors="coerce").astype("Float64")
            vals = vals.where(vals.isna() | (vals <= AGE_TOP_CODE - 1), float(AGE_TOP_CODE))
            out[years] = vals.mask(rare_rows.to_numpy())
    return out, hidden


def apply_small_cell_policy(audit: dict[str, Any], frame: pd.DataFrame | None = None, *,
                            k: int = 10, patient_ids: Any = None,
                            count_patients: bool = False, audience: str = "release"
                            ) -> tuple[dict[str, Any], pd.DataFrame | None]:
    """Apply small-cell protection to an audit and its predictions table.

    Parameters
    ----------
    audit : dict
        The audit (``audit.json`` content); ``audit["results"]`` is walked.
    frame : pandas.DataFrame, optional
        The ``predictions.csv`` table.
    k : int
        Threshold in images; 0 turns suppression off (ids are still never exported).
    patient_ids : array-like, optional
        Patient id of each row of ``frame`` (used for counting only, never written):
        a group of ``predictions.csv`` is then also small with fewer than ``k`` patients.
    count_patients : bool
        Also treat group rows with ``n_patients < k`` as small (off by default: the
        configured rule is "fewer than k images").
    audience : {"release", "in-house"}
        ``"in-house"`` withholds nothing (every group keeps its exact n; ids and paths
        are still dropped); ``"release"`` applies the rule. Written to the output as
        ``audience`` and ``small_cell_protection.audience``.

    Returns
    -------
    audit : dict
        A copy with suppressed cells and a ``small_cell_protection`` summary.
    frame : pandas.DataFrame or None
        See :func:`suppress_frame`.

    Examples
    --------
    >>> audit = {"results": {"fairness": {"groups": [
    ...     {"attribute": "sex", "group": "female", "n": 40, "accuracy": {"value": 0.8}},
    ...     {"attribute": "sex", "group": "male", "n": 35, "accuracy": {"value": 0.7}},
    ...     {"attribute": "sex", "group": "other", "n": 3, "accuracy": {"value": 1.0}}]}}}
    >>> out, _ = apply_small_cell_policy(audit, k=10)
    >>> [g["n"] for g in out["results"]["fairness"]["groups"]]
    [40, None, None]
    """
    k = int(k or 0)
    if k < 0:
        from .exceptions import ConfigError

        raise ConfigError(f"small_cell_k must be >= 0; got {k} instead.")
    if audience not in AUDIENCES:
        from .exceptions import ConfigError

        raise ConfigError(f"audience must be one of {list(AUDIENCES)}; got {audience!r} "
                          "instead.")
    rule_k = k
    if audience == "in-house":
        k = 0
    out = copy.deepcopy(audit)
    out["audience"] = audience
    n_hidden = _walk(out.get("results", {}), k, count_patients) if k > 0 else 0
    hidden_frame: dict[str, list[str]] = {}
    new_frame = frame
    if frame is not None:
        attrs = dict((out.get("dataset") or {}).get("attributes") or {})
        names = list(attrs) or [c for c in frame.columns
                                if c not in ("image", "label", "pred")
                                and not str(c).startswith("prob_")
                                and not str(c).endswith("_years")]
        new_frame, hidden_frame = suppress_frame(
            frame, k=k, attributes=names,
            age_attributes=[a for a, kind in attrs.items() if kind == "age"],
            patient_ids=patient_ids)
    out["small_cell_protection"] = {
        "audience": audience,
        "k": rule_k,
        "enabled": k > 0,
        "cells_suppressed": n_hidden,
        "rule": ("counts and metrics of groups with fewer than k images"
                 + (" (or fewer than k patients)" if count_patients else "")
                 + " are withheld; when "
                 "only one group of an attribute is withheld, the next-smallest is withheld "
                 "too so it cannot be recovered from totals") if k > 0 else (
                     "off: in-house view, every group with its exact n"
                     if audience == "in-house" and rule_k > 0 else "off"),
        "predictions_groups_relabelled": hidden_frame,
    }
    return out, new_frame
