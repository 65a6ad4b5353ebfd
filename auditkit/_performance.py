"""The ``performance`` check: how well the model works on the whole dataset.

Every metric carries its sample size and a bootstrap interval that resamples
patients when the dataset has patient ids (see :mod:`auditkit._metrics`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._context import CheckContext, label_indices
from ._metrics import METRICS, MetricInputs, compute_metrics, percentile_interval

__all__ = ["run_check"]


def run_check(ctx: CheckContext) -> dict[str, Any]:
    """Overall metrics with intervals and the confusion matrix."""
    card = ctx.model.card
    if card.output == "multilabel_sigmoid":
        return {"status": "not_assessed",
                "reason": "overall metrics for multi-label models are not supported yet"}
    rows, described = ctx.evaluation_rows()
    y = label_indices(ctx)[rows]
    pred = ctx.predictions.predicted_index(card.output)[rows]
    clusters = (ctx.dataset.records["patient_id"].to_numpy()[rows]
                if ctx.dataset.has_patients else None)
    point, reps = compute_metrics(
        MetricInputs(y=y, pred=pred, proba=ctx.predictions.probabilities[rows],
                     positive=card.positive_index, clusters=clusters),
        n_boot=ctx.config.n_boot, rng=ctx.rng(1),
    )
    classes = card.class_names
    confusion = np.zeros((len(classes), len(classes)), dtype=int)
    np.add.at(confusion, (y, pred), 1)
    return {
        "status": "assessed",
        "evaluated_on": described,
        "n": int(len(y)),
        "n_patients": int(len(set(clusters))) if clusters is not None else None,
        "resampling_unit": "patient" if clusters is not None else "image",
        "positive_class": card.positive_class,
        "n_positive": int((y == card.positive_index).sum()),
        "metrics": {
            name: {"value": point[name],
                   "ci": percentile_interval(reps[name], ctx.config.confidence)}
            for name in METRICS if name in point
        },
        "confusion_matrix": {"classes": classes, "rows_true_cols_pred": confusion.tolist()},
    }
