"""Questions 4-7: explanations, robustness, privacy, change since the last version."""

from __future__ import annotations

import os
from typing import Any

from .. import wording as w
from ..criteria import Criteria
from ._common import _answer, _how_to_run, _not_run
from ._judge import _interval, _ok, judge_at_most
from ._types import Answer, FigureData, Finding


def _explain(audit: dict[str, Any], crit: Criteria) -> Answer:
    ex = audit.get("results", {}).get("explain")
    if not ex:
        return _not_run(audit, "explain", "explain")
    if ex.get("status") != "assessed":
        return _answer("explain", [Finding(w.overview_check_criterion("explain"), "not assessed",
                                           w.not_assessed(ex.get("reason", "")),
                                           source="evidence alone")])
    rules = crit.rules.explain
    trust = ex.get("trust", {})
    findings: list[Finding] = []
    n_img = ex.get("n_images")
    sanity = trust.get("sanity") or {}
    if rules.require_sanity_check:
        if sanity.get("status") != "assessed":
            findings.append(Finding(w.overview_sanity_criterion(), "not assessed",
                                    w.not_assessed(sanity.get("reason", "not run"))))
        else:
            v, lo, hi = _interval(sanity.get("similarity_all_layers_randomized"))
            threshold = float(sanity.get("threshold", 0.5))
            verdict, reason = judge_at_most(v, lo, hi, threshold, pct=False,
                                            n=sanity.get("n"), unit="images")
            if sanity.get("flagged") and verdict == "meets":
                verdict = "concern"
            findings.append(Finding(w.overview_sanity_criterion(), verdict,
                                    w.overview_sanity_evidence(v, lo, hi, sanity.get("n")),
                                    reason))
    faith = trust.get("faithfulness") or {}
    if rules.require_beats_random and faith:
        verdicts = {faith.get("deletion_verdict"), faith.get("insertion_verdict")}
        verdict = ("meets" if faith.get("beats_random") else
                   "concern" if "worse" in verdicts else "cannot tell")
        reason = ("" if verdict != "cannot tell" else
                  "the gain over random orders is within its interval of zero on at least one "
                  "test: explain more images to settle it")
        findings.append(Finding(w.overview_faithfulness_criterion(), verdict,
                                w.overview_faithfulness_evidence(faith), reason))
    shortcuts = ex.get("shortcuts") or {}
    border = (shortcuts.get("overall") or {}).get("border")
    area = ((shortcuts.get("regions") or {}).get("border") or {}).get("area_share")
    if rules.max_border_share is not None and border:
        v, lo, hi = _interval(border)
        verdict, reason = judge_at_most(v, lo, hi, rules.max_border_share,
                                        n=shortcuts.get("n"), unit="images")
        findings.append(Finding(w.overview_border_criterion(rules.max_border_share), verdict,
                                w.overview_border_evidence(v, lo, hi, area, shortcuts.get("n")),
                                reason))
    notes = []
    completeness = trust.get("completeness") or {}
    if completeness.get("text"):
        notes.append(completeness["text"])
    rows = []
    for g in shortcuts.get("by_group", []):
        if g.get("suppressed"):
            continue
        v, lo, hi = _interval(g.get("border"))
        if v is not None:
            rows.append({"label": f"{g['attribute']}: {g['group']} ({w.fmt_n(g.get('n'))})",
                         "value": v, "low": lo, "high": hi})
    figures = [FigureData(title=f"share of the explanation on the image border "
                                f"({w.fmt_n(n_img)})", axis="border share (95% interval)",
                          rows=rows, reference=rules.max_border_share,
                          reference_label="criterion")] if rows else []
    return _answer("explain", findings, notes=notes, figures=figures)


def _budget_matches(entry: dict[str, Any], eps: str) -> bool:
    if entry.get("budget_label") == eps:
        return True
    try:
        num, _, den = eps.partition("/")
        target = float(num) / float(den) if den else float(num)
    except ValueError:
        return False
    return _ok(entry.get("budget")) and abs(float(entry["budget"]) - target) < 1e-9


def _robustness(audit: dict[str, Any], crit: Criteria) -> Answer:
    rob = audit.get("results", {}).get("robustness")
    if not rob:
        return _not_run(audit, "robustness", "robustness")
    if rob.get("status") != "assessed":
        return _answer("robustness", [Finding(w.overview_check_criterion("robustness"),
                                              "not assessed", w.not_assessed(rob.get("reason", "")),
                                              source="evidence alone")])
    rules = crit.rules.robustness
    findings: list[Finding] = []
    figures: list[FigureData] = []
    unit = "patients" if rob.get("resampling_unit") == "patient" else "images"
    if rules.max_attack_success_rate is not None:
        entry = next((a for a in rob.get("attacks", [])
                      if a.get("attack") == rules.attack and _budget_matches(a, rules.eps)), None)
        crit_text = w.overview_attack_criterion(rules.attack, rules.eps,
                                                rules.max_attack_success_rate)
        if entry is None:
            ran = ", ".join(f"{a.get('attack')} at {a.get('budget_label')}"
                            for a in rob.get("attacks", [])) or "no attack"
            findings.append(Finding(crit_text, "not assessed",
                                    w.overview_attack_missing(rules.attack, rules.eps, ran),
                                    _how_to_run(audit, "robustness")))
        else:
            overall = entry.get("overall", {})
            sr = overall.get("attack_success_rate") or {}
            v, lo, hi = _interval(sr)
            n_units = overall.get("n_patients") or sr.get("n")
            verdict, reason = judge_at_most(v, lo, hi, rules.max_attack_success_rate,
                                            n=n_units, unit=unit)
            findings.append(Finding(crit_text, verdict, w.overview_attack_evidence(
                entry.get("label", rules.attack), entry.get("budget_label", rules.eps), v, lo,
                hi, sr.get("n"), (rob.get("clean", {}).get("overall", {}) or {}),
                overall.get("robust_accuracy")), reason))
            rows = []
            for g in entry.get("by_group", []):
                if g.get("suppressed"):
                    continue
                gv, glo, ghi = _interval(g.get("attack_success_rate"))
                if gv is not None:
                    rows.append({"label": f"{g['attribute']}: {g['group']} "
                                          f"({w.fmt_n((g.get('attack_success_rate') or {}).get('n'))})",
                                 "value": gv, "low": glo, "high": ghi})
            figures.append(FigureData(
                title=f"correct answers flipped by {entry.get('label')} at "
                      f"{entry.get('budget_label')}, by group",
                axis="share flipped (95% interval)", rows=rows,
                reference=rules.max_attack_success_rate, reference_label="criterion"))
    if rules.max_corruption_flip_rate is not None:
        candidates = [c for c in rob.get("corruptions", [])
                      if _ok(c.get("severity")) and c["severity"] <= rules.corruption_max_severity
                      and _interval((c.get("overall") or {}).get("flip_rate"))[0] is not None]
        crit_text = w.overview_corruption_criterion(rules.max_corruption_flip_rate,
                                                    rules.corruption_max_severity)
        if not candidates:
            findings.append(Finding(crit_text, "not assessed",
                                    w.not_assessed("no everyday image corruption was tested"),
                                    _how_to_run(audit, "robustness")))
        else:
            worst = max(candidates, key=lambda c: c["overall"]["flip_rate"]["value"])
            fr = worst["overall"]["flip_rate"]
            v, lo, hi = _interval(fr)
            verdict, reason = judge_at_most(v, lo, hi, rules.max_corruption_flip_rate,
                                            n=worst["overall"].get("n_patients") or fr.get("n"),
                                            unit=unit)
            findings.append(Finding(crit_text, verdict, w.overview_corruption_evidence(
                worst.get("label", worst.get("corruption")), worst["severity"], v, lo, hi,
                fr.get("n"), len(candidates)), reason))
    notes = [rob["summary"]] if rob.get("summary") else []
    return _answer("robustness", findings, notes=notes, figures=figures)


def _privacy(audit: dict[str, Any], crit: Criteria) -> Answer:
    priv = audit.get("results", {}).get("privacy")
    if not priv:
        return _not_run(audit, "privacy", "privacy")
    rules = crit.rules.privacy
    findings: list[Finding] = []
    figures: list[FigureData] = []
    mia = priv.get("membership") or {}
    if mia.get("status") != "assessed":
        findings.append(Finding(w.overview_membership_criterion(rules.max_membership_auc),
                                "not assessed",
                                w.not_assessed(mia.get("reason", "membership inference did not "
                                                                 "run"))))
    else:
        best = mia["overall"][mia["strongest_attack"]]
        unit = "patients" if mia.get("resampling_unit") == "patient" else "images"
        n_units = mia.get("n_patients") or mia.get("n")
        if rules.max_membership_auc is not None:
            v, lo, hi = _interval(best.get("auc"))
            verdict, reason = judge_at_most(v, lo, hi, rules.max_membership_auc, pct=False,
                                            n=n_units, unit=unit)
            findings.append(Finding(w.overview_membership_criterion(rules.max_membership_auc),
                                    verdict, w.overview_membership_evidence(
                                        mia["strongest_attack"], v, lo, hi,
                                        mia.get("n_members"), mia.get("n_nonmembers"),
                                        mia.get("n_patients")), reason))
        if rules.max_tpr_at_1pct_fpr is not None:
            tpr = best.get("tpr_at_1pct_fpr") or {}
            v, lo, hi = _interval(tpr)
            verdict, reason = judge_at_most(v, lo, hi, rules.max_tpr_at_1pct_fpr, n=n_units,
                                            unit=unit)
            findings.append(Finding(w.overview_tpr_criterion(rules.max_tpr_at_1pct_fpr), verdict,
                                    w.overview_tpr_evidence(v, lo, hi, tpr.get("resolvable", True),
                                                            mia.get("n_members")), reason))
        rows = []
        for g in mia.get("groups", []):
            if g.get("suppressed") or g.get("attack") not in (None, mia["strongest_attack"]):
                continue
            v, lo, hi = _interval(g.get("auc"))
            if v is not None:
                rows.append({"label": f"{g['attribute']}: {g['group']} ({w.fmt_n(g.get('n'))})",
                             "value": v, "low": lo, "high": hi})
        if rows:
            figures.append(FigureData(title="membership attack AUC by group (0.5 = coin toss)",
                                      axis="attack AUC (95% interval)", rows=rows,
                                      reference=rules.max_membership_auc,
                                      reference_label="criterion", pct=False))
    ids = priv.get("identifiers")
    if ids is None:
        findings.append(Finding(w.overview_identifier_criterion(rules.allow_identifiers),
                                "not assessed", w.not_assessed("the identifier scan was off")))
    else:
        kinds = sorted({f"{f.get('kind')} ({'column' if src == 'table' else 'DICOM tag'} "
                        f"'{f.get('column') or f.get('tag') or '?'}')"
                        for src, items in (("table", "findings"), ("dicom", "tags"))
                        if ids.get(src) for f in (ids[src] or {}).get(items, [])
                        if f.get("kind") and f.get("kind") != "patient_id"})
        n_found = int(ids.get("n_direct_identifier_findings") or 0)
        verdict = "meets" if (n_found == 0 or rules.allow_identifiers) else "concern"
        findings.append(Finding(w.overview_identifier_criterion(rules.allow_identifiers), verdict,
                                w.overview_identifier_evidence(n_found, kinds)))
    return _answer("privacy", findings, notes=[mia["finding"]] if mia.get("finding") else [],
                   figures=figures)


def compare_with_earlier_version(audit: dict[str, Any],
                                 audit_dir: str | os.PathLike[str] | None = None
                                 ) -> list[Finding] | None:
    """The comparison with an earlier version of the model, or ``None`` when there is none.

    The one hook for the version comparison: until a comparison module writes
    ``results.compare`` (``verdict``, ``summary``) this returns ``None`` and the survey says
    "no earlier version compared".
    """
    comp = audit.get("results", {}).get("compare") or audit.get("comparison")
    if not isinstance(comp, dict) or comp.get("verdict") not in w.VERDICTS:
        return None
    return [Finding(str(comp.get("criterion", "no important change since the earlier version")),
                    comp["verdict"], str(comp.get("summary", "")), source="evidence alone")]


def _change(audit: dict[str, Any], audit_dir: str | os.PathLike[str] | None) -> Answer:
    found = compare_with_earlier_version(audit, audit_dir)
    if found is None:
        return _answer("change", [Finding(w.overview_check_criterion("change"), "not assessed",
                                          w.overview_no_comparison(), source="evidence alone")],
                       headline=w.overview_no_comparison())
    return _answer("change", found)
