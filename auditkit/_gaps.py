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
``bincount`` per column; AUROC uses one stable (radix) sort of the group labels per
permutation. Permutations are drawn and used a block at a time
(:data:`PERMUTATION_CHUNK_CELLS` permutation x image cells), so memory stays bounded
on a million images and time is linear in permutations x images; the blocks come from
the generator in the same order as one big matrix, so chunking changes no result.
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

__all__ = ["GAP_METRICS", "PARITY_STATISTICS", "PERMUTATION_CHUNK_CELLS", "GapTest", "run_gap_tests"]

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


def cannot_reach(n_permutations: int, alpha: float) -> bool:
    """Whether no permutation p-value could reach ``alpha``: its smallest possible value,
    ``1 / (n_permutations + 1)``, is above it (fewer than 19 permutations at 0.05)."""
    return 1.0 / (n_permutations + 1) > alpha


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
                  ranking: _Ranking | None, n_pairs: np.ndarray) -> np.ndarray:
    """AUROC of each group under each labelling ``labels (R, m)``: ``(R, G)``.

    With few units, a group's concordant pairs are ``1_g' C 1_g`` for the unit pair
    matrix ``C`` (one batched matrix product); with many, one stable sort of the group
    labels per labelling (:func:`_concordant_by_sort`).
    """
    if pairs is not None:
        onehot = (labels[:, :, None] == np.arange(g)[None, None, :]).astype(np.float64)
        numer = (onehot * np.matmul(pairs, onehot)).sum(axis=1)
    elif ranking is not None:
        img_labels = labels[:, unit]
        numer = _concordant_by_sort(img_labels, g, ranking.order_ties_won, ranking.is_pos)
        if ranking.order_ties_lost is not None:  # tied pairs count one half
            numer = 0.5 * (numer + _concordant_by_sort(img_labels, g, ranking.order_ties_lost,
                                                       ranking.is_pos))
    else:
        raise ValueError("_group_aurocs needs the unit pair matrix or the image ranking.")
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n_pairs > 0, numer / np.where(n_pairs > 0, n_pairs, 1.0), np.nan)


@dataclass
class _Ranking:
    """Image orders for the AUROC numerators (computed once, shared by all labellings).

    ``order_ties_won``: by score, a negative before a positive of equal score (tied
    pairs count as concordant); ``order_ties_lost``: the reverse tie-break, or None when
    no positive ties a negative (then both orders give the same count). The average of
    the two counts ties one half, as Mann-Whitney does.
    """

    order_ties_won: np.ndarray
    order_ties_lost: np.ndarray | None
    is_pos: np.ndarray

    @classmethod
    def of(cls, score: np.ndarray, is_pos: np.ndarray) -> _Ranking:
        won = np.lexsort((is_pos, score))
        s_sorted = score[won]
        same = s_sorted[1:] == s_sorted[:-1]
        mixed = bool(np.any(same & (is_pos[won][1:] != is_pos[won][:-1])))
        lost = np.lexsort((~is_pos, score)) if mixed else None
        return cls(won, lost, np.asarray(is_pos, dtype=bool))


def _concordant_by_sort(img_labels: np.ndarray, g: int, order: np.ndarray,
                        is_pos: np.ndarray) -> np.ndarray:
    """Concordant pairs per group and labelling in one total ``order`` of the images.

    ``img_labels (R, n)`` holds each image's group (-1: left out). A stable sort of a
    row's labels (a radix sort: the labels are small integers) keeps the score order
    inside each group and makes each group one contiguous run, so a positive's count of
    the negatives ranked below it in its own group is the running count of negatives at
    its position minus the count before its run begins; the sums over each run are one
    ``reduceat``. Linear in ``R x n`` whatever the number of groups. Returns ``(R, G)``
    float counts (exact integers).
    """
    r, n = img_labels.shape
    lab = img_labels[:, order].astype(np.int16) + 1  # 0: left out, 1..G: groups
    neg = ~is_pos[order]
    srt = np.argsort(lab, axis=1, kind="stable")
    neg_s = neg[srt]
    cum = np.cumsum(neg_s, axis=1, dtype=np.int64)  # negatives at or before each position
    cum[neg_s] = 0  # only positives collect
    flat = (lab + (np.arange(r, dtype=np.int64) * (g + 1))[:, None]).ravel()
    size = np.bincount(flat, minlength=r * (g + 1))
    n_neg = np.bincount(flat, weights=np.broadcast_to(neg, lab.shape).ravel(),
                        minlength=r * (g + 1))
    n_pos = size - n_neg
    # runs in the flattened sorted array: row k's group j starts at k*n + (sizes before j)
    row_sizes = size.reshape(r, g + 1)
    starts = (np.cumsum(row_sizes, axis=1) - row_sizes + (np.arange(r) * n)[:, None]).ravel()
    collected = np.add.reduceat(cum.ravel(), np.minimum(starts, r * n - 1)) if n else size * 0
    collected = np.where(size > 0, collected, 0).reshape(r, g + 1)
    neg_rows = n_neg.reshape(r, g + 1)
    before = np.cumsum(neg_rows, axis=1) - neg_rows  # negatives of earlier runs in the row
    return (collected - n_pos.reshape(r, g + 1) * before)[:, 1:].astype(np.float64)


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


#: Permutation x image cells held at once by :func:`run_gap_tests` (the memory bound:
#: a few dozen bytes per cell in the AUROC pass).
PERMUTATION_CHUNK_CELLS = 4_000_000


def _attribute_gaps(attribute: str, groups: list[str], labels: np.ndarray, *,
                    both: np.ndarray, n_sum: int, wanted: list[str], classes: list[int],
                    units_known: bool, min_count: int, pairs: np.ndarray | None,
                    ranking: _Ranking | None, unit: np.ndarray, observed: bool,
                    ) -> list[tuple[tuple[str, str], np.ndarray, dict[str, Any]]]:
    """Gap statistics of one attribute for a block of unit labellings ``labels (R, m)``.

    Returns ``(key, gaps (R,), info)`` per statistic; ``info`` (the groups' values,
    best and worst) is filled only when ``observed`` (the block is the observed row).
    """
    g = len(groups)
    gs = _group_sums(both, labels, g)  # (R, G, k)
    s, h = gs[..., :n_sum], gs[..., n_sum:]
    mc = min_count

    def judge(den: np.ndarray, den_units: np.ndarray) -> np.ndarray:
        return (den >= mc) & ((den_units >= mc) if units_known else True)

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
        auc = _group_aurocs(pairs, labels, g, unit, ranking, s[..., _P] * s[..., _NEG])
        ok = judge(np.minimum(s[..., _P], s[..., _NEG]), np.minimum(h[..., 1], h[..., 2]))
        values["auroc"] = (auc, ok)
    out: list[tuple[tuple[str, str], np.ndarray, dict[str, Any]]] = []
    for metric in wanted:
        if metric in values and metric != "selection_rate":
            v, ok = values[metric]
            gap, hi, lo = _range(v, ok)
            worst, best = (hi, lo) if (metric in LOWER_IS_BETTER
                                       or metric == "overconfidence") else (lo, hi)
            out.append(((attribute, metric), gap, {
                "groups": groups, "best": int(best[0]), "worst": int(worst[0]),
                "values": v[0], "judgeable": ok[0]} if observed else {}))
    if "demographic_parity_difference" in wanted:
        v, ok = values["selection_rate"]
        gap, hi, lo = _range(v, ok)
        out.append(((attribute, "demographic_parity_difference"), gap, {
            "groups": groups, "judgeable": ok[0], "parts": ["selection_rate"],
            "highest": int(hi[0]), "lowest": int(lo[0]), "values": v[0]} if observed else {}))
    if "equalized_odds_difference" in wanted:
        tpr, ok_t = values["sensitivity"]
        spec, ok_f = values["specificity"]
        gap_t, _, _ = _range(tpr, ok_t)
        gap_f, _, _ = _range(1.0 - spec, ok_f)
        out.append(((attribute, "equalized_odds_difference"), np.fmax(gap_t, gap_f), {
            "groups": groups, "judgeable": ok_t[0] & ok_f[0],
            "parts": ["sensitivity", "specificity"],
            "tpr_difference": float(gap_t[0]), "fpr_difference": float(gap_f[0])}
            if observed else {}))
    return out


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
    wanted = list(settings.metrics)
    pairs = (_concordance_by_unit(proba[:, positive], y == positive, unit, m)
             if "auroc" in wanted and 0 < m <= _PAIR_MATRIX_MAX_UNITS else None)
    ranking = (_Ranking.of(proba[:, positive], y == positive)
               if "auroc" in wanted and pairs is None else None)
    b = settings.n_permutations
    prepared: list[tuple[str, list[str], np.ndarray]] = []
    for attribute, labels_img in attributes.items():
        groups = list(eligible.get(attribute, []))
        if progress:
            progress(attribute)
        code = {g: i for i, g in enumerate(groups)}
        img_code = np.array([code.get(str(v), -1) for v in labels_img], dtype=int)
        # one label per unit: the most common among its images (patients rarely change group)
        if len(groups) >= 2:
            counts = np.zeros((m, len(groups) + 1))
            np.add.at(counts, (unit, img_code + 1), 1)
            prepared.append((attribute, groups, counts.argmax(axis=1) - 1))
    keys: list[tuple[str, str]] = []
    blocks: dict[tuple[str, str], list[np.ndarray]] = {}
    extra: dict[tuple[str, str], dict[str, Any]] = {}
    rng = np.random.default_rng(settings.random_state)
    # row 0: the observed labelling; then blocks of permutations, unit u taking the
    # label of unit perm[u]; the same rows as one (B, m) matrix, a block at a time
    step = max(1, PERMUTATION_CHUNK_CELLS // max(n, m, 1))
    starts = [(0, 0)] + [(1 + k, min(step, b - k)) for k in range(0, b, step)]
    for start, size in starts:
        perms = (np.arange(m)[None, :] if start == 0 else
                 rng.permuted(np.tile(np.arange(m), (size, 1)), axis=1) if m else
                 np.zeros((size, 0), dtype=int))
        for attribute, groups, unit_code in prepared:
            found = _attribute_gaps(
                attribute, groups, unit_code[perms], both=both, n_sum=sums.shape[1],
                wanted=wanted, classes=classes, units_known=units is not None,
                min_count=settings.min_count, pairs=pairs, ranking=ranking, unit=unit,
                observed=start == 0)
            for key, gap, info in found:
                if start == 0:
                    keys.append(key)
                    extra[key] = info
                blocks.setdefault(key, []).append(gap)
    stats = [np.concatenate(blocks[key]) for key in keys]
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
