"""The committee's questions for multi-label and segmentation models.

Same verdict words and the same judging rules as for classifiers
(:func:`auditkit.overview.judge_at_least` / ``judge_at_most``); what is judged is the
task's own measure:

- multi-label: every finding's sensitivity, specificity and AUROC against the criteria
  (one finding each), gaps per finding (family-wise over findings), and the share of
  finding calls an invisible change or an ordinary corruption flips;
- segmentation: patient-level mean Dice, lesions missed entirely, false lesions on empty
  slices; the Dice gap between groups; the drop in Dice under attack and corruption.
"""

from __future__ import annotations

from typing import Any

from .. import wording as w
from ..criteria import Criteria
from ._common import _answer, _metric_evidence, _not_run, _size, _unit
from ._judge import _interval, judge_at_least, judge_at_most, judge_beats_baseline
from ._types import Answer, FigureData, Finding

__all__ = ["accuracy_dense", "explain_dense", "fairness_dense", "is_dense", "robustness_dense"]

DENSE_KINDS = ("multilabel_sigmoid", "segmentation")


def is_dense(audit: dict[str, Any]) -> bool:
    """True for an audit of a multi-label or segmentation model."""
    return (audit.get("model") or {}).get("output") in DENSE_KINDS


def accuracy_dense(audit: dict[str, Any], crit: Criteria) -> Answer:
    """Question 1 for the two dense kinds."""
    perf = audit.get("results", {}).get("performance")
    if not perf:
        return _not_run(audit, "accuracy", "performance")
    rules = crit.rules.performance
    n, n_pat = _size(perf, audit)
    unit = _unit(n_pat)
    findings: list[Finding] = []
    rows: list[dict[str, Any]] = []
    if perf.get("output_kind") == "segmentation":
        metrics = perf.get("metrics", {})
        for name, threshold, judge in (
                ("dice", rules.min_dice, judge_at_least),
                ("missed_lesion_rate", rules.max_missed_lesion_rate, judge_at_most),
                ("false_lesion_rate", rules.max_false_lesion_rate, judge_at_most)):
            entry = metrics.get(name)
            v, lo, hi = _interval(entry)
            if v is not None:
                rows.append({"label": w.metric_name(name), "value": v, "low": lo, "high": hi})
            if threshold is None:
                continue
            units = (entry or {}).get("denominator_patients") or (entry or {}).get("denominator")
            verdict, reason = judge(v, lo, hi, threshold, n=units, unit=unit)
            findings.append(Finding(w.overview_dense_criterion(name, threshold), verdict,
                                    _dense_evidence(name, entry), reason))
    else:
        for finding, entry in (perf.get("findings") or {}).items():
            metrics = entry.get("metrics") or {}
            units = entry.get("n_patients") or entry.get("n")
            if rules.must_beat_chance and "auroc" in metrics:
                v, lo, hi = _interval(metrics["auroc"])
                verdict, reason = judge_beats_baseline(v, lo, hi, 0.5, n=units, unit=unit)
                findings.append(Finding(
                    f"{_finding(finding)}: " + w.overview_chance_criterion("auroc", 0.5), verdict,
                    _metric_evidence("auroc", metrics["auroc"], entry.get("n"),
                                     entry.get("n_patients")), reason, source="baseline"))
            for name, threshold in (("sensitivity", rules.min_sensitivity),
                                    ("specificity", rules.min_specificity),
                                    ("auroc", rules.min_auroc)):
                v, lo, hi = _interval(metrics.get(name))
                if v is not None:
                    rows.append({"label": f"{_finding(finding)}: {w.metric_name(name)}",
                                 "value": v, "low": lo, "high": hi})
                if threshold is None:
                    continue
                verdict, reason = judge_at_least(v, lo, hi, threshold, n=units, unit=unit)
                findings.append(Finding(
                    f"{_finding(finding)}: " + w.overview_at_least(name, threshold), verdict,
                    _metric_evidence(name, metrics.get(name), entry.get("n"),
                                     entry.get("n_patients")), reason))
    if not findings:
        findings.append(Finding(w.overview_check_criterion("performance"), "not assessed",
                                w.not_assessed("the criteria set no rule for this kind of model"),
                                source="evidence alone"))
    figures = [FigureData(title=w.overview_figure_title("performance", n, n_pat),
                          axis="share (95% interval)", rows=rows)]
    return _answer("accuracy", findings, notes=[w.overview_evaluated_on(
        perf.get("evaluated_on", ""))], figures=figures)


def _finding(name: str) -> str:
    return name.replace("_", " ")


def _dense_evidence(name: str, entry: dict[str, Any] | None) -> str:
    entry = entry or {}
    return (f"{w.metric_name(name)} {w.fmt_interval(entry.get('value'), entry.get('ci'))} "
            f"({w.fmt_n(entry.get('denominator'), entry.get('denominator_patients'))}; "
            f"{entry.get('denominator_of', 'images')})")


def fairness_dense(audit: dict[str, Any], crit: Criteria) -> Answer:
    """Question 2 for the two dense kinds: group gaps, family-wise corrected."""
    fair = audit.get("results", {}).get("fairness")
    if not fair:
        return _not_run(audit, "fairness", "fairness")
    rules = crit.rules.fairness
    findings: list[Finding] = []
    skipped: list[str] = []
    if fair.get("output_kind") == "segmentation":
        tagged = [("", d) for d in fair.get("disparities", [])]
    else:
        tagged = [(_finding(name) + ", ", d) for name, entry in (fair.get("findings") or {}).items()
                  for d in entry.get("disparities", [])]
    for prefix, d in tagged:
        metric = d.get("metric")
        if metric not in rules.metrics:
            continue
        attribute = d.get("attribute", "?")
        if d.get("status") != "assessed":
            skipped.append(f"{prefix}{attribute} ({w.metric_name(str(metric))}): "
                           f"{d.get('reason', '')}")
            continue
        real = bool(d.get("real"))
        p = d.get("p_family", d.get("p_adjusted"))
        evidence = (f"{prefix}{attribute}: {w.metric_name(str(metric))} "
                    f"{w.fmt_pct(d.get('worst'))} for {d.get('worst_group')} vs "
                    f"{w.fmt_pct(d.get('best'))} for {d.get('best_group')} (adjusted p = "
                    f"{w.fmt_number(p, 3)})")
        findings.append(Finding(f"{prefix}" + w.overview_gap_chance_criterion(str(metric)),
                                "concern" if real else "cannot tell", evidence,
                                "" if real else w.overview_no_gap_found(
                                    d.get("minimum_detectable_gap")),
                                source="evidence alone"))
    if not findings:
        reason = skipped[0] if skipped else w.overview_no_metric_gaps(list(rules.metrics))
        return _answer("fairness", [Finding(w.overview_check_criterion("fairness"),
                                            "not assessed", reason,
                                            w.overview_more_groups_needed(
                                                fair.get("min_group_size")),
                                            source="evidence alone")], notes=skipped[1:])
    notes = skipped + ([fair["correction"]] if fair.get("correction") else [])
    return _answer("fairness", findings, notes=notes)


def robustness_dense(audit: dict[str, Any], crit: Criteria) -> Answer:
    """Question 5 for the two dense kinds."""
    rob = audit.get("results", {}).get("robustness")
    if not rob:
        return _not_run(audit, "robustness", "robustness")
    if rob.get("status") != "assessed":
        return _answer("robustness", [Finding(w.overview_check_criterion("robustness"),
                                              "not assessed", w.not_assessed(rob.get("reason", "")),
                                              source="evidence alone")])
    rules = crit.rules.robustness
    seg = rob.get("output_kind") == "segmentation"
    limit_attack = rules.max_dice_drop if seg else rules.max_attack_success_rate
    limit_corr = rules.max_dice_drop if seg else rules.max_corruption_flip_rate
    findings: list[Finding] = []
    attack = next((a for a in rob.get("attacks", []) if a.get("eps_label") == rules.eps), None)
    candidates = [("attack", attack, limit_attack, f"PGD on the model's own loss at {rules.eps}")]
    worst = None
    for c in rob.get("corruptions", []):
        if int(c.get("severity", 99)) > rules.corruption_max_severity:
            continue
        value = (c.get("overall") or {}).get("value")
        if value is None:
            continue
        score = -value if seg else value
        if worst is None or score > worst[0]:
            worst = (score, c)
    if worst is not None:
        c = worst[1]
        candidates.append(("corruption", c, limit_corr,
                           f"{c['corruption']} at severity {c['severity']}"))
    for _kind, entry, limit, label in candidates:
        if limit is None:
            continue
        criterion = w.overview_dense_robustness_criterion(seg=seg, what=label, limit=limit)
        if entry is None:
            findings.append(Finding(criterion, "not assessed",
                                    w.not_assessed(f"the audit did not run {label}"),
                                    source="criteria"))
            continue
        o = entry.get("overall") or {}
        v, lo, hi = _interval(o)
        if seg and v is not None:  # a drop is minus the change
            v, lo, hi = -v, (None if hi is None else -hi), (None if lo is None else -lo)
        verdict, reason = judge_at_most(v, lo, hi, limit, n=o.get("n_patients") or o.get("n"))
        findings.append(Finding(criterion, verdict, w.dense_robustness_sentence(
            what=label, measure="segmentation" if seg else "multilabel",
            value=o.get("value"), ci=o.get("ci"), n=o.get("n"), n_patients=o.get("n_patients")),
            reason))
    return _answer("robustness", findings)


def explain_dense(audit: dict[str, Any], crit: Criteria) -> Answer:
    """Question 4 for the two dense kinds: what was explained and how well it adds up."""
    del crit  # the classifier criteria (sanity, deletion, border) do not apply
    ex = audit.get("results", {}).get("explain")
    if not ex:
        return _not_run(audit, "explain", "explain")
    if ex.get("status") != "assessed":
        return _answer("explain", [Finding(w.overview_check_criterion("explain"), "not assessed",
                                           w.not_assessed(ex.get("reason", "")),
                                           source="evidence alone")])
    return _answer("explain", [Finding(
        w.overview_check_criterion("explain"), "not assessed",
        " ".join(ex.get("summary") or []),
        w.overview_dense_explain_reason(), source="evidence alone")])
