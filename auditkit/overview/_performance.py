"""Questions 1-3: accuracy, fairness between groups, adequacy of the evidence."""

from __future__ import annotations

from typing import Any

from .. import wording as w
from ..criteria import Criteria
from ._common import _answer, _how_to_run, _metric_evidence, _not_run, _size, _unit
from ._judge import _interval, _ok, judge_at_least, judge_at_most, judge_beats_baseline
from ._types import _SEVERITY, Answer, FigureData, Finding

# --------------------------------------------------------------------------- questions


def _majority_baseline(perf: dict[str, Any]) -> tuple[float, str, int] | None:
    """(rate, class, n): from issue-12's ``baselines`` when present, else the confusion matrix."""
    stored = (perf.get("baselines") or {}).get("majority_class")
    n = perf.get("n")
    if isinstance(stored, dict):
        acc: Any = stored.get("baseline", stored.get("accuracy"))
        value: Any = acc.get("value") if isinstance(acc, dict) else acc
        if _ok(value):
            return (float(value), str(stored.get("class", "the most common class")),
                    int(n or 0))
    cm = perf.get("confusion_matrix") or {}
    rows = cm.get("rows_true_cols_pred")
    classes = cm.get("classes")
    if not rows or not classes:
        return None
    counts = [sum(r) for r in rows]
    total = sum(counts)
    if total <= 0:
        return None
    best = max(range(len(counts)), key=lambda i: counts[i])
    return counts[best] / total, str(classes[best]), total


def _accuracy(audit: dict[str, Any], crit: Criteria) -> Answer:
    from ._dense import accuracy_dense, is_dense

    if is_dense(audit):
        return accuracy_dense(audit, crit)
    perf = audit.get("results", {}).get("performance")
    if not perf:
        return _not_run(audit, "accuracy", "performance")
    if perf.get("status") != "assessed":
        return _answer("accuracy", [Finding(
            w.overview_check_criterion("performance"), "not assessed",
            w.not_assessed(perf.get("reason", "the check did not assess this model")),
            source="evidence alone")])
    rules = crit.rules.performance
    metrics = perf.get("metrics", {})
    n, n_pat = _size(perf, audit)
    unit = _unit(n_pat)
    units = n_pat or n
    findings: list[Finding] = []
    headline: str | None = None
    acc_v, acc_lo, acc_hi = _interval(metrics.get("accuracy"))
    base = _majority_baseline(perf)
    fig_rows: list[dict[str, Any]] = []
    if rules.must_beat_majority_class and base is not None:
        rate, cls, _ = base
        verdict, reason = judge_beats_baseline(acc_v, acc_lo, acc_hi, rate, n=units, unit=unit)
        sentence = w.overview_majority_sentence(accuracy=acc_v, baseline=rate, majority_class=cls)
        evidence = (f"{sentence} ({w.metric_name('accuracy')} "
                    f"{w.fmt_interval(acc_v, [acc_lo, acc_hi])}, {w.fmt_n(n, n_pat)})")
        paired = (perf.get("baselines") or {}).get("majority_class") or {}
        d_ci = paired.get("ci") or [None, None]
        if _ok(paired.get("difference")) and len(d_ci) == 2 and _ok(d_ci[0]) and _ok(d_ci[1]):
            # the paired difference (same images, patients as clusters) is the sharper test
            verdict, reason = judge_beats_baseline(paired["difference"], d_ci[0], d_ci[1], 0.0,
                                                   n=units, unit=unit)
            evidence += "; " + w.overview_paired_difference(paired["difference"], d_ci)
        findings.append(Finding(w.overview_majority_criterion(cls), verdict, evidence, reason,
                                source="baseline"))
        if verdict == "concern":
            headline = sentence
    k = len(perf.get("confusion_matrix", {}).get("classes") or []) or 2
    if rules.must_beat_chance:
        for name, chance in (("balanced_accuracy", 1.0 / k), ("auroc", 0.5)):
            if name not in metrics:
                continue
            v, lo, hi = _interval(metrics[name])
            verdict, reason = judge_beats_baseline(v, lo, hi, chance, n=units, unit=unit)
            findings.append(Finding(
                w.overview_chance_criterion(name, chance),
                verdict, _metric_evidence(name, metrics[name], n, n_pat), reason,
                source="baseline"))
            if verdict == "concern" and headline is None:
                headline = w.overview_chance_sentence(name, v, chance)
    positive = perf.get("positive_class")
    for name, threshold in (("accuracy", rules.min_accuracy),
                            ("balanced_accuracy", rules.min_balanced_accuracy),
                            ("sensitivity", rules.min_sensitivity),
                            ("specificity", rules.min_specificity),
                            ("auroc", rules.min_auroc)):
        if threshold is None:
            continue
        v, lo, hi = _interval(metrics.get(name))
        verdict, reason = judge_at_least(v, lo, hi, threshold, n=units, unit=unit)
        findings.append(Finding(
            w.overview_at_least(name, threshold, positive), verdict,
            _metric_evidence(name, metrics.get(name), n, n_pat), reason))
    for name in ("accuracy", "balanced_accuracy", "sensitivity", "specificity", "auroc"):
        v, lo, hi = _interval(metrics.get(name))
        if v is not None:
            fig_rows.append({"label": w.metric_name(name), "value": v, "low": lo, "high": hi})
    figures = [FigureData(title=w.overview_figure_title("accuracy", n, n_pat),
                          axis="share (95% interval)", rows=fig_rows,
                          reference=base[0] if base else None,
                          reference_label=(f"always '{base[1]}'" if base else ""))]
    notes = [w.overview_evaluated_on(perf.get("evaluated_on", ""))]
    return _answer("accuracy", findings, headline=headline, notes=notes, figures=figures)


def _gap_interval(d: dict[str, Any]) -> tuple[list[Any] | None, str]:
    for key, label in (("gap_ci_simultaneous", "simultaneous"), ("gap_ci_adjusted", "adjusted"),
                       ("gap_ci", "unadjusted")):
        if d.get(key):
            return d[key], label
    return None, ""


def _fairness(audit: dict[str, Any], crit: Criteria) -> Answer:
    from ._dense import fairness_dense, is_dense

    if is_dense(audit):
        return fairness_dense(audit, crit)
    fair = audit.get("results", {}).get("fairness")
    if not fair:
        return _not_run(audit, "fairness", "fairness")
    if fair.get("status", "assessed") != "assessed":
        return _answer("fairness", [Finding(w.overview_check_criterion("fairness"),
                                            "not assessed", w.not_assessed(fair.get("reason", "")),
                                            source="evidence alone")])
    rules = crit.rules.fairness
    unit = "images"  # the group sizes stored with each gap (n_worst, n_best) count images
    findings: list[Finding] = []
    judged: list[tuple[Finding, dict[str, Any]]] = []
    skipped_by_reason: dict[str, list[str]] = {}
    for d in fair.get("disparities", []):
        metric = d.get("metric")
        if metric not in rules.metrics:
            continue
        attribute = d.get("attribute", "?")
        if d.get("status") != "assessed":
            skipped_by_reason.setdefault(d.get("reason", ""), []).append(
                f"{attribute} ({w.metric_name(metric)})")
            continue
        gap = d.get("gap")
        ci, kind = _gap_interval(d)
        lo, hi = (ci[0], ci[1]) if ci else (None, None)
        sizes = [int(x) for x in (d.get("n_worst"), d.get("n_best")) if _ok(x)]
        n_small: int | None = min(sizes) if sizes else None
        mdd = d.get("minimum_detectable_gap", d.get("min_detectable_gap",
                                                  d.get("minimum_detectable_difference")))
        evidence = w.overview_gap_evidence(
            attribute=attribute, metric=metric, worst=d.get("worst_group"),
            best=d.get("best_group"), worst_value=d.get("worst"), best_value=d.get("best"),
            gap=gap, low=lo, high=hi, interval_kind=kind, n_worst=d.get("n_worst"),
            n_best=d.get("n_best"), detectable=mdd if _ok(mdd) else None)
        if rules.max_gap is not None:
            verdict, reason = judge_at_most(gap if _ok(gap) else None,
                                            lo if _ok(lo) else None, hi if _ok(hi) else None,
                                            rules.max_gap, n=n_small,
                                            unit=unit)
            criterion = w.overview_max_gap_criterion(metric, rules.max_gap)
            source = "criteria"
        else:
            real = bool(d.get("real")) or (lo is not None and _ok(lo) and float(lo) > 0)
            verdict = "concern" if real else "cannot tell"
            reason = "" if real else w.overview_no_gap_found(mdd if _ok(mdd) else None)
            criterion = w.overview_gap_chance_criterion(metric)
            source = "evidence alone"
        findings.append(Finding(criterion, verdict, evidence, reason, source))
        judged.append((findings[-1], d))
    skipped = [w.overview_gaps_not_assessed(where, reason)
               for reason, where in skipped_by_reason.items()]
    if not findings:
        reasons = skipped or [w.overview_no_metric_gaps(list(rules.metrics))]
        how = (w.overview_more_groups_needed(fair.get("min_group_size")) if skipped
               else _how_to_run(audit, "fairness"))
        return _answer("fairness", [Finding(w.overview_check_criterion("fairness"),
                                            "not assessed", reasons[0], how,
                                            source="evidence alone")], notes=skipped[1:])
    figures = []
    # the figure shows the groups of the decisive attribute for the decisive metric
    decisive = max(judged, key=lambda fd: (_SEVERITY[fd[0].verdict],
                                           fd[1].get("gap") if _ok(fd[1].get("gap")) else 0))[1]
    if decisive:
        rows: list[dict[str, Any]] = []
        for g in fair.get("groups", []):
            if g.get("attribute") != decisive["attribute"]:
                continue
            if g.get("suppressed"):
                rows.append({"label": f"{g['group']} (hidden: small group)", "value": None,
                             "low": None, "high": None})
                continue
            v, lo, hi = _interval(g.get(decisive["metric"]))
            rows.append({"label": f"{g['group']} ({w.fmt_n(g.get('n'), g.get('n_patients'))})"
                                  + (" — too few" if g.get("too_few") else ""),
                         "value": v, "low": lo, "high": hi})
        figures.append(FigureData(
            title=f"{w.metric_name(decisive['metric'])} by {decisive['attribute']}",
            axis=f"{w.metric_name(decisive['metric'])} (95% interval)", rows=rows))
    notes = skipped + ([fair["correction"]] if fair.get("correction") else [])
    return _answer("fairness", findings, notes=notes, figures=figures)


_ASKED_KINDS = {"ethnicity": "ethnicity", "sex": "sex", "age": "age",
                "skin_tone": "skin tone", "site": "site"}


def _training_findings(training: dict[str, list[dict[str, Any]]], flag: bool, k: int
                       ) -> tuple[list[Finding], list[str]]:
    findings, notes = [], []
    for attribute, rows in training.items():
        tested = [r for r in rows if r["group"] != "unknown" and r["n_test"] != 0]
        absent = [r for r in tested if r["n_train"] == 0]
        evidence = w.overview_training_mix_evidence(attribute, rows, absent, k)
        if flag:
            findings.append(Finding(w.overview_training_criterion(attribute),
                                    "concern" if absent else "meets", evidence))
        else:
            notes.append(evidence)
    return findings, notes


def _evidence(audit: dict[str, Any], crit: Criteria,
              training: dict[str, list[dict[str, Any]]] | None = None) -> Answer:
    fair = audit.get("results", {}).get("fairness")
    rules = crit.rules.evidence
    findings: list[Finding] = []
    notes: list[str] = []
    attrs: dict[str, str] = audit.get("dataset", {}).get("attributes", {}) or {}
    kinds = set(attrs.values())
    missing = [label for kind, label in _ASKED_KINDS.items()
               if kind not in kinds and not (kind == "site" and "categorical" in kinds)]
    if missing:
        notes.append(w.overview_missing_attributes(missing))
    ds = audit.get("dataset", {})
    if ds.get("n_invalid_rows_dropped"):
        notes.append(w.overview_rows_dropped(ds["n_invalid_rows_dropped"], ds.get("n_rows_total")))
    if not fair or fair.get("status", "assessed") != "assessed":
        return _not_run(audit, "evidence", "fairness") if not fair else _answer(
            "evidence", [Finding(w.overview_check_criterion("fairness"), "not assessed",
                                 w.not_assessed(fair.get("reason", "")))], notes=notes)
    total = (audit.get("results", {}).get("performance") or {}).get("n")
    rows = []
    for attribute in dict.fromkeys(g["attribute"] for g in fair.get("groups", [])
                                   if not g.get("intersection") and "×" not in g["attribute"]):
        groups = [g for g in fair["groups"] if g["attribute"] == attribute]
        judged = sum(int(g["n"]) for g in groups
                     if _ok(g.get("n")) and not g.get("too_few") and not g.get("is_unknown")
                     and not g.get("suppressed"))
        base = total if _ok(total) else sum(int(g["n"]) for g in groups if _ok(g.get("n")))
        if not base:
            continue
        share = 1.0 - judged / base
        small = [str(g["group"]) for g in groups
                 if g.get("too_few") or g.get("suppressed") or g.get("is_unknown")]
        evidence = w.overview_unjudgeable_evidence(attribute, share, base, small)
        rows.append({"label": attribute, "value": 1.0 - share, "low": None, "high": None})
        if rules.max_unjudgeable_share is not None:
            verdict = "meets" if share <= rules.max_unjudgeable_share else "concern"
            findings.append(Finding(
                w.overview_unjudgeable_criterion(attribute, rules.max_unjudgeable_share),
                verdict, evidence))
        else:
            notes.append(evidence)
    skin = fair.get("skin_tone") or {}
    agreement = skin.get("annotator_agreement")
    if agreement and _ok(agreement.get("kappa_quadratic")):
        kappa = float(agreement["kappa_quadratic"])
        evidence = w.overview_kappa_evidence(kappa, agreement.get("exact"), agreement.get("n"))
        if rules.min_skin_tone_agreement is not None:
            verdict = "meets" if kappa >= rules.min_skin_tone_agreement else "concern"
            findings.append(Finding(w.overview_kappa_criterion(rules.min_skin_tone_agreement),
                                    verdict, evidence))
        else:
            notes.append(evidence)
    if training:
        k = int((audit.get("small_cell_protection") or {}).get("k") or 0)
        more, more_notes = _training_findings(training, rules.flag_groups_absent_from_training,
                                              k)
        findings.extend(more)
        notes.extend(more_notes)
    else:
        notes.append(w.overview_training_mix_note())
    figures = [FigureData(title="share of test images in groups large enough to judge",
                          axis="share of test images", rows=rows,
                          reference=(1.0 - rules.max_unjudgeable_share
                                     if rules.max_unjudgeable_share is not None else None),
                          reference_label="criterion")] if rows else []
    if not findings:
        findings.append(Finding(w.overview_check_criterion("evidence"), "not assessed",
                                "no attribute could be summarised", source="evidence alone"))
    return _answer("evidence", findings, notes=notes, figures=figures)
