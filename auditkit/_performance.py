"""The ``performance`` check: how well the model works on the whole dataset.

Every metric carries its sample size, its denominator and an interval that treats a
patient's images as one unit when the dataset has patient ids (methods in
:mod:`auditkit.stats`, simulations in ``docs/statistics.md``). Baselines answer a
committee's first question: is the model better than always answering the most
common class, and better than chance?
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import wording
from ._context import CheckContext, label_indices
from ._metrics import MetricInputs, metric_table
from .stats import ratio_interval

__all__ = ["baselines", "run_check"]


def baselines(*, y: np.ndarray, pred: np.ndarray, metrics: dict[str, dict[str, Any]],
              class_names: list[str], clusters: np.ndarray | None, level: float = 0.95,
              ) -> dict[str, dict[str, Any]]:
    """The model against the majority class and against chance.

    Parameters
    ----------
    y, pred : numpy.ndarray
        ``(n,)`` true and predicted class index.
    metrics : dict
        The model's metrics (:func:`auditkit._metrics.metric_table`): ``balanced_accuracy``
        and ``auroc`` entries with ``value`` and ``ci`` are used when present.
    class_names : list of str
    clusters : numpy.ndarray, optional
        ``(n,)`` patient ids.
    level : float

    Returns
    -------
    dict
        ``majority_class``: accuracy of always answering the most common class, the
        paired difference (model minus baseline, per image, patients as clusters) and
        its interval; ``chance_balanced_accuracy`` (1 / classes present) and
        ``chance_auroc`` (0.5): the model's difference from chance, its interval, and
        ``sentence`` each.
    """
    y = np.asarray(y, dtype=int)
    pred = np.asarray(pred, dtype=int)
    out: dict[str, dict[str, Any]] = {}
    entry: dict[str, Any]
    if len(y):
        counts = np.bincount(y, minlength=len(class_names))
        majority = int(counts.argmax())
        diff, ci, _ = ratio_interval((pred == y).astype(float) - (y == majority),
                                     np.ones(len(y)), clusters, level=level, bounds=(-1.0, 1.0))
        entry = {"class": class_names[majority], "baseline": float(counts[majority] / len(y)),
                 "model": float((pred == y).mean()), "difference": diff, "ci": ci,
                 "worse_than_baseline": bool(diff < 0),
                 "clearly_worse": bool(ci[1] is not None and ci[1] < 0)}
        out["majority_class"] = {**entry,
                                 "sentence": wording.baseline_sentence("majority_class", entry)}
    present = len(set(y.tolist()))
    for key, metric, chance in (("chance_balanced_accuracy", "balanced_accuracy",
                                 1.0 / max(present, 1)),
                                ("chance_auroc", "auroc", 0.5)):
        m = metrics.get(metric) or {}
        value, mci = m.get("value"), m.get("ci") or [None, None]
        if value is None or value != value:
            continue
        shifted = [None if b is None else b - chance for b in mci]
        entry = {"baseline": chance, "model": value, "difference": value - chance,
                                 "ci": shifted,
                                 "no_better_than_chance": bool(shifted[0] is None
                                                               or shifted[0] <= 0)}
        out[key] = {**entry, "sentence": wording.baseline_sentence(key, entry)}
    return out


def run_check(ctx: CheckContext) -> dict[str, Any]:
    """Overall metrics with intervals, baselines and the confusion matrix."""
    card = ctx.model.card
    if card.output == "multilabel_sigmoid":
        from .multilabel import performance_check

        return performance_check(ctx)
    if card.output == "segmentation":
        from .segmentation import performance_check as segmentation_performance

        return segmentation_performance(ctx)
    scope = ctx.evaluation_scope()
    rows, described = scope.mask, scope.description
    y = label_indices(ctx)[rows]
    pred = ctx.predictions.predicted_index(card.output)[rows]
    clusters = (ctx.dataset.records["patient_id"].to_numpy()[rows].astype(str)
                if ctx.dataset.has_patients else None)
    table = metric_table(
        MetricInputs(y=y, pred=pred, proba=ctx.predictions.probabilities[rows],
                     positive=card.positive_index, clusters=clusters),
        level=ctx.config.confidence, min_count=ctx.config.min_group_size,
        n_boot=ctx.config.n_boot, rng=ctx.rng(1),
    )
    classes = card.class_names
    confusion = np.zeros((len(classes), len(classes)), dtype=int)
    np.add.at(confusion, (y, pred), 1)
    base = baselines(y=y, pred=pred, metrics=table, class_names=classes, clusters=clusters,
                     level=ctx.config.confidence)
    n_patients = int(len(set(clusters))) if clusters is not None else None
    accuracy = table.get("accuracy") or {}
    # first: what was measured (saying so when training images may be in it), then baselines
    summary = [wording.performance_summary(
        evaluated_on=described, may_include_training=scope.may_include_training,
        accuracy=accuracy.get("value"), accuracy_ci=accuracy.get("ci"), n_images=int(len(y)),
        n_patients=n_patients)]
    summary += [b["sentence"] for b in base.values()]
    return {
        "status": "assessed",
        "evaluated_on": described,
        "evaluation_source": scope.source,
        "may_include_training": scope.may_include_training,
        "n": int(len(y)),
        "n_patients": n_patients,
        "resampling_unit": "patient" if clusters is not None else "image",
        "positive_class": card.positive_class,
        "n_positive": int((y == card.positive_index).sum()),
        "metrics": table,
        "baselines": base,
        "summary": summary,
        "confusion_matrix": {"classes": classes, "rows_true_cols_pred": confusion.tolist()},
    }
