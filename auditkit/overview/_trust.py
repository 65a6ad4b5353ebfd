"""Questions 4-7: explanations, robustness, privacy, change since the last version."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .. import wording as w
from ..criteria import Criteria
from ._common import _answer, _how_to_run, _not_run
from ._judge import _interval, _ok, judge_at_most
from ._types import Answer, FigureData, Finding


def _explain(audit: dict[str, Any], crit: Criteria) -> Answer:
    from ._dense import explain_dense, is_dense

    if is_dense(audit):
        return explain_dense(audit, crit)
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
    from ._dense import is_dense, robustness_dense

    if is_dense(audit):
        return robustness_dense(audit, crit)
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


def find_comparison(audit: dict[str, Any], audit_dir: str | os.PathLike[str] | None
                    ) -> dict[str, Any] | None:
    """The newest stored ``comparison.json`` whose version B is this audit's model.

    Looked for beside the audit (the audits folder holds ``compare__…`` folders written by
    ``auditkit compare`` and the Compare versions page). It must compare an earlier version
    of the same family (same name, other version) on the same dataset content (hash) with
    B's weights equal to the audited ones (sha256); anything else is ignored.
    """
    if audit_dir is None:
        return None
    model, dataset = audit.get("model", {}), audit.get("dataset", {})
    root = Path(audit_dir).resolve().parent
    best: dict[str, Any] | None = None
    for path in sorted(root.glob("*/comparison.json")):
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            continue  # an unreadable comparison is not evidence
        if not isinstance(doc, dict):
            continue
        a, b = doc.get("a") or {}, doc.get("b") or {}
        if (b.get("sha256") != model.get("sha256") or a.get("name") != model.get("name")
                or a.get("version") == model.get("version")
                or (doc.get("dataset") or {}).get("hash") != dataset.get("hash")):
            continue
        if best is None or str(doc.get("created_at", "")) > str(best.get("created_at", "")):
            best = doc
    return best


def compare_with_earlier_version(audit: dict[str, Any],
                                 audit_dir: str | os.PathLike[str] | None = None
                                 ) -> list[Finding] | None:
    """The comparison with an earlier version of the model, or ``None`` when there is none.

    Reads the newest stored comparison (:func:`find_comparison`): per metric, the
    non-inferiority verdict of version B against the earlier version A for every group
    ("B is not worse than A by more than the margin for any group"), with the summary
    sentence as evidence.
    """
    comp = find_comparison(audit, audit_dir)
    if comp is None:
        return None
    results = comp.get("results") or {}
    ni = results.get("noninferiority") or {}
    previous = (comp.get("a") or {}).get("version", "the earlier version")
    summary = [str(x) for x in results.get("summary") or []]
    findings = []
    for metric, entry in (ni.get("by_metric") or {}).items():
        verdict = entry.get("verdict")
        if verdict not in w.VERDICTS:
            continue
        findings.append(Finding(
            w.overview_change_criterion(metric, previous, ni.get("margin")),
            verdict, str(entry.get("sentence") or (summary[0] if summary else "")),
            source="evidence alone"))
    if not findings:
        findings.append(Finding(
            w.overview_check_criterion("change"), "not assessed",
            summary[0] if summary else w.overview_no_comparison(), source="evidence alone"))
    return findings


def _change(audit: dict[str, Any], audit_dir: str | os.PathLike[str] | None) -> Answer:
    found = compare_with_earlier_version(audit, audit_dir)
    if found is None:
        return _answer("change", [Finding(w.overview_check_criterion("change"), "not assessed",
                                          w.overview_no_comparison(), source="evidence alone")],
                       headline=w.overview_no_comparison())
    return _answer("change", found)
