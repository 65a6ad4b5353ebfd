"""Membership inference: can the model's outputs tell training patients from others?

Metric-based attacks score each image from the model's class probabilities alone
(no re-running of the model):

``loss``
    the negative cross-entropy loss, ``log p_y`` (Yeom et al., CSF 2018).
``confidence``
    the top-class probability, label-free (Salem et al., NDSS 2019).
``entropy``
    the negative *modified prediction entropy* of Song & Mittal (USENIX Security
    2021): ``Mentr = -(1 - p_y) log p_y - sum_{i != y} p_i log(1 - p_i)``.

Higher scores mean "more likely a member". Each attack is evaluated as a detector:
ROC AUC (0.5 = coin toss) with a bootstrap interval that resamples patients where
the dataset has patient ids, and the true-positive rate at 1% and 0.1% false
positives, the regime that matters for an individual patient (Carlini et al.,
"Membership Inference Attacks From First Principles", IEEE S&P 2022).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from .._metrics import _cluster_index, bootstrap_weight_chunks, percentile_interval

__all__ = [
    "ATTACKS",
    "LOW_FPRS",
    "AttackEvaluation",
    "balanced_membership_sample",
    "describe_exposure",
    "evaluate_attack",
    "metric_attack_scores",
    "task_loss_scores",
    "roc_curve_points",
]

#: Attack name -> plain-language description.
ATTACKS: dict[str, str] = {
    "loss": "the model's loss on the image (training images tend to have lower loss)",
    "confidence": "how confident the model is in its top answer",
    "entropy": "modified prediction entropy (Song & Mittal, 2021), uses the true label",
    "finding_loss": ("binary cross-entropy over the image's findings with a known label, the "
                     "multi-label model's own training loss (lower on training images)"),
    "pixel_loss": ("mean per-pixel binary cross-entropy against the reference mask, the "
                   "segmentation model's own loss (lower on training images)"),
    "soft_dice": ("soft Dice overlap of the predicted foreground probabilities with the "
                  "reference mask (higher on training images)"),
    "calibrated": ("loss compared with reference models that never saw the image "
                   "(offline likelihood-ratio attack, Carlini et al., 2022)"),
}
#: False-positive rates at which the true-positive rate is reported.
LOW_FPRS = (0.01, 0.001)
_EPS = 1e-12


def task_loss_scores(*, output_kind: str, proba: np.ndarray, truth: np.ndarray
                     ) -> dict[str, np.ndarray]:
    """Membership scores from a multi-label or segmentation model's own per-image loss.

    Parameters
    ----------
    output_kind : {"multilabel_sigmoid", "segmentation"}
    proba : numpy.ndarray
        ``(N, K)`` finding probabilities, or ``(N, H, W)`` foreground probabilities.
    truth : numpy.ndarray
        ``(N, K)`` finding labels 1 / 0 / NaN (unknown, left out of the image's loss), or
        ``(N, H, W)`` reference masks at the probabilities' size.

    Returns
    -------
    dict
        Higher = more likely a member. Multi-label: ``{"finding_loss"}`` (minus the mean
        BCE over known findings; an image with none known scores the median). Segmentation:
        ``{"pixel_loss", "soft_dice"}``.
    """
    p = np.clip(np.asarray(proba, dtype=np.float64), _EPS, 1.0 - _EPS)
    t = np.asarray(truth, dtype=np.float64)
    if output_kind == "multilabel_sigmoid":
        known = ~np.isnan(t)
        y = np.nan_to_num(t)
        bce = -(y * np.log(p) + (1.0 - y) * np.log(1.0 - p)) * known
        with np.errstate(invalid="ignore", divide="ignore"):
            loss = bce.sum(axis=1) / known.sum(axis=1)
        score = -loss
        if np.isnan(score).any():
            score = np.where(np.isnan(score), np.nanmedian(score), score)
        return {"finding_loss": score}
    n = len(p)
    p2, t2 = p.reshape(n, -1), t.reshape(n, -1)
    bce = -(t2 * np.log(p2) + (1.0 - t2) * np.log(1.0 - p2)).mean(axis=1)
    dice = (2.0 * (p2 * t2).sum(axis=1) + 1.0) / (p2.sum(axis=1) + t2.sum(axis=1) + 1.0)
    return {"pixel_loss": -bce, "soft_dice": dice}


def metric_attack_scores(proba: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
    """Membership scores of the metric-based attacks (higher = more likely a member).

    Parameters
    ----------
    proba : numpy.ndarray
        Class probabilities ``(N, C)`` in [0, 1].
    y : numpy.ndarray
        True class index ``(N,)``.

    Returns
    -------
    dict
        ``{"loss", "confidence", "entropy"}`` -> ``(N,)`` float64 scores.
    """
    p = np.clip(np.asarray(proba, dtype=np.float64), _EPS, 1.0 - _EPS)
    y = np.asarray(y, dtype=int)
    rows = np.arange(len(y))
    p_y = p[rows, y]
    others = -p * np.log(1.0 - p)
    others[rows, y] = 0.0
    mentr = -(1.0 - p_y) * np.log(p_y) + others.sum(axis=1)
    return {"loss": np.log(p_y), "confidence": p.max(axis=1), "entropy": -mentr}


def balanced_membership_sample(member: np.ndarray, strata: pd.DataFrame,
                               rng: np.random.Generator, max_per_side: int | None = None
                               ) -> np.ndarray:
    """Indices of a balanced member / non-member sample, matched within strata.

    Within each stratum (a unique row of ``strata``: label and patient attributes),
    the larger side is subsampled to the size of the smaller, so members and
    non-members have the same number of images *and* the same distribution of
    labels and attributes. Strata with no member or no non-member are left out.

    Parameters
    ----------
    member : numpy.ndarray
        Boolean ``(N,)``: True for training images, False for images never trained on.
    strata : pandas.DataFrame
        ``N`` rows; the columns to match on.
    rng : numpy.random.Generator
    max_per_side : int, optional
        Cap on images per side (the sample is thinned evenly across strata).

    Returns
    -------
    numpy.ndarray
        Sorted indices into the ``N`` images.
    """
    member = np.asarray(member, dtype=bool)
    keys = strata.astype(str).agg("|".join, axis=1).to_numpy() if strata.shape[1] else \
        np.zeros(len(member), dtype=str)
    chosen_m: list[np.ndarray] = []
    chosen_n: list[np.ndarray] = []
    for key in np.unique(keys):
        in_key = keys == key
        mem = np.flatnonzero(in_key & member)
        non = np.flatnonzero(in_key & ~member)
        k = min(len(mem), len(non))
        if k == 0:
            continue
        chosen_m.append(rng.permutation(mem)[:k])
        chosen_n.append(rng.permutation(non)[:k])
    if not chosen_m:
        return np.zeros(0, dtype=int)
    mem_idx, non_idx = np.concatenate(chosen_m), np.concatenate(chosen_n)
    if max_per_side is not None and len(mem_idx) > max_per_side:
        # keep pairs: the i-th member and i-th non-member come from the same stratum
        keep = np.sort(rng.choice(len(mem_idx), size=max_per_side, replace=False))
        mem_idx, non_idx = mem_idx[keep], non_idx[keep]
    return np.sort(np.concatenate([mem_idx, non_idx]))


def _roc_matrices(score: np.ndarray, member: np.ndarray, weights: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Weighted ROC points for each row of image weights ``(R, n)``: fpr, tpr ``(R, T+1)``.

    Thresholds run from above the highest score down, one point per distinct score
    (ties move together), starting at (0, 0).
    """
    order = np.argsort(-score, kind="mergesort")
    s, mem, w = score[order], member[order], weights[:, order]
    last_of_tie = np.r_[s[1:] != s[:-1], True]
    tp = np.cumsum(w * mem, axis=1)[:, last_of_tie]
    fp = np.cumsum(w * ~mem, axis=1)[:, last_of_tie]
    zeros = np.zeros((w.shape[0], 1))
    tp, fp = np.hstack([zeros, tp]), np.hstack([zeros, fp])
    with np.errstate(invalid="ignore", divide="ignore"):
        tpr = tp / tp[:, -1:]
        fpr = fp / fp[:, -1:]
    return fpr, tpr


def _auc(fpr: np.ndarray, tpr: np.ndarray) -> np.ndarray:
    return (np.diff(fpr, axis=1) * (tpr[:, 1:] + tpr[:, :-1]) / 2.0).sum(axis=1)


def _tpr_at(fpr: np.ndarray, tpr: np.ndarray, alpha: float) -> np.ndarray:
    """Highest TPR among thresholds whose FPR is at most ``alpha``, per row."""
    ok = fpr <= alpha + 1e-12
    return np.where(ok, tpr, 0.0).max(axis=1)


@dataclass
class AttackEvaluation:
    """How well one attack separates members from non-members in one set of images."""

    auc: float
    auc_ci: list[float | None]
    tpr_at_fpr: dict[str, dict[str, Any]]
    n: int
    n_members: int
    n_nonmembers: int
    n_patients: int | None

    def to_dict(self) -> dict[str, Any]:
        return {"auc": {"value": self.auc, "ci": self.auc_ci}, **self.tpr_at_fpr}


def evaluate_attack(score: np.ndarray, member: np.ndarray, *, clusters: np.ndarray | None,
                    n_boot: int, rng: np.random.Generator, level: float = 0.95
                    ) -> AttackEvaluation:
    """ROC AUC with a (patient-level) bootstrap interval and TPR at low FPRs.

    Parameters
    ----------
    score : numpy.ndarray
        ``(n,)`` membership scores, higher = member.
    member : numpy.ndarray
        ``(n,)`` booleans.
    clusters : numpy.ndarray or None
        Patient ids ``(n,)``; resampled as units when given.
    n_boot : int
        Bootstrap resamples (0: no intervals).
    rng : numpy.random.Generator
    level : float
        Interval level.

    Notes
    -----
    TPR at an FPR below ``1 / n_nonmembers`` can only be measured as the TPR at zero
    false positives; the entry then says ``"resolvable": false``.
    """
    score = np.asarray(score, dtype=np.float64)
    member = np.asarray(member, dtype=bool)
    n = len(score)
    inverse, m = _cluster_index(clusters, n)
    # resamples a block at a time (bounded memory); the same draws as bootstrap_weights
    blocks = bootstrap_weight_chunks(m, n_boot if n else 0, rng, width=n)
    n_mem, n_non = int(member.sum()), int((~member).sum())
    if n == 0 or n_mem == 0 or n_non == 0:
        for _ in blocks:  # draw them anyway: later users of rng see the same stream
            pass
        nan_entry = {"value": None, "ci": [None, None]}
        return AttackEvaluation(auc=float("nan"), auc_ci=[None, None],
                                tpr_at_fpr={_fpr_key(a): {**nan_entry, "resolvable": False}
                                            for a in LOW_FPRS},
                                n=n, n_members=n_mem, n_nonmembers=n_non,
                                n_patients=_n_units(clusters))
    aucs: list[np.ndarray] = []
    at_fpr: dict[float, list[np.ndarray]] = {alpha: [] for alpha in LOW_FPRS}
    for weights in itertools.chain([np.ones((1, m))], blocks):
        fpr, tpr = _roc_matrices(score, member, weights[:, inverse])
        aucs.append(_auc(fpr, tpr))
        for alpha in LOW_FPRS:
            at_fpr[alpha].append(_tpr_at(fpr, tpr, alpha))
    auc = np.concatenate(aucs)
    tprs = {}
    for alpha in LOW_FPRS:
        t = np.concatenate(at_fpr[alpha])
        tprs[_fpr_key(alpha)] = {"value": float(t[0]), "ci": percentile_interval(t[1:], level),
                                 "resolvable": bool(n_non * alpha >= 1.0)}
    return AttackEvaluation(auc=float(auc[0]), auc_ci=percentile_interval(auc[1:], level),
                            tpr_at_fpr=tprs, n=n, n_members=n_mem, n_nonmembers=n_non,
                            n_patients=_n_units(clusters))


def _n_units(clusters: np.ndarray | None) -> int | None:
    return None if clusters is None else int(len(np.unique(np.asarray(clusters).astype(str))))


def _fpr_key(alpha: float) -> str:
    return f"tpr_at_{alpha * 100:g}pct_fpr".replace(".", "_")


def roc_curve_points(score: np.ndarray, member: np.ndarray, n_points: int = 60
                     ) -> dict[str, list[float]]:
    """The ROC curve on a log-spaced FPR grid (10^-3 .. 1), for plotting on log axes."""
    score = np.asarray(score, dtype=np.float64)
    member = np.asarray(member, dtype=bool)
    if member.all() or not member.any():
        return {"fpr": [], "tpr": []}
    fpr, tpr = _roc_matrices(score, member, np.ones((1, len(score))))
    grid = np.unique(np.r_[0.0, np.logspace(-3, 0, n_points)])
    curve = [float(_tpr_at(fpr, tpr, g)[0]) for g in grid]
    return {"fpr": [float(g) for g in grid], "tpr": curve}


def describe_exposure(auc: float | None, ci: Sequence[float | None] | None,
                      tpr_1pct: float | None = None, *, resolvable: bool = True,
                      subject: str = "a patient's image", n_attacks: int = 1) -> str:
    """One plain-language sentence (or two) about an attack's AUC and its interval.

    The sentences live in :func:`auditkit.wording.membership_finding`.
    """
    from .. import wording

    return wording.membership_finding(auc, ci, tpr_1pct, resolvable=resolvable,
                                      subject=subject, n_attacks=n_attacks)
