"""The comparison itself: two versions' answers on the same images -> differences per group.

A pure function of arrays (:func:`compare_predictions`); reading audits, models and
datasets lives in :mod:`auditkit.compare._inputs`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from .. import wording
from .._metrics import LOWER_IS_BETTER, percentile_interval
from ..data import UNKNOWN
from ..exceptions import ConfigError
from ..stats import bootstrap_stepdown, paired_difference_interval, proportion_interval
from ._auroc import AurocReplicates
from ._paired import (
    PAIRED_METRICS,
    build_columns,
    metric_from_sums,
    paired_bootstrap,
)

__all__ = ["COMPARED_METRICS", "DEFAULT_MARGIN", "DEFAULT_NI_METRICS", "OVERALL",
           "compare_predictions"]

#: Every metric compared: the ratios of sums plus AUROC (a rank statistic resampled with
#: the same patient draw, :class:`auditkit.compare._auroc.AurocReplicates`).
COMPARED_METRICS = (*PAIRED_METRICS, "auroc")

#: Default non-inferiority margin δ: B may be at most 5 percentage points worse than A.
DEFAULT_MARGIN = 0.05
#: Metrics judged for non-inferiority by default.
DEFAULT_NI_METRICS = ("accuracy", "sensitivity")
#: Attribute and group name of the row over all shared images.
OVERALL = ("overall", "all images")
GAP_METRICS = ("accuracy", "balanced_accuracy", "sensitivity", "specificity", "ppv", "npv", "ece",
               "auroc")


def _mcnemar(table: list[list[int]]) -> dict[str, Any]:
    """McNemar's exact test (binomial on the discordant pairs), from statsmodels."""
    from statsmodels.stats.contingency_tables import mcnemar

    discordant = table[0][1] + table[1][0]
    if discordant == 0:
        return {"statistic": 0.0, "p_value": 1.0, "method": "exact binomial on discordant pairs"}
    res = mcnemar(np.asarray(table), exact=True)
    return {"statistic": float(res.statistic), "p_value": float(res.pvalue),
            "method": "exact binomial on discordant pairs"}


#: Proportions whose per-version interval is Wilson's at the effective n (as on the
#: Fairness page); the percentile bootstrap gave "100% (100% to 100%)" on a small group.
PROPORTION_METRICS = ("accuracy", "sensitivity", "specificity", "ppv", "npv")
#: Proportions over the same images for both versions (a paired 2 × 2 table), whose
#: difference also gets Newcombe's paired score interval (see :func:`_widen`).
PAIRED_PROPORTIONS = ("accuracy", "sensitivity", "specificity")


def _successes(metric: str, y: np.ndarray, pred: np.ndarray, positive: int,
               mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(images of ``metric``'s denominator within ``mask``, 0/1 success per such image)."""
    if metric == "accuracy":
        return mask, (pred == y)[mask]
    pos, called = y == positive, pred == positive
    den, hit = {"sensitivity": (pos, called), "specificity": (~pos, ~called),
                "ppv": (called, pos), "npv": (~called, ~pos)}[metric]
    den = mask & den
    return den, hit[den]


def _widen(ci: list[Any], other: list[float | None]) -> list[Any]:
    """The union of two intervals (the more cautious ends); ``ci`` when ``other`` is empty.

    Used for paired proportions: the paired bootstrap is exact in the middle of the
    range but collapses to [0, 0] when no image changed between versions and
    under-covers when few did (a false "not worse" for 24 of 100 simulated 12-image
    groups that were 10 points worse, ``tests/test_compare.py``); Newcombe's score
    interval keeps its width there. Taking the wider end of the two keeps each one's
    coverage.
    """
    if other[0] is None or ci[0] is None or not np.isfinite(ci[0]):
        return ci
    return [min(float(ci[0]), float(other[0])), max(float(ci[1]), float(other[1] or 0.0))]


def _level_of(family: Any, fallback_tail: float) -> float:
    """The two-sided level whose normal quantile is the family's first-step critical value.

    Max-T's single-step critical value ``c`` (``half_width_first / standard_error``, the
    same for every member) already allows for the correlation between the members, so
    the score interval of a paired proportion is taken at the level ``2 Φ(c) − 1`` (its
    lower end is then a one-sided bound at ``1 − Φ(c)``). When no member has a standard
    error (no resample moved any of them), Bonferroni's tail ``fallback_tail`` is used.
    """
    from scipy.stats import norm

    se = np.asarray(family.standard_error, dtype=float)
    ok = np.isfinite(se) & (se > 0) & np.isfinite(family.half_width_first)
    if ok.any():
        c = float(np.max(np.asarray(family.half_width_first)[ok] / se[ok]))
        tail = float(norm.sf(c))
    else:
        tail = fallback_tail
    return float(min(max(1.0 - 2.0 * tail, 0.5), 1.0 - 1e-12))


def _groupings(groups: pd.DataFrame, intersections: Sequence[Sequence[str]],
               group_order: dict[str, list[str]] | None) -> list[tuple[str, list[str], np.ndarray]]:
    """``(attribute, ordered group names, group code per image)`` for overall + each grouping."""
    n = len(groups)
    columns = {c: groups[c].astype(str).to_numpy() for c in groups.columns}
    for pair in intersections:
        a, b = pair
        for name in (a, b):
            if name not in columns:
                raise ConfigError(
                    f"Intersection {a}×{b}: expected attributes among {list(groups.columns)}; "
                    f"got {name!r} instead.")
        columns[f"{a}×{b}"] = np.char.add(np.char.add(columns[a].astype(str), " × "),
                                          columns[b].astype(str))
    out = [(OVERALL[0], [OVERALL[1]], np.zeros(n, dtype=np.int64))]
    for attribute, values in columns.items():
        order = list((group_order or {}).get(attribute, []))
        present = list(dict.fromkeys(values.tolist()))
        names = [g for g in order if g in present] + sorted(g for g in present if g not in order)
        lookup = {g: i for i, g in enumerate(names)}
        out.append((attribute, names, np.asarray([lookup[v] for v in values], dtype=np.int64)))
    return out


def compare_predictions(
    *,
    y: np.ndarray,
    pred_a: np.ndarray,
    pred_b: np.ndarray,
    proba_a: np.ndarray,
    proba_b: np.ndarray,
    positive: int,
    class_names: Sequence[str],
    groups: pd.DataFrame,
    patients: np.ndarray | None = None,
    intersections: Sequence[Sequence[str]] = (),
    group_order: dict[str, list[str]] | None = None,
    metrics: Sequence[str] = COMPARED_METRICS,
    n_boot: int = 1000,
    confidence: float = 0.95,
    alpha: float = 0.05,
    margin: float = DEFAULT_MARGIN,
    ni_metrics: Sequence[str] = DEFAULT_NI_METRICS,
    min_group_size: int = 10,
    small_cell_k: int = 10,
    labels: tuple[str, str] = ("A", "B"),
    random_state: int = 0,
    chunk: int | None = None,
    progress: Callable[[int, int, str], None] | None = None,
    auroc_engine: str = "auto",
) -> dict[str, Any]:
    """Paired comparison of version B against version A on the same images.

    Parameters
    ----------
    y, pred_a, pred_b : ndarray of int, shape (n,)
        True class index and each version's predicted class index (same image order).
    proba_a, proba_b : ndarray, shape (n, n_classes)
        Each version's class probabilities in [0, 1].
    positive : int
        Index of the clinically positive class; binary metrics are one-vs-rest for it.
    class_names : sequence of str
    groups : DataFrame
        One column per patient attribute, holding each image's group (n rows).
    patients : ndarray, optional
        Patient id per image: resamples draw patients once for both versions.
    intersections : list of (str, str)
        Attribute pairs compared jointly.
    group_order : dict, optional
        Natural order of each attribute's groups.
    metrics : sequence of str
        Among :data:`~auditkit.compare.COMPARED_METRICS` (default all). AUROC scores with
        the positive-class probability and costs ``chunk × n`` memory per resample chunk.
    n_boot : int
        Paired bootstrap resamples.
    confidence : float
        Level of the per-comparison intervals.
    alpha : float
        Family-wise error rate of the Westfall–Young step-down
        (:func:`auditkit.stats.bootstrap_stepdown`) over every (group, metric)
        difference; ``ci_adjusted`` excludes 0 exactly when the change is called.
    margin : float
        Non-inferiority margin δ (a proportion: 0.05 is 5 percentage points).
    ni_metrics : sequence of str
        Metrics judged for non-inferiority.
    min_group_size : int
        Groups with fewer images (or patients, where known) are "too few to judge".
    small_cell_k : int
        Groups the small-cell policy hides are left out of gaps and sentences.
    labels : (str, str)
        Display names of the two versions, e.g. ``("v1", "v2")``.
    random_state : int
    chunk : int, optional
        Resamples drawn at once (memory about ``chunk × images × 8`` bytes per array).
        Default: 50, fewer above 200,000 images so that each array stays near 80 MB (on
        1,000,000 images, 10 at a time). The numbers do not depend on the chunk: the same
        seeded generator is drawn in the same order (``test_resamples_do_not_depend_on_the_chunk_size``).
    progress : callable, optional
        ``progress(done, total, message)``.
    auroc_engine : {"auto", "numba", "numpy"}
        How resampled AUROC is computed (:class:`~auditkit.compare._auroc.AurocReplicates`):
        the compiled one-pass kernel (``auto`` when numba is importable) or the
        vectorised numpy plan. Both give the same numbers; numpy is several times slower.

    Returns
    -------
    dict
        The ``results`` section of ``comparison.json`` (see ``docs/compare.md``).
    """
    metrics = list(metrics)
    unknown = sorted(set(metrics) - set(COMPARED_METRICS))
    if unknown:
        raise ConfigError(f"Unknown metrics {unknown}; expected among {list(COMPARED_METRICS)}.")
    bad_ni = sorted(set(ni_metrics) - set(metrics))
    if bad_ni:
        raise ConfigError(f"Non-inferiority metrics {bad_ni} must be among the compared metrics "
                          f"{metrics}.")
    if not 0 <= margin < 1:
        raise ConfigError(f"margin must be in [0, 1) (a proportion); got {margin} instead.")
    if auroc_engine not in ("auto", "numba", "numpy"):
        raise ConfigError(f"auroc_engine must be 'auto', 'numba' or 'numpy'; got "
                          f"{auroc_engine!r} instead.")
    if n_boot < 20:
        raise ConfigError(f"n_boot must be at least 20 for intervals; got {n_boot} instead.")
    y = np.asarray(y, dtype=int)
    n = len(y)
    if n == 0:
        raise ConfigError("No shared images to compare: expected at least one; found 0.")
    for name, arr in (("pred_a", pred_a), ("pred_b", pred_b), ("proba_a", proba_a),
                      ("proba_b", proba_b), ("groups", groups)):
        if len(arr) != n:
            raise ConfigError(f"{name} must have one row per image ({n}); got {len(arr)} instead.")
    cols = build_columns(y=y, pred_a=np.asarray(pred_a, dtype=int),
                         pred_b=np.asarray(pred_b, dtype=int), proba_a=np.asarray(proba_a),
                         proba_b=np.asarray(proba_b), positive=positive,
                         n_classes=len(class_names))
    if chunk is None:
        chunk = _default_chunk(n)
    if chunk < 1:
        raise ConfigError(f"chunk must be >= 1; got {chunk} instead.")
    groupings = _groupings(groups, intersections, group_order)
    auroc_plan: list[AurocReplicates] = []  # built on the first chunk (needs the patients)
    auroc_reps = np.full((n_boot, 2, 0), np.nan)
    on_chunk = None
    if "auroc" in metrics:
        auroc_scores = [np.asarray(proba_a, dtype=np.float64)[:, positive],
                        np.asarray(proba_b, dtype=np.float64)[:, positive]]

        def on_chunk(weights: np.ndarray, start: int, image_patient: np.ndarray) -> None:
            nonlocal auroc_reps
            if not auroc_plan:
                auroc_plan.append(AurocReplicates(auroc_scores, y == positive,
                                                  [g[2] for g in groupings],
                                                  image_patient=image_patient,
                                                  engine=auroc_engine))
                auroc_reps = np.full((n_boot, 2, auroc_plan[0].n_slots), np.nan)
            auroc_reps[start:start + len(weights)] = auroc_plan[0].replicates(weights)

    sums = paired_bootstrap(cols.values, [g[2] for g in groupings], patients=patients,
                            n_boot=n_boot, rng=np.random.default_rng(random_state), chunk=chunk,
                            progress=progress, on_chunk=on_chunk)
    pid = None if patients is None else np.asarray(patients).astype(str)

    pred_a_int, pred_b_int = np.asarray(pred_a, dtype=int), np.asarray(pred_b, dtype=int)
    #: (row, metric) → each version's 0/1 outcome on the metric's denominator, patients
    paired: dict[tuple[int, str], tuple[np.ndarray, np.ndarray, np.ndarray | None]] = {}
    rows: list[dict[str, Any]] = []
    diffs: list[np.ndarray] = []  # per row: point (M,)
    diff_reps: list[np.ndarray] = []  # per row: (B, M)
    version_reps: list[dict[str, tuple[np.ndarray, np.ndarray]]] = []
    for gi, ((attribute, names, codes), gs) in enumerate(zip(groupings, sums)):
        for g, group in enumerate(names):
            mask = codes == g
            point, reps = gs.point[g], gs.replicates[:, g]
            n_g = int(point[cols.index["n"]])  # type: ignore[index]
            n_pat = int(len(np.unique(pid[mask]))) if pid is not None else None
            too_few = n_g < min_group_size or (n_pat is not None and n_pat < min_group_size)
            both_right = int(round(point[cols.index["both_right"]]))  # type: ignore[index]
            a_right = int(round(point[cols.index["a:correct"]]))  # type: ignore[index]
            b_right = int(round(point[cols.index["b:correct"]]))  # type: ignore[index]
            table = [[both_right, a_right - both_right],
                     [b_right - both_right, n_g - a_right - b_right + both_right]]
            row: dict[str, Any] = {
                "attribute": attribute, "group": group, "n": n_g, "n_patients": n_pat,
                "n_positive": int(round(point[cols.index["pos"]])),  # type: ignore[index]
                "too_few": bool(too_few),
                "is_unknown": UNKNOWN in group.split(" × "),
                "intersection": "×" in attribute,
                "flips": {"both_right": table[0][0], "right_to_wrong": table[0][1],
                          "wrong_to_right": table[1][0], "both_wrong": table[1][1]},
                "mcnemar": _mcnemar(table),
                "metrics": {},
            }
            point_d: list[float] = []
            reps_d: list[np.ndarray] = []
            vreps: dict[str, tuple[np.ndarray, np.ndarray]] = {}
            for metric in metrics:
                if metric == "auroc":
                    slot = auroc_plan[0].slices[gi].start + g
                    va, vb = (float(x) for x in auroc_plan[0].point[:, slot])
                    ra, rb = auroc_reps[:, 0, slot], auroc_reps[:, 1, slot]
                else:
                    va = float(metric_from_sums(point, cols.index, "a", metric))
                    vb = float(metric_from_sums(point, cols.index, "b", metric))
                    ra = metric_from_sums(reps, cols.index, "a", metric)
                    rb = metric_from_sums(reps, cols.index, "b", metric)
                vreps[metric] = (ra, rb)
                row["metrics"][metric] = {
                    "a": va, "a_ci": percentile_interval(ra, confidence),
                    "b": vb, "b_ci": percentile_interval(rb, confidence),
                    "difference": vb - va,
                    "ci": percentile_interval(rb - ra, confidence),
                }
                if metric in PROPORTION_METRICS:
                    entry = row["metrics"][metric]
                    hits = {}
                    for version, pred in (("a", pred_a_int), ("b", pred_b_int)):
                        den, hits[version] = _successes(metric, y, pred, positive, mask)
                        entry[f"{version}_ci"] = proportion_interval(
                            hits[version].astype(float), None if pid is None else pid[den],
                            level=confidence)[1]
                    if metric in PAIRED_PROPORTIONS:  # one denominator for both versions
                        paired[(len(rows), metric)] = (hits["a"], hits["b"],
                                                       None if pid is None else pid[den])
                        entry["ci"] = _widen(entry["ci"], paired_difference_interval(
                            *paired[(len(rows), metric)], level=confidence))
                point_d.append(vb - va)
                reps_d.append(rb - ra)
            rows.append(row)
            diffs.append(np.asarray(point_d))
            diff_reps.append(np.column_stack(reps_d))
            version_reps.append(vreps)

    # which groups the small-cell policy will hide (they never enter gaps or sentences)
    if small_cell_k > 0:
        from ..suppression import suppress_group_rows

        shown = suppress_group_rows([{k: r[k] for k in ("attribute", "group", "n", "n_patients")}
                                     for r in rows], k=small_cell_k, count_patients=True)
        for r, s in zip(rows, shown):
            r["hidden_by_small_cell_rule"] = bool(s.get("suppressed"))
    else:
        for r in rows:
            r["hidden_by_small_cell_rule"] = False

    # one family: every difference of a judgeable group (Westfall-Young max-T step-down over
    # the studentized paired bootstrap, auditkit.stats.bootstrap_stepdown)
    in_family = np.array([not r["too_few"] and not r["hidden_by_small_cell_rule"] for r in rows])
    est = np.concatenate([d if ok else np.full(len(metrics), np.nan)
                          for d, ok in zip(diffs, in_family)])
    reps_all = np.concatenate(diff_reps, axis=1)
    family = bootstrap_stepdown(est, reps_all, alpha=alpha)
    family_size = family.family_size
    adjusted_level = _level_of(family, alpha / 2.0 / max(family_size, 1))
    for i, r in enumerate(rows):
        for j, metric in enumerate(metrics):
            flat = i * len(metrics) + j
            entry = r["metrics"][metric]
            if np.isfinite(family.p_adjusted[flat]) and np.isfinite(family.half_width[flat]):
                half = float(family.half_width[flat])
                entry["ci_adjusted"] = [entry["difference"] - half, entry["difference"] + half]
                entry["p_adjusted"] = float(family.p_adjusted[flat])
                better = entry["difference"] < 0 if metric in LOWER_IS_BETTER else (
                    entry["difference"] > 0)
                entry["change"] = (("better" if better else "worse")
                                   if family.reject[flat] else "cannot tell")
                if (i, metric) in paired:  # the score interval at the family's critical value
                    entry["ci_adjusted"] = _widen(entry["ci_adjusted"], paired_difference_interval(
                        *paired[(i, metric)], level=adjusted_level))
                    lo, hi = entry["ci_adjusted"]
                    if entry["change"] != "cannot tell" and lo <= 0.0 <= hi:
                        entry["change"] = "cannot tell"
                        entry["change_reason"] = (
                            "too few images changed between the versions: the paired score "
                            "interval still includes no change")
            else:
                entry["ci_adjusted"] = [None, None]
                entry["p_adjusted"] = None
                entry["change"] = "not assessed"

    # Holm over the McNemar p-values of the judgeable groups (statsmodels)
    from statsmodels.stats.multitest import multipletests

    judge_idx = [i for i, ok in enumerate(in_family) if ok]
    if judge_idx:
        holm = multipletests([rows[i]["mcnemar"]["p_value"] for i in judge_idx], alpha=alpha,
                             method="holm")[1]
        for i, p in zip(judge_idx, holm):
            rows[i]["mcnemar"]["p_holm"] = float(p)
    for r in rows:
        r["mcnemar"].setdefault("p_holm", None)

    ni_bounds = _ni_bounds(rows, diffs, diff_reps, in_family, metrics=metrics,
                           ni_metrics=list(ni_metrics), alpha=alpha, paired=paired)
    noninf = _noninferiority(rows, ni_metrics=list(ni_metrics), margin=margin,
                             min_group_size=min_group_size, labels=labels, bounds=ni_bounds)
    noninf["alpha"] = alpha
    gaps = _gap_changes(rows, version_reps, metrics=metrics, confidence=confidence)
    result: dict[str, Any] = {
        "status": "assessed",
        "n": n,
        "n_patients": int(len(np.unique(pid))) if pid is not None else None,
        "resampling_unit": "patient" if pid is not None else "image",
        "positive_class": class_names[positive],
        "class_names": list(class_names),
        "metrics": metrics,
        "n_boot": n_boot,
        "confidence": confidence,
        "groups": rows,
        "gaps": gaps,
        "noninferiority": noninf,
        "multiplicity": {
            "method": ("Westfall & Young (1993) max-T step-down over the studentized paired "
                       "bootstrap (auditkit.stats.bootstrap_stepdown)"),
            "alpha": alpha,
            "family_size": family_size,
            "mcnemar": "Holm over the judgeable groups (statsmodels multipletests)",
        },
    }
    result["summary"] = summary_sentences(result, labels=labels)
    return result


def _ni_bounds(rows: list[dict[str, Any]], diffs: list[np.ndarray], diff_reps: list[np.ndarray],
               in_family: np.ndarray, *, metrics: list[str], ni_metrics: list[str],
               alpha: float,
               paired: dict[tuple[int, str], tuple[np.ndarray, np.ndarray, np.ndarray | None]]
               | None = None) -> dict[tuple[int, str], tuple[float, float]]:
    """Simultaneous one-sided bounds on B's improvement over A, over the non-inferiority family.

    The family is every (judgeable group, non-inferiority metric). Improvement is
    B − A (A − B for lower-is-better metrics). :func:`auditkit.stats.bootstrap_stepdown`
    with ``alternative="greater"`` gives each member's first-step half-width ``h_j``
    (from the joint distribution of the studentized, centred replicates): ``d_j − h_j``
    are lower bounds holding jointly with probability ``1 − alpha``; ``d_j + h_j`` bound
    from above.
    """
    members: list[tuple[int, str]] = []
    point: list[float] = []
    reps: list[np.ndarray] = []
    for i, ok in enumerate(in_family):
        if not ok:
            continue
        for metric in ni_metrics:
            j = metrics.index(metric)
            sign = -1.0 if metric in LOWER_IS_BETTER else 1.0
            members.append((i, metric))
            point.append(sign * diffs[i][j])
            reps.append(sign * diff_reps[i][:, j])
    if not members:
        return {}
    res = bootstrap_stepdown(np.asarray(point), np.column_stack(reps), alpha=alpha,
                             alternative="greater")
    bounds = {key: (d - float(h), d + float(h))
              for key, d, h in zip(members, point, res.half_width_first) if np.isfinite(h)}
    # paired proportions: also Newcombe's one-sided bound at the family's critical value,
    # the more cautious of the two kept (see _widen: the bootstrap alone called 12-image
    # groups that were 10 points worse "not worse" 24 times in 100)
    level = _level_of(res, alpha / len(members))
    for key in bounds:
        if paired and key in paired:
            lo, hi = _widen(list(bounds[key]), paired_difference_interval(*paired[key],
                                                                          level=level))
            bounds[key] = (float(lo), float(hi))
    return bounds


def _group_label(row: dict[str, Any]) -> str:
    if row["attribute"] == OVERALL[0]:
        return OVERALL[1]
    return f"{row['attribute'].replace('_', ' ')} {row['group']}"


def _noninferiority(rows: list[dict[str, Any]], *, ni_metrics: list[str], margin: float,
                    min_group_size: int, labels: tuple[str, str],
                    bounds: dict[tuple[int, str], tuple[float, float]]) -> dict[str, Any]:
    """Per group and metric: is B no worse than A by more than δ? (simultaneous bounds)."""
    per_metric: dict[str, Any] = {}
    for metric in ni_metrics:
        judged: dict[str, int] = {"meets": 0, "concern": 0, "cannot tell": 0, "not assessed": 0}
        too_few_groups: list[str] = []
        undecided: list[str] = []
        concern: list[str] = []
        for i, r in enumerate(rows):
            e = r["metrics"][metric]
            where = _group_label(r)
            lo = hi = None
            if r["hidden_by_small_cell_rule"]:
                verdict, reason = "not assessed", "withheld by small-cell protection"
            elif e["difference"] is None or not np.isfinite(e["difference"]):
                verdict, reason = "not assessed", f"{wording.metric_name(metric)} is undefined here"
            elif r["too_few"] or (i, metric) not in bounds:
                verdict = "cannot tell"
                reason = wording.too_few("images" if r["n_patients"] is None else "patients",
                                         r["n"] if r["n_patients"] is None else r["n_patients"],
                                         min_group_size) if r["too_few"] else "no interval"
            else:
                lo, hi = bounds[(i, metric)]
                if lo > -margin:
                    verdict, reason = "meets", "the lower bound is above −δ"
                elif hi < -margin:
                    verdict, reason = "concern", "the upper bound is below −δ"
                else:
                    verdict, reason = "cannot tell", "the interval straddles −δ"
            e["noninferiority"] = {"verdict": verdict, "reason": reason,
                                   "improvement_bounds": [lo, hi]}
            judged[verdict] += 1
            if verdict == "concern":
                concern.append(where)
            elif verdict == "cannot tell" and lo is not None:
                undecided.append(where)
            elif verdict != "meets":
                too_few_groups.append(where)
        if judged["concern"]:
            overall = "concern"
        elif judged["meets"] and not undecided:
            overall = "meets"
        elif judged["meets"] or undecided:
            overall = "cannot tell"
        else:
            overall = "not assessed"
        per_metric[metric] = {
            "verdict": overall, "counts": judged, "groups_concern": concern,
            "groups_undecided": undecided, "groups_cannot_judge": too_few_groups,
            "sentence": wording.noninferiority_sentence(
                metric=metric, verdict=overall, margin=margin, labels=labels,
                cannot_judge=too_few_groups, concern=concern, undecided=undecided),
        }
    return {"margin": margin, "metrics": ni_metrics,
            "interval": ("one-sided simultaneous (step-down, first step) bounds on B's "
                         "improvement over every "
                         "judgeable group and non-inferiority metric"),
            "by_metric": per_metric}


def _gap_changes(rows: list[dict[str, Any]], version_reps: list[dict[str, Any]], *,
                 metrics: list[str], confidence: float) -> list[dict[str, Any]]:
    """Per attribute and metric: worst-vs-best gap of A and of B, and B's gap − A's gap."""
    out: list[dict[str, Any]] = []
    by_attr: dict[str, list[int]] = {}
    for i, r in enumerate(rows):
        if r["attribute"] != OVERALL[0]:
            by_attr.setdefault(r["attribute"], []).append(i)
    for attribute, idx in by_attr.items():
        ok = [i for i in idx if not (rows[i]["too_few"] or rows[i]["is_unknown"]
                                     or rows[i]["hidden_by_small_cell_rule"])]
        excluded = [rows[i]["group"] for i in idx if i not in ok]
        for metric in (m for m in GAP_METRICS if m in metrics):
            valid = [i for i in ok if np.isfinite(rows[i]["metrics"][metric]["a"])
                     and np.isfinite(rows[i]["metrics"][metric]["b"])]
            if len(valid) < 2:
                out.append({"attribute": attribute, "metric": metric, "status": "not_assessed",
                            "reason": "fewer than two groups large enough to judge",
                            "excluded_groups": excluded})
                continue
            lower_better = metric in LOWER_IS_BETTER
            entry: dict[str, Any] = {"attribute": attribute, "metric": metric,
                                     "status": "assessed", "excluded_groups": excluded}
            gap_reps = []
            for k, v in enumerate(("a", "b")):
                vals = np.array([rows[i]["metrics"][metric][v] for i in valid])
                # ties: best is the first of the top values, worst the last of the bottom
                rev = len(vals) - 1
                best = valid[int(np.argmin(vals) if lower_better else np.argmax(vals))]
                worst = valid[rev - int(np.argmax(vals[::-1]) if lower_better
                                        else np.argmin(vals[::-1]))]
                reps = np.column_stack([version_reps[i][metric][k] for i in valid])
                with warnings.catch_warnings():  # a resample with no defined value stays nan
                    warnings.simplefilter("ignore", RuntimeWarning)
                    gap_reps.append(np.nanmax(reps, axis=1) - np.nanmin(reps, axis=1))
                entry[v] = {"gap": float(vals.max() - vals.min()),
                            "best_group": rows[best]["group"], "worst_group": rows[worst]["group"]}
            change = entry["b"]["gap"] - entry["a"]["gap"]
            ci = percentile_interval(gap_reps[1] - gap_reps[0], confidence)
            entry["change"] = change
            entry["ci"] = ci
            if ci[0] is not None and ci[1] is not None and ci[1] < 0:
                entry["verdict"] = "narrowed"
            elif ci[0] is not None and ci[0] > 0:
                entry["verdict"] = "widened"
            else:
                entry["verdict"] = "cannot tell"
            out.append(entry)
    return out


def summary_sentences(result: dict[str, Any], *, labels: tuple[str, str]) -> list[str]:
    """Plain-language findings, most important first (from :mod:`auditkit.wording`)."""
    rows = result["groups"]
    overall = rows[0]
    n_comp = result["multiplicity"]["family_size"]
    out = [wording.comparison_overall_sentence(overall, metric="accuracy", labels=labels,
                                               n_comparisons=n_comp)]
    positive = result["positive_class"]
    if "sensitivity" in result["metrics"]:
        candidates = [r for r in rows if r["attribute"] != OVERALL[0] and not r["too_few"]
                      and not r["hidden_by_small_cell_rule"] and not r["is_unknown"]
                      and r["metrics"]["sensitivity"]["p_adjusted"] is not None]
        if candidates:
            big = min(candidates, key=lambda r: (r["metrics"]["sensitivity"]["p_adjusted"],
                                                 -abs(r["metrics"]["sensitivity"]["difference"])))
            out.append(wording.comparison_group_sentence(big, metric="sensitivity",
                                                         labels=labels, positive=positive,
                                                         n_comparisons=n_comp))
    changed = [r for r in rows if not r["hidden_by_small_cell_rule"]
               and any(e.get("change") in ("better", "worse") for e in r["metrics"].values())]
    out.append(wording.comparison_changes_sentence(changed, labels=labels))
    for ni in result["noninferiority"]["by_metric"].values():
        out.append(ni["sentence"])
    return out


def _default_chunk(n_images: int) -> int:
    """Resamples per chunk: 50, or fewer so one ``chunk × n`` int64 draw stays near 80 MB."""
    return int(max(1, min(50, 10_000_000 // max(1, n_images))))
