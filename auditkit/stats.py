"""Statistical building blocks: small-sample intervals and family-wise error control.

Everything here is a pure function of arrays; nothing knows about models or audits, so
other parts of the library (version comparison, fairness, privacy) can reuse them.

Intervals (chosen by simulation, see ``docs/statistics.md``):

- :func:`proportion_interval` — Wilson score interval computed at the *effective*
  sample size ``n / deff``, the design effect ``deff`` estimated from patient
  clusters with a cluster-robust (sandwich) variance, and Student's t on 2(m - 1)
  df for m patients (chosen by simulation: the normal quantile under-covered at 20
  patients, 0.93; t on m - 1 df over-covered at 7, 0.98). Percentile
  bootstrap intervals under-cover small groups (0.78-0.88 at 7 patients); Wilson at
  the effective n keeps nominal coverage down to a handful of patients and never has
  zero width (a single positive gives sensitivity 0% (0% to 79%), never [0, 0]).
- :func:`clustered_auroc_interval` — Obuchowski's (1997) variance for clustered ROC
  data (DeLong's structural components summed per patient), on the logit scale with
  Student's t on (patients - 1) df (the normal quantile under-covered: 0.87 at 7
  patients).
- :func:`paired_difference_interval` — the difference of two proportions measured on
  the same images (version B − version A): Newcombe's (1998) hybrid score interval for
  paired data (his method 10), built from each version's Wilson interval at the
  effective n. The paired bootstrap gives a zero-width interval when no image changed
  and under-covers when few did; this one does not (``docs/statistics.md``).
- :func:`ratio_interval` — any ratio of sums (a mean difference, calibration in
  the large) with its cluster-robust linearised variance and a t quantile.

Family-wise control:

- :func:`westfall_young_stepdown` — min-P step-down adjustment over a family of
  statistics whose joint null distribution was obtained by resampling (Westfall &
  Young, 1993), with the critical value of each statistic, so that the adjusted
  p-value and a simultaneous interval always agree.
- :func:`bootstrap_stepdown` — the same step-down (its max-T form) for estimates with
  bootstrap replicates (version comparison): studentized, centred replicates as the null.
- :func:`holm_adjust` — Holm's step-down adjustment for plain p-values.

Hand-written because statsmodels has Wilson and Holm but neither the design-effect
adjustment for clustered data nor a min-P step-down over resampled statistics.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as _sps

__all__ = [
    "BootstrapStepDown",
    "StepDownResult",
    "bootstrap_stepdown",
    "clustered_auroc_interval",
    "holm_adjust",
    "minimum_detectable_difference",
    "paired_difference_interval",
    "proportion_interval",
    "ratio_interval",
    "westfall_young_stepdown",
]


def _quantile(level: float, clusters: int | None) -> float:
    """Two-sided quantile: Student's t with ``clusters - 1`` df, normal when unknown."""
    upper = 0.5 + level / 2.0
    if clusters is None or clusters < 2:
        return float(_sps.norm.ppf(upper))
    return float(_sps.t.ppf(upper, df=clusters - 1))


def _cluster_sums(values: np.ndarray, clusters: np.ndarray | None) -> np.ndarray:
    """Per-cluster sums of ``values`` ``(n,)`` (each value its own cluster without ids)."""
    if clusters is None:
        return np.asarray(values, dtype=np.float64)
    _, inverse = np.unique(np.asarray(clusters).astype(str), return_inverse=True)
    return np.bincount(inverse, weights=np.asarray(values, dtype=np.float64))


def proportion_interval(successes: np.ndarray, clusters: np.ndarray | None = None, *,
                        level: float = 0.95) -> tuple[float, list[float | None], float]:
    """Wilson interval at the design-effect-adjusted sample size.

    Parameters
    ----------
    successes : numpy.ndarray
        ``(n,)`` 0/1 outcome per image of the denominator (e.g. per positive image for
        sensitivity: 1 when caught).
    clusters : numpy.ndarray, optional
        ``(n,)`` patient id per image; None treats images as independent.
    level : float
        Interval level, e.g. 0.95.

    Returns
    -------
    value : float
        The proportion (nan when ``n == 0``).
    ci : list
        ``[low, high]`` (``[None, None]`` when ``n == 0``).
    n_effective : float
        ``n / deff``: how many independent images the clustered images are worth.

    Notes
    -----
    ``deff = v_cluster / v_binomial`` with ``v_cluster = m/(m-1) * sum_i (s_i - p n_i)^2
    / n^2`` over the ``m`` clusters, floored at 1. When every outcome is equal the
    variance ratio is undefined and the worst case is assumed: each patient is one
    observation (``n_effective = m``).
    """
    s = np.asarray(successes, dtype=np.float64)
    n = int(s.size)
    if n == 0:
        return float("nan"), [None, None], 0.0
    p = float(s.mean())
    if clusters is None:
        n_eff = float(n)
    else:
        s_i = _cluster_sums(s, clusters)
        n_i = _cluster_sums(np.ones(n), clusters)
        m = int(s_i.size)
        v_binom = p * (1.0 - p) / n
        if v_binom > 0 and m >= 2:
            v_clust = m / (m - 1) * float(((s_i - p * n_i) ** 2).sum()) / n ** 2
            n_eff = n / max(1.0, v_clust / v_binom)
        else:
            n_eff = float(min(m, n))
    # Student's t on 2(m - 1) df: the normal quantile under-covered at 20 patients
    # (0.93) and t on m - 1 df over-covered at 7 (0.98); see docs/statistics.md
    m_units = n if clusters is None else int(np.unique(np.asarray(clusters).astype(str)).size)
    lo, hi = _wilson(p, n_eff, _quantile(level, 2 * m_units - 1 if m_units > 1 else None))
    return p, [lo, hi], n_eff


def _wilson(p: float, n_eff: float, z: float) -> tuple[float, float]:
    """Wilson score interval for proportion ``p`` at sample size ``n_eff``."""
    denom = 1.0 + z * z / n_eff
    centre = (p + z * z / (2.0 * n_eff)) / denom
    half = z / denom * np.sqrt(p * (1.0 - p) / n_eff + z * z / (4.0 * n_eff ** 2))
    return float(max(0.0, centre - half)), float(min(1.0, centre + half))


def paired_difference_interval(success_a: np.ndarray, success_b: np.ndarray,
                               clusters: np.ndarray | None = None, *, level: float = 0.95,
                               ) -> list[float | None]:
    """Interval for ``mean(success_b) - mean(success_a)`` on the same images.

    Newcombe's hybrid score interval for a paired difference of proportions (Newcombe
    1998, *Statistics in Medicine* 17:2635, method 10): each version's Wilson interval
    (here :func:`proportion_interval`, at the design-effect-adjusted n when ``clusters``
    are given) combined through the correlation ``phi`` of the paired 2 × 2 table. It
    keeps a width when no image changed (both versions right on all 12 images: about
    −26 to +26 points), where the paired bootstrap collapses to [0, 0].

    Parameters
    ----------
    success_a, success_b : numpy.ndarray
        ``(n,)`` 0/1 outcome of each version on the same images (e.g. right answer).
    clusters : numpy.ndarray, optional
        ``(n,)`` patient id per image.
    level : float
        Two-sided level; a one-sided bound at ``alpha`` is the matching end at
        ``level = 1 - 2 * alpha``.

    Returns
    -------
    list
        ``[low, high]``; ``[None, None]`` for no images.

    Notes
    -----
    Hand-written: statsmodels and scipy offer McNemar's test but no interval for a
    paired difference of proportions.
    """
    a = np.asarray(success_a, dtype=bool)
    b = np.asarray(success_b, dtype=bool)
    if a.size == 0:
        return [None, None]
    p1, ci1, _ = proportion_interval(a.astype(float), clusters, level=level)
    p2, ci2, _ = proportion_interval(b.astype(float), clusters, level=level)
    l1, u1 = float(ci1[0]), float(ci1[1])  # type: ignore[arg-type]
    l2, u2 = float(ci2[0]), float(ci2[1])  # type: ignore[arg-type]
    n11 = float(np.sum(a & b))
    n10 = float(np.sum(a & ~b))
    n01 = float(np.sum(~a & b))
    n00 = float(np.sum(~a & ~b))
    margins = (n11 + n10) * (n01 + n00) * (n11 + n01) * (n10 + n00)
    # method 10's phi: a positive association is shrunk by n / 2 (and never below 0)
    cross = n11 * n00 - n10 * n01
    shrunk = max(cross - (n11 + n10 + n01 + n00) / 2.0, 0.0) if cross > 0 else cross
    phi = shrunk / np.sqrt(margins) if margins > 0 else 0.0
    theta = p2 - p1
    low = theta - np.sqrt(max(0.0, (p2 - l2) ** 2 - 2 * phi * (p2 - l2) * (u1 - p1)
                              + (u1 - p1) ** 2))
    high = theta + np.sqrt(max(0.0, (u2 - p2) ** 2 - 2 * phi * (u2 - p2) * (p1 - l1)
                               + (p1 - l1) ** 2))
    return [float(max(-1.0, low)), float(min(1.0, high))]


def ratio_interval(numerator: np.ndarray, denominator: np.ndarray,
                   clusters: np.ndarray | None = None, *, level: float = 0.95,
                   bounds: tuple[float, float] = (-np.inf, np.inf),
                   ) -> tuple[float, list[float | None], float]:
    """A ratio of sums ``sum(a) / sum(b)`` with a cluster-robust t interval.

    The variance is the linearised (delta-method) sandwich
    ``m/(m-1) * sum_i (a_i - r b_i)^2 / (sum b)^2`` over the ``m`` clusters.

    Returns
    -------
    value, ci, standard_error
    """
    a = _cluster_sums(np.asarray(numerator, dtype=np.float64), clusters)
    b = _cluster_sums(np.asarray(denominator, dtype=np.float64), clusters)
    total = float(b.sum())
    if total <= 0:
        return float("nan"), [None, None], float("nan")
    r = float(a.sum()) / total
    m = int((b > 0).sum()) if clusters is not None else int(b.size)
    if m < 2:
        return r, [None, None], float("nan")
    se = float(np.sqrt(m / (m - 1) * ((a - r * b) ** 2).sum()) / total)
    q = _quantile(level, m)
    lo, hi = max(bounds[0], r - q * se), min(bounds[1], r + q * se)
    return r, [float(lo), float(hi)], se


def _logit(x: float) -> float:
    return float(np.log(x / (1.0 - x)))


def _expit(x: float) -> float:
    return float(1.0 / (1.0 + np.exp(-x)))


def clustered_auroc_interval(score: np.ndarray, is_positive: np.ndarray,
                             clusters: np.ndarray | None = None, *, level: float = 0.95,
                             ) -> tuple[float, list[float | None], float]:
    """AUROC with Obuchowski's clustered variance, interval on the logit scale.

    Parameters
    ----------
    score : numpy.ndarray
        ``(n,)`` positive-class scores.
    is_positive : numpy.ndarray
        ``(n,)`` booleans.
    clusters : numpy.ndarray, optional
        Patient ids ``(n,)``.
    level : float

    Returns
    -------
    value, ci, standard_error
        ``ci`` is ``[None, None]`` without at least one positive and one negative.

    Notes
    -----
    Obuchowski NA. Nonparametric analysis of clustered ROC curve data. Biometrics
    1997;53:567-578. With one image per patient this is DeLong's variance. The
    logit transform keeps the interval inside (0, 1); an AUROC of exactly 0 or 1 (no
    variance to estimate) gets a Wilson interval with one observation per patient of
    the smaller side, so the interval never has zero width. The quantile is Student's
    t with (patients - 1) degrees of freedom.
    """
    score = np.asarray(score, dtype=np.float64)
    pos = np.asarray(is_positive, dtype=bool)
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan"), [None, None], float("nan")
    xs, ys = score[pos], score[~pos]
    # DeLong's structural components from ranks: V10 = share of negatives below each positive
    all_rank = _sps.rankdata(np.r_[xs, ys])
    v10 = (all_rank[:n_pos] - _sps.rankdata(xs)) / n_neg
    v01 = 1.0 - (all_rank[n_pos:] - _sps.rankdata(ys)) / n_pos
    theta = float(v10.mean())
    if clusters is None:
        ids = np.arange(score.size).astype(str)
    else:
        ids = np.asarray(clusters).astype(str)
    _, inverse = np.unique(ids, return_inverse=True)
    k = int(inverse.max()) + 1
    v10_i = np.bincount(inverse[pos], weights=v10, minlength=k)
    v01_i = np.bincount(inverse[~pos], weights=v01, minlength=k)
    m_i = np.bincount(inverse[pos], minlength=k).astype(float)
    n_i = np.bincount(inverse[~pos], minlength=k).astype(float)
    if k < 2:
        return theta, [None, None], float("nan")
    d10 = v10_i - m_i * theta
    d01 = v01_i - n_i * theta
    s10 = k / ((k - 1) * n_pos) * float((d10 ** 2).sum())
    s01 = k / ((k - 1) * n_neg) * float((d01 ** 2).sum())
    s11 = k / (k - 1) * float((d10 * d01).sum())
    var = max(s10 / n_pos + s01 / n_neg + 2.0 * s11 / (n_pos * n_neg), 0.0)
    se = float(np.sqrt(var))
    q = _quantile(level, k)
    if se <= 0 or theta <= 0 or theta >= 1:
        # complete separation (or none): the variance estimate is 0. Fall back to a
        # Wilson interval with one observation per patient of the smaller side, so
        # the interval never has zero width.
        units = min(len(np.unique(inverse[pos])), len(np.unique(inverse[~pos])))
        lo, hi = _wilson(theta, float(max(units, 1)), q)
        return theta, [lo, hi], se
    half = q * se / (theta * (1.0 - theta))
    return theta, [_expit(_logit(theta) - half), _expit(_logit(theta) + half)], se


# --------------------------------------------------------------------------- multiplicity


def holm_adjust(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (nan entries stay nan and are not counted).

    Holm S. A simple sequentially rejective multiple test procedure. Scand J Stat
    1979;6:65-70. Reject hypothesis ``i`` at family-wise level alpha when
    ``adjusted[i] <= alpha``.
    """
    p = np.asarray(p_values, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(~np.isnan(p))
    h = ok.size
    if h == 0:
        return out.tolist()
    order = ok[np.argsort(p[ok], kind="mergesort")]
    adj = np.minimum(1.0, np.maximum.accumulate((h - np.arange(h)) * p[order]))
    out[order] = adj
    return out.tolist()


@dataclass
class StepDownResult:
    """Westfall-Young min-P step-down result for ``H`` statistics.

    Attributes
    ----------
    p_raw : numpy.ndarray
        ``(H,)`` permutation p-values, ``(1 + #{replicates >= observed}) / (B + 1)``.
    p_adjusted : numpy.ndarray
        ``(H,)`` family-wise adjusted p-values.
    reject : numpy.ndarray
        ``(H,)`` booleans: ``p_adjusted <= alpha``.
    critical : numpy.ndarray
        ``(H,)`` critical values on the statistic's own scale: ``reject[j]`` holds
        exactly when ``observed[j] > critical[j]``, so ``[observed - critical,
        observed + critical]`` is a simultaneous interval that excludes zero exactly
        when the hypothesis is rejected. ``critical_first`` is the value at the first
        step (the whole family), used for power.
    """

    p_raw: np.ndarray
    p_adjusted: np.ndarray
    reject: np.ndarray
    critical: np.ndarray
    critical_first: np.ndarray


def westfall_young_stepdown(observed: np.ndarray, replicates: np.ndarray, *,
                            alpha: float = 0.05, method: str = "minP") -> StepDownResult:
    """Min-P (or max-T) step-down adjustment from a joint resampling distribution.

    Parameters
    ----------
    observed : numpy.ndarray
        ``(H,)`` statistics, larger = more evidence against the null. nan marks a
        statistic that could not be computed: it is left out of the family.
    replicates : numpy.ndarray
        ``(B, H)`` the same statistics on ``B`` datasets drawn under the complete null
        with *one* resampling applied to all statistics at once (so their dependence,
        e.g. two codings of one attribute, is kept: a redundant statistic then costs
        the family almost nothing). nan = not computable in that replicate (no call).
    alpha : float
        Family-wise error rate.
    method : {"minP", "maxT"}
        ``minP`` (default) first turns each statistic into its own resampling p-value, so
        statistics on different scales (gaps of different metrics) weigh alike; its
        resolution is ``1 / (B + 1)``, so a family of ``H`` statistics needs ``B`` well
        above ``H / alpha`` to reject anything. ``maxT`` compares the statistics
        themselves (they must share a scale, e.g. studentized): no such resolution
        limit, the right choice for large families of studentized bootstrap statistics.
        Both share everything else: the ordering, the successive maxima over the
        hypotheses not yet rejected, monotone adjusted p-values and critical values that
        agree with the decisions.

    Notes
    -----
    Westfall PH, Young SS. Resampling-Based Multiple Testing. Wiley 1993, algorithms
    2.5 (max-T) and 2.8 (min-P). The observed data count as one of the ``B + 1``
    datasets, so no p-value is 0. The decision and the critical value are computed from
    the same order statistics so they cannot disagree through rounding.
    """
    if method not in ("minP", "maxT"):
        raise ValueError(f"method must be 'minP' or 'maxT'; got {method!r} instead.")
    obs = np.asarray(observed, dtype=np.float64)
    reps = np.asarray(replicates, dtype=np.float64)
    h = obs.size
    b = reps.shape[0]
    nan_h = np.full(h, np.nan)
    active = np.flatnonzero(~np.isnan(obs))
    p_raw, p_adj, crit, crit1 = nan_h.copy(), nan_h.copy(), nan_h.copy(), nan_h.copy()
    reject = np.zeros(h, dtype=bool)
    if active.size == 0:
        return StepDownResult(p_raw, p_adj, reject, crit, crit1)
    all_t = np.vstack([obs[active][None, :], np.where(np.isnan(reps[:, active]), -np.inf,
                                                      reps[:, active])])  # (B+1, A)
    total = b + 1
    # cnt[r, j] = #{rows r' : T[r', j] >= T[r, j]}  (>= 1, counts itself)
    sorted_t = np.sort(all_t, axis=0)
    cnt = np.column_stack([total - np.searchsorted(sorted_t[:, j], all_t[:, j], side="left")
                           for j in range(active.size)])
    cnt = np.where(np.isinf(all_t), total, cnt)  # no gap computable: least extreme
    obs_cnt = cnt[0]
    # smaller score = more extreme: the count (min-P) or the negated statistic (max-T)
    score = cnt.astype(np.float64) if method == "minP" else -all_t
    obs_score = score[0]
    order = np.argsort(obs_score, kind="mergesort")
    # min score over the remaining set R_s = order[s:], for every row
    tail_min = np.minimum.accumulate(score[:, order][:, ::-1], axis=1)[:, ::-1]  # (B+1, A)
    allowed = int(np.floor(alpha * total + 1e-9))  # rows allowed at or below the threshold
    kappas = np.empty(active.size, dtype=int)
    thresholds = np.empty(active.size)  # max-T: reject at step s iff score < thresholds[s]
    q_steps = np.empty(active.size)
    for s in range(active.size):
        col = np.sort(tail_min[:, s])
        # min-P: largest kappa with #{rows: tail_min <= kappa} <= allowed
        kappas[s] = int(col[allowed] - 1) if allowed < total else total
        thresholds[s] = col[allowed] if allowed < total else np.inf
        q_steps[s] = (col <= obs_score[order[s]]).sum() / total
    adj_sorted = np.minimum(1.0, np.maximum.accumulate(q_steps))
    rej_sorted = adj_sorted <= alpha + 1e-12
    stop = int(np.argmin(rej_sorted)) if not rej_sorted.all() else active.size
    desc = -np.sort(-all_t[1:], axis=0)  # replicate values, largest first (B, A)

    def critical_value(j: int, step: int) -> float:
        if method == "maxT":
            # reject iff -t < threshold  <=>  t > -threshold (one value for the step)
            v = -float(thresholds[step])
            return 0.0 if v == -np.inf else v
        kappa = int(kappas[step])
        # reject iff 1 + #{replicates >= t} <= kappa  <=>  t > (kappa-th largest replicate)
        if kappa < 1:
            return float("inf")
        if kappa - 1 >= b:
            return float("-inf")
        v = float(desc[kappa - 1, j])
        return 0.0 if np.isinf(v) else v

    for s, j in enumerate(order):
        step = min(s if s < stop else stop, active.size - 1)
        idx = active[j]
        p_raw[idx] = obs_cnt[j] / total
        p_adj[idx] = adj_sorted[s]
        reject[idx] = bool(rej_sorted[s]) and s < stop
        crit[idx] = critical_value(j, step)
        crit1[idx] = critical_value(j, 0)
    return StepDownResult(p_raw, p_adj, reject, crit, crit1)


@dataclass
class BootstrapStepDown:
    """Family-wise control of ``J`` bootstrap estimates (:func:`bootstrap_stepdown`).

    Attributes
    ----------
    p_adjusted : numpy.ndarray
        ``(J,)`` step-down adjusted p-values (nan outside the family).
    reject : numpy.ndarray
        ``(J,)`` booleans: the estimate differs from 0 (two-sided) or exceeds it
        (``greater``) with the family-wise error held at ``alpha``.
    half_width : numpy.ndarray
        ``(J,)`` ``critical_j · se_j`` at the step where estimate ``j`` was decided:
        ``estimate ± half_width`` excludes 0 exactly when ``reject`` (so the adjusted
        p-value, the verdict and the interval never disagree). nan outside the family.
    half_width_first : numpy.ndarray
        ``(J,)`` the same at the first step (the whole family): single-step simultaneous
        intervals ``estimate ± half_width_first`` (one-sided: ``estimate −
        half_width_first`` are simultaneous lower bounds).
    standard_error : numpy.ndarray
        ``(J,)`` bootstrap standard errors (``ddof=1``).
    family_size : int
        Estimates in the family (finite, with a finite positive standard error).
    """

    p_adjusted: np.ndarray
    reject: np.ndarray
    half_width: np.ndarray
    half_width_first: np.ndarray
    standard_error: np.ndarray
    family_size: int


def bootstrap_stepdown(estimates: np.ndarray, replicates: np.ndarray, *, alpha: float = 0.05,
                       alternative: str = "two-sided") -> BootstrapStepDown:
    """Westfall–Young max-T step-down for estimates with bootstrap replicates (no null draws).

    The null distribution is the bootstrap distribution centred on the estimates and
    studentized by each estimate's bootstrap standard error, ``T*_j = (θ*_j − θ_j) /
    se_j`` (``|·|`` for two-sided); the observed statistics are ``θ_j / se_j``. Both go
    through :func:`westfall_young_stepdown` (``method="maxT"``), the one step-down of
    auditkit (the fairness gaps use it with permutation replicates and min-P), so the
    family-wise error is controlled the same way everywhere.

    Parameters
    ----------
    estimates : numpy.ndarray
        ``(J,)`` observed estimates (e.g. paired differences B − A); nan members are
        left out of the family.
    replicates : numpy.ndarray
        ``(B, J)`` bootstrap replicates from *one* resampling applied to all estimates at
        once (nan where undefined in a resample).
    alpha : float
        Family-wise error rate.
    alternative : {"two-sided", "greater"}
        Two-sided tests of ``θ_j = 0``, or one-sided ``θ_j > 0`` (then
        ``half_width_first`` gives simultaneous lower bounds).

    Returns
    -------
    BootstrapStepDown

    Notes
    -----
    Westfall PH, Young SS. *Resampling-Based Multiple Testing*, Wiley 1993 (algorithm
    2.5, max-T); Romano JP, Wolf M. Exact and approximate stepdown methods for multiple
    hypothesis testing. JASA 2005;100:94-108 (validity with bootstrap null
    distributions). An estimate that no resample moves (``se = 0``, e.g. identical
    answers) is certain: p = 1 when it is 0 (or not above it), else 0, with zero width.
    """
    if alternative not in ("two-sided", "greater"):
        raise ValueError(f"alternative must be 'two-sided' or 'greater'; got {alternative!r} "
                         "instead.")
    est = np.asarray(estimates, dtype=np.float64)
    reps = np.asarray(replicates, dtype=np.float64)
    if reps.ndim != 2 or reps.shape[1] != est.size:
        raise ValueError(f"replicates must have shape (B, {est.size}); got {reps.shape} "
                         "instead.")
    with warnings.catch_warnings():  # all-nan columns (undefined metric) stay nan
        warnings.simplefilter("ignore", RuntimeWarning)
        se = (np.nanstd(reps, axis=0, ddof=1) if reps.shape[0] > 1
              else np.full(est.shape, np.nan))
    member = np.isfinite(est) & np.isfinite(se) & (se > 0)
    certain = np.isfinite(est) & (se == 0)
    safe_se = np.where(member, se, 1.0)
    centred = (reps - est) / safe_se
    if alternative == "two-sided":
        observed, null = np.abs(est) / safe_se, np.abs(centred)
    else:
        observed, null = est / safe_se, centred
    observed = np.where(member, observed, np.nan)
    # studentized statistics share a scale: max-T, which (unlike min-P) has no
    # 1 / (B + 1) resolution limit in families of hundreds of differences
    res = westfall_young_stepdown(observed, null, alpha=alpha, method="maxT")
    p_adj = res.p_adjusted.copy()
    reject = res.reject.copy()
    half = np.where(member, res.critical * safe_se, np.nan)
    half_first = np.where(member, res.critical_first * safe_se, np.nan)
    moved = est > 0 if alternative == "greater" else est != 0
    p_adj[certain] = np.where(moved[certain], 0.0, 1.0)
    reject[certain] = moved[certain]
    half[certain] = 0.0
    half_first[certain] = 0.0
    return BootstrapStepDown(p_adjusted=p_adj, reject=reject, half_width=half,
                             half_width_first=half_first, standard_error=se,
                             family_size=int(member.sum() + certain.sum()))


def minimum_detectable_difference(critical: float, standard_errors: Sequence[float], *,
                                  power: float = 0.8) -> float:
    """Smallest true gap between two groups detected with probability ``power``.

    The observed largest gap is at least the observed difference of the two groups,
    which is roughly normal around the true gap with standard error
    ``sqrt(se_a^2 + se_b^2)``; the gap is called real when it exceeds ``critical``.
    So ``critical + z_power * se`` is detected with probability at least ``power``
    (an upper bound on the minimum detectable difference: the step-down can only
    lower the critical value).
    """
    se = float(np.sqrt(np.sum(np.square(np.asarray(standard_errors, dtype=np.float64)))))
    if not np.isfinite(critical) or not np.isfinite(se):
        return float("nan")
    return float(critical + _sps.norm.ppf(power) * se)
