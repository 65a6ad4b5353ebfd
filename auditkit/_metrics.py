"""Classification metrics with a vectorized, patient-level bootstrap.

fairlearn's ``MetricFrame(n_boot=...)`` re-runs every metric function on every
resample in Python; for 200 resamples of a dozen groups that is minutes, too slow
to be the default. Nearly every metric here is a ratio of sums of per-image
indicators, so a resample only needs *how many times* each patient was drawn:
draw those counts for all resamples at once (a multinomial, shape ``(B, m)``),
multiply by per-patient sums (``(m, k)``) and every resampled metric falls out of
one matrix product. AUROC is a weighted Mann-Whitney statistic computed for all
resamples from one sort; ECE uses per-bin sums. This is why it is hand-written:
no maintained library resamples clusters (patients) this way.

Resampling patients, not images, matters: slices or photos of one patient are not
independent evidence, and an image-level bootstrap would claim false certainty.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

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
    "prevalence": "share of images that are truly positive",
    "selection_rate": "share of images the model calls positive",
}
LOWER_IS_BETTER = frozenset({"ece"})
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


def bootstrap_weights(clusters: np.ndarray | None, n: int, n_boot: int,
                      rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Resampling counts of each cluster, ``(n_boot, m)``, and each image's cluster index.

    A bootstrap resample draws ``m`` clusters with replacement from the ``m``
    clusters of the group; the count vector of such a draw is multinomial.
    """
    if clusters is None:
        inverse = np.arange(n)
        m = n
    else:
        _, inverse = np.unique(np.asarray(clusters).astype(str), return_inverse=True)
        m = int(inverse.max()) + 1 if n else 0
    if n_boot == 0 or m == 0:
        return np.zeros((0, m)), inverse
    # draw m cluster indices per resample and count them: the same multinomial counts,
    # an order of magnitude faster than Generator.multinomial for large m
    draws = rng.integers(0, m, size=(n_boot, m)) + (np.arange(n_boot) * m)[:, None]
    weights = np.bincount(draws.ravel(), minlength=n_boot * m).reshape(n_boot, m)
    return weights.astype(np.float64), inverse


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
    """
    wanted = list(metrics or METRICS)
    y = np.asarray(inputs.y, dtype=int)
    pred = np.asarray(inputs.pred, dtype=int)
    proba = np.asarray(inputs.proba, dtype=np.float64)
    n, n_classes = proba.shape
    if n_boot and rng is None:
        raise ValueError("compute_metrics needs rng when n_boot > 0.")
    boot_w, inverse = bootstrap_weights(inputs.clusters, n, n_boot, rng or np.random.default_rng(0))
    m = boot_w.shape[1] if n_boot else (int(inverse.max()) + 1 if n else 0)
    weights = np.vstack([np.ones((1, m)), boot_w])  # row 0 is the point estimate

    def sums(columns: np.ndarray) -> np.ndarray:
        """Weighted sums ``(1 + B, k)`` of per-image columns ``(n, k)``."""
        if inputs.clusters is None:
            return weights @ columns
        per_cluster = np.column_stack([
            np.bincount(inverse, weights=columns[:, j], minlength=m)
            for j in range(columns.shape[1])
        ])
        return weights @ per_cluster

    pos_true = y == inputs.positive
    pos_pred = pred == inputs.positive
    correct = y == pred
    base = sums(np.column_stack([
        np.ones(n), correct, pos_true & pos_pred, ~pos_true & pos_pred,
        ~pos_true & ~pos_pred, pos_true & ~pos_pred,
    ]).astype(np.float64))
    total, n_correct, tp, fp, tn, fn = base.T
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
    if "balanced_accuracy" in wanted:
        present = np.unique(y)
        cols = np.column_stack([np.column_stack([y == k, (y == k) & correct]) for k in present])
        per = sums(cols.astype(np.float64)).reshape(-1, len(present), 2)
        recall = _ratio(per[:, :, 1], per[:, :, 0])
        with warnings.catch_warnings():  # all-nan rows (no class present) stay nan
            warnings.simplefilter("ignore", RuntimeWarning)
            out["balanced_accuracy"] = np.nanmean(recall, axis=1)
    # per-image weights (1 + B, n) are only needed by the rank-based AUROC
    image_w = weights[:, inverse] if {"auroc", "auroc_macro"} & set(wanted) else None
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
    if "ece" in wanted:
        conf = proba.max(axis=1)
        bins = np.minimum((conf * ECE_BINS).astype(int), ECE_BINS - 1)
        onehot = np.zeros((n, ECE_BINS))
        onehot[np.arange(n), bins] = 1.0
        cols = np.column_stack([onehot, onehot * correct[:, None], onehot * conf[:, None]])
        per = sums(cols).reshape(-1, 3, ECE_BINS)
        count, acc, cf = per[:, 0], per[:, 1], per[:, 2]
        out["ece"] = _ratio(np.abs(acc - cf).sum(axis=1), count.sum(axis=1))
    point = {k: float(v[0]) for k, v in out.items()}
    replicates = {k: v[1:] for k, v in out.items()}
    return point, replicates


def percentile_interval(replicates: np.ndarray, level: float = 0.95) -> list[float | None]:
    """Percentile bootstrap interval; None bounds when fewer than 10 valid replicates."""
    valid = replicates[~np.isnan(replicates)]
    if valid.size < 10:
        return [None, None]
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(valid, [alpha, 1.0 - alpha])
    return [float(lo), float(hi)]
