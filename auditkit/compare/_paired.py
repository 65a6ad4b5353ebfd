"""Paired, patient-level bootstrap of two versions' metrics, per group, memory-bounded.

Both versions answered the same images, so a resample draws *patients* once and
uses the draw for both versions: the difference B − A is then computed on the same
patients in every resample, which is what makes the interval paired (much narrower
than two independent bootstraps when the versions agree on most images).

Every metric compared here is a ratio of sums of per-image columns (counts of
correct answers, true positives, per-class hits, calibration residuals per
confidence bin), so a resample needs only each patient's draw count. The counts come
from :func:`auditkit._metrics.bootstrap_weights` (the same draw as every other
interval in auditkit), ``chunk`` resamples at a time: memory is ``chunk × patients``,
never ``resamples × images``. Per attribute, the (patient, group) units are sorted by
group so each group's sums are one small matrix product over a contiguous slice.

Hand-written for the same reason as :mod:`auditkit._metrics`: no maintained library
resamples clusters for many groups at once. The multiple-comparison step is
:func:`auditkit.stats.bootstrap_stepdown` (Westfall & Young's step-down, the one the
fairness gaps use) on the same replicates.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np

from .._metrics import ECE_BINS, bootstrap_weights

__all__ = [
    "PAIRED_METRICS",
    "draw_counts",
    "AurocPlan",
    "PairedColumns",
    "metric_from_sums",
    "paired_bootstrap",
]

#: Metrics compared with a paired interval (all ratios of per-image sums).
PAIRED_METRICS = ("accuracy", "balanced_accuracy", "sensitivity", "specificity", "ppv", "npv",
                  "ece")


@dataclass
class PairedColumns:
    """Per-image columns ``(n, k)`` and where each quantity sits in them.

    ``index[name]`` is a column index (or a list of them) shared by both versions'
    layouts; version-specific columns are ``index["a:<name>"]`` and ``index["b:<name>"]``.
    """

    values: np.ndarray
    index: dict[str, int | list[int]]


def build_columns(*, y: np.ndarray, pred_a: np.ndarray, pred_b: np.ndarray,
                  proba_a: np.ndarray, proba_b: np.ndarray, positive: int,
                  n_classes: int) -> PairedColumns:
    """The per-image columns every paired metric and the flip table are built from.

    ``y``, ``pred_*`` are class indices ``(n,)``; ``proba_*`` are ``(n, n_classes)``
    probabilities in [0, 1]; ``positive`` is the clinically positive class index.
    """
    cols: list[np.ndarray] = []
    index: dict[str, int | list[int]] = {}

    def add(name: str, values: np.ndarray) -> None:
        index[name] = len(cols)
        cols.append(np.asarray(values, dtype=np.float64))

    def add_many(name: str, block: list[np.ndarray]) -> None:
        index[name] = list(range(len(cols), len(cols) + len(block)))
        cols.extend(np.asarray(b, dtype=np.float64) for b in block)

    is_pos = y == positive
    add("n", np.ones(len(y)))
    add("pos", is_pos)
    add_many("class", [y == c for c in range(n_classes)])
    correct = {"a": pred_a == y, "b": pred_b == y}
    add("both_right", correct["a"] & correct["b"])
    for v, pred, proba in (("a", pred_a, proba_a), ("b", pred_b, proba_b)):
        add(f"{v}:correct", correct[v])
        add(f"{v}:predpos", pred == positive)
        add(f"{v}:tp", (pred == positive) & is_pos)
        add_many(f"{v}:class_correct", [(y == c) & correct[v] for c in range(n_classes)])
        conf = np.asarray(proba, dtype=np.float64).max(axis=1)
        bins = np.minimum((conf * ECE_BINS).astype(int), ECE_BINS - 1)
        resid = correct[v] - conf
        add_many(f"{v}:ece_bin", [np.where(bins == b, resid, 0.0) for b in range(ECE_BINS)])
    return PairedColumns(values=np.column_stack(cols), index=index)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def metric_from_sums(sums: np.ndarray, index: dict[str, int | list[int]], version: str,
                     metric: str) -> np.ndarray:
    """A metric of version ``"a"`` or ``"b"`` from column sums ``(..., k)``.

    Definitions match :func:`auditkit._metrics.compute_metrics` (one-vs-rest for the
    positive class; balanced accuracy over the classes present; ECE with 10 bins).
    """
    def col(name: str) -> np.ndarray:
        return sums[..., index[name]]

    n, pos = col("n"), col("pos")
    correct, predpos, tp = col(f"{version}:correct"), col(f"{version}:predpos"), col(f"{version}:tp")
    if metric == "accuracy":
        return _ratio(correct, n)
    if metric == "sensitivity":
        return _ratio(tp, pos)
    if metric == "specificity":
        tn = n - pos - predpos + tp
        return _ratio(tn, n - pos)
    if metric == "ppv":
        return _ratio(tp, predpos)
    if metric == "npv":
        tn = n - pos - predpos + tp
        return _ratio(tn, n - predpos)
    if metric == "balanced_accuracy":
        recall = _ratio(col(f"{version}:class_correct"), col("class"))
        with warnings.catch_warnings():  # a resample without any class stays nan
            warnings.simplefilter("ignore", RuntimeWarning)
            return np.nanmean(recall, axis=-1)
    if metric == "ece":
        return _ratio(np.abs(col(f"{version}:ece_bin")).sum(axis=-1), n)
    raise ValueError(f"metric must be one of {list(PAIRED_METRICS)}; got {metric!r} instead.")


@cache
def _count_kernel() -> Any:
    """Compiled per-row counting of draws (None without numba)."""
    try:
        import numba
    except ImportError:  # pragma: no cover - numba ships with shap, a requirement
        return None

    # serial: counting is a fraction of drawing, and idle worker threads spinning at the
    # end of a parallel loop cost more CPU than they save on a shared machine
    @numba.njit(cache=True, nogil=True)
    def count(draws: np.ndarray, out: np.ndarray) -> None:  # pragma: no cover - compiled
        for r in range(draws.shape[0]):
            row = out[r]
            for i in draws[r]:
                row[i] += 1.0

    return count


def draw_counts(m: int, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Draw counts of ``m`` units in ``n_boot`` resamples, ``(n_boot, m)`` float32.

    The same draw as :func:`auditkit._metrics.bootstrap_weights` (the same call on the
    generator, so the same counts for the same seed; a test checks it), counted in
    place with numba when available instead of one long ``bincount`` and two casts.
    """
    kernel = _count_kernel()
    if kernel is None:  # pragma: no cover - numba ships with shap
        return bootstrap_weights(None, m, n_boot, rng)[0].astype(np.float32)
    draws = rng.integers(0, m, size=(n_boot, m))
    out = np.zeros((n_boot, m), dtype=np.float32)
    kernel(draws, out)
    return out


@dataclass
class GroupSums:
    """Column sums per group: ``point`` ``(G, k)`` and bootstrap ``replicates`` ``(B, G, k)``."""

    point: np.ndarray
    replicates: np.ndarray


def paired_bootstrap(values: np.ndarray, memberships: Sequence[np.ndarray], *,
                     patients: np.ndarray | None, n_boot: int, rng: np.random.Generator,
                     chunk: int = 100,
                     progress: Callable[[int, int, str], None] | None = None,
                     on_chunk: Callable[[np.ndarray, int, np.ndarray], None] | None = None,
                     ) -> list[GroupSums]:
    """Point and resampled column sums per group of every grouping, one draw for all.

    Parameters
    ----------
    values : ndarray, shape (n, k)
        Per-image columns (:func:`build_columns`).
    memberships : sequence of ndarray of int, shape (n,)
        One per grouping (an attribute, an intersection, "overall"): each image's group
        code ``0..G-1``, or -1 when it is in no group of that grouping.
    patients : ndarray, shape (n,), optional
        Patient id per image; resamples draw patients (images when None).
    n_boot : int
        Resamples.
    rng : numpy.random.Generator
    chunk : int
        Resamples drawn at once; memory is about ``chunk × n_patients`` floats.
    on_chunk : callable, optional
        ``on_chunk(weights, start, image_patient)`` with each patient's draw count in
        this chunk's resamples ``(b, m)`` float32, the index of the chunk's first
        resample and each image's column in ``weights`` ``(n,)``: for statistics that are
        not sums (AUROC, :class:`auditkit.compare._auroc.AurocReplicates`).

    Returns
    -------
    list of GroupSums, one per grouping, in order.

    Notes
    -----
    Images are first summed per *cell*: the patients sharing one group in every
    grouping at once. Patients are numbered cell by cell, so each cell is a contiguous
    run of the draw-count matrix and a resample's cell sums are one small product per
    cell (``chunk × patients × k`` work in all); each grouping's group sums are then
    sums of cells. A patient whose images fall in several cells (an age band that
    changed between visits) contributes a unit to each, weighted by the patient's count.
    """
    n, k = values.shape
    codes = np.column_stack([np.asarray(c, dtype=np.int64) for c in memberships]) if len(
        memberships) else np.zeros((n, 0), dtype=np.int64)
    cell_keys, cell_of_image = np.unique(codes, axis=0, return_inverse=True)
    cell_of_image = cell_of_image.ravel()
    n_cells = len(cell_keys)
    raw = (np.arange(n) if patients is None
           else np.unique(np.asarray(patients).astype(str), return_inverse=True)[1].ravel())
    # units: (cell, patient) pairs, sorted by cell; sums of the image columns per unit
    unit_key = cell_of_image * (int(raw.max()) + 1 if n else 1) + raw
    order = np.argsort(unit_key, kind="stable")
    ukeys, starts, unit_of_image_sorted = np.unique(unit_key[order], return_index=True,
                                                    return_inverse=True)
    unit_sums = np.add.reduceat(values[order], starts, axis=0) if n else np.zeros((0, k))
    unit_cell = cell_of_image[order][starts]
    unit_raw_patient = raw[order][starts]
    # number patients in order of first appearance among the cell-sorted units, so a
    # patient with all images in one cell is one contiguous column: no gather needed
    _, first = np.unique(unit_raw_patient, return_index=True)
    rank = np.empty(len(first), dtype=np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(len(first))
    unit_patient = rank[np.searchsorted(np.unique(unit_raw_patient), unit_raw_patient)]
    m = len(first)
    nested = len(unit_patient) == m  # every patient in exactly one cell
    image_patient = np.empty(n, dtype=np.int64)
    image_patient[order] = unit_patient[unit_of_image_sorted.ravel()]
    bounds = np.searchsorted(unit_cell, np.arange(n_cells + 1))
    unit32 = unit_sums.astype(np.float32)
    cell_point = np.vstack([unit_sums[bounds[c]:bounds[c + 1]].sum(axis=0)
                            for c in range(n_cells)]) if n_cells else np.zeros((0, k))
    # cells -> groups of each grouping: one-hot (n_cells, G)
    maps = []
    for j in range(codes.shape[1]):
        n_groups = int(codes[:, j].max()) + 1 if n and codes[:, j].max() >= 0 else 0
        onehot = np.zeros((n_cells, n_groups))
        ok = cell_keys[:, j] >= 0
        onehot[np.flatnonzero(ok), cell_keys[ok, j]] = 1.0
        maps.append(onehot)
    reps = [np.zeros((n_boot, onehot.shape[1], k)) for onehot in maps]
    cell_chunk = np.zeros((chunk, n_cells, k), dtype=np.float32)
    done = 0
    while done < n_boot:
        b = min(chunk, n_boot - done)
        w32 = draw_counts(m, b, rng)  # (b, m) patient draw counts
        if on_chunk is not None:
            on_chunk(w32, done, image_patient)
        if not nested:
            w32 = np.take(w32, unit_patient, axis=1)  # each unit weighs as its patient
        for c in range(n_cells):
            lo, hi = bounds[c], bounds[c + 1]
            np.matmul(w32[:, lo:hi], unit32[lo:hi], out=cell_chunk[:b, c])
        # (b, k, cells) @ (cells, G) -> (b, k, G): every grouping's group sums
        by_k = cell_chunk[:b].transpose(0, 2, 1).astype(np.float64)
        for onehot, out_reps in zip(maps, reps):
            out_reps[done:done + b] = (by_k @ onehot).transpose(0, 2, 1)
        done += b
        if progress:
            progress(done, n_boot, "paired bootstrap")
    out = [GroupSums(point=onehot.T @ cell_point, replicates=r) for onehot, r in zip(maps, reps)]
    return out


@dataclass
class AurocPlan:
    """Precomputed ranks of one group's scores, for resampled AUROC by cumulative sums.

    With the negatives sorted by score, a positive's weighted count of negatives below it
    (ties counting half) is a difference of the negatives' cumulative weights at two
    precomputed positions, so each resample costs a few passes over the group's weights
    and no sort. Equals :func:`auditkit._metrics._weighted_auroc` (a test checks it).
    """

    neg: np.ndarray  # image indices of the negatives, sorted by score
    pos: np.ndarray  # image indices of the positives
    below: np.ndarray  # per positive: number of negatives with a lower score
    upto: np.ndarray  # per positive: number of negatives with a lower or equal score

    @classmethod
    def build(cls, idx: np.ndarray, score: np.ndarray, is_pos: np.ndarray) -> AurocPlan:
        """``idx`` the group's image indices; ``score``/``is_pos`` over all images."""
        s, p = score[idx], is_pos[idx]
        neg_order = np.argsort(s[~p], kind="mergesort")
        neg_scores = s[~p][neg_order]
        pos_scores = s[p]
        return cls(neg=idx[~p][neg_order], pos=idx[p],
                   below=np.searchsorted(neg_scores, pos_scores, side="left"),
                   upto=np.searchsorted(neg_scores, pos_scores, side="right"))

    def replicates(self, weights: np.ndarray) -> np.ndarray:
        """AUROC for each row of per-image ``weights`` ``(b, n)`` (nan without both classes)."""
        b = weights.shape[0]
        cum = np.zeros((b, len(self.neg) + 1), dtype=np.float64)
        np.cumsum(weights[:, self.neg], axis=1, out=cum[:, 1:])
        w_pos = weights[:, self.pos].astype(np.float64)
        num = (w_pos * (cum[:, self.below] + cum[:, self.upto])).sum(axis=1) * 0.5
        den = w_pos.sum(axis=1) * cum[:, -1]
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)
