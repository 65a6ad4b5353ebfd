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

Tables published together are protected together
-------------------------------------------------
Complementary suppression inside one attribute is not enough when several tables
are written: an intersection cell (``female × 80+``) is its marginal (``female``)
minus the other cells of that line, and a calibration bin is its group minus the
other bins. So the rule is applied to every *line* whose total is published:

* within an attribute's groups (the total is the overall count),
* within each line of an intersection table (the total is the marginal group),
  a cell alone in its line hides its marginal, and a hidden marginal group hides
  its whole line (its cells would add up to it),
* within a group's calibration bins (the total is the group's count),
* across tables: a group hidden in one table (say by an intersection) is hidden in
  every table of the same check that shows it (the tables of one check share one
  population), and again every line is checked, until nothing changes.

A line never shows exactly one hidden cell, so no subtraction of published numbers
recovers a hidden one. ``predictions.csv`` follows: rows of hidden intersection cells
have both attributes relabelled.

``k = 0`` (``AuditConfig(small_cell_k=0)``) turns the policy off.

Audiences
---------
Who reads a file decides what it may show (:data:`AUDIENCES`), and the audience is an
explicit argument of every function here (default the strict ``"release"``) and is
written into the output of :func:`apply_small_cell_policy`:

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
    "check_audience",
    "images_identifiable",
    "images_may_be_shown",
    "protect_card_metrics",
    "protected_overview",
    "suppress_counts",
    "suppress_frame",
    "suppress_group_rows",
    "suppress_group_table",
    "suppressed_label",
]

#: Keys of a group row kept when the row is suppressed; every other value becomes null.
KEEP_KEYS = frozenset({"attribute", "group", "too_few", "suppressed", "kind", "attributes",
                       "bin"})
#: Template of the group label written in ``predictions.csv`` for suppressed groups.
SUPPRESSED_LABEL = "suppressed (<{k})"
#: Columns that must never be exported (patient identity, file locations).
NEVER_EXPORTED = ("patient_id", "path", "split_group", "line")
AGE_TOP_CODE = 90
#: Who a file is written for -> the rule: whether anything is withheld, and whether groups
#: also count as small by their patients. ``in-house``: inside the institution, nothing
#: withheld; ``release``: anything that leaves it (strict: images *and* patients).
AUDIENCES: dict[str, dict[str, Any]] = {
    "in-house": {"withhold": False, "count_patients": False},
    "release": {"withhold": True, "count_patients": True},
}


def check_audience(audience: str) -> dict[str, Any]:
    """The rule settings of ``audience``; ConfigError for an unknown one."""
    if audience not in AUDIENCES:
        from .exceptions import ConfigError

        raise ConfigError(f"audience must be one of {sorted(AUDIENCES)}; got {audience!r} "
                          "instead.")
    return AUDIENCES[audience]


def _effective_k(k: int, audience: str) -> int:
    """``k`` for an audience that withholds, 0 for one that sees every group."""
    return int(k) if check_audience(audience)["withhold"] else 0


def images_may_be_shown() -> bool:
    """False when ``$AUDITKIT_SHOW_IMAGES`` is ``0``, ``false``, ``no`` or ``off``.

    Pages that would display patient images (examples, attribution maps) check this
    first; deployments that must never show images set the variable once.
    """
    import os

    value = os.environ.get("AUDITKIT_SHOW_IMAGES", "1").strip().lower()
    return value not in ("0", "false", "no", "off")


#: Image kinds that do not show a face or skin marks; every other kind (photographs, and
#: images of an unstated kind) is treated as identifiable.
NON_IDENTIFIABLE_IMAGE_KINDS = frozenset({"radiograph", "mri", "ct", "ultrasound",
                                          "microscopy", "histology", "fundus", "oct"})


def images_identifiable(image_kind: str | None) -> bool:
    """True when images of ``image_kind`` may identify a patient (faces, tattoos, skin marks).

    Photographs, and images whose kind the dataset description does not state, are
    identifiable: pages then hide them until the viewer asks (and only where
    :func:`images_may_be_shown` allows).

    >>> images_identifiable("photograph"), images_identifiable(None), images_identifiable("mri")
    (True, True, False)
    """
    return (image_kind or "").strip().lower() not in NON_IDENTIFIABLE_IMAGE_KINDS


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
    """Protect group rows that are siblings (one table); returns rows suppressed."""
    return _protect([r for r in rows if _is_group_row(r)], k, count_patients)


def _hidden(row: dict[str, Any]) -> bool:
    return row.get("suppressed") is True


def _complete_line(cells: list[dict[str, Any]], total: dict[str, Any] | None, cp: bool) -> int:
    """One line of cells whose total is published: never leave exactly one cell hidden.

    ``total`` is the row holding the line's total (None: a total that is always
    published, such as the overall count). Hides the smallest visible cell, or the
    total itself when the hidden cell is alone in its line.
    """
    if total is not None and _hidden(total):
        return 0
    hidden = [c for c in cells if _hidden(c)]
    if len(hidden) != 1:
        return 0
    visible = [c for c in cells if not _hidden(c) and _count(c.get("n")) is not None]
    if visible:
        _blank_row(min(visible, key=lambda r: _row_size(r, cp)))
        return 1
    if total is not None:
        _blank_row(total)
        return 1
    return 0


def _containers(node: Any) -> Iterable[list[dict[str, Any]]]:
    """Each list's or dict's group rows (one table), over the whole tree.

    The insides of hidden rows and ``group_counts`` mappings are skipped.
    """
    if isinstance(node, list):
        rows = [x for x in node if _is_group_row(x)]
        if rows:
            yield rows
        for item in node:
            if not (isinstance(item, dict) and _hidden(item)):
                yield from _containers(item)
    elif isinstance(node, dict):
        rows = [v for v in node.values() if _is_group_row(v)]
        if rows:
            yield rows
        for key, value in node.items():
            if "group_counts" in str(key):
                continue  # {group: count} mappings are handled on their own
            if not (isinstance(value, dict) and _hidden(value)):
                yield from _containers(value)


def _protect(root: Any, k: int, cp: bool) -> int:
    """Apply the rule to every table under ``root`` until no line changes (in place).

    Returns the number of rows and bins suppressed.
    """
    n_hidden = 0
    while True:
        changed = 0
        containers = list(_containers(root))
        for rows in containers:
            for row in rows:  # primary suppression
                if (not _hidden(row) and _count(row.get("n")) is not None
                        and _row_size(row, cp) < k):
                    _blank_row(row)
                    changed += 1
        for rows in containers:
            changed += _protect_container(rows, k, cp)
        changed += _cover_lone_bins(containers, cp)
        # across tables: a group hidden in one table is hidden wherever it is shown
        hidden_groups = {(str(r.get("attribute")), str(r["group"]))
                         for rows in containers for r in rows
                         if _hidden(r) and r.get("attribute") is not None}
        for rows in containers:
            for row in rows:
                if (not _hidden(row)
                        and (str(row.get("attribute")), str(row["group"])) in hidden_groups):
                    _blank_row(row)
                    changed += 1
        n_hidden += changed
        if not changed:
            return n_hidden


def _protect_container(rows: list[dict[str, Any]], k: int, cp: bool) -> int:
    """Complementary suppression inside one table: attributes, intersection lines, bins."""
    changed = 0
    families: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        families.setdefault(str(row.get("attribute")), []).append(row)
    for members in families.values():
        changed += _complete_line(members, None, cp)
    # intersection tables: each line's total is a marginal group row of the same table
    marginal = {(str(r.get("attribute")), str(r["group"])): r for r in rows}
    for attribute, members in families.items():
        parts = attribute.split("×")
        if len(parts) != 2:
            continue
        lines: dict[tuple[int, str], list[dict[str, Any]]] = {}
        for row in members:
            groups = str(row["group"]).split(" × ")
            if len(groups) != 2:
                continue
            for side in (0, 1):
                lines.setdefault((side, groups[side]), []).append(row)
        for (side, group), cells in lines.items():
            total = marginal.get((parts[side], group))
            if total is not None and _hidden(total):
                # a hidden group's cells would add up to it: they are hidden with it
                for cell in cells:
                    if not _hidden(cell):
                        _blank_row(cell)
                        changed += 1
                continue
            changed += _complete_line(cells, total, cp)
    # calibration bins of a visible group: the group's n is the bins' total
    for row in rows:
        bins = row.get("bins")
        if _hidden(row) or not isinstance(bins, list):
            continue
        cells = [b for b in bins if isinstance(b, dict)
                 and (_hidden(b) or _count(b.get("n")) is not None)]
        for cell in cells:
            if not _hidden(cell) and _row_size(cell, cp) < k:
                _blank_row(cell)
                changed += 1
        changed += _complete_line(cells, row, cp)
    # the same bin across an attribute's groups adds up to the bin's overall count, which
    # any other attribute's curves publish: each bin column is a line too (a cell alone
    # in its column is covered across tables, in _cover_lone_bins)
    columns = _bin_columns(rows)
    for cells in (columns or {}).values():
        if sum(_hidden(b) for b in cells) != 1:
            continue
        visible = [b for b in cells if not _hidden(b)]
        if visible:
            _blank_row(min(visible, key=lambda r: _row_size(r, cp)))
            changed += 1
    return changed


def _bin_columns(rows: list[dict[str, Any]]) -> dict[Any, list[dict[str, Any]]] | None:
    """Bin index -> the bins of that index across the table's groups.

    None when the table has no bins, or when one of its groups is hidden: the hidden
    group then has an unknown count in every column, so no column total is exact.
    """
    if not any(isinstance(r.get("bins"), list) for r in rows) or any(_hidden(r) for r in rows):
        return None
    columns: dict[Any, list[dict[str, Any]]] = {}
    for row in rows:
        for b in row.get("bins") or []:
            if isinstance(b, dict) and "bin" in b:
                columns.setdefault(b["bin"], []).append(b)
    return columns


def _cover_lone_bins(containers: list[list[dict[str, Any]]], cp: bool) -> int:
    """A hidden bin alone in its column equals the bin's total, which another attribute's
    curves publish: every other table then keeps at least two of that column hidden."""
    tables = [c for c in (_bin_columns(rows) for rows in containers) if c is not None]
    lone = {b for cols in tables for b, cells in cols.items()
            if len(cells) == 1 and _hidden(cells[0])}
    changed = 0
    for b in lone:
        for cols in tables:
            cells = cols.get(b, [])
            while sum(_hidden(c) for c in cells) < 2 and any(not _hidden(c) for c in cells):
                _blank_row(min((c for c in cells if not _hidden(c)),
                               key=lambda r: _row_size(r, cp)))
                changed += 1
    return changed


def _row_size(row: dict[str, Any], count_patients: bool) -> float:
    """Images of a group row, or the smaller of images and patients (``count_patients``)."""
    n = _count(row.get("n")) or 0.0
    patients = _count(row.get("n_patients")) if count_patients else None
    return min(n, patients) if patients is not None else n


def suppress_counts(counts: dict[str, Any], *, k: int, patients: dict[str, Any] | None = None,
                    audience: str = "release") -> dict[str, Any]:
    """``{group: count}`` with counts below ``k`` (and the complementary cell) set to None.

    ``patients`` (``{group: patients}``) makes a group small when it has fewer than
    ``k`` patients too (for audiences that count patients). Non-numeric values are
    left as they are. Returns a new dict.
    """
    rule = check_audience(audience)
    k = _effective_k(k, audience)
    out = dict(counts)
    if k <= 0:
        return out
    keys = [g for g, c in out.items() if _count(c) is not None]
    sizes = []
    for g in keys:
        size = _count(out[g]) or 0.0
        people = _count((patients or {}).get(g)) if rule["count_patients"] else None
        sizes.append(min(size, people) if people is not None else size)
    for i in _to_suppress(sizes, k):
        out[keys[i]] = None
    return out


def protected_overview(summary: dict[str, Any], *, k: int = 10,
                       patient_counts: dict[str, dict[str, int]] | None = None,
                       audience: str = "release") -> dict[str, Any]:
    """A dataset summary (:meth:`Dataset.summary`) fit to show: small counts withheld.

    Group counts and class counts below ``k`` images (or ``k`` patients, with
    ``patient_counts`` = ``{attribute: {group: patients}}``, classes under the key
    ``"label"``) and their complementary cells become None. Used by the landing page
    and ``auditkit datasets``; the folder on disk (``root``) is left out.
    """
    out = {key: value for key, value in summary.items() if key != "root"}
    pcs = patient_counts or {}
    out["group_counts"] = {a: suppress_counts(c, k=k, patients=pcs.get(a), audience=audience)
                           for a, c in (summary.get("group_counts") or {}).items()}
    out["class_counts"] = suppress_counts(dict(summary.get("class_counts") or {}), k=k,
                                          patients=pcs.get("label"), audience=audience)
    return out


def suppress_group_rows(rows: list[dict[str, Any]], *, k: int, count_patients: bool = False,
                        audience: str = "release") -> list[dict[str, Any]]:
    """A copy of ``rows`` (group rows: dicts with ``group`` and ``n``) with the policy applied.

    With ``count_patients``, a row is also small when its ``n_patients`` is below ``k``.
    Intersection rows (attribute ``"a×b"``, group ``"x × y"``) are protected together
    with the marginal rows of ``a`` and ``b`` in the same list.
    """
    k = _effective_k(k, audience)
    out = copy.deepcopy(rows)
    if k > 0:
        _suppress_siblings([r for r in out if _is_group_row(r)], k, count_patients)
    return out


def suppress_group_table(table: pd.DataFrame, *, k: int, n_column: str = "n",
                         attribute_column: str = "attribute", count_patients: bool = False,
                         audience: str = "release") -> pd.DataFrame:
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
    k = _effective_k(k, audience)
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
    """Suppress group rows, bins and group-count mappings anywhere under ``node`` (in place)."""
    return _protect(node, k, cp) + _walk_counts(node, k)


def _walk_counts(node: Any, k: int) -> int:
    n_hidden = 0
    if isinstance(node, list):
        for item in node:
            n_hidden += _walk_counts(item, k)
    elif isinstance(node, dict):
        if _hidden(node):
            return 0
        for key, value in node.items():
            if "group_counts" in str(key) and isinstance(value, dict):
                n_hidden += _suppress_count_mapping(value, k)
            else:
                n_hidden += _walk_counts(value, k)
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
                   age_attributes: Iterable[str] = (), patient_ids: Any = None,
                   hidden_groups: dict[str, set[str]] | None = None,
                   hidden_cells: Iterable[tuple[str, str, str, str]] = (),
                   audience: str = "release"
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
    hidden_groups : dict, optional
        ``{attribute: groups}`` hidden in the audit's tables: relabelled here too.
    hidden_cells : iterable of (a, b, group of a, group of b)
        Intersection cells hidden in the audit's tables: both attributes of their rows
        are relabelled, so counting rows cannot recover them.
    audience : str
        See :data:`AUDIENCES`.

    Returns
    -------
    frame : pandas.DataFrame
        A copy, without patient id or path columns.
    hidden : dict
        Attribute -> groups relabelled.
    """
    rule = check_audience(audience)
    k = _effective_k(k, audience)
    if not rule["count_patients"]:
        patient_ids = None
    attributes = list(attributes)
    out = frame.drop(columns=[c for c in NEVER_EXPORTED if c in frame.columns])
    hidden: dict[str, list[str]] = {}
    label = suppressed_label(k)
    rare_rows = pd.Series(False, index=out.index)
    original = {a: out[a].astype(object) for a in attributes if a in out.columns}
    cell_rows = pd.Series(False, index=out.index)
    cell_attrs: set[str] = set()
    for a, b, ga, gb in (hidden_cells if k > 0 else ()):
        if a in original and b in original:
            hit = (original[a].astype(str) == ga) & (original[b].astype(str) == gb)
            if hit.any():
                cell_rows |= hit
                cell_attrs |= {a, b}
    for attr in attributes:
        if attr not in out.columns or k <= 0:
            continue
        col = original[attr]
        counts = col.value_counts(dropna=False)
        if patient_ids is not None:
            people = pd.Series(list(patient_ids), index=out.index).groupby(col).nunique()
            counts = pd.concat([counts, people.reindex(counts.index)], axis=1).min(axis=1)
        groups = list(counts.index)
        forced = (hidden_groups or {}).get(attr, set())
        rare_idx = {i for i, (g, c) in enumerate(zip(groups, counts))
                    if float(c) < k or str(g) in forced}
        if len(rare_idx) == 1 and len(groups) > 1:  # complementary: the next smallest
            rest = sorted((float(c), i) for i, c in enumerate(counts) if i not in rare_idx)
            rare_idx.add(rest[0][1])
        rare = [groups[i] for i in sorted(rare_idx)]
        mask = col.isin(rare)
        if attr in cell_attrs:
            mask |= cell_rows
        if mask.any():
            hidden[attr] = sorted({str(g) for g in rare}
                                  | ({"rows of hidden intersection cells"}
                                     if attr in cell_attrs else set()))
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
        Also treat group rows with ``n_patients < k`` as small. The ``release``
        audience turns this on whenever ``patient_ids`` are given.
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
    rule = check_audience(audience)
    rule_k = k
    if not rule["withhold"]:
        k = 0
    count_patients = count_patients or bool(rule["count_patients"] and patient_ids is not None)
    out = copy.deepcopy(audit)
    out["audience"] = audience
    results = out.get("results", {})
    # each check is protected on its own: its tables share one population (a group of
    # the robustness sample is not the same people as that group in the fairness rows)
    n_hidden = sum(_walk(value, k, count_patients) for value in results.values()) \
        if k > 0 and isinstance(results, dict) else 0
    hidden_groups: dict[str, set[str]] = {}
    hidden_cells: list[tuple[str, str, str, str]] = []
    # predictions.csv holds the rows fairness and performance are measured on
    same_rows = [results.get(name) for name in ("performance", "fairness")] \
        if isinstance(results, dict) else []
    for rows in _containers(same_rows) if k > 0 else ():
        for row in rows:
            attribute = row.get("attribute")
            if not _hidden(row) or attribute is None:
                continue
            parts, groups = str(attribute).split("×"), str(row["group"]).split(" × ")
            if len(parts) == 2 and len(groups) == 2:
                hidden_cells.append((parts[0], parts[1], groups[0], groups[1]))
            elif len(parts) == 1:
                hidden_groups.setdefault(str(attribute), set()).add(str(row["group"]))
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
            patient_ids=patient_ids, hidden_groups=hidden_groups, hidden_cells=hidden_cells,
            audience=audience)
    out["small_cell_protection"] = {
        "audience": audience,
        "k": rule_k,
        "enabled": k > 0,
        "cells_suppressed": n_hidden,
        "rule": ("counts and metrics of groups with fewer than k images"
                 + (" (or fewer than k patients)" if count_patients else "")
                 + " are withheld; wherever a line of a table (an attribute's groups, a row "
                 "or column of an intersection, a group's calibration bins) would show "
                 "exactly one withheld cell, the next-smallest is withheld too, and a group "
                 "withheld in one table is withheld in all, so no subtraction of published "
                 "numbers recovers a withheld one") if k > 0 else (
                     "off: in-house view, every group with its exact n"
                     if audience == "in-house" and rule_k > 0 else "off"),
        "predictions_groups_relabelled": hidden_frame,
    }
    return out, new_frame


def protect_card_metrics(metrics: dict[str, Any], *, k: int = 10,
                         audience: str = "release") -> dict[str, Any]:
    """A model card's test metrics with the rule applied to ``by_group``.

    ``metrics["by_group"]`` is ``{attribute: {group: {"n", "n_patients", metric, ...}}}``
    (see :mod:`auditkit.training`). Groups with fewer than ``k`` images or patients,
    and the complementary group, keep only ``{"suppressed": True}`` plus null counts,
    so a card never publishes the metrics of a handful of patients. Returns a copy.
    """
    rule = check_audience(audience)
    k = _effective_k(k, audience)
    out = copy.deepcopy(metrics or {})
    by_group = out.get("by_group")
    if k <= 0 or not isinstance(by_group, dict):
        return out
    rows = []
    for attribute, groups in by_group.items():
        if not isinstance(groups, dict):
            continue
        for group, entry in groups.items():
            if isinstance(entry, dict) and "n" in entry:
                rows.append({"attribute": attribute, "group": group, **entry})
    _protect(rows, k, bool(rule["count_patients"]))
    for row in rows:
        entry = {key: value for key, value in row.items() if key not in ("attribute", "group")}
        if row.get("suppressed") is True:
            entry = {key: None for key in entry} | {"suppressed": True}
        by_group[row["attribute"]][row["group"]] = entry
    return out
