"""The committee's survey: one audit (+ acceptance criteria) → seven questions, each answered.

:func:`survey` is a pure function of a stored ``audit.json`` (a dict) and a
:class:`~auditkit.criteria.Criteria` set. Each of the seven questions gets exactly one
verdict word from :mod:`auditkit.wording` (meets / concern / cannot tell / not assessed),
a one-line headline, the findings it rests on (criterion, value with interval and n,
verdict, and for *cannot tell* / *not assessed* the reason and what would settle it), and
the figure data shared by the Overview page (plotly) and the report (static SVG).

How a criterion is judged (``docs/overview.md``):

* "at least X": **meets** when the interval's lower end is ≥ X, **concern** when its upper
  end is < X, **cannot tell** otherwise (with the number of extra patients that would
  settle it if the value held). "at most X" is the mirror image.
* Trivial baselines (always answering the majority class; chance): the burden of proof lies
  on the model. **concern** when the model's value is at or below the baseline, **meets**
  when the interval is clear above it, **cannot tell** when it is above but the interval
  reaches the baseline.
* A question's verdict is its worst finding (concern > cannot tell > meets); *not assessed*
  only when nothing in it could be assessed.

:func:`evaluate_audit` stores an evaluation as ``<audit>/evaluations/<criteria hash>.json``.
``audit.json`` is never edited: other criteria make another file beside the first.

Keys read beyond the documented schema (written by newer checks when present):
``results.performance.baselines.majority_class`` (``accuracy``, ``class``) and, per
disparity, ``gap_ci_simultaneous`` and ``min_detectable_gap`` (alias
``minimum_detectable_difference``). Without them the majority-class rate is computed from
the stored confusion matrix and the adjusted interval ``gap_ci_adjusted`` is used.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from . import wording as w
from ._version import __version__
from .criteria import Criteria, default_criteria, parse_criteria, task_type_of
from .exceptions import ConfigError

__all__ = [
    "QUESTIONS",
    "Answer",
    "Finding",
    "FigureData",
    "Survey",
    "compare_with_earlier_version",
    "criteria_for_audit",
    "evaluate_audit",
    "find_model_folder",
    "judge_at_least",
    "judge_at_most",
    "judge_beats_baseline",
    "load_audit",
    "list_evaluations",
    "survey",
    "training_mix",
]

#: (key, question, detailed page, page label) in the order the committee reads them.
QUESTIONS: tuple[tuple[str, str, str, str], ...] = (
    ("accuracy", "Is it accurate enough for its intended use?", "Fairness", "Fairness page"),
    ("fairness", "Does it work equally well for every patient group?", "Fairness",
     "Fairness page"),
    ("evidence", "Is the evidence itself adequate?", "Fairness", "Fairness page"),
    ("explain", "Can we see why it decides what it decides, and can those explanations be "
                "trusted?", "Explanations", "Explanations page"),
    ("robustness", "Can it be fooled, by an attacker or by ordinary image variation?",
     "Robustness", "Robustness page"),
    ("privacy", "Does it leak who was in its training data? Do the inputs hold identifiers?",
     "Privacy", "Privacy page"),
    ("change", "What changed since the previous version?", "", ""),
)

_SEVERITY = {"concern": 3, "cannot tell": 2, "meets": 1, "not assessed": 0}


@dataclass
class Finding:
    """One criterion (or baseline) judged on one piece of evidence."""

    criterion: str
    verdict: str
    evidence: str
    reason: str = ""
    source: str = "criteria"  # "criteria", "baseline", "evidence alone"

    @property
    def label(self) -> str:
        return w.verdict_label(self.verdict)


@dataclass
class FigureData:
    """Points with intervals for one figure (drawn by plotly on the page, SVG in the report)."""

    title: str
    axis: str
    rows: list[dict[str, Any]]  # label, value, low, high (shares or plain numbers)
    reference: float | None = None
    reference_label: str = ""
    pct: bool = True


@dataclass
class Answer:
    """One question of the survey, answered."""

    key: str
    question: str
    verdict: str
    headline: str
    findings: list[Finding] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    figures: list[FigureData] = field(default_factory=list)
    page: str = ""
    page_label: str = ""

    @property
    def label(self) -> str:
        return w.verdict_label(self.verdict)


@dataclass
class Survey:
    """The seven answers for one audit under one criteria set."""

    model: dict[str, Any]
    dataset: dict[str, Any]
    audit_created_at: str
    n_images: int | None
    n_patients: int | None
    criteria: dict[str, Any]
    criteria_recorded_in_audit: bool
    answers: list[Answer]

    def answer(self, key: str) -> Answer:
        for a in self.answers:
            if a.key == key:
                return a
        raise KeyError(key)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for a, d in zip(self.answers, out["answers"]):
            d["label"] = a.label
            for f, fd in zip(a.findings, d["findings"]):
                fd["label"] = f.label
        return out


# --------------------------------------------------------------------------- judging


def _ok(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _interval(entry: dict[str, Any] | None) -> tuple[float | None, float | None, float | None]:
    if not entry:
        return None, None, None
    ci = entry.get("ci") or [None, None]
    value = entry.get("value")
    lo, hi = (ci[0], ci[1]) if len(ci) == 2 else (None, None)
    return (value if _ok(value) else None, lo if _ok(lo) else None, hi if _ok(hi) else None)


def _more_needed(value: float, lo: float, hi: float, threshold: float, n: int | None) -> int | None:
    """Extra units that would shrink the interval clear of ``threshold`` if ``value`` held.

    Interval half-widths shrink like 1/√n, so n' = n·(half-width / distance)².
    """
    distance = abs(value - threshold)
    half = (hi - lo) / 2.0
    if not n or distance <= 1e-12 or half <= 0:
        return None
    return max(1, math.ceil(n * (half / distance) ** 2) - n)


def _straddle_reason(value: float, lo: float, hi: float, threshold: float, *, pct: bool,
                     n: int | None, unit: str) -> str:
    more = _more_needed(value, lo, hi, threshold, n)
    return w.overview_straddles(lo=lo, hi=hi, threshold=threshold, pct=pct, more=more, unit=unit)


def judge_at_least(value: float | None, low: float | None, high: float | None,
                   threshold: float, *, pct: bool = True, n: int | None = None,
                   unit: str = "patients") -> tuple[str, str]:
    """Verdict and reason for "at least ``threshold``" from a value and its interval."""
    if value is None:
        return "not assessed", "the value could not be computed from these data"
    if low is None or high is None:
        return "cannot tell", "no interval could be computed, so the data are too few to decide"
    if low >= threshold:
        return "meets", ""
    if high < threshold:
        return "concern", ""
    return "cannot tell", _straddle_reason(value, low, high, threshold, pct=pct, n=n, unit=unit)


def judge_at_most(value: float | None, low: float | None, high: float | None,
                  threshold: float, *, pct: bool = True, n: int | None = None,
                  unit: str = "patients") -> tuple[str, str]:
    """Verdict and reason for "at most ``threshold``" (mirror of :func:`judge_at_least`)."""
    if value is None:
        return "not assessed", "the value could not be computed from these data"
    if low is None or high is None:
        return "cannot tell", "no interval could be computed, so the data are too few to decide"
    if high <= threshold:
        return "meets", ""
    if low > threshold:
        return "concern", ""
    return "cannot tell", _straddle_reason(value, low, high, threshold, pct=pct, n=n, unit=unit)


def judge_beats_baseline(value: float | None, low: float | None, high: float | None,
                         baseline: float, *, pct: bool = True, n: int | None = None,
                         unit: str = "patients") -> tuple[str, str]:
    """The model must show it beats a trivial baseline: at or below it is a concern."""
    if value is None:
        return "not assessed", "the value could not be computed from these data"
    if value <= baseline:
        return "concern", ""
    if low is not None and low > baseline:
        return "meets", ""
    if low is None:
        return "cannot tell", "no interval could be computed, so the data are too few to decide"
    return "cannot tell", _straddle_reason(value, low, high if high is not None else value,
                                           baseline, pct=pct, n=n, unit=unit)


def _worst(findings: list[Finding]) -> str:
    if not findings:
        return "not assessed"
    return max((f.verdict for f in findings), key=lambda v: _SEVERITY[v])


# --------------------------------------------------------------------------- helpers


def _size(result: dict[str, Any], audit: dict[str, Any]) -> tuple[int | None, int | None]:
    n: Any = result.get("n")
    n_pat: Any = result.get("n_patients")
    return (int(n) if _ok(n) else None, int(n_pat) if _ok(n_pat) else None)


def _unit(n_patients: int | None) -> str:
    return "patients" if n_patients else "images"


def _how_to_run(audit: dict[str, Any], check: str) -> str:
    m, d = audit.get("model", {}), audit.get("dataset", {})
    return w.overview_how_to_run(f"{m.get('name')}@{m.get('version')}", d.get("name", "?"), check)


def _not_run(audit: dict[str, Any], key: str, check: str, extra: str = "") -> Answer:
    reason = w.overview_check_not_run(check)
    return _answer(key, [Finding(
        criterion=w.overview_check_criterion(check), verdict="not assessed",
        evidence=reason + extra, reason=_how_to_run(audit, check), source="evidence alone")],
        headline=w.not_assessed(f"the {check} check did not run in this audit",
                                _how_to_run(audit, check)))


def _answer(key: str, findings: list[Finding], *, headline: str | None = None,
            notes: list[str] | None = None, figures: list[FigureData] | None = None) -> Answer:
    spec = next(q for q in QUESTIONS if q[0] == key)
    verdict = _worst(findings)
    if headline is None:
        decisive = [f for f in findings if f.verdict == verdict]
        assessed = [f for f in findings if f.verdict != "not assessed"]
        headline = (w.overview_headline(verdict, criterion=decisive[0].criterion,
                                        evidence=decisive[0].evidence, n_same=len(decisive),
                                        n_assessed=len(assessed))
                    if decisive else w.not_assessed("nothing to judge"))
    return Answer(key=key, question=spec[1], verdict=verdict, headline=headline,
                  findings=findings, notes=notes or [], figures=figures or [],
                  page=spec[2], page_label=spec[3])


def _metric_evidence(name: str, entry: dict[str, Any] | None, n: int | None,
                     n_pat: int | None) -> str:
    value, lo, hi = _interval(entry)
    return f"{w.metric_name(name)} {w.fmt_interval(value, [lo, hi])}, {w.fmt_n(n, n_pat)}"


# --------------------------------------------------------------------------- questions


def _majority_baseline(perf: dict[str, Any]) -> tuple[float, str, int] | None:
    """(rate, class, n): from issue-12's ``baselines`` when present, else the confusion matrix."""
    stored = (perf.get("baselines") or {}).get("majority_class")
    n = perf.get("n")
    if isinstance(stored, dict):
        acc: Any = stored.get("accuracy")
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
        mdd = d.get("min_detectable_gap", d.get("minimum_detectable_difference"))
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


# --------------------------------------------------------------------------- training mix


def _registry() -> Path:
    env = os.environ.get("AUDITKIT_MODELS")
    return Path(env) if env else Path(__file__).resolve().parents[1] / "models"


def find_model_folder(name: str, version: str,
                      registry: str | os.PathLike[str] | None = None) -> Path | None:
    """The registry folder whose ``card.json`` names ``name`` and ``version`` (read as JSON)."""
    root = Path(registry) if registry else _registry()
    for depth in ("*", "*/*", "*/*/*"):
        for path in sorted(root.glob(f"{depth}/card.json")):
            try:
                card = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError):
                continue
            if card.get("name") == name and card.get("version") == version:
                return path.parent
    return None


def training_mix(audit_dir: str | os.PathLike[str], audit: dict[str, Any], *,
                 registry: str | os.PathLike[str] | None = None
                 ) -> dict[str, list[dict[str, Any]]] | None:
    """Images per group in the model's training split and in its test split.

    Joins the audit's ``predictions.csv`` (groups already relabelled by small-cell
    protection) with the model folder's ``split.csv``; counts below the audit's k are
    withheld (``None``) with complementary suppression. ``None`` when either file is missing
    or the registry's card names other weights than the audited ones.
    """
    import csv

    from .suppression import suppress_counts

    model = audit.get("model", {})
    folder = find_model_folder(model.get("name", ""), model.get("version", ""), registry)
    preds = Path(audit_dir) / "predictions.csv"
    if folder is None or not (folder / "split.csv").is_file() or not preds.is_file():
        return None
    try:
        card = json.loads((folder / "card.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    if card.get("sha256") != model.get("sha256"):
        return None
    with open(folder / "split.csv", newline="", encoding="utf-8") as fh:
        split = {row["image"]: row["split"] for row in csv.DictReader(fh)
                 if "image" in row and "split" in row}
    attributes = list(audit.get("dataset", {}).get("attributes") or {})
    counts: dict[str, dict[str, dict[str, int]]] = {a: {"train": {}, "test": {}}
                                                     for a in attributes}
    with open(preds, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        present = [a for a in attributes if a in (reader.fieldnames or [])]
        for row in reader:
            part = split.get(row.get("image", ""))
            if part not in ("train", "test"):
                continue
            for a in present:
                group = row[a] or "unknown"
                counts[a][part][group] = counts[a][part].get(group, 0) + 1
    k = int((audit.get("small_cell_protection") or {}).get("k")
            or audit.get("config", {}).get("small_cell_k") or 0)
    out: dict[str, list[dict[str, Any]]] = {}
    for a in present:
        groups = sorted(set(counts[a]["train"]) | set(counts[a]["test"]))
        train = suppress_counts({g: counts[a]["train"].get(g, 0) for g in groups}, k=k)
        test = suppress_counts({g: counts[a]["test"].get(g, 0) for g in groups}, k=k)
        # a zero is not a small cell: "absent from training" is the finding itself
        for g in groups:
            if counts[a]["train"].get(g, 0) == 0:
                train[g] = 0
        out[a] = [{"group": g, "n_train": train[g], "n_test": test[g]} for g in groups]
    return out


# --------------------------------------------------------------------------- survey


def criteria_for_audit(audit: dict[str, Any]) -> Criteria:
    """The criteria recorded in ``audit.json`` at run time, else the default for its task."""
    record = audit.get("criteria")
    if isinstance(record, dict):
        return Criteria.from_record(record)
    return default_criteria(task_type_of(audit.get("model", {})))


def survey(audit: dict[str, Any], *, criteria: Criteria | None = None,
           audit_dir: str | os.PathLike[str] | None = None,
           training: dict[str, list[dict[str, Any]]] | None = None) -> Survey:
    """Answer the committee's seven questions for one audit.

    Parameters
    ----------
    audit : dict
        A parsed ``audit.json``.
    criteria : Criteria, optional
        Default: the set recorded in the audit, else the shipped default for its task type.
    audit_dir : path, optional
        The audit's folder (used by the version-comparison hook).
    training : dict, optional
        Images per group in training and test (:func:`training_mix`); without it the
        evidence question says the training mix is not in this audit.
    """
    if not isinstance(audit, dict) or "model" not in audit or "results" not in audit:
        raise ConfigError("An audit must be a parsed audit.json with 'model' and 'results'; got "
                          f"{type(audit).__name__} with keys {sorted(audit)[:8] if isinstance(audit, dict) else []} instead.")
    recorded = isinstance(audit.get("criteria"), dict)
    crit = criteria or criteria_for_audit(audit)
    recorded = recorded and audit["criteria"].get("hash") == crit.hash
    perf = audit.get("results", {}).get("performance") or {}
    answers = [_accuracy(audit, crit), _fairness(audit, crit), _evidence(audit, crit, training),
               _explain(audit, crit), _robustness(audit, crit), _privacy(audit, crit),
               _change(audit, audit_dir)]
    return Survey(model=audit.get("model", {}), dataset=audit.get("dataset", {}),
                  audit_created_at=str(audit.get("created_at", "")),
                  n_images=perf.get("n"), n_patients=perf.get("n_patients"),
                  criteria=crit.to_record(), criteria_recorded_in_audit=recorded,
                  answers=answers)


# --------------------------------------------------------------------------- stored evaluations


def load_audit(audit_dir: str | os.PathLike[str]) -> tuple[dict[str, Any], str]:
    """``audit.json`` of a folder and the SHA-256 of its bytes."""
    path = Path(audit_dir) / "audit.json"
    if not path.is_file():
        raise ConfigError(f"An audit folder must hold audit.json; {str(path)!r} does not exist.")
    raw = path.read_bytes()
    try:
        audit = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path} must be JSON written by auditkit; it is not ({exc}).") from None
    return audit, hashlib.sha256(raw).hexdigest()


def evaluate_audit(audit_dir: str | os.PathLike[str], *, criteria: Criteria | None = None
                   ) -> tuple[Survey, Path]:
    """Survey a stored audit and keep the evaluation as ``evaluations/<criteria hash>.json``.

    ``audit.json`` is never touched. An evaluation under the same criteria hash that already
    exists is kept as first written (its ``evaluated_at`` says when the criteria were first
    applied); a new criteria set makes a new file beside it.
    """
    audit, audit_sha = load_audit(audit_dir)
    result = survey(audit, criteria=criteria, audit_dir=audit_dir,
                    training=training_mix(audit_dir, audit))
    folder = Path(audit_dir) / "evaluations"
    folder.mkdir(exist_ok=True)
    path = folder / f"{result.criteria['hash']}.json"
    if not path.exists():
        record = {"evaluated_at": datetime.now(UTC).isoformat(timespec="seconds"),
                  "auditkit_version": __version__, "audit_sha256": audit_sha,
                  "criteria": result.criteria,
                  "verdicts": {a.key: a.verdict for a in result.answers},
                  "survey": result.to_dict()}
        tmp = folder / f".{path.name}.tmp"
        tmp.write_text(json.dumps(record, indent=2, allow_nan=False) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    return result, path


def list_evaluations(audit_dir: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Stored evaluations of an audit (criteria name, hash, when, verdicts), oldest first."""
    out = []
    for p in sorted((Path(audit_dir) / "evaluations").glob("*.json")):
        try:
            rec = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            continue
        out.append({"file": str(p), "criteria_name": rec["criteria"]["name"],
                    "criteria_hash": rec["criteria"]["hash"],
                    "evaluated_at": rec["evaluated_at"], "verdicts": rec["verdicts"]})
    out.sort(key=lambda r: r["evaluated_at"])
    return out


def criteria_from_text(text: str, *, source: str = "uploaded file") -> Criteria:
    """Validate criteria given as TOML text (e.g. an upload on the Overview page)."""
    import tomllib

    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"Criteria {source} must be valid TOML; it is not ({exc}).") from None
    return parse_criteria(data, source=source)
