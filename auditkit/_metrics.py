"""Classification metrics with a vectorized, patient-level bootstrap.

fairlearn's ``MetricFrame(n_boot=...)`` re-runs every metric function on every
resample in Python; for 200 resamples of a dozen groups that is minutes, too slow
to be the default. Nearly every metric here is a ratio of sums of per-image
indicators, so a resample only needs *how many times* each patient was drawn:
draw those counts (a multinomial, shape ``(B, m)``), multiply by per-patient sums
(``(m, k)``) and every resampled metric falls out of one matrix product. The
resamples are drawn and used a block at a time (:data:`BOOTSTRAP_CHUNK_CELLS`), so
memory stays bounded on a million images while the resamples, drawn in the same
order from the same generator, are exactly those of one big matrix. AUROC is a weighted Mann-Whitney statistic computed for all
resamples from one sort; ECE uses per-bin sums. This is why it is hand-written:
no maintained library resamples clusters (patients) this way.

Resampling patients, not images, matters: slices or photos of one patient are not
independent evidence, and an image-level bootstrap would claim false certainty.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "METRICS",
    "MetricInputs",
    "bootstrap_weights",
    "compute_metrics",
]

#: Metric names in display order, with their plain-language description.
METRICS: dict[str, str] = {
    "accuracy": "share of images given the right class",
    "balanced_accuracy": "mean recall over the classes present",
    "sensitivity": "share of positive cases the model catches",
    "specificity": "share of negative cases the model clears",
    "ppv": "when the model says positive, how often it is right",
    "npv": "when the model says negative, how often it is right",
    "auroc": "how well scores rank positives above negatives (0.5 = chance)",
    "auroc_macro": "AUROC averaged over classes, one-vs-rest",
    "ece": "expected calibration error: gap between confidence and accuracy (lower is better)",
    "ece_debiased": ("calibration error with the small-sample bias removed (Kumar et al., "
                     "2019), comparable between groups of different sizes"),
    "overconfidence": ("mean confidence minus accuracy (calibration in the large): 0 is "
                       "calibrated, positive over-confident; unbiased at any group size"),
    "prevalence": "share of images that are truly positive",
    "selection_rate": "share of images the model calls positive",
}
LOWER_IS_BETTER = frozenset({"ece", "ece_debiased"})
ECE_BINS = 10


@dataclass
class MetricInputs:
    """Per-image inputs for one group.

    ``y`` true class index ``(n,)``; ``pred`` predicted class index ``(n,)``;
    ``proba`` class probabilities ``(n, C)``; ``positive`` the positive class index;
    ``clusters`` patient ids ``(n,)`` or None (each image its own cluster).
    """

    y: np.ndarray
    pred: np.ndarray
    proba: np.ndarray
    positive: int
    clusters: np.ndarray | None = None


def _cluster_index(clusters: np.ndarray | None, n: int) -> tuple[np.ndarray, int]:
    """Each image's cluster index ``(n,)`` and the number of clusters."""
    if clusters is None:
        return np.arange(n), n
    _, inverse = np.unique(np.asarray(clusters).astype(str), return_inverse=True)
    return inverse, (int(inverse.max()) + 1 if n else 0)


def _draw_counts(m: int, rows: int, rng: np.random.Generator) -> np.ndarray:
    """Multinomial counts ``(rows, m)`` of ``m`` clusters drawn with replacement per row."""
    # draw m cluster indices per resample and count them: the same multinomial counts,
    # an order of magnitude faster than Generator.multinomial for large m
    draws = rng.integers(0, m, size=(rows, m)) + (np.arange(rows) * m)[:, None]
    return np.bincount(draws.ravel(), minlength=rows * m).reshape(rows, m).astype(np.float64)


def bootstrap_weights(clusters: np.ndarray | None, n: int, n_boot: int,
                      rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Resampling counts of each cluster, ``(n_boot, m)``, and each image's cluster index.

    A bootstrap resample draws ``m`` clusters with replacement from the ``m``
    clusters of the group; the count vector of such a draw is multinomial. This holds
    the whole ``(n_boot, m)`` matrix: for large groups use :func:`bootstrap_weight_chunks`,
    which yields the same rows (the same random stream) a block at a time.
    """
    inverse, m = _cluster_index(clusters, n)
    if n_boot == 0 or m == 0:
        return np.zeros((0, m)), inverse
    return _draw_counts(m, n_boot, rng), inverse


#: Resampled cells (resamples x images) held at once by :func:`compute_metrics`: the
#: memory bound of the bootstrap (about 8 bytes x a handful of arrays per cell).
BOOTSTRAP_CHUNK_CELLS = 4_000_000


def bootstrap_weight_chunks(m: int, n_boot: int, rng: np.random.Generator, *,
                            width: int | None = None, chunk_cells: int | None = None):
    """Yield blocks of :func:`bootstrap_weights`' rows, ``(r, m)`` each, in order.

    The blocks concatenate to exactly the matrix :func:`bootstrap_weights` draws from
    the same generator state (numpy draws the integers in row order), so chunking
    bounds memory without changing a single resample. ``width`` is the number of
    columns each resample is later expanded to (images, when per-image weights are
    needed); a block holds about ``chunk_cells`` (default
    :data:`BOOTSTRAP_CHUNK_CELLS`) of them.
    """
    cells = BOOTSTRAP_CHUNK_CELLS if chunk_cells is None else chunk_cells
    step = max(1, cells // max(width or m, 1))
    for start in range(0, n_boot, step):
        yield _draw_counts(m, min(step, n_boot - start), rng)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def _weighted_auroc(score: np.ndarray, is_pos: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Weighted AUROC for each row of image weights ``w`` ``(R, n)`` (ties count half)."""
    order = np.argsort(score, kind="mergesort")
    s, pos, w = score[order], is_pos[order], w[:, order]
    # group tied scores so ties contribute one half
    _, first, counts = np.unique(s, return_index=True, return_counts=True)
    w_pos = w * pos
    w_neg = w * (~pos)
    neg_tie = np.add.reduceat(w_neg, first, axis=1)
    pos_tie = np.add.reduceat(w_pos, first, axis=1)
    neg_below = np.cumsum(neg_tie, axis=1) - neg_tie
    num = (pos_tie * (neg_below + 0.5 * neg_tie)).sum(axis=1)
    den = w_pos.sum(axis=1) * w_neg.sum(axis=1)
    return _ratio(num, den)


def compute_metrics(inputs: MetricInputs, *, n_boot: int = 0, rng: np.random.Generator | None
                    = None, metrics: Sequence[str] | None = None,
                    ) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Point estimates and bootstrap replicates of the metrics for one group.

    Parameters
    ----------
    inputs : MetricInputs
    n_boot : int
        Bootstrap resamples (0: point estimates only).
    rng : numpy.random.Generator
        Needed when ``n_boot > 0``.
    metrics : sequence of str, optional
        Subset of :data:`METRICS` (default all).

    Returns
    -------
    point : dict
        Metric -> value (nan when undefined, e.g. sensitivity with no positives).
    replicates : dict
        Metric -> ``(n_boot,)`` resampled values (nan where undefined).

    Notes
    -----
    Binary metrics are one-vs-rest for ``inputs.positive``. ``balanced_accuracy`` is
    scikit-learn's: mean recall over classes present. ``auroc`` scores with the
    positive-class probability. ``ece`` uses 10 equal-width confidence bins on the
    top-class probability (Guo et al., 2017).

    Memory is bounded: resamples are processed in blocks of about
    :data:`BOOTSTRAP_CHUNK_CELLS` resample x image cells, and time is linear in
    ``n_boot`` x images (plus one sort per block for AUROC).
    """
    wanted = list(metrics or METRICS)
    y = np.asarray(inputs.y, dtype=int)
    pred = np.asarray(inputs.pred, dtype=int)
    proba = np.asarray(inputs.proba, dtype=np.float64)
    n, n_classes = proba.shape
    if n_boot and rng is None:
        raise ValueError("compute_metrics needs rng when n_boot > 0.")
    inverse, m = _cluster_index(inputs.clusters, n)

    def per_cluster(columns: np.ndarray) -> np.ndarray:
        """Per-cluster sums ``(m, k)`` of per-image columns ``(n, k)``."""
        if inputs.clusters is None:
            return columns
        return np.column_stack([np.bincount(inverse, weights=columns[:, j], minlength=m)
                                for j in range(columns.shape[1])])

    pos_true = y == inputs.positive
    pos_pred = pred == inputs.positive
    correct = y == pred
    # per-cluster sums are computed once; each block of resamples is one matrix product
    base_c = per_cluster(np.column_stack([
        np.ones(n), correct, pos_true & pos_pred, ~pos_true & pos_pred,
        ~pos_true & ~pos_pred, pos_true & ~pos_pred,
    ]).astype(np.float64))
    present = np.unique(y)
    balanced_c = (per_cluster(np.column_stack([np.column_stack([y == k, (y == k) & correct])
                                               for k in present]).astype(np.float64))
                  if "balanced_accuracy" in wanted else None)
    bins_c = None
    if {"ece", "ece_debiased", "overconfidence"} & set(wanted):
        conf = proba.max(axis=1)
        bins = np.minimum((conf * ECE_BINS).astype(int), ECE_BINS - 1)
        onehot = np.zeros((n, ECE_BINS))
        onehot[np.arange(n), bins] = 1.0
        bins_c = per_cluster(np.column_stack([onehot, onehot * correct[:, None],
                                              onehot * conf[:, None]]))
    needs_images = bool({"auroc", "auroc_macro"} & set(wanted))

    def evaluate(weights: np.ndarray) -> dict[str, np.ndarray]:
        """Every wanted metric for each row of cluster weights ``(R, m)``: ``(R,)`` each."""
        total, n_correct, tp, fp, tn, fn = (weights @ base_c).T
        out: dict[str, np.ndarray] = {}
        if "accuracy" in wanted:
            out["accuracy"] = _ratio(n_correct, total)
        if "sensitivity" in wanted:
            out["sensitivity"] = _ratio(tp, tp + fn)
        if "specificity" in wanted:
            out["specificity"] = _ratio(tn, tn + fp)
        if "ppv" in wanted:
            out["ppv"] = _ratio(tp, tp + fp)
        if "npv" in wanted:
            out["npv"] = _ratio(tn, tn + fn)
        if "prevalence" in wanted:
            out["prevalence"] = _ratio(tp + fn, total)
        if "selection_rate" in wanted:
            out["selection_rate"] = _ratio(tp + fp, total)
        if balanced_c is not None:
            per = (weights @ balanced_c).reshape(-1, len(present), 2)
            recall = _ratio(per[:, :, 1], per[:, :, 0])
            with warnings.catch_warnings():  # all-nan rows (no class present) stay nan
                warnings.simplefilter("ignore", RuntimeWarning)
                out["balanced_accuracy"] = np.nanmean(recall, axis=1)
        # per-image weights (R, n) are only needed by the rank-based AUROC
        image_w = weights[:, inverse] if needs_images else None
        if image_w is not None and "auroc" in wanted:
            out["auroc"] = _weighted_auroc(proba[:, inputs.positive], pos_true, image_w)
        if image_w is not None and "auroc_macro" in wanted:
            if n_classes > 2:
                per_class = np.column_stack([
                    _weighted_auroc(proba[:, k], y == k, image_w) for k in range(n_classes)
                ])
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)
                    out["auroc_macro"] = np.where(np.isnan(per_class).any(axis=1), np.nan,
                                                  np.nanmean(per_class, axis=1))
            else:
                out["auroc_macro"] = _weighted_auroc(proba[:, 1], y == 1, image_w)
        if bins_c is not None:
            per = (weights @ bins_c).reshape(-1, 3, ECE_BINS)
            count, acc, cf = per[:, 0], per[:, 1], per[:, 2]
            if "ece" in wanted:
                out["ece"] = _ratio(np.abs(acc - cf).sum(axis=1), count.sum(axis=1))
            if "overconfidence" in wanted:
                out["overconfidence"] = _ratio(cf.sum(axis=1) - acc.sum(axis=1),
                                               count.sum(axis=1))
            if "ece_debiased" in wanted:
                out["ece_debiased"] = _debiased_ece(count, acc, cf)
        return out

    point_out = evaluate(np.ones((1, m)))
    blocks = ([evaluate(w) for w in bootstrap_weight_chunks(
        m, n_boot, rng, width=n if needs_images else m)] if n_boot and m and rng is not None
        else [])
    point = {k: float(v[0]) for k, v in point_out.items()}
    replicates = {k: (np.concatenate([blk[k] for blk in blocks]) if blocks else np.zeros(0))
                  for k in point_out}
    return point, replicates


def _debiased_ece(count: np.ndarray, correct: np.ndarray, conf: np.ndarray) -> np.ndarray:
    """Root of the debiased squared calibration error, per row of bin sums ``(R, bins)``.

    Kumar A, Liang P, Ma T. Verified uncertainty calibration. NeurIPS 2019: in each
    bin, ``(acc - conf)^2`` overstates the squared gap by the sampling variance of the
    bin's accuracy, ``acc (1 - acc) / (n_b - 1)``; subtracting it removes the bias that
    makes plain ECE large in small groups. Bins with one image carry no variance
    estimate and are left out; the root of a negative estimate is reported as 0.
    """
    with np.errstate(invalid="ignore", divide="ignore"):
        acc = np.where(count > 0, correct / np.where(count > 0, count, 1), 0.0)
        cf = np.where(count > 0, conf / np.where(count > 0, count, 1), 0.0)
        var = np.where(count > 1, acc * (1 - acc) / np.where(count > 1, count - 1, 1), 0.0)
        term = np.where(count > 1, count * ((acc - cf) ** 2 - var), 0.0)
    used = np.where(count > 1, count, 0).sum(axis=1)
    sq = _ratio(term.sum(axis=1), used)
    return np.sqrt(np.clip(sq, 0.0, None))


def percentile_interval(replicates: np.ndarray, level: float = 0.95) -> list[float | None]:
    """Percentile bootstrap interval; None bounds when fewer than 10 valid replicates."""
    valid = replicates[~np.isnan(replicates)]
    if valid.size < 10:
        return [None, None]
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(valid, [alpha, 1.0 - alpha])
    return [float(lo), float(hi)]


# --------------------------------------------------------------------------- judged intervals

#: What each metric's denominator counts: a metric is "too few to judge" in a group
#: when this count (images, and patients where known) is below the minimum.
DENOMINATORS: dict[str, str] = {
    "accuracy": "images",
    "balanced_accuracy": "images of the rarest class",
    "sensitivity": "positives",
    "specificity": "negatives",
    "ppv": "positive calls",
    "npv": "negative calls",
    "auroc": "positives or negatives (the fewer)",
    "auroc_macro": "images of the rarest class",
    "ece": "images",
    "ece_debiased": "images",
    "overconfidence": "images",
    "prevalence": "images",
    "selection_rate": "images",
}

#: Interval method per metric (see docs/statistics.md for the simulations behind them).
INTERVAL_METHODS: dict[str, str] = {
    **{m: "Wilson at the design-effect-adjusted n" for m in
       ("accuracy", "sensitivity", "specificity", "ppv", "npv", "prevalence", "selection_rate")},
    "balanced_accuracy": "cluster-robust linearised variance, t interval",
    "overconfidence": "cluster-robust linearised variance, t interval",
    "auroc": "Obuchowski clustered variance, logit scale, t interval",
    "auroc_macro": "percentile bootstrap over patients",
    "ece": "percentile bootstrap over patients",
    "ece_debiased": "percentile bootstrap over patients",
}


def _units(clusters: np.ndarray | None, mask: np.ndarray) -> int:
    if clusters is None:
        return int(mask.sum())
    return int(len(np.unique(np.asarray(clusters)[mask].astype(str))))


def _balanced_accuracy_interval(y: np.ndarray, correct: np.ndarray, classes: Sequence[int],
                                clusters: np.ndarray | None, level: float
                                ) -> tuple[float, list[float | None], float]:
    """Mean recall over ``classes`` with a cluster-robust linearised interval."""
    from .stats import _quantile

    ids = (np.arange(len(y)).astype(str) if clusters is None
           else np.asarray(clusters).astype(str))
    _, inverse = np.unique(ids, return_inverse=True)
    m = int(inverse.max()) + 1 if len(y) else 0
    recalls, influence = [], np.zeros(m)
    for k in classes:
        b = np.bincount(inverse, weights=(y == k).astype(float), minlength=m)
        a = np.bincount(inverse, weights=((y == k) & correct).astype(float), minlength=m)
        if b.sum() == 0:
            return float("nan"), [None, None], float("nan")
        r = a.sum() / b.sum()
        recalls.append(r)
        influence += (a - r * b) / b.sum()
    value = float(np.mean(recalls))
    if m < 2:
        return value, [None, None], float("nan")
    influence /= len(classes)
    se = float(np.sqrt(m / (m - 1) * (influence ** 2).sum()))
    q = _quantile(level, m)
    return value, [max(0.0, value - q * se), min(1.0, value + q * se)], se


def metric_table(inputs: MetricInputs, *, level: float = 0.95, min_count: int = 10,
                 classes: Sequence[int] | None = None, n_boot: int = 0,
                 rng: np.random.Generator | None = None,
                 metrics: Sequence[str] | None = None) -> dict[str, dict[str, Any]]:
    """Each metric with its interval, its denominator and whether it can be judged.

    Parameters
    ----------
    inputs : MetricInputs
    level : float
        Interval level.
    min_count : int
        A metric is ``too_few`` when its denominator has fewer images, or fewer
        patients where patients are known, than this.
    classes : sequence of int, optional
        Classes balanced accuracy averages over (default: those present in ``y``).
    n_boot, rng :
        Bootstrap for the metrics without an analytic interval (``auroc_macro``,
        ``ece``, ``ece_debiased``); 0 leaves their interval empty.
    metrics : sequence of str, optional

    Returns
    -------
    dict
        metric -> ``{"value", "ci", "se", "method", "denominator", "denominator_patients",
        "denominator_of", "too_few"}``. ``se`` is the standard error behind the
        interval (None for bootstrap ones), used for power.
    """
    from .stats import clustered_auroc_interval, proportion_interval, ratio_interval

    wanted = list(metrics or METRICS)
    y = np.asarray(inputs.y, dtype=int)
    pred = np.asarray(inputs.pred, dtype=int)
    proba = np.asarray(inputs.proba, dtype=np.float64)
    cl = None if inputs.clusters is None else np.asarray(inputs.clusters).astype(str)
    pos_true, pos_pred, correct = y == inputs.positive, pred == inputs.positive, y == pred
    present = list(classes) if classes is not None else sorted(set(y.tolist()))
    out: dict[str, dict[str, Any]] = {}

    def sub(mask: np.ndarray) -> np.ndarray | None:
        return None if cl is None else cl[mask]

    def put(name: str, value: float, ci: list[float | None], se: float | None,
            den: int, den_units: int) -> None:
        judged_units = den_units if cl is not None else den
        out[name] = {
            "value": value, "ci": ci, "se": se, "method": INTERVAL_METHODS.get(name, ""),
            "denominator": int(den),
            "denominator_patients": int(den_units) if cl is not None else None,
            "denominator_of": DENOMINATORS.get(name, "images"),
            "too_few": bool(den < min_count or judged_units < min_count),
        }

    proportions = {
        "accuracy": (np.ones_like(correct), correct),
        "sensitivity": (pos_true, pos_pred),
        "specificity": (~pos_true, ~pos_pred),
        "ppv": (pos_pred, pos_true),
        "npv": (~pos_pred, ~pos_true),
        "prevalence": (np.ones_like(correct), pos_true),
        "selection_rate": (np.ones_like(correct), pos_pred),
    }
    for name, (den_mask, hit) in proportions.items():
        if name not in wanted:
            continue
        den_mask = den_mask.astype(bool)
        value, ci, n_eff = proportion_interval(hit[den_mask].astype(float), sub(den_mask),
                                               level=level)
        se = (float(np.sqrt(value * (1 - value) / n_eff)) if n_eff > 0 else float("nan"))
        put(name, value, ci, se, int(den_mask.sum()), _units(cl, den_mask))
    if "balanced_accuracy" in wanted:
        value, ci, se = _balanced_accuracy_interval(y, correct, present, cl, level)
        counts = [(y == k) for k in present]
        put("balanced_accuracy", value, ci, se,
            min((int(c.sum()) for c in counts), default=0),
            min((_units(cl, c) for c in counts), default=0))
    if "overconfidence" in wanted:
        conf = proba.max(axis=1)
        value, ci, se = ratio_interval(conf - correct, np.ones(len(y)), cl, level=level,
                                       bounds=(-1.0, 1.0))
        put("overconfidence", value, ci, se, len(y), _units(cl, np.ones(len(y), bool)))
    if "auroc" in wanted:
        value, ci, se = clustered_auroc_interval(proba[:, inputs.positive], pos_true, cl,
                                                 level=level)
        put("auroc", value, ci, se, min(int(pos_true.sum()), int((~pos_true).sum())),
            min(_units(cl, pos_true), _units(cl, ~pos_true)))
    boot = [m for m in ("auroc_macro", "ece", "ece_debiased") if m in wanted]
    if boot:
        point, reps = compute_metrics(inputs, n_boot=n_boot, rng=rng, metrics=boot)
        for name in boot:
            if name == "auroc_macro":
                counts = [(y == k) for k in range(proba.shape[1])]
                den = min(int(c.sum()) for c in counts)
                den_u = min(_units(cl, c) for c in counts)
            else:
                den, den_u = len(y), _units(cl, np.ones(len(y), bool))
            put(name, point[name], percentile_interval(reps[name], level) if n_boot else
                [None, None], None, den, den_u)
    return {name: out[name] for name in METRICS if name in out}
