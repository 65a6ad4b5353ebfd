"""Is the gap between the best and the worst group larger than chance?

The worst and best groups are picked after looking at the data, so the question is
about the *largest* gap across groups. Its null distribution is obtained by
permutation: patients (the resampling unit) keep their images and outcomes but are
dealt new group labels, which keeps every group's size and makes every difference
chance. One permutation is applied to every attribute at once, so two codings of one
attribute (Fitzpatrick type I-VI and its three bands) move together and count as one
comparison in the family (Westfall-Young min-P step-down,
:func:`auditkit.stats.westfall_young_stepdown`).

The whole permutation distribution is computed from per-patient sums: for ``B``
permutations and ``G`` groups, each ratio metric is a ``(B, G)`` array from one
``bincount`` per column; AUROC uses one weighted Mann-Whitney pass per group.
Hand-written for that reason (a loop over fairlearn's ``MetricFrame`` would take
minutes per audit).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._metrics import LOWER_IS_BETTER
from .stats import minimum_detectable_difference, westfall_young_stepdown

__all__ = ["GAP_METRICS", "PARITY_STATISTICS", "GapTest", "run_gap_tests"]

#: Metrics whose worst-vs-best gap is tested (ECE is not: it grows as groups shrink,
#: so its "worst group" is the smallest one; overconfidence is its unbiased stand-in).
GAP_METRICS = ("sensitivity", "specificity", "accuracy", "balanced_accuracy", "ppv", "npv",
               "auroc", "overconfidence")
#: fairlearn's group-fairness differences, tested the same way.
PARITY_STATISTICS = ("demographic_parity_difference", "equalized_odds_difference")

# per-unit sum columns
_N, _CORRECT, _P, _TP, _NEG, _TN, _PP, _PN, _CONF = range(9)


@dataclass
class GapTest:
    """Settings of the family of gap tests (data in :func:`run_gap_tests`)."""

    n_permutations: int = 1000
    alpha: float = 0.05
    min_count: int = 10
    power: float = 0.8
    random_state: int = 0
    metrics: Sequence[str] = field(default_factory=lambda: list(GAP_METRICS + PARITY_STATISTICS))


def _unit_sums(y: np.ndarray, pred: np.ndarray, proba: np.ndarray, positive: int,
               unit: np.ndarray, m: int, classes: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Per-unit sums ``(m, 9 + 2K)`` and per-unit presence indicators ``(m, 5 + K)``."""
    pos, ppos, correct = y == positive, pred == positive, y == pred
    conf = proba.max(axis=1)
    cols = [np.ones(len(y)), correct, pos, pos & ppos, ~pos, ~pos & ~ppos, ppos, ~ppos, conf]
    for k in classes:
        cols += [y == k, (y == k) & correct]
    sums = np.column_stack([np.bincount(unit, weights=np.asarray(c, dtype=np.float64),
                                        minlength=m) for c in cols])
    has = np.column_stack([sums[:, _N] > 0, sums[:, _P] > 0, sums[:, _NEG] > 0,
                           sums[:, _PP] > 0, sums[:, _PN] > 0]
                          + [sums[:, 9 + 2 * i] > 0 for i in range(len(classes))])
    return sums, has.astype(np.float64)


_CHUNK_CELLS = 2_000_000  # one-hot cells per chunk of labellings (bounds memory)


def _onehot_chunks(labels: np.ndarray, n_groups: int):  # type: ignore[no-untyped-def]
    """Yield ``(rows slice, one-hot (r, m, G) float64)`` over chunks of labellings."""
    r, m = labels.shape
    step = max(1, _CHUNK_CELLS // max(m * n_groups, 1))
    groups = np.arange(n_groups, dtype=labels.dtype)
    for start in range(0, r, step):
        block = labels[start:start + step]
        yield slice(start, start + len(block)), (block[:, :, None] == groups).astype(np.float64)


def _group_sums(values: np.ndarray, labels: np.ndarray, n_groups: int) -> np.ndarray:
    """Sum unit rows ``values (m, k)`` by group for every labelling ``labels (R, m)``.

    Returns ``(R, n_groups, k)``; units labelled -1 are left out. One batched matrix
    product per chunk of labellings.
    """
    r = labels.shape[0]
    out = np.empty((r, n_groups, values.shape[1]))
    for rows, onehot in _onehot_chunks(labels, n_groups):
        out[rows] = np.matmul(onehot.transpose(0, 2, 1), values)
    return out


_PAIR_MATRIX_MAX_UNITS = 400


def _concordance_by_unit(score: np.ndarray, is_pos: np.ndarray, unit: np.ndarray,
                         m: int) -> np.ndarray:
    """``C[i, j]``: concordant (positive of unit i above negative of unit j) pairs, ties 1/2."""
    sp, sn = score[is_pos], score[~is_pos]
    k = (sp[:, None] > sn[None, :]).astype(np.float64)
    k += 0.5 * (sp[:, None] == sn[None, :])
    onehot_pos = np.zeros((sp.size, m))
    onehot_pos[np.arange(sp.size), unit[is_pos]] = 1.0
    onehot_neg = np.zeros((sn.size, m))
    onehot_neg[np.arange(sn.size), unit[~is_pos]] = 1.0
    return onehot_pos.T @ (k @ onehot_neg)


def _group_aurocs(pairs: np.ndarray | None, labels: np.ndarray, g: int, unit: np.ndarray,
                  score: np.ndarray, is_pos: np.ndarray, n_pairs: np.ndarray) -> np.ndarray:
    """AUROC of each group under each labelling ``labels (R, m)``: ``(R, G)``.

    With few units, a group's concordant pairs are ``1_g' C 1_g`` for the unit pair
    matrix ``C`` (one batched matrix product); with many, a weighted Mann-Whitney pass
    per group over the images.
    """
    if pairs is not None:
        onehot = (labels[:, :, None] == np.arange(g)[None, None, :]).astype(np.float64)
        numer = (onehot * np.matmul(pairs, onehot)).sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(n_pairs > 0, numer / np.where(n_pairs > 0, n_pairs, 1.0), np.nan)
    return _group_aurocs_by_cumsum(labels[:, unit], g, score, is_pos, n_pairs)


def _group_aurocs_by_cumsum(img_labels: np.ndarray, g: int, score: np.ndarray,
                            is_pos: np.ndarray, n_pairs: np.ndarray) -> np.ndarray:
    """Mann-Whitney AUROC per group from one global sort: ``(R, G)``.

    Walking the images from the lowest score up, a positive of group ``j`` beats every
    negative of group ``j`` already passed (ties count one half): a cumulative sum of the
    one-hot group labels of the negatives gives all groups and labellings at once.
    """
    order = np.argsort(score, kind="mergesort")
    s_sorted, pos_sorted = score[order], is_pos[order]
    lab = img_labels[:, order]
    _, first, counts = np.unique(s_sorted, return_index=True, return_counts=True)
    block = np.repeat(np.arange(first.size), counts)[pos_sorted]  # tie block of each positive
    neg_lab = np.where(pos_sorted[None, :], -1, lab)
    pos_lab = lab[:, pos_sorted]
    numer = np.zeros((lab.shape[0], g))
    for j in range(g):
        neg_j = (neg_lab == j).astype(np.int32)
        cum = np.cumsum(neg_j, axis=1, dtype=np.int32)
        if first.size == s_sorted.size:  # no ties: a positive beats the negatives before it
            credit_pos = cum[:, pos_sorted]
        else:
            tied = np.add.reduceat(neg_j, first, axis=1)  # negatives of group j per tie block
            below = cum[:, first] - neg_j[:, first]  # strictly below each block's first image
            credit_pos = (below + 0.5 * tied)[:, block]
        numer[:, j] = np.where(pos_lab == j, credit_pos, 0).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n_pairs > 0, numer / np.where(n_pairs > 0, n_pairs, 1.0), np.nan)


def _ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(b > 0, a / np.where(b > 0, b, 1.0), np.nan)


def _range(values: np.ndarray, ok: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Largest minus smallest of ``values (R, G)`` over groups where ``ok``; argmax, argmin."""
    valid = ok & ~np.isnan(values)
    hi = np.where(valid, values, -np.inf)
    lo = np.where(valid, values, np.inf)
    gap = hi.max(axis=1) - lo.min(axis=1)
    gap = np.where(valid.sum(axis=1) >= 2, gap, np.nan)
    return gap, hi.argmax(axis=1), lo.argmin(axis=1)


def run_gap_tests(settings: GapTest, *, y: np.ndarray, pred: np.ndarray, proba: np.ndarray,
                  positive: int, units: np.ndarray | None,
                  attributes: dict[str, np.ndarray], eligible: dict[str, list[str]],
                  concepts: dict[str, str] | None = None, group_se: Callable[
                      [str, str, str], float] | None = None,
                  progress: Callable[[str], None] | None = None) -> dict[tuple[str, str], Any]:
    """Permutation tests of the worst-vs-best gap for every attribute and metric.

    Parameters
    ----------
    settings : GapTest
    y, pred : numpy.ndarray
        ``(n,)`` true and predicted class index.
    proba : numpy.ndarray
        ``(n, C)`` class probabilities.
    positive : int
    units : numpy.ndarray or None
        ``(n,)`` resampling unit per image (patient id); None: each image is one.
    attributes : dict
        Attribute name -> ``(n,)`` group label per image.
    eligible : dict
        Attribute name -> groups that may be compared (not unknown, not too few
        overall, not hidden by small-cell protection).
    concepts : dict, optional
        Attribute name -> the variable it codes (codings of one variable share it);
        only used to report the family size.
    group_se : callable, optional
        ``(attribute, group, metric) -> standard error`` of the group's metric, for
        the minimum detectable difference.

    Returns
    -------
    dict
        ``(attribute, statistic)`` -> result entry (see ``docs/audit-schema.md``).
    """
    y = np.asarray(y, dtype=int)
    pred = np.asarray(pred, dtype=int)
    proba = np.asarray(proba, dtype=np.float64)
    n = len(y)
    if units is None:
        unit, m = np.arange(n), n
    else:
        _, unit = np.unique(np.asarray(units).astype(str), return_inverse=True)
        m = int(unit.max()) + 1 if n else 0
    classes = sorted(set(y.tolist()))
    sums, has = _unit_sums(y, pred, proba, positive, unit, m, classes)
    both = np.hstack([sums, has])
    pairs = (_concordance_by_unit(proba[:, positive], y == positive, unit, m)
             if "auroc" in settings.metrics and 0 < m <= _PAIR_MATRIX_MAX_UNITS else None)
    n_sum = sums.shape[1]
    rng = np.random.default_rng(settings.random_state)
    b = settings.n_permutations
    # row 0: the observed labelling; rows 1..B: unit u takes the label of unit perm[u]
    perms = np.vstack([np.arange(m)[None, :], rng.permuted(np.tile(np.arange(m), (b, 1)),
                                                            axis=1)]) if m else np.zeros((b + 1, 0), int)
    wanted = list(settings.metrics)
    mc = settings.min_count
    keys: list[tuple[str, str]] = []
    stats: list[np.ndarray] = []
    extra: dict[tuple[str, str], dict[str, Any]] = {}
    for attribute, labels_img in attributes.items():
        groups = list(eligible.get(attribute, []))
        if progress:
            progress(attribute)
        code = {g: i for i, g in enumerate(groups)}
        img_code = np.array([code.get(str(v), -1) for v in labels_img], dtype=int)
        # one label per unit: the most common among its images (patients rarely change group)
        unit_code = np.full(m, -1, dtype=int)
        if len(groups):
            counts = np.zeros((m, len(groups) + 1))
            np.add.at(counts, (unit, img_code + 1), 1)
            unit_code = counts.argmax(axis=1) - 1
        labels = unit_code[perms]  # (B+1, m)
        g = len(groups)
        if g < 2:
            continue
        gs = _group_sums(both, labels, g)  # (B+1, G, k)
        s, h = gs[..., :n_sum], gs[..., n_sum:]

        def judge(den: np.ndarray, den_units: np.ndarray) -> np.ndarray:
            return (den >= mc) & ((den_units >= mc) if units is not None else True)

        values: dict[str, tuple[np.ndarray, np.ndarray]] = {
            "accuracy": (_ratio(s[..., _CORRECT], s[..., _N]), judge(s[..., _N], h[..., 0])),
            "sensitivity": (_ratio(s[..., _TP], s[..., _P]), judge(s[..., _P], h[..., 1])),
            "specificity": (_ratio(s[..., _TN], s[..., _NEG]), judge(s[..., _NEG], h[..., 2])),
            "ppv": (_ratio(s[..., _TP], s[..., _PP]), judge(s[..., _PP], h[..., 3])),
            "npv": (_ratio(s[..., _TN], s[..., _PN]), judge(s[..., _PN], h[..., 4])),
            "overconfidence": (_ratio(s[..., _CONF] - s[..., _CORRECT], s[..., _N]),
                               judge(s[..., _N], h[..., 0])),
            "selection_rate": (_ratio(s[..., _PP], s[..., _N]), judge(s[..., _N], h[..., 0])),
        }
        if "balanced_accuracy" in wanted:
            k = len(classes)
            rec = np.stack([_ratio(s[..., 10 + 2 * i], s[..., 9 + 2 * i]) for i in range(k)], -1)
            ok = np.stack([judge(s[..., 9 + 2 * i], h[..., 5 + i]) for i in range(k)], -1)
            values["balanced_accuracy"] = (rec.mean(axis=-1), np.asarray(ok.all(axis=-1)))
        if "auroc" in wanted:
            auc = _group_aurocs(pairs, labels, g, unit, proba[:, positive], y == positive,
                                s[..., _P] * s[..., _NEG])
            ok = judge(np.minimum(s[..., _P], s[..., _NEG]), np.minimum(h[..., 1], h[..., 2]))
            values["auroc"] = (auc, ok)
        for metric in wanted:
            if metric in values and metric != "selection_rate":
                v, ok = values[metric]
                gap, hi, lo = _range(v, ok)
                keys.append((attribute, metric))
                stats.append(gap)
                worst, best = (hi, lo) if (metric in LOWER_IS_BETTER
                                           or metric == "overconfidence") else (lo, hi)
                extra[(attribute, metric)] = {
                    "groups": groups, "best": int(best[0]), "worst": int(worst[0]),
                    "values": v[0], "judgeable": ok[0]}
        if "demographic_parity_difference" in wanted:
            v, ok = values["selection_rate"]
            gap, hi, lo = _range(v, ok)
            keys.append((attribute, "demographic_parity_difference"))
            stats.append(gap)
            extra[keys[-1]] = {"groups": groups, "judgeable": ok[0], "parts": ["selection_rate"],
                               "highest": int(hi[0]), "lowest": int(lo[0]), "values": v[0]}
        if "equalized_odds_difference" in wanted:
            tpr, ok_t = values["sensitivity"]
            spec, ok_f = values["specificity"]
            gap_t, _, _ = _range(tpr, ok_t)
            gap_f, _, _ = _range(1.0 - spec, ok_f)
            gap = np.fmax(gap_t, gap_f)
            keys.append((attribute, "equalized_odds_difference"))
            stats.append(gap)
            extra[keys[-1]] = {"groups": groups, "judgeable": ok_t[0] & ok_f[0],
                               "parts": ["sensitivity", "specificity"],
                               "tpr_difference": float(gap_t[0]),
                               "fpr_difference": float(gap_f[0])}
    if not keys:
        return {}
    table = np.column_stack(stats)  # (B+1, H)
    result = westfall_young_stepdown(table[0], table[1:], alpha=settings.alpha)
    family_concepts = {(concepts or {}).get(a, a) for a, _ in keys}
    family_size = len({((concepts or {}).get(a, a), s) for a, s in keys
                       if not np.isnan(table[0, keys.index((a, s))])})
    out: dict[tuple[str, str], Any] = {}
    for j, key in enumerate(keys):
        attribute, metric = key
        info = extra[key]
        gap_obs = float(table[0, j])
        entry: dict[str, Any] = {
            "gap": gap_obs, "p_value": float(result.p_raw[j]),
            "p_adjusted": float(result.p_adjusted[j]), "real": bool(result.reject[j]),
            "critical_gap": float(result.critical[j]),
            "n_permutations": b, "family_size": family_size,
            "family_attributes": len(family_concepts),
            "judgeable_groups": [grp for grp, ok in zip(info["groups"], info["judgeable"])
                                 if ok],
            **{k: v for k, v in info.items() if k in ("tpr_difference", "fpr_difference")},
        }
        if np.isnan(gap_obs):
            out[key] = entry
            continue
        upper_bound = 2.0 if metric == "overconfidence" else 1.0
        crit = float(result.critical[j])
        entry["ci_simultaneous"] = [max(0.0, gap_obs - crit), min(upper_bound, gap_obs + crit)]
        if "highest" in info:  # parity: no better or worse group, only higher and lower
            entry["highest_group"] = info["groups"][info["highest"]]
            entry["lowest_group"] = info["groups"][info["lowest"]]
            entry["highest"] = float(info["values"][info["highest"]])
            entry["lowest"] = float(info["values"][info["lowest"]])
        if "best" in info:
            entry["best_group"] = info["groups"][info["best"]]
            entry["worst_group"] = info["groups"][info["worst"]]
            entry["best"] = float(info["values"][info["best"]])
            entry["worst"] = float(info["values"][info["worst"]])
        if group_se is not None and metric in GAP_METRICS:
            # power: the two largest judgeable groups (the best case for detection)
            judged = [grp for grp, ok in zip(info["groups"], info["judgeable"]) if ok]
            ses = sorted(group_se(attribute, grp, metric) for grp in judged)[:2]
            if len(ses) == 2:
                entry["minimum_detectable_gap"] = minimum_detectable_difference(
                    float(result.critical_first[j]), ses, power=settings.power)
        out[key] = entry
    return out
