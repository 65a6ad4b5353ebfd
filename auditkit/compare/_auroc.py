"""Resampled AUROC of every group and both versions, from one patient draw, fast.

AUROC under bootstrap weights is the Mann–Whitney statistic with multiplicity weights:
a resample that draws image ``i`` ``w_i`` times counts every (positive, negative) pair
``w_i · w_j`` times, so with the group's images sorted by score once,

    AUROC(w) = Σ_pos w_i · (W_neg below s_i + ½ · W_neg tied with s_i) / (W_pos · W_neg),

exact for a bootstrap with replacement (ties count half, as in scikit-learn's
``roc_auc_score``). The plan (:class:`AurocReplicates`) sorts each version's scores
once and records, per image in that order, its patient and its group in every
grouping. Each resample is then one pass per version over the sorted images: the
image's weight is its patient's draw count, and a small table of running sums per
group (cumulative negative weight, weighted count of pairs, positive weight) is
updated for every grouping at once — about ``2 × n`` weight look-ups per resample
instead of ``2 × groupings × n`` gathers and cumulative sums.

The pass is compiled with numba (a dependency of shap, already required) and runs
resamples in parallel; without numba the same statistic comes from the vectorised
numpy plan (:class:`auditkit.compare._paired.AurocPlan`), several times slower. Both
equal scikit-learn's ``roc_auc_score`` with ``sample_weight`` (tests check it).
Hand-written because no maintained library resamples AUROC for many groups under one
shared cluster draw.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from functools import cache
from typing import Any

import numpy as np

__all__ = ["AurocReplicates", "numba_available"]


@cache
def _kernel() -> Any:
    """The compiled per-resample pass (None when numba is not importable)."""
    try:
        import numba
    except ImportError:  # pragma: no cover - numba ships with shap, a requirement
        return None

    @numba.njit(parallel=True, cache=True, nogil=True)
    def kernel(weights: np.ndarray, patient: np.ndarray, positive: np.ndarray,
               run_start: np.ndarray, slots: np.ndarray, n_slots: int, first_all: bool,
               out: np.ndarray) -> None:  # pragma: no cover - compiled
        # slot n_slots is a scratch slot for images in no group of a grouping; with
        # first_all the first grouping puts every image in one group (kept in registers)
        j0 = 1 if first_all else 0
        b = weights.shape[0]
        n_runs = run_start.shape[1] - 1
        n_group = slots.shape[2]
        for r in numba.prange(b):
            w = weights[r]
            for v in range(patient.shape[0]):
                cum = np.zeros(n_slots + 1)  # negative weight strictly below
                num = np.zeros(n_slots + 1)  # Σ w_pos · (negatives below + ½ tied)
                wpos = np.zeros(n_slots + 1)
                tie_pos = np.zeros(n_slots + 1)
                tie_neg = np.zeros(n_slots + 1)
                pat, pos, starts, sl = patient[v], positive[v], run_start[v], slots[v]
                num0 = wpos0 = cum0 = 0.0
                for k in range(n_runs):
                    a = starts[k]
                    e = starts[k + 1]
                    if a >= e:
                        break
                    if e - a == 1:  # the usual case, a score no other image has: no branch
                        wt = w[pat[a]]
                        wp = wt * pos[a]
                        wn = wt - wp
                        if first_all:  # the all-images group in registers: no memory chain
                            num0 += wp * cum0
                            wpos0 += wp
                            cum0 += wn
                        for j in range(j0, n_group):
                            s = sl[a, j]
                            num[s] += wp * cum[s]
                            wpos[s] += wp
                            cum[s] += wn
                        continue
                    if first_all:  # flush the all-images registers into the table
                        num[sl[a, 0]] += num0
                        wpos[sl[a, 0]] += wpos0
                        cum[sl[a, 0]] += cum0
                        num0 = wpos0 = cum0 = 0.0
                    for t in range(a, e):  # tied scores: pairs inside the run count half
                        wt = w[pat[t]]
                        wp = wt * pos[t]
                        for j in range(n_group):
                            s = sl[t, j]
                            num[s] += wp * cum[s]
                            tie_pos[s] += wp
                            tie_neg[s] += wt - wp
                    for t in range(a, e):
                        for j in range(n_group):
                            s = sl[t, j]
                            num[s] += 0.5 * tie_pos[s] * tie_neg[s]
                            cum[s] += tie_neg[s]
                            wpos[s] += tie_pos[s]
                            tie_pos[s] = 0.0
                            tie_neg[s] = 0.0
                    if first_all:  # back into registers
                        num0, wpos0, cum0 = num[sl[a, 0]], wpos[sl[a, 0]], cum[sl[a, 0]]
                        num[sl[a, 0]] = wpos[sl[a, 0]] = cum[sl[a, 0]] = 0.0
                if first_all and pat.shape[0] > 0:
                    num[sl[0, 0]] += num0
                    wpos[sl[0, 0]] += wpos0
                    cum[sl[0, 0]] += cum0
                for s in range(n_slots):
                    den = wpos[s] * cum[s]
                    out[r, v, s] = num[s] / den if den > 0 else np.nan

    return kernel


def numba_available() -> bool:
    """Whether the compiled pass is used (numba importable)."""
    return _kernel() is not None


class AurocReplicates:
    """Plan for resampled AUROC of every group of every grouping, for several versions.

    Parameters
    ----------
    scores : sequence of ndarray, shape (n,)
        Positive-class score of each image, one array per version.
    is_positive : ndarray of bool, shape (n,)
        Whether each image is truly positive.
    memberships : sequence of ndarray of int, shape (n,)
        One per grouping: each image's group code ``0..G-1`` (-1: in no group).
    image_patient : ndarray of int, shape (n,), optional
        Each image's column in the draw-count matrix (its patient); images themselves
        when None.
    engine : {"auto", "numba", "numpy"}
        ``auto`` uses numba when importable.

    Attributes
    ----------
    slices : list of slice
        Per grouping, its groups' columns in the ``(…, n_slots)`` outputs.
    point : ndarray, shape (n_versions, n_slots)
        AUROC of each group on the images as they are (nan without both classes).
    """

    def __init__(self, scores: Sequence[np.ndarray], is_positive: np.ndarray,
                 memberships: Sequence[np.ndarray], *, image_patient: np.ndarray | None = None,
                 engine: str = "auto") -> None:
        if engine not in ("auto", "numba", "numpy"):
            raise ValueError(f"engine must be 'auto', 'numba' or 'numpy'; got {engine!r} instead.")
        if engine == "numba" and not numba_available():
            raise ImportError("engine='numba' needs numba (pip install numba).")
        self.engine = "numba" if engine != "numpy" and numba_available() else "numpy"
        pos = np.asarray(is_positive, dtype=bool)
        n = len(pos)
        codes = np.column_stack([np.asarray(c, dtype=np.int64) for c in memberships]) if len(
            memberships) else np.zeros((n, 0), dtype=np.int64)
        sizes = [int(codes[:, j].max()) + 1 if n and codes[:, j].max() >= 0 else 0
                 for j in range(codes.shape[1])]
        offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        self.slices = [slice(int(offsets[j]), int(offsets[j + 1])) for j in range(len(sizes))]
        self.n_slots = int(offsets[-1])
        # images in no group of a grouping go to a scratch slot past the end
        slots = np.where(codes >= 0, codes + offsets[:-1], self.n_slots).astype(np.int32)
        self._first_all = bool(n and codes.shape[1] and (codes[:, 0] == 0).all())
        patient = (np.arange(n) if image_patient is None
                   else np.asarray(image_patient, dtype=np.int64))
        self._n_versions = len(scores)
        self._scores = [np.asarray(s, dtype=np.float64) for s in scores]
        self._pos = pos
        self._codes = codes
        self._patient = patient
        # per version: images sorted by score; tie runs as start positions
        orders = [np.argsort(s, kind="mergesort") for s in self._scores]
        starts = []
        for s, order in zip(self._scores, orders):
            sorted_s = s[order]
            new = np.flatnonzero(np.r_[True, sorted_s[1:] != sorted_s[:-1]]) if n else np.zeros(
                0, dtype=np.int64)
            starts.append(np.r_[new, n])
        width = max((len(st) for st in starts), default=1)
        # pad with n so every version has as many run starts (an empty run ends the pass)
        self._run_start = np.full((self._n_versions, width), n, dtype=np.int64)
        for v, st in enumerate(starts):
            self._run_start[v, :len(st)] = st
        self._order_patient = np.ascontiguousarray(np.stack([patient[o] for o in orders]))
        self._order_pos = np.ascontiguousarray(np.stack([pos[o] for o in orders]),
                                               dtype=np.float32)
        self._order_slots = np.ascontiguousarray(np.stack([slots[o] for o in orders]))
        ones = np.ones((1, int(patient.max()) + 1 if n else 0), dtype=np.float32)
        self._plans: list[list[Any]] | None = None
        self.point = self.replicates(ones)[0] if n else np.zeros((self._n_versions, 0))

    def replicates(self, weights: np.ndarray) -> np.ndarray:
        """AUROC per resample, version and group: ``(b, n_versions, n_slots)``.

        ``weights`` ``(b, m)`` are the draw counts of each patient (column = patient).
        """
        w = np.ascontiguousarray(weights, dtype=np.float32)
        if self.engine == "numba":
            out = np.empty((w.shape[0], self._n_versions, self.n_slots))
            _kernel()(w, self._order_patient, self._order_pos, self._run_start,
                      self._order_slots, self.n_slots, self._first_all, out)
            return out
        return self._numpy_pass(w)

    def _numpy_pass(self, w: np.ndarray) -> np.ndarray:
        """The same statistic with the vectorised numpy plan, one group at a time."""
        from ._paired import AurocPlan

        if self._plans is None:
            self._plans = []
            for s in self._scores:
                per_slot: list[Any] = [None] * self.n_slots
                for j, sl in enumerate(self.slices):
                    for g in range(sl.stop - sl.start):
                        idx = np.flatnonzero(self._codes[:, j] == g)
                        per_slot[sl.start + g] = AurocPlan.build(idx, s, self._pos)
                self._plans.append(per_slot)
        image_w = np.take(w, self._patient, axis=1)
        out = np.empty((w.shape[0], self._n_versions, self.n_slots))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            for v, per_slot in enumerate(self._plans):
                for k, plan in enumerate(per_slot):
                    out[:, v, k] = plan.replicates(image_w)
        return out
