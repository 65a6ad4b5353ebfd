"""Fairness: performance by patient group, with honest uncertainty.

For every patient attribute (and the intersections the user picks) this computes,
per group, n, prevalence, accuracy, balanced accuracy, sensitivity, specificity,
PPV, NPV, AUROC (plus macro AUROC for multiclass), calibration (overconfidence,
debiased and plain ECE) and selection rate. Each metric carries its interval, its
denominator (positives for sensitivity, negatives for specificity, both for AUROC)
and its own "too few to judge" when that denominator is below the minimum
(:func:`auditkit._metrics.metric_table`; methods and their simulations in
``docs/statistics.md``).

Point estimates are the same as fairlearn's ``MetricFrame`` with scikit-learn's
metrics (a test checks this).

Disparities: per attribute and metric, the best and worst judgeable group and their
gap, tested by permutation of patients across groups against the largest gap chance
produces, with Westfall-Young step-down control of the family-wise error over all
attributes and metrics (codings of one variable count once): the adjusted p-value,
a simultaneous interval that excludes 0 exactly when the gap is called real, and
the smallest gap the data could have detected (:mod:`auditkit._gaps`). fairlearn's
demographic-parity and equalized-odds differences are tested the same way.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from . import wording
from ._gaps import GAP_METRICS, PARITY_STATISTICS, GapTest, cannot_reach, run_gap_tests
from ._metrics import METRICS, MetricInputs, metric_table
from .data import UNKNOWN
from .exceptions import ConfigError

__all__ = [
    "GAP_METRICS",
    "FairnessAudit",
    "attribute_concepts",
    "calibration_curves",
    "describe_gap",
    "estimate_skin_tone",
    "gaps_table",
    "groups_table",
    "operating_points",
    "operating_points_from_audit",
    "operating_points_from_predictions",
    "run_check",
    "skin_tone_agreement",
    "threshold_optimizer_mitigation",
]


@dataclass
class FairnessAudit:
    """Subgroup metrics and disparities.

    Settings in the constructor, data in :meth:`compute`.

    Parameters
    ----------
    n_boot : int
        Bootstrap resamples for the metrics without an analytic interval (macro
        AUROC, ECE).
    confidence : float
        Interval level for metrics.
    min_group_size : int
        Groups with fewer images, or fewer patients when ids are known, are "too few
        to judge"; so is each metric whose denominator (positives, negatives, calls)
        has fewer. Shown and exported, never called best or worst.
    metrics : sequence of str, optional
        Subset of :data:`auditkit._metrics.METRICS`.
    alpha : float
        Family-wise error rate for calling a gap real.
    n_permutations : int
        Permutations for the gap tests (the smallest possible p-value is
        ``1 / (n_permutations + 1)``).
    power : float
        Power at which the minimum detectable gap is reported.
    random_state : int
    small_cell_k : int
        Small-cell protection (:mod:`auditkit.suppression`): groups the policy will
        hide are left out of the disparities too, so a gap can never reveal a hidden
        group's value. 0 turns this off.
    """

    n_boot: int = 1000
    confidence: float = 0.95
    min_group_size: int = 10
    metrics: Sequence[str] | None = None
    alpha: float = 0.05
    n_permutations: int = 1000
    power: float = 0.8
    random_state: int = 0
    small_cell_k: int = 0

    def compute(
        self,
        *,
        y: np.ndarray,
        pred: np.ndarray,
        proba: np.ndarray,
        positive: int,
        groups: pd.DataFrame,
        patients: np.ndarray | None = None,
        intersections: Sequence[Sequence[str]] = (),
        group_order: dict[str, list[str]] | None = None,
        concepts: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """Per-group metrics, disparities and the family they were tested in.

        Parameters
        ----------
        y, pred : ndarray of int, shape (n,)
            True and predicted class indices.
        proba : ndarray, shape (n, n_classes)
        positive : int
            Index of the clinically positive class.
        groups : DataFrame
            One column per attribute, holding each image's group label.
        patients : ndarray, optional
            Patient id per image: intervals and permutations then treat a patient's
            images as one unit.
        intersections : list of (str, str)
            Attribute pairs to audit jointly, e.g. ``("sex", "age")``.
        group_order : dict, optional
            Natural order of each attribute's groups.
        concepts : dict, optional
            Attribute -> the variable it codes. Codings of one variable (skin type
            I-VI and its bands) share a concept and count once in the family.
        """
        metrics = list(self.metrics or METRICS)
        unknown_metrics = sorted(set(metrics) - set(METRICS))
        if unknown_metrics:
            raise ConfigError(f"Unknown metrics {unknown_metrics}; expected among {list(METRICS)}.")
        y = np.asarray(y, dtype=int)
        columns = {c: groups[c].astype(str).to_numpy() for c in groups.columns}
        concepts = dict(concepts or {})
        for pair in intersections:
            a, b = pair
            for name in (a, b):
                if name not in columns:
                    raise ConfigError(
                        f"Intersection {a}×{b}: expected attributes among {list(groups.columns)}; "
                        f"got {name!r} instead."
                    )
            columns[f"{a}×{b}"] = np.char.add(np.char.add(columns[a].astype(str), " × "),
                                              columns[b].astype(str))
        rng = np.random.default_rng(self.random_state)
        classes = sorted(set(y.tolist()))
        entries: list[dict[str, Any]] = []
        for attribute, values in columns.items():
            order = list((group_order or {}).get(attribute, []))
            present = list(dict.fromkeys(values.tolist()))
            ordered = [g for g in order if g in present] + sorted(g for g in present if g not in order)
            for group in ordered:
                mask = values == group
                clusters = None if patients is None else patients[mask]
                table = metric_table(
                    MetricInputs(y=y[mask], pred=pred[mask], proba=proba[mask], positive=positive,
                                 clusters=clusters),
                    level=self.confidence, min_count=self.min_group_size, classes=classes,
                    n_boot=self.n_boot, rng=rng, metrics=metrics)
                n = int(mask.sum())
                n_pat = int(len(set(clusters.tolist()))) if clusters is not None else None
                too_few = n < self.min_group_size or (
                    n_pat is not None and n_pat < self.min_group_size)
                entry: dict[str, Any] = {
                    "attribute": attribute, "group": group, "n": n, "n_patients": n_pat,
                    "n_positive": int((y[mask] == positive).sum()),
                    "n_negative": int((y[mask] != positive).sum()),
                    "too_few": bool(too_few),
                    "is_unknown": UNKNOWN in group.split(" × "),
                    "intersection": "×" in attribute,
                    **table,
                }
                entries.append(entry)
        if self.small_cell_k > 0:
            from .suppression import suppress_group_rows

            shown = suppress_group_rows(entries, k=self.small_cell_k, count_patients=True)
            for entry, after in zip(entries, shown):
                entry["hidden_by_small_cell_rule"] = bool(after.get("suppressed"))
        disparities, family = self._disparities(
            entries, metrics, y=y, pred=pred, proba=proba, positive=positive,
            patients=patients, columns=columns, concepts=concepts)
        return {"groups": entries, "disparities": disparities,
                "n_comparisons": family["size"], "family": family,
                "correction": wording.correction_note(family)}

    def _disparities(self, entries: list[dict[str, Any]], metrics: list[str], *,
                     y: np.ndarray, pred: np.ndarray, proba: np.ndarray, positive: int,
                     patients: np.ndarray | None, columns: dict[str, np.ndarray],
                     concepts: dict[str, str]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        by_attr: dict[str, list[dict[str, Any]]] = {}
        for e in entries:
            by_attr.setdefault(e["attribute"], []).append(e)
        eligible = {a: [e["group"] for e in es if _eligible(e)] for a, es in by_attr.items()}
        lookup = {(e["attribute"], e["group"]): e for e in entries}
        wanted = [m for m in GAP_METRICS if m in metrics]
        wanted += [s for s, parts in (("demographic_parity_difference", ("selection_rate",)),
                                      ("equalized_odds_difference", ("sensitivity",
                                                                     "specificity")))
                   if all(p in metrics for p in parts)]

        def group_se(attribute: str, group: str, metric: str) -> float:
            se = lookup[(attribute, group)][metric].get("se")
            return float("nan") if se is None else float(se)

        tests = run_gap_tests(
            GapTest(n_permutations=self.n_permutations, alpha=self.alpha,
                    min_count=self.min_group_size, power=self.power,
                    random_state=self.random_state, metrics=wanted),
            y=y, pred=pred, proba=proba, positive=positive, units=patients,
            attributes=columns, eligible=eligible, concepts=concepts, group_se=group_se)
        out: list[dict[str, Any]] = []
        for attribute, group_entries in by_attr.items():
            excluded = [e["group"] for e in group_entries if not _eligible(e)]
            for metric in wanted:
                parts = {"demographic_parity_difference": ["selection_rate"],
                         "equalized_odds_difference": ["sensitivity", "specificity"]}.get(
                             metric, [metric])
                base = {"attribute": attribute, "metric": metric,
                        "excluded_groups": excluded,
                        "too_few_groups": _too_few_groups(group_entries, parts)}
                t = tests.get((attribute, metric))
                if t is None or t["gap"] != t["gap"]:
                    out.append({**base, "status": "not_assessed",
                                "reason": wording.gap_not_assessed_reason(
                                    group_entries, parts, self.min_group_size)})
                    continue
                if cannot_reach(self.n_permutations, self.alpha):
                    # no p-value could reach alpha: "cannot tell" would hide a blind test
                    out.append({**base, "status": "not_assessed", "gap": t["gap"],
                                "n_permutations": self.n_permutations,
                                "reason": wording.gap_permutations_too_few(
                                    self.n_permutations, self.alpha)})
                    continue
                entry = {**base, "status": "assessed", "p_value": t["p_value"],
                         "p_adjusted": t["p_adjusted"], "real": t["real"],
                         "critical_gap": t["critical_gap"],
                         "family_size": t["family_size"], "n_permutations": t["n_permutations"],
                         "groups": t["judgeable_groups"]}
                if metric in PARITY_STATISTICS:
                    entry.update({"value": t["gap"], "ci": t["ci_simultaneous"],
                                  "ci_kind": "simultaneous"})
                    for k in ("tpr_difference", "fpr_difference", "highest_group",
                              "lowest_group", "highest", "lowest"):
                        if k in t:
                            entry[k] = t[k]
                else:
                    best = lookup[(attribute, t["best_group"])]
                    worst = lookup[(attribute, t["worst_group"])]
                    with np.errstate(divide="ignore", invalid="ignore"):
                        ratio = (t["worst"] / t["best"] if t["best"] else float("nan"))
                    entry.update({
                        "best_group": t["best_group"], "worst_group": t["worst_group"],
                        "best": t["best"], "worst": t["worst"],
                        "n_best": best[metric]["denominator"],
                        "n_worst": worst[metric]["denominator"],
                        "units_best": best[metric]["denominator_patients"],
                        "units_worst": worst[metric]["denominator_patients"],
                        "denominator_of": best[metric]["denominator_of"],
                        "gap": t["gap"], "gap_ci": t["ci_simultaneous"],
                        "gap_ci_adjusted": t["ci_simultaneous"], "ci_kind": "simultaneous",
                        "ratio": ratio,
                        "minimum_detectable_gap": t.get("minimum_detectable_gap"),
                    })
                out.append(entry)
        assessed = [d for d in out if d["status"] == "assessed"]
        family = {
            "size": len({(concepts.get(d["attribute"], d["attribute"]), d["metric"])
                         for d in assessed}),
            "attributes": sorted({concepts.get(d["attribute"], d["attribute"])
                                  for d in assessed}),
            "codings": {c: sorted({d["attribute"] for d in assessed
                                   if concepts.get(d["attribute"], d["attribute"]) == c})
                        for c in {concepts.get(d["attribute"], d["attribute"]) for d in assessed}},
            "statistics": len(assessed),
            "alpha": self.alpha,
            "n_permutations": self.n_permutations,
            "unit": "patient" if patients is not None else "image",
            "method": (f"permutation of {'patients' if patients is not None else 'images'} "
                       "across groups, Westfall-Young min-P step-down"),
            "power": self.power,
        }
        return out, family


def _eligible(entry: dict[str, Any]) -> bool:
    return not (entry["too_few"] or entry["is_unknown"]
                or entry.get("hidden_by_small_cell_rule"))


def _too_few_groups(group_entries: list[dict[str, Any]], parts: list[str]
                    ) -> list[dict[str, Any]]:
    """Eligible groups still too few for this metric, with the denominator that failed."""
    out = []
    for e in group_entries:
        if not _eligible(e):
            continue
        for p in parts:
            m = e.get(p) or {}
            if m.get("too_few"):
                out.append({"group": e["group"], "metric": p,
                            "denominator_of": m.get("denominator_of"),
                            "denominator": m.get("denominator"),
                            "denominator_patients": m.get("denominator_patients")})
                break
    return out


def attribute_concepts(attributes: Sequence[Any]) -> dict[str, str]:
    """Attribute name -> the variable it codes, so codings of one variable count once.

    Attributes reading the same column are one variable (Fitzpatrick I-VI and its
    bands); so are two ratings of skin tone on one scale (two annotator groups rate
    the same skin). Everything else is its own variable.
    """
    out = {}
    for a in attributes:
        if a.kind == "skin_tone" and a.scale:
            out[a.name] = f"skin tone ({a.scale})"
        else:
            out[a.name] = a.column
    return out


# --------------------------------------------------------------------------- plain language


def describe_gap(d: dict[str, Any], positive_class: str = "positive") -> str:
    """One plain-language sentence about a disparity entry (see :func:`wording.gap_sentence`)."""
    return wording.gap_sentence(d, positive_class)


# --------------------------------------------------------------------------- calibration, thresholds


def calibration_curves(*, proba: np.ndarray, y: np.ndarray, groups: np.ndarray,
                       n_bins: int = 10, patients: np.ndarray | None = None,
                       attribute: str | None = None) -> list[dict[str, Any]]:
    """Reliability curve per group: per confidence bin, mean confidence, accuracy and count.

    Confidence is the top-class probability; accuracy is whether the top class was right.
    With ``patients``, each group and bin also carries ``n_patients``, so the
    small-cell rule can count patients; ``attribute`` names the groups' attribute.
    """
    conf = proba.max(axis=1)
    correct = proba.argmax(axis=1) == y
    bins = np.minimum((conf * n_bins).astype(int), n_bins - 1)
    out = []
    for g in list(dict.fromkeys(groups.tolist())):
        m = groups == g
        rows = []
        for b in range(n_bins):
            sel = m & (bins == b)
            if sel.any():
                rows.append({"bin": b, "confidence": float(conf[sel].mean()),
                             "accuracy": float(correct[sel].mean()), "n": int(sel.sum()),
                             "n_patients": (None if patients is None
                                            else int(len(set(patients[sel].tolist()))))})
        entry: dict[str, Any] = {"group": str(g), "n": int(m.sum()),
                                 "n_patients": (None if patients is None
                                                else int(len(set(patients[m].tolist())))),
                                 "bins": rows}
        if attribute is not None:
            entry = {"attribute": attribute, **entry}
        out.append(entry)
    return out


def operating_points(*, score: np.ndarray, is_positive: np.ndarray, groups: np.ndarray,
                     threshold: float, level: float = 0.95,
                     clusters: np.ndarray | None = None) -> pd.DataFrame:
    """Each group's sensitivity and specificity when "positive" means ``score >= threshold``.

    Parameters
    ----------
    score : numpy.ndarray
        ``(n,)`` positive-class probability in [0, 1].
    is_positive : numpy.ndarray
        ``(n,)`` booleans, the truth.
    groups : numpy.ndarray
        ``(n,)`` group labels.
    threshold : float
        The operating point in (0, 1).
    level : float
        Interval level (Wilson intervals, :func:`auditkit.stats.proportion_interval`).
    clusters : numpy.ndarray, optional
        ``(n,)`` patient ids; None treats images as independent.

    Returns
    -------
    pandas.DataFrame
        One row per group (first-seen order): ``group``, ``n``, ``n_positive``,
        ``n_negative``, ``sensitivity``, ``sensitivity_low``, ``sensitivity_high``,
        ``specificity``, ``specificity_low``, ``specificity_high``.
    """
    from .stats import proportion_interval

    if not 0.0 < float(threshold) < 1.0:
        raise ConfigError(f"threshold must be between 0 and 1; got {threshold!r} instead.")
    called = np.asarray(score, dtype=float) >= threshold
    is_positive = np.asarray(is_positive, dtype=bool)
    rows = []
    for g in list(dict.fromkeys(groups.tolist())):
        m = groups == g
        pos, neg = m & is_positive, m & ~is_positive
        row: dict[str, Any] = {"group": str(g), "n": int(m.sum()), "n_positive": int(pos.sum()),
                               "n_negative": int(neg.sum())}
        for name, sel, hit in (("sensitivity", pos, called), ("specificity", neg, ~called)):
            cl = None if clusters is None else np.asarray(clusters)[sel]
            value, ci, _ = proportion_interval(hit[sel].astype(float), cl, level=level)
            row[name] = value
            row[f"{name}_low"] = np.nan if ci[0] is None else ci[0]
            row[f"{name}_high"] = np.nan if ci[1] is None else ci[1]
        rows.append(row)
    return pd.DataFrame(rows, columns=["group", "n", "n_positive", "n_negative", "sensitivity",
                                       "sensitivity_low", "sensitivity_high", "specificity",
                                       "specificity_low", "specificity_high"])


def _passthrough_estimator() -> Any:
    """A fitted 'estimator' whose positive-class probability is the model's own score.

    fairlearn's ThresholdOptimizer post-processes an estimator; the audited model has
    already produced its scores, so this hands them over unchanged (column 0 of X).
    """
    from sklearn.base import BaseEstimator, ClassifierMixin

    class ScorePassthrough(ClassifierMixin, BaseEstimator):
        def fit(self, X: Any, y: Any) -> Any:  # noqa: N803 (sklearn API)
            self.classes_ = np.array([0, 1])
            return self

        def predict(self, X: Any) -> np.ndarray:  # noqa: N803
            return (np.asarray(X, dtype=float)[:, 0] >= 0.5).astype(int)

        def predict_proba(self, X: Any) -> np.ndarray:  # noqa: N803
            s = np.asarray(X, dtype=float)[:, 0]
            return np.column_stack([1 - s, s])

    return ScorePassthrough().fit(None, None)


def threshold_optimizer_mitigation(*, score: np.ndarray, is_positive: np.ndarray,
                                   groups: np.ndarray, constraint: str = "equalized_odds",
                                   decisions: np.ndarray | None = None,
                                   random_state: int = 0) -> dict[str, Any]:
    """What fairlearn's ``ThresholdOptimizer`` would do, and what it costs.

    Fits group-specific (randomized) thresholds on the given data and reports each
    group's sensitivity/specificity and the overall accuracy before and after.
    Fitting and evaluating on the same images is optimistic; it shows the trade-off,
    not a validated fix.

    Parameters
    ----------
    score : numpy.ndarray
        ``(n,)`` positive-class probability.
    is_positive : numpy.ndarray
        ``(n,)`` booleans, the truth.
    groups : numpy.ndarray
        ``(n,)`` group labels.
    constraint : str
        fairlearn constraint.
    decisions : numpy.ndarray, optional
        ``(n,)`` booleans: the model's actual positive calls ("before"). For a
        multi-class model these are argmax decisions, not ``score >= 0.5``, so the
        "before" numbers match the rest of the audit. Default ``score >= 0.5``.
    random_state : int
    """
    from fairlearn.postprocessing import ThresholdOptimizer

    X = pd.DataFrame({"score": score})  # noqa: N806
    y = is_positive.astype(int)
    opt = ThresholdOptimizer(estimator=_passthrough_estimator(), constraints=constraint,
                             predict_method="predict_proba", prefit=True,
                             objective="accuracy_score" if constraint == "demographic_parity"
                             else "balanced_accuracy_score")
    opt.fit(X, y, sensitive_features=groups)
    after = opt.predict(X, sensitive_features=groups, random_state=random_state).astype(bool)
    before = (np.asarray(decisions, dtype=bool) if decisions is not None else score >= 0.5)
    rows = []
    for g in list(dict.fromkeys(groups.tolist())):
        m = groups == g
        pos, neg = m & is_positive, m & ~is_positive
        rows.append({
            "group": str(g), "n": int(m.sum()),
            "sensitivity_before": float(before[pos].mean()) if pos.any() else None,
            "sensitivity_after": float(after[pos].mean()) if pos.any() else None,
            "specificity_before": float((~before[neg]).mean()) if neg.any() else None,
            "specificity_after": float((~after[neg]).mean()) if neg.any() else None,
        })
    return {
        "constraint": constraint,
        "before_is": ("the model's own decisions" if decisions is not None
                      else "positive when its probability is at least 0.5"),
        "accuracy_is": "positive class against the rest",
        "accuracy_before": float((before == is_positive).mean()),
        "accuracy_after": float((after == is_positive).mean()),
        "groups": rows,
        "note": ("Group-specific thresholds treat patients differently by group membership: "
                 "they need the attribute at decision time, may be unlawful or unacceptable "
                 "in some settings, and fitted on the audit data they look better than they "
                 "will on new patients. Fixing the data or the model is usually preferable."),
    }


# --------------------------------------------------------------------------- skin tone


def _srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """sRGB uint8 ``(..., 3)`` -> CIELAB (D65). Written out to avoid a dependency."""
    c = rgb.astype(np.float64) / 255.0
    c = np.where(c > 0.04045, ((c + 0.055) / 1.055) ** 2.4, c / 12.92)
    m = np.array([[0.4124564, 0.3575761, 0.1804375],
                  [0.2126729, 0.7151522, 0.0721750],
                  [0.0193339, 0.1191920, 0.9503041]])
    xyz = c @ m.T / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    L = 116 * f[..., 1] - 16  # noqa: N806
    a = 500 * (f[..., 0] - f[..., 1])
    b = 200 * (f[..., 1] - f[..., 2])
    return np.stack([L, a, b], axis=-1)


# Del Bino & Bernerd (2013) ITA categories, mapped to the Fitzpatrick-like scale
_ITA_EDGES = (-30.0, 10.0, 28.0, 41.0, 55.0)  # VI | V | IV | III | II | I
_ITA_TYPES = ("VI", "V", "IV", "III", "II", "I")


def estimate_skin_tone(paths: Sequence[str], *, border: float = 0.25) -> pd.DataFrame:
    """Estimate skin tone from pixels: individual typology angle (ITA) on skin pixels.

    Skin pixels are taken from the outer ``border`` of the photo (the lesion is
    usually central), keeping those a YCbCr skin rule accepts (Chai & Ngan, 1999).
    ITA = atan((L* - 50) / b*) in degrees; categories follow Del Bino & Bernerd
    (2013), mapped to Fitzpatrick-like types I-VI. This is an *estimate*, marked so.

    Returns
    -------
    DataFrame
        ``ita`` (degrees, median over skin pixels), ``skin_type_estimated`` (I-VI or
        unknown when fewer than 50 skin pixels), ``n_skin_pixels``.
    """
    from .data import read_image

    rows = []
    for p in paths:
        arr = read_image(p)
        if arr.ndim == 2:
            arr = np.repeat(arr[:, :, None], 3, axis=2)
        h, w = arr.shape[:2]
        bh, bw = int(h * border), int(w * border)
        ring = np.ones((h, w), dtype=bool)
        ring[bh:h - bh, bw:w - bw] = False
        px = arr[ring].astype(np.float64)
        r, g, b = px[:, 0], px[:, 1], px[:, 2]
        cb = 128 - 0.168736 * r - 0.331264 * g + 0.5 * b
        cr = 128 + 0.5 * r - 0.418688 * g - 0.081312 * b
        skin = (cb >= 77) & (cb <= 127) & (cr >= 133) & (cr <= 173)
        if skin.sum() < 50:
            rows.append({"ita": float("nan"), "skin_type_estimated": UNKNOWN,
                         "n_skin_pixels": int(skin.sum())})
            continue
        lab = _srgb_to_lab(px[skin].astype(np.uint8))
        ita = float(np.median(np.degrees(np.arctan2(lab[:, 0] - 50.0, lab[:, 2]))))
        idx = int(np.searchsorted(np.asarray(_ITA_EDGES), ita, side="right"))
        rows.append({"ita": ita, "skin_type_estimated": _ITA_TYPES[idx],
                     "n_skin_pixels": int(skin.sum())})
    return pd.DataFrame(rows)


_ROMAN = {"I": 1, "II": 2, "III": 3, "IV": 4, "V": 5, "VI": 6}


def skin_tone_agreement(a: Sequence[str], b: Sequence[str]) -> dict[str, Any]:
    """Agreement of two Fitzpatrick ratings (I-VI; unknowns skipped).

    Exact agreement, agreement within one type, and quadratic-weighted Cohen's kappa
    (scikit-learn), with n.
    """
    from sklearn.metrics import cohen_kappa_score

    pairs = [(_ROMAN[x], _ROMAN[y]) for x, y in zip(a, b) if x in _ROMAN and y in _ROMAN]
    if len(pairs) < 2:
        return {"n": len(pairs), "exact": None, "within_one": None, "kappa_quadratic": None}
    x, y = np.array(pairs).T
    return {"n": int(len(x)), "exact": float((x == y).mean()),
            "within_one": float((np.abs(x - y) <= 1).mean()),
            "kappa_quadratic": float(cohen_kappa_score(x, y, weights="quadratic"))}


# --------------------------------------------------------------------------- the check


def auditor_for(ctx: Any) -> FairnessAudit:
    """The :class:`FairnessAudit` an audit's settings ask for (seed, resamples, small cells and
    the fairness options ``metrics``, ``n_permutations``, ``alpha``)."""
    opts = ctx.options("fairness")
    return FairnessAudit(n_boot=ctx.config.n_boot, confidence=ctx.config.confidence,
                         min_group_size=ctx.config.min_group_size,
                         metrics=opts.get("metrics"), random_state=ctx.config.seed,
                         n_permutations=int(opts.get("n_permutations", ctx.config.n_boot)),
                         alpha=float(opts.get("alpha", 0.05)),
                         small_cell_k=ctx.config.small_cell_k)


def run_check(ctx: Any) -> dict[str, Any]:
    """The ``fairness`` check (see :class:`auditkit.audit.CheckContext`)."""
    from ._context import label_indices

    card = ctx.model.card
    if card.output == "multilabel_sigmoid":
        from .multilabel import fairness_check

        return fairness_check(ctx)
    if card.output == "segmentation":
        from .segmentation import fairness_check as segmentation_fairness

        return segmentation_fairness(ctx)
    opts = ctx.options("fairness")
    rows, described = ctx.evaluation_rows()
    records = ctx.dataset.records[rows].reset_index(drop=True)
    attrs = [a.name for a in ctx.dataset.spec.attributes]
    if not attrs:
        return {"status": "not_assessed", "reason": "the dataset describes no patient attributes"}
    y = label_indices(ctx)[rows]
    pred = ctx.predictions.predicted_index(card.output)[rows]
    proba = ctx.predictions.probabilities[rows]
    patients = records["patient_id"].to_numpy().astype(str) if ctx.dataset.has_patients else None
    auditor = auditor_for(ctx)
    order = {a.name: a.group_order for a in ctx.dataset.spec.attributes}
    if ctx.progress:
        ctx.progress(0, 3, "fairness: subgroup metrics and permutation tests")
    result = auditor.compute(y=y, pred=pred, proba=proba, positive=card.positive_index,
                             groups=records[attrs], patients=patients,
                             intersections=ctx.config.intersections, group_order=order,
                             concepts=attribute_concepts(ctx.dataset.spec.attributes))
    if ctx.progress:
        ctx.progress(1, 3, "fairness: subgroup metrics")
    pos = card.positive_index
    calibration = {a: calibration_curves(proba=proba, y=y, groups=records[a].to_numpy().astype(str),
                                         patients=patients, attribute=a)
                   for a in attrs}
    positive_score = proba[:, pos]
    is_pos = y == pos
    decided_pos = pred == pos  # the model's actual decisions (argmax for multi-class)
    mitigation = {}
    for a in attrs:
        g = records[a].to_numpy().astype(str)
        keep = g != UNKNOWN
        counts = pd.Series(g[keep]).value_counts()
        hidden = {e["group"] for e in result["groups"]
                  if e["attribute"] == a and (e["too_few"] or e.get("hidden_by_small_cell_rule"))}
        big = [grp for grp in counts[counts >= ctx.config.min_group_size].index
               if grp not in hidden]
        sel = keep & np.isin(g, big)
        if len(big) >= 2 and len(set(is_pos[sel])) == 2 and all(
                len(set(is_pos[sel & (g == k)])) == 2 for k in big):
            try:
                mitigation[a] = threshold_optimizer_mitigation(
                    score=positive_score[sel], is_positive=is_pos[sel], groups=g[sel],
                    decisions=decided_pos[sel], random_state=ctx.config.seed)
            except ValueError as exc:  # fairlearn refuses degenerate groups
                mitigation[a] = {"status": "not_assessed", "reason": str(exc)}
    if ctx.progress:
        ctx.progress(2, 3, "fairness: calibration and thresholds")
    summary = [wording.gap_sentence(d, card.positive_class) for d in result["disparities"]
               if d.get("status") == "assessed"
               and (d.get("metric") in ("sensitivity", "specificity") or d.get("real"))]
    for a in attrs:
        ds = [d for d in result["disparities"] if d["attribute"] == a]
        if ds and not any(d.get("status") == "assessed" for d in ds):
            # the accuracy entry's reason is about the groups themselves, not one metric
            first = next((d for d in ds if d["metric"] == "accuracy"), ds[0])
            summary.append(wording.attribute_not_assessed(a, first["reason"]))
    skin = None
    if opts.get("skin_tone_agreement", True):
        skin = _skin_tone_section(ctx, rows)
    if ctx.progress:
        ctx.progress(3, 3, "fairness: done")
    return {
        "status": "assessed",
        "evaluated_on": described,
        "resampling_unit": "patient" if patients is not None else "image",
        "n_boot": ctx.config.n_boot,
        "confidence": ctx.config.confidence,
        "min_group_size": ctx.config.min_group_size,
        "positive_class": card.positive_class,
        "binary_metrics_are": (f"one-vs-rest for {card.positive_class!r}"
                               if len(card.class_names) > 2 else "for the positive class"),
        **result,
        "summary": summary,
        "calibration": calibration,
        "threshold_mitigation": mitigation,
        "skin_tone": skin,
    }


def _skin_tone_section(ctx: Any, rows: np.ndarray) -> dict[str, Any] | None:
    """Annotator agreement (when two skin-type ratings exist) and the ITA estimate's agreement."""
    specs = [a for a in ctx.dataset.spec.attributes
             if a.kind == "skin_tone" and a.scale == "fitzpatrick" and not a.bands]
    photo = ctx.model.card.channels == 3
    if not specs and not photo:
        return None
    out: dict[str, Any] = {}
    rec = ctx.dataset.records
    if len(specs) >= 2:
        out["annotator_agreement"] = {
            "between": [specs[0].name, specs[1].name],
            **skin_tone_agreement(rec[specs[0].name].tolist(), rec[specs[1].name].tolist()),
        }
    if specs and photo and ctx.options("fairness").get("estimate_skin_tone", True):
        est = estimate_skin_tone(rec["path"].tolist())
        out["estimated"] = {
            "method": "individual typology angle (ITA) on border skin pixels, Del Bino 2013 "
                      "categories — ESTIMATED from the image, not recorded",
            "counts": est["skin_type_estimated"].value_counts().to_dict(),
            "agreement_with": {
                s.name: skin_tone_agreement(est["skin_type_estimated"].tolist(),
                                            rec[s.name].tolist()) for s in specs},
        }
    return out or None


def operating_points_from_predictions(frame: pd.DataFrame, *, attribute: str,
                                      positive_class: str, threshold: float,
                                      groups: Sequence[str] | None = None,
                                      level: float = 0.95) -> pd.DataFrame:
    """:func:`operating_points` from a ``predictions.csv`` table (for the threshold slider).

    Only the rows the audit evaluated count (the ``evaluated`` column: the test split
    when the model's split is known), so each group's ``n`` equals the fairness group
    table's; ``groups`` keeps only the groups a page shows (e.g. not the suppressed
    ones), in that order.

    Raises
    ------
    ConfigError
        When a needed column is missing: the positive-class probability, ``label``,
        ``attribute`` or ``evaluated`` (audits written before predictions.csv said which
        rows were measured).
    """
    col = f"prob_{positive_class}"
    for needed in (col, "label", attribute, "evaluated"):
        if needed not in frame.columns:
            raise ConfigError(
                f"predictions table needs column {needed!r}; found {list(frame.columns)}."
            )
    evaluated = frame["evaluated"]
    if evaluated.dtype != bool:  # as read from a CSV: "True"/"False" text
        evaluated = evaluated.astype(str).str.strip().str.lower().isin(["true", "1"])
    rows = frame[evaluated.to_numpy()]
    values = rows[attribute].astype(str).to_numpy()
    if groups is not None:
        keep = np.isin(values, [str(g) for g in groups])
        rows, values = rows[keep], values[keep]
    table = operating_points(score=rows[col].to_numpy(dtype=float),
                             is_positive=(rows["label"] == positive_class).to_numpy(),
                             groups=values, threshold=threshold, level=level)
    if groups is not None:
        order = {str(g): i for i, g in enumerate(groups)}
        table = table.sort_values("group", key=lambda c: c.map(order)).reset_index(drop=True)
    return table


def operating_points_from_audit(audit_dir: str | os.PathLike[str], *, attribute: str,
                                positive_class: str, threshold: float,
                                groups: Sequence[str] | None = None) -> pd.DataFrame | None:
    """:func:`operating_points` from an audit folder's predictions table.

    Reads only the three columns it needs (the positive-class probability, the label and
    ``attribute``) from ``predictions.csv`` or ``predictions.parquet``
    (:mod:`auditkit.evidence`), so a page gets one small row per group however many
    images the audit holds. Only the evaluated rows count (the ``evaluated`` column) and
    only ``groups`` when given (:func:`operating_points_from_predictions`). None when the
    table or one of the columns is missing (audits before ``evaluated`` was written).
    """
    from .evidence import file_stamp, find_table

    path = find_table(audit_dir, "predictions")
    if path is None:
        return None
    frame = _operating_point_columns(file_stamp(path), positive_class, attribute)
    if frame is None:
        return None
    return operating_points_from_predictions(frame, attribute=attribute,
                                             positive_class=positive_class, threshold=threshold,
                                             groups=groups)


@functools.lru_cache(maxsize=4)
def _operating_point_columns(stamp: tuple[str, int, int], positive_class: str,
                             attribute: str) -> pd.DataFrame | None:
    """The evaluated rows' probability, label and group, read once per file version.

    The Fairness page asks again at every move of its threshold slider; re-reading and
    re-typing a million-row table each time took about 0.3 s, so the few columns are kept
    (keyed by :func:`auditkit.evidence.file_stamp`; about 20 bytes a row) with
    ``evaluated`` already applied. Read-only: callers filter, never assign.
    """
    from .evidence import open_table

    table = open_table(stamp[0])
    col = f"prob_{positive_class}"
    if not {col, "label", attribute, "evaluated"} <= set(table.columns):
        return None
    frame = table.read([col, "label", attribute, "evaluated"])
    evaluated = frame["evaluated"].astype(str).str.strip().str.lower().isin(["true", "1"])
    frame = frame[evaluated.to_numpy()]
    return pd.DataFrame({
        col: frame[col].to_numpy(dtype=float),
        "label": frame["label"].astype(str).to_numpy(dtype=object),
        attribute: frame[attribute].astype(object).where(frame[attribute].notna(), "")
        .astype(str).to_numpy(dtype=object),
        "evaluated": np.ones(len(frame), dtype=bool)})


def groups_table(result: dict[str, Any], *, attribute: str, metric: str) -> pd.DataFrame:
    """Rows of one attribute's groups for one metric.

    Columns: ``group``, ``value``, ``low``, ``high``, ``n``, ``n_patients``,
    ``denominator`` (what the metric divides by, e.g. positives for sensitivity),
    ``denominator_patients``, ``denominator_of``, ``too_few`` (the group, or this
    metric's denominator, is below the minimum), ``suppressed``.
    """
    rows = []
    for e in result["groups"]:
        if e["attribute"] != attribute:
            continue
        m = e.get(metric) or {}
        ci = m.get("ci") or [None, None]
        rows.append({"group": e["group"], "value": m.get("value"), "low": ci[0], "high": ci[1],
                     "n": e.get("n"), "n_patients": e.get("n_patients"),
                     "denominator": m.get("denominator"),
                     "denominator_patients": m.get("denominator_patients"),
                     "denominator_of": m.get("denominator_of"),
                     "too_few": bool(e.get("too_few") or m.get("too_few")),
                     "suppressed": e.get("suppressed", False)})
    columns = ["group", "value", "low", "high", "n", "n_patients", "denominator",
               "denominator_patients", "denominator_of", "too_few", "suppressed"]
    table = pd.DataFrame(rows, columns=columns)
    for col in ("value", "low", "high"):
        table[col] = pd.to_numeric(table[col], errors="coerce").astype(float)
    return table


def gaps_table(result: dict[str, Any], *, attribute: str) -> pd.DataFrame:
    """One attribute's tested gaps: one row per metric (and parity difference).

    Columns: ``metric`` (display name), ``worst``, ``best``, ``n_worst``, ``n_best``
    (images in those groups), ``gap``, ``low``, ``high`` (simultaneous interval),
    ``p_adjusted``, ``verdict`` (wording verdict label), ``minimum_detectable_gap``,
    ``note`` (the reason when not assessed).
    """
    sizes = {e["group"]: e.get("n") for e in result.get("groups", [])
             if e.get("attribute") == attribute}
    rows = []
    for d in result.get("disparities", []):
        if d["attribute"] != attribute:
            continue
        ci = d.get("gap_ci", d.get("ci")) or [None, None]
        assessed = d.get("status") == "assessed"
        verdict = ("concern" if d.get("real") else "cannot tell") if assessed else "not assessed"
        rows.append({"metric": wording.metric_name(d["metric"]).replace("_", " "),
                     "worst": d.get("worst_group"), "best": d.get("best_group"),
                     "n_worst": sizes.get(d.get("worst_group")),
                     "n_best": sizes.get(d.get("best_group")),
                     "gap": d.get("gap", d.get("value")), "low": ci[0], "high": ci[1],
                     "p_adjusted": d.get("p_adjusted"),
                     "verdict": wording.verdict_label(verdict),
                     "minimum_detectable_gap": d.get("minimum_detectable_gap"),
                     "note": "" if assessed else d.get("reason", "")})
    table = pd.DataFrame(rows, columns=["metric", "worst", "best", "n_worst", "n_best", "gap",
                                        "low", "high", "p_adjusted", "verdict",
                                        "minimum_detectable_gap", "note"])
    for col in ("gap", "low", "high", "p_adjusted", "minimum_detectable_gap"):
        table[col] = pd.to_numeric(table[col], errors="coerce").astype(float)
    return table
