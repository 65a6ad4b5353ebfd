"""Proportions and medians with patient-level bootstrap intervals, per group."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from .._metrics import bootstrap_weights, percentile_interval


def _replicate_weights(clusters: np.ndarray | None, n: int, n_boot: int,
                       rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    weights, inverse = bootstrap_weights(clusters, n, n_boot, rng)
    return weights, inverse


def proportion(flags: np.ndarray, clusters: np.ndarray | None, *, n_boot: int,
               rng: np.random.Generator, level: float) -> dict[str, Any]:
    """``{"value", "ci"}`` for the share of true ``flags``; resamples clusters (patients)."""
    flags = np.asarray(flags, dtype=np.float64)
    n = flags.size
    if n == 0:
        return {"value": None, "ci": [None, None]}
    weights, inverse = _replicate_weights(clusters, n, n_boot, rng)
    value = float(flags.mean())
    if weights.shape[0] == 0:
        return {"value": value, "ci": [None, None]}
    m = weights.shape[1]
    num = weights @ np.bincount(inverse, weights=flags, minlength=m)
    den = weights @ np.bincount(inverse, minlength=m).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        reps = np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)
    return {"value": value, "ci": percentile_interval(reps, level)}


def median(values: np.ndarray, clusters: np.ndarray | None, *, n_boot: int,
           rng: np.random.Generator, level: float) -> dict[str, Any]:
    """``{"value", "ci"}`` for the median of ``values``, cluster-bootstrapped."""
    values = np.asarray(values, dtype=np.float64)
    n = values.size
    if n == 0:
        return {"value": None, "ci": [None, None]}
    value = float(np.median(values))
    weights, inverse = _replicate_weights(clusters, n, n_boot, rng)
    if weights.shape[0] == 0:
        return {"value": value, "ci": [None, None]}
    order = np.argsort(values, kind="mergesort")
    w = weights[:, inverse][:, order]
    cum = np.cumsum(w, axis=1)
    idx = (cum < (cum[:, -1:] / 2.0)).sum(axis=1)
    reps = values[order][np.minimum(idx, n - 1)]
    return {"value": value, "ci": percentile_interval(reps, level)}


def group_masks(records: pd.DataFrame, attributes: list[tuple[str, list[str]]]
                ) -> list[tuple[str, str, np.ndarray]]:
    """``(attribute, group, mask)`` for every group of every attribute, natural order."""
    out = []
    for name, order in attributes:
        labels = records[name].astype("string").fillna("unknown").to_numpy(dtype=object)
        present = set(labels.tolist())
        groups = [g for g in order if g in present] + sorted(present - set(order))
        for g in groups:
            out.append((name, str(g), labels == g))
    return out


def size_entry(mask: np.ndarray, clusters: np.ndarray | None, min_group_size: int
               ) -> dict[str, Any]:
    """``n``, ``n_patients`` and the small-group flag for the images in ``mask``."""
    n = int(mask.sum())
    n_patients = int(len(set(clusters[mask].tolist()))) if clusters is not None else None
    judged = n_patients if n_patients is not None else n
    return {"n": n, "n_patients": n_patients, "too_few": bool(judged < min_group_size)}
