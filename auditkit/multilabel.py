"""Multi-label finding models: every metric per finding, and per finding and group.

A ``multilabel_sigmoid`` model scores K findings at once; each finding is a binary
question with its own decision threshold (the card's ``findings``). Each finding is
measured exactly as a binary classifier is (:func:`auditkit._metrics.metric_table`: the
same intervals, patients as clusters) on the images whose label for that finding is
known (``finding_<name>`` in the dataset), and audited for fairness with the same
machinery (:class:`auditkit.fairness.FairnessAudit`: Westfall-Young step-down over the
groups and metrics of one finding). Across the K findings the family-wise error is then
held by Bonferroni: a gap is called real when ``K * p_adjusted <= alpha``, so the
chance of any false alarm over all findings x attributes x metrics stays at most
``alpha`` (the union bound; conservative when findings are correlated, never liberal).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from . import wording
from ._metrics import MetricInputs, metric_table
from .exceptions import ConfigError

__all__ = ["FINDING_METRICS", "fairness_by_finding", "finding_groups_frame", "finding_labels",
           "findings_frame", "performance_by_finding", "worst_pairs", "worst_pairs_frame"]

#: Metrics reported per finding (binary metrics of "finding present").
FINDING_METRICS = ("sensitivity", "specificity", "ppv", "npv", "accuracy",
                   "balanced_accuracy", "auroc", "prevalence", "selection_rate")
#: Metrics whose worst finding/group pairs are summarised.
WORST_PAIR_METRICS = ("sensitivity", "specificity", "auroc")


def finding_labels(records: pd.DataFrame, findings: list[str]) -> np.ndarray:
    """True finding labels ``(N, K)`` float: 1 present, 0 absent, NaN unknown.

    Raises
    ------
    ConfigError
        When the dataset does not describe a finding the model scores.
    """
    missing = [f for f in findings if f"finding_{f}" not in records.columns]
    if missing:
        raise ConfigError(
            f"The model scores findings {findings} but the dataset describes no "
            f"[[findings]] entry for {missing}; expected a dataset description with one "
            "[[findings]] table per finding (docs/datasets.md).")
    return records[[f"finding_{f}" for f in findings]].to_numpy(dtype=float)


def _binary_inputs(truth: np.ndarray, proba: np.ndarray, threshold: float,
                   clusters: np.ndarray | None) -> tuple[MetricInputs, np.ndarray]:
    known = ~np.isnan(truth)
    y = truth[known].astype(int)
    p = proba[known]
    inputs = MetricInputs(y=y, pred=(p >= threshold).astype(int),
                          proba=np.stack([1.0 - p, p], axis=1), positive=1,
                          clusters=None if clusters is None else clusters[known])
    return inputs, known


def performance_by_finding(*, truth: np.ndarray, proba: np.ndarray, thresholds: np.ndarray,
                           findings: list[str], clusters: np.ndarray | None,
                           level: float = 0.95, min_count: int = 10,
                           ) -> dict[str, dict[str, Any]]:
    """Each finding's metrics with intervals, on the images where it is known.

    Parameters
    ----------
    truth : numpy.ndarray
        ``(n, K)`` 1 / 0 / NaN (unknown).
    proba : numpy.ndarray
        ``(n, K)`` sigmoid outputs in [0, 1].
    thresholds : numpy.ndarray
        ``(K,)``: a finding is called present when its probability is ``>=`` its threshold.
    findings : list of str
    clusters : numpy.ndarray, optional
        ``(n,)`` patient ids.

    Returns
    -------
    dict
        finding -> ``{"threshold", "n", "n_patients", "n_unknown", "n_positive",
        "metrics": metric_table(...)}``.
    """
    out: dict[str, dict[str, Any]] = {}
    for k, name in enumerate(findings):
        inputs, known = _binary_inputs(truth[:, k], proba[:, k], float(thresholds[k]), clusters)
        table = metric_table(inputs, level=level, min_count=min_count,
                             metrics=FINDING_METRICS) if known.any() else {}
        out[name] = {
            "threshold": float(thresholds[k]),
            "n": int(known.sum()),
            "n_patients": (int(len(set(inputs.clusters.tolist())))
                           if inputs.clusters is not None else None),
            "n_unknown": int((~known).sum()),
            "n_positive": int(inputs.y.sum()),
            "metrics": table,
        }
    return out


def fairness_by_finding(*, truth: np.ndarray, proba: np.ndarray, thresholds: np.ndarray,
                        findings: list[str], groups: pd.DataFrame,
                        patients: np.ndarray | None, auditor: Any,
                        group_order: dict[str, list[str]] | None = None,
                        concepts: dict[str, str] | None = None,
                        progress: Any = None) -> dict[str, Any]:
    """Per-group metrics and gap tests for every finding, family-wise across findings.

    ``auditor`` is a configured :class:`auditkit.fairness.FairnessAudit`; each finding
    is audited by it on its known images. Every disparity then gets ``p_family``
    (Bonferroni over the K findings of the Westfall-Young ``p_adjusted``) and ``real``
    is re-decided on it.

    Returns
    -------
    dict
        ``findings``: finding -> FairnessAudit result (+ ``threshold``, ``n``, ``n_unknown``);
        ``family``: how the error rate is held; ``worst_pairs``: :func:`worst_pairs`.
    """
    k_findings = len(findings)
    alpha = float(auditor.alpha)
    per: dict[str, Any] = {}
    for k, name in enumerate(findings):
        if progress:
            progress(k, k_findings, f"fairness: finding {name}")
        inputs, known = _binary_inputs(truth[:, k], proba[:, k], float(thresholds[k]),
                                       patients)
        if len(set(inputs.y.tolist())) < 2:
            per[name] = {"status": "not_assessed", "threshold": float(thresholds[k]),
                         "n": int(known.sum()), "n_unknown": int((~known).sum()),
                         "reason": wording.finding_one_class_reason(name)}
            continue
        result = auditor.compute(y=inputs.y, pred=inputs.pred, proba=inputs.proba, positive=1,
                                 groups=groups[known].reset_index(drop=True),
                                 patients=inputs.clusters, group_order=group_order,
                                 concepts=concepts)
        for d in result["disparities"]:
            if d.get("status") == "assessed":
                d["p_family"] = float(min(1.0, k_findings * d["p_adjusted"]))
                d["real_within_finding"] = d["real"]
                d["real"] = bool(d["p_family"] <= alpha)
            d["finding"] = name
        for e in result["groups"]:
            e["finding"] = name
        per[name] = {"status": "assessed", "threshold": float(thresholds[k]),
                     "n": int(known.sum()), "n_unknown": int((~known).sum()), **result}
    family = {"findings": k_findings, "alpha": alpha,
              "method": ("Westfall-Young min-P step-down over groups and metrics within each "
                         "finding, then Bonferroni over findings (p_family = K x p_adjusted)")}
    return {"findings": per, "family": family,
            "correction": wording.finding_family_note(k_findings, alpha),
            "worst_pairs": worst_pairs(per)}


def worst_pairs(per_finding: dict[str, Any], *, limit: int = 5) -> list[dict[str, Any]]:
    """The finding/group pairs with the lowest sensitivity, specificity or AUROC.

    Only groups that can be judged (not too few, not hidden by small-cell protection)
    count; ordered by the upper end of the interval (the pair whose *best plausible*
    value is lowest first), then by the value.
    """
    rows: list[dict[str, Any]] = []
    for finding, result in per_finding.items():
        if result.get("status") != "assessed":
            continue
        for e in result["groups"]:
            if e.get("too_few") or e.get("hidden_by_small_cell_rule"):
                continue
            for metric in WORST_PAIR_METRICS:
                m = e.get(metric) or {}
                value, ci = m.get("value"), m.get("ci") or [None, None]
                if value is None or value != value or m.get("too_few"):
                    continue
                rows.append({"finding": finding, "attribute": e["attribute"],
                             "group": e["group"], "metric": metric, "value": float(value),
                             "ci": ci, "n": m.get("denominator"),
                             "n_patients": m.get("denominator_patients")})
    rows.sort(key=lambda r: ((r["ci"][1] if r["ci"][1] is not None else r["value"]),
                             r["value"]))
    for r in rows:
        r["sentence"] = wording.worst_pair_sentence(r)
    return rows[:limit]


def check_findings(card: Any, records: pd.DataFrame) -> np.ndarray:
    """The dataset's labels for the card's findings (a clear error when it lacks some)."""
    return finding_labels(records, list(card.class_names))


# --------------------------------------------------------------------------- the checks


def performance_check(ctx: Any) -> dict[str, Any]:
    """The ``performance`` check of a ``multilabel_sigmoid`` model (one table per finding)."""
    card = ctx.model.card
    scope = ctx.evaluation_scope()
    rows = scope.mask
    truth = check_findings(card, ctx.dataset.records)[rows]
    proba = ctx.predictions.probabilities[rows]
    clusters = (ctx.dataset.records["patient_id"].to_numpy()[rows].astype(str)
                if ctx.dataset.has_patients else None)
    per = performance_by_finding(truth=truth, proba=proba, thresholds=card.thresholds,
                                 findings=list(card.class_names), clusters=clusters,
                                 level=ctx.config.confidence,
                                 min_count=ctx.config.min_group_size)
    n_patients = int(len(set(clusters.tolist()))) if clusters is not None else None
    summary = [wording.scope_sentence(
        evaluated_on=scope.description, may_include_training=scope.may_include_training,
        n_images=int(rows.sum()), n_patients=n_patients)]
    summary += [wording.finding_summary(name, entry) for name, entry in per.items()]
    return {
        "status": "assessed",
        "output_kind": "multilabel_sigmoid",
        "evaluated_on": scope.description,
        "evaluation_source": scope.source,
        "may_include_training": scope.may_include_training,
        "n": int(rows.sum()),
        "n_patients": n_patients,
        "resampling_unit": "patient" if clusters is not None else "image",
        "findings": per,
        "thresholds": {n: float(t) for n, t in zip(card.class_names, card.thresholds)},
        "thresholds_from": "card" if card.findings else "default 0.5 (the card states none)",
        "summary": summary,
    }


def fairness_check(ctx: Any) -> dict[str, Any]:
    """The ``fairness`` check of a ``multilabel_sigmoid`` model."""
    from .fairness import attribute_concepts, auditor_for

    card = ctx.model.card
    rows, described = ctx.evaluation_rows()
    records = ctx.dataset.records[rows].reset_index(drop=True)
    attrs = [a.name for a in ctx.dataset.spec.attributes]
    if not attrs:
        return {"status": "not_assessed", "reason": "the dataset describes no patient attributes"}
    truth = check_findings(card, records)
    proba = ctx.predictions.probabilities[rows]
    patients = records["patient_id"].to_numpy().astype(str) if ctx.dataset.has_patients else None
    auditor = auditor_for(ctx)
    result = fairness_by_finding(
        truth=truth, proba=proba, thresholds=card.thresholds, findings=list(card.class_names),
        groups=records[attrs], patients=patients, auditor=auditor,
        group_order={a.name: a.group_order for a in ctx.dataset.spec.attributes},
        concepts=attribute_concepts(ctx.dataset.spec.attributes), progress=ctx.progress)
    summary = []
    for name, entry in result["findings"].items():
        for d in entry.get("disparities", []):
            if d.get("status") == "assessed" and (
                    d.get("metric") in ("sensitivity", "specificity") or d.get("real")):
                summary.append(f"{name.replace('_', ' ')}: "
                               + wording.gap_sentence(d, name.replace("_", " ")))
    summary += [r["sentence"] for r in result["worst_pairs"]]
    # who is in the test data (group sizes, for the Overview's evidence question): the
    # groups of the finding known for the most images
    assessed = {k: v for k, v in result["findings"].items() if v.get("status") == "assessed"}
    widest = max(assessed, key=lambda k: assessed[k]["n"], default=None)
    return {
        "groups": assessed[widest]["groups"] if widest else [],
        "groups_from_finding": widest,
        "status": "assessed",
        "output_kind": "multilabel_sigmoid",
        "evaluated_on": described,
        "resampling_unit": "patient" if patients is not None else "image",
        "n_boot": ctx.config.n_boot,
        "confidence": ctx.config.confidence,
        "min_group_size": ctx.config.min_group_size,
        **result,
        "summary": summary,
    }


def findings_frame(result: dict[str, Any]) -> pd.DataFrame:
    """The performance result as a table: one row per finding and metric."""
    rows = []
    for finding, entry in (result.get("findings") or {}).items():
        for metric in ("sensitivity", "specificity", "auroc", "ppv", "npv", "prevalence"):
            m = (entry.get("metrics") or {}).get(metric) or {}
            ci = m.get("ci") or [None, None]
            rows.append({"finding": finding, "threshold": entry.get("threshold"),
                         "metric": wording.metric_name(metric), "value": m.get("value"),
                         "low": ci[0], "high": ci[1], "n": m.get("denominator"),
                         "n_patients": m.get("denominator_patients"),
                         "unknown_labels": entry.get("n_unknown"),
                         "too_few": bool(m.get("too_few"))})
    return pd.DataFrame(rows)


def finding_groups_frame(result: dict[str, Any], *, finding: str, attribute: str,
                         metric: str) -> pd.DataFrame:
    """One finding's groups of ``attribute`` for ``metric``: value, interval, n, flags."""
    entry = (result.get("findings") or {}).get(finding) or {}
    rows = []
    for e in entry.get("groups", []):
        if e.get("attribute") != attribute:
            continue
        m = e.get(metric) or {}
        ci = m.get("ci") or [None, None]
        rows.append({"group": e["group"], "value": m.get("value"), "low": ci[0], "high": ci[1],
                     "n": m.get("denominator"), "n_patients": m.get("denominator_patients"),
                     "too_few": bool(e.get("too_few") or m.get("too_few")),
                     "suppressed": bool(e.get("suppressed"))})
    return pd.DataFrame(rows)


def worst_pairs_frame(result: dict[str, Any]) -> pd.DataFrame:
    """The fairness result's worst finding/group pairs as a table (withheld rows left out)."""
    return pd.DataFrame([{"finding": r["finding"], "attribute": r["attribute"],
                          "group": r["group"], "metric": wording.metric_name(r["metric"]),
                          "value": r["value"], "low": (r.get("ci") or [None, None])[0],
                          "high": (r.get("ci") or [None, None])[1], "n": r.get("n"),
                          "n_patients": r.get("n_patients")}
                         for r in result.get("worst_pairs", []) if not r.get("suppressed")])
