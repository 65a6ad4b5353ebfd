"""One vocabulary and one formatter for everything a reviewer reads.

The library, the CLI, the pages and the report call these functions, so the same
fact reads the same everywhere (house style, habit 17). No module outside this one
formats a percentage, an interval or a sample size for display, and no module
invents its own verdict word.

Sections (each issue adds its sentences to its own section, below the formatters):

- verdicts: the four verdict words and their icons;
- numbers: percentages, plain numbers, intervals, sample sizes;
- metric meanings: one plain sentence per metric name;
- sentences: shared phrasings ("too few to judge", "not assessed because …");
- statistics: gaps between groups, the family they are tested in, baselines, power,
  membership inference findings (issue 12).
- safety (issue 13): withheld counts, unreadable audits.
- model trust (issue 13): how a model's weights may load, in the CLI and the pages.
- overview: the committee's survey (auditkit.overview, the Overview page, the report).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

__all__ = [
    "ANSWER_LABELS",
    "AUDIENCE_MEANINGS",
    "DECISION_LABELS",
    "INTERVAL_EXPLANATION",
    "METRIC_MEANINGS",
    "METRIC_NAMES",
    "TRAINING_MAY_BE_INCLUDED",
    "VERDICTS",
    "Verdict",
    "VerdictWord",
    "answer_label",
    "attribute_not_assessed",
    "audience_note",
    "baseline_sentence",
    "comparison_changes_sentence",
    "comparison_group_sentence",
    "comparison_overall_sentence",
    "control_banner",
    "correction_note",
    "decision_label",
    "decision_sentence",
    "detection_verdict",
    "evaluated_on_all",
    "evaluated_on_split",
    "fmt_count",
    "fmt_difference",
    "fmt_evidence",
    "fmt_interval",
    "fmt_n",
    "fmt_number",
    "fmt_p",
    "fmt_pct",
    "fmt_points",
    "fmt_points_interval",
    "fmt_signed_points",
    "fmt_value",
    "gap_change_sentence",
    "gap_not_assessed_reason",
    "gap_sentence",
    "gap_verdict",
    "membership_finding",
    "metric_meaning",
    "metric_name",
    "model_trust_label",
    "model_trust_warning",
    "noninferiority_sentence",
    "not_assessed",
    "performance_headline",
    "performance_summary",
    "review_tally",
    "share_false_alarm",
    "share_missed",
    "shared_images_sentence",
    "too_few",
    "unreadable_audits",
    "verdict_label",
    "withheld_count",
    "withheld_note",
]

# --------------------------------------------------------------------------- verdicts

VerdictWord = Literal["meets", "concern", "cannot tell", "not assessed"]


@dataclass(frozen=True)
class Verdict:
    """A verdict word with its icon shape and plain meaning.

    Colour is never the only carrier of a verdict: ``icon`` differs in shape, and
    ``word`` is always printed beside it.
    """

    word: VerdictWord
    icon: str
    meaning: str


VERDICTS: dict[str, Verdict] = {
    "meets": Verdict("meets", "✔", "the criterion is met, with the interval clear of it"),
    "concern": Verdict("concern", "▲", "the criterion is missed, with the interval clear of it"),
    "cannot tell": Verdict(
        "cannot tell", "?",
        "the interval straddles the criterion, or the data are too few to decide"),
    "not assessed": Verdict(
        "not assessed", "–", "the check did not run, or the group is absent"),
}


def verdict_label(word: str) -> str:
    """``"▲ concern"``: icon and word together (never the icon or a colour alone)."""
    if word not in VERDICTS:
        raise ValueError(f"verdict must be one of {list(VERDICTS)}; got {word!r} instead.")
    v = VERDICTS[word]
    return f"{v.icon} {v.word}"


# --------------------------------------------------------------------------- numbers


def _missing(value: float | None) -> bool:
    return value is None or (isinstance(value, float) and not math.isfinite(value))


def fmt_pct(value: float | None, digits: int = 0) -> str:
    """A proportion in [0, 1] as a percentage: ``0.5849 -> "58%"``; missing -> ``"–"``."""
    if _missing(value):
        return "–"
    return f"{100.0 * float(value):.{digits}f}%"  # type: ignore[arg-type]


def fmt_number(value: float | None, digits: int = 2) -> str:
    """A plain number with at most ``digits`` decimals (never more than 4)."""
    if _missing(value):
        return "–"
    digits = min(int(digits), 4)
    return f"{float(value):.{digits}f}"  # type: ignore[arg-type]


def fmt_count(n: int | None) -> str:
    """``4087 -> "4,087"``; missing -> ``"–"``."""
    if n is None:
        return "–"
    return f"{int(n):,}"


def fmt_n(n_images: int | None, n_patients: int | None = None) -> str:
    """Sample size in both units when patients are known: ``"n = 820 images, 160 patients"``."""
    if n_images is None:
        return "n unknown"
    text = f"n = {fmt_count(n_images)} image{'s' if n_images != 1 else ''}"
    if n_patients is not None:
        text += f", {fmt_count(n_patients)} patient{'s' if n_patients != 1 else ''}"
    return text


def fmt_value(value: float | None, *, pct: bool = True, digits: int | None = None) -> str:
    """A metric value: a percentage for proportions, else a plain number."""
    if pct:
        return fmt_pct(value, 0 if digits is None else digits)
    return fmt_number(value, 2 if digits is None else digits)


def fmt_interval(value: float | None, ci: Sequence[float | None] | None, *,
                 pct: bool = True, digits: int | None = None) -> str:
    """``"58% (55% to 62%)"``; an interval that cannot be computed reads ``"(no interval)"``."""
    text = fmt_value(value, pct=pct, digits=digits)
    if _missing(value):
        return text
    if ci is None or len(ci) != 2 or _missing(ci[0]) or _missing(ci[1]):
        return f"{text} (no interval)"
    lo = fmt_value(ci[0], pct=pct, digits=digits)
    hi = fmt_value(ci[1], pct=pct, digits=digits)
    return f"{text} ({lo} to {hi})"


INTERVAL_EXPLANATION = (
    "Each range in brackets is a 95% interval: we are 95% sure the true value lies "
    "between its two ends. A wider range means less evidence."
)

# --------------------------------------------------------------------------- metric meanings

#: Display names of metrics (one name per concept across library, CLI, pages, report).
METRIC_NAMES: dict[str, str] = {
    "dice": "Dice", "iou": "IoU", "hd95_px": "boundary error (HD95, px)",
    "missed_lesion_rate": "lesions missed entirely",
    "false_lesion_rate": "false lesions on empty slices",
    "accuracy": "accuracy",
    "balanced_accuracy": "balanced accuracy",
    "sensitivity": "sensitivity",
    "specificity": "specificity",
    "ppv": "positive predictive value",
    "npv": "negative predictive value",
    "auroc": "AUROC",
    "auroc_macro": "AUROC (averaged over classes)",
    "ece": "calibration error",
    "ece_debiased": "calibration error (debiased)",
    "overconfidence": "overconfidence",
    "prevalence": "prevalence",
    "selection_rate": "share called positive",
}

#: One plain sentence per metric, for readers who do not build models.
METRIC_MEANINGS: dict[str, str] = {
    "accuracy": "of all test images, how many the model labels correctly",
    "balanced_accuracy": (
        "accuracy averaged over the classes, so a rare class counts as much as a common one"),
    "sensitivity": "of the patients who have the disease, how many the model catches",
    "specificity": "of the patients who do not have the disease, how many the model clears",
    "ppv": "when the model says 'disease', how often it is right",
    "npv": "when the model says 'no disease', how often it is right",
    "auroc": (
        "how well the model's scores rank diseased above healthy cases "
        "(50% is a coin toss, 100% is perfect)"),
    "auroc_macro": "AUROC averaged over the classes, each class against the rest",
    "ece": (
        "how far the model's stated confidence is from how often it is actually right "
        "(lower is better)"),
    "ece_debiased": (
        "calibration error with the extra error small groups show by chance removed, so "
        "groups of different sizes can be compared (lower is better)"),
    "overconfidence": (
        "how much the model's average confidence exceeds how often it is right: 0 is "
        "calibrated, above 0 over-confident, below 0 under-confident"),
    "prevalence": "how many of the test images truly show the disease",
    "selection_rate": "how many of the test images the model calls positive",
}


def metric_name(metric: str) -> str:
    """Display name of a metric (the key itself when unknown)."""
    return METRIC_NAMES.get(metric, metric.replace("_", " "))


def metric_meaning(metric: str) -> str:
    """The plain one-sentence meaning of a metric ("" when unknown)."""
    return METRIC_MEANINGS.get(metric, "")


# --------------------------------------------------------------------------- sentences


def too_few(what: str, found: int, needed: int) -> str:
    """``"too few to judge (3 positives; at least 10 needed)"``."""
    return f"too few to judge ({fmt_count(found)} {what}; at least {fmt_count(needed)} needed)"


def not_assessed(reason: str, how: str | None = None) -> str:
    """``"not assessed: <reason>"`` plus how to run it, when known."""
    text = f"not assessed: {reason}"
    if how:
        text += f" ({how})"
    return text


# --------------------------------------------------------------------------- version comparison
# (issue 11: auditkit.compare, the CLI `compare` command and the Compare versions page)


def fmt_signed_points(value: float | None, digits: int = 0) -> str:
    """A difference of two proportions in percentage points, signed: ``0.04 -> "+4 points"``."""
    if _missing(value):
        return "–"
    pts = 100.0 * float(value)  # type: ignore[arg-type]
    text = f"{pts:+.{digits}f}".replace("-", "−")
    if text in ("+0", "−0") or set(text[1:]) <= {"0", "."}:
        text = text[1:]
    return f"{text} point{'s' if abs(round(pts, digits)) != 1 else ''}"


def fmt_difference(value: float | None, ci: Sequence[float | None] | None, *,
                   digits: int = 0) -> str:
    """``"+4 points (−3 to +11)"``: a difference with its interval, in percentage points."""
    text = fmt_signed_points(value, digits)
    if _missing(value):
        return text
    if ci is None or len(ci) != 2 or _missing(ci[0]) or _missing(ci[1]):
        return f"{text} (no interval)"
    lo = fmt_signed_points(ci[0], digits).split(" ")[0]
    hi = fmt_signed_points(ci[1], digits).split(" ")[0]
    return f"{text} ({lo} to {hi})"


def _where(row: dict) -> str:
    if row.get("attribute") in (None, "overall"):
        return "on all shared images"
    return f"for {row['attribute'].replace('_', ' ')} {row['group']}"


def _points_range(ci: Sequence[float | None] | None) -> str:
    if ci is None or len(ci) != 2 or _missing(ci[0]) or _missing(ci[1]):
        return "no interval"
    return (f"{fmt_signed_points(ci[0]).split(' ')[0]} to "
            f"{fmt_signed_points(ci[1]).split(' ')[0]}")


def _both_intervals(e: dict, n_comparisons: int | None) -> str:
    """``"−25 to −5 on its own; −31 to +1 allowing for all 147 comparisons"``."""
    text = f"{_points_range(e.get('ci'))} on its own"
    if n_comparisons and e.get("ci_adjusted") and not _missing(e["ci_adjusted"][0]):
        text += (f"; {_points_range(e['ci_adjusted'])} allowing for all "
                 f"{fmt_count(n_comparisons)} comparisons")
    return text


def comparison_overall_sentence(row: dict, *, metric: str, labels: tuple[str, str],
                                n_comparisons: int | None = None) -> str:
    """Headline: B's metric against A's on the same images, with the paired interval."""
    e = row["metrics"][metric]
    a, b = labels
    n = fmt_n(row.get("n"), row.get("n_patients"))
    if e.get("change") == "better":
        judged = "a real improvement"
    elif e.get("change") == "worse":
        judged = "a real decline"
    else:
        judged = "the data cannot tell this apart from chance"
    return (f"On the same {n}, {b} has {metric_name(metric)} {fmt_interval(e['b'], e['b_ci'])} "
            f"against {a}'s {fmt_interval(e['a'], e['a_ci'])}: "
            f"{fmt_signed_points(e['difference'])} ({_both_intervals(e, n_comparisons)}), "
            f"{judged}.")


def comparison_group_sentence(row: dict, *, metric: str, labels: tuple[str, str],
                              positive: str, n_comparisons: int | None = None) -> str:
    """``"v2 catches about 4 more malignant cases per 100 for skin type V-VI; …"``."""
    e = row["metrics"][metric]
    b = labels[1]
    per100 = 100.0 * float(e["difference"])
    verb = {"sensitivity": ("catches", "misses"), "specificity": ("clears", "wrongly flags")}
    more_less = "more" if per100 >= 0 else "fewer"
    amount = abs(round(per100))
    interval = f"({_both_intervals(e, n_comparisons)})"
    if metric in verb and amount == 0:
        what = f"{verb[metric][0]} as many {positive} cases as {labels[0]}"
    elif metric in verb:
        what = f"{verb[metric][0]} about {amount} {more_less} {positive} cases per 100"
    else:
        what = f"changes {metric_name(metric)} by {fmt_signed_points(e['difference'])}"
    if e.get("change") in ("better", "worse"):
        tail = f"this is clear of chance even allowing for every comparison {interval}"
    else:
        tail = f"the data cannot tell this apart from chance {interval}"
    return (f"The largest change in {metric_name(metric)}: {b} {what} {_where(row)} "
            f"({fmt_n(row.get('n'), row.get('n_patients'))}); {tail}.")


def comparison_changes_sentence(changed: Sequence[dict], *, labels: tuple[str, str],
                                limit: int = 4) -> str:
    """Which groups changed clearly (strongest evidence first), or plainly that none did."""
    a, b = labels
    found = [(e.get("p_adjusted") or 0.0, r, metric, e)
             for r in changed for metric, e in r["metrics"].items()
             if e.get("change") in ("better", "worse")]
    if not found:
        return (f"{a} and {b} do not differ meaningfully anywhere: no difference in any group "
                "or metric is clear of chance once every comparison is accounted for.")
    found.sort(key=lambda t: (t[0], -abs(t[3]["difference"])))
    parts = [f"{metric_name(metric)} {_where(r)} ({e['change']}: "
             f"{fmt_difference(e['difference'], e['ci'])})" for _, r, metric, e in found[:limit]]
    more = (f"; and {len(found) - limit} more clear change{'s' if len(found) - limit > 1 else ''}"
            " (table below)") if len(found) > limit else ""
    return f"Clear changes from {a} to {b}: " + "; ".join(parts) + more + "."


def noninferiority_sentence(*, metric: str, verdict: str, margin: float,
                            labels: tuple[str, str], cannot_judge: Sequence[str],
                            concern: Sequence[str], undecided: Sequence[str] = ()) -> str:
    """The statement a committee votes on, with its verdict word and the groups left open."""
    a, b = labels

    def listed(groups: Sequence[str]) -> str:
        return ", ".join(groups[:8]) + (f" and {len(groups) - 8} more" if len(groups) > 8 else "")

    claim = (f"{b} is not worse than {a} by more than {fmt_signed_points(margin).lstrip('+')} "
             f"of {metric_name(metric)} for any group")
    text = f"{verdict_label(verdict)}: {claim}"
    if verdict == "concern":
        text += f" — {b} is worse by more than the margin for {listed(concern)}"
    if undecided:
        text += f". The data cannot tell for {listed(undecided)} (interval straddles the margin)"
    if cannot_judge:
        text += f". Too few or withheld to judge: {listed(cannot_judge)}"
    return text + "."


def gap_change_sentence(entry: dict, *, labels: tuple[str, str]) -> str:
    """Did B narrow or widen A's worst-vs-best gap for one attribute and metric?"""
    a, b = labels
    attr = entry["attribute"].replace("_", " ")
    if entry.get("status") != "assessed":
        return not_assessed(f"gap in {metric_name(entry['metric'])} by {attr}: "
                            f"{entry.get('reason', '')}")
    word = {"narrowed": "narrowed", "widened": "widened",
            "cannot tell": "changed the gap by an amount the data cannot tell from chance:"}
    return (f"By {attr}, {b} {word[entry['verdict']]} the {metric_name(entry['metric'])} gap "
            f"between best and worst group from {fmt_signed_points(entry['a']['gap']).lstrip('+')}"
            f" ({a}: {entry['a']['best_group']} vs {entry['a']['worst_group']}) to "
            f"{fmt_signed_points(entry['b']['gap']).lstrip('+')} ({b}: {entry['b']['best_group']}"
            f" vs {entry['b']['worst_group']}); change {fmt_difference(entry['change'], entry['ci'])}.")


def shared_images_sentence(*, n_total: int, n_shared: int, reasons: dict[str, int],
                           labels: tuple[str, str], held_out_only: bool) -> str:
    """How many images both versions are compared on, and why the others were dropped."""
    a, b = labels
    why = {"missing_from_predictions_of_b": f"not in {b}'s predictions",
           "not_held_out_from_a": f"not in {a}'s test split (training, validation or unused)",
           "not_held_out_from_b": f"not in {b}'s test split (training, validation or unused)"}
    dropped = [f"{fmt_count(v)} {why.get(k, k)}" for k, v in reasons.items() if v]
    scope = "held out from both versions" if held_out_only else "shared (training images included)"
    text = f"Compared on {fmt_count(n_shared)} of {fmt_count(n_total)} images, {scope}"
    if dropped:
        text += "; left out: " + "; ".join(dropped)
    return text + "."


# --------------------------------------------------------------------------- statistics
# Sentences of the statistical judgements (issue 12): gaps between groups, the family
# they are tested in, baselines, power, and what "not assessed" means. Each is tested
# against the numbers it describes (tests/test_statistics_wording.py).


def _cap(text: str) -> str:
    """First letter upper case, the rest untouched ("AUROC" stays "AUROC")."""
    return text[:1].upper() + text[1:]


def fmt_points(diff: float | None, digits: int = 0) -> str:
    """A difference of two proportions in percentage points: ``0.123 -> "12 points"``."""
    if _missing(diff):
        return "–"
    text = f"{100.0 * float(diff):.{digits}f}"  # type: ignore[arg-type]
    return f"{text} point" if text.lstrip("+-") == "1" else f"{text} points"


def fmt_points_interval(diff: float | None, ci: Sequence[float | None] | None, *,
                        label: str = "95% interval", signed: bool = False) -> str:
    """``"-7 points (95% interval -39 to +26)"``; no interval -> ``"(no interval)"``."""
    if _missing(diff):
        return "–"

    def one(x: float) -> str:
        return f"{100.0 * x:+.0f}" if signed else f"{100.0 * x:.0f}"

    head = one(float(diff))  # type: ignore[arg-type]
    head += " point" if head.lstrip("+-") == "1" else " points"
    if ci is None or len(ci) != 2 or _missing(ci[0]) or _missing(ci[1]):
        return f"{head} (no interval)"
    return f"{head} ({label} {one(float(ci[0]))} to {one(float(ci[1]))})"  # type: ignore[arg-type]


def fmt_p(p: float | None) -> str:
    """A p-value: ``"p = 0.031"``, ``"p < 0.001"``; missing -> ``"p –"``."""
    if _missing(p):
        return "p –"
    if p < 0.001:  # type: ignore[operator]
        return "p < 0.001"
    return f"p = {float(p):.3f}"  # type: ignore[arg-type]


def fmt_evidence(count: int | None, what: str, units: int | None = None) -> str:
    """n in the resampling unit: ``"12 positives from 7 patients"`` or ``"12 positives"``."""
    if count is None:
        return f"{what} unknown"
    text = f"{fmt_count(count)} {what}"
    if units is not None:
        text += f" from {fmt_count(units)} patient{'s' if units != 1 else ''}"
    return text


def share_missed(rate_caught: float | None) -> str:
    """What a sensitivity means in words that match it: ``0.33 -> "misses 67%"``."""
    if _missing(rate_caught):
        return "cannot be measured"
    missed = 1.0 - float(rate_caught)  # type: ignore[arg-type]
    if missed <= 0:
        return "misses none"
    if missed >= 1:
        return "misses all"
    return f"misses {fmt_pct(missed)}"


def share_false_alarm(specificity: float | None) -> str:
    """What a specificity means in words: ``0.9 -> "raises a false alarm on 10%"``."""
    if _missing(specificity):
        return "cannot be measured"
    alarms = 1.0 - float(specificity)  # type: ignore[arg-type]
    if alarms <= 0:
        return "raises no false alarm"
    if alarms >= 1:
        return "raises a false alarm on all"
    return f"raises a false alarm on {fmt_pct(alarms)}"


def correction_note(family: dict) -> str:  # type: ignore[type-arg]
    """How gaps were judged: the test, the family and its size, in one paragraph."""
    size = family.get("size", 0)
    if not size:
        return ("No gap between groups could be tested: no attribute has two groups large "
                "enough to compare.")
    codings = {c: a for c, a in (family.get("codings") or {}).items() if len(a) > 1}
    merged = "".join(f" {', '.join(a)} are codings of one variable ({c}) and count once."
                     for c, a in sorted(codings.items()))
    level = fmt_pct(1 - float(family.get("alpha", 0.05)))
    return (f"Each gap between the best and the worst group is compared with the largest gap "
            f"chance produces when {family.get('unit', 'patient')}s are shuffled across groups "
            f"({fmt_count(family.get('n_permutations'))} permutations). The chance of calling "
            f"any gap real when none is, over all {fmt_count(size)} attribute × metric "
            f"comparisons, is held at {fmt_pct(float(family.get('alpha', 0.05)))} "
            f"(Westfall-Young step-down).{merged} Gap intervals are simultaneous {level} "
            "intervals: they exclude 0 exactly when a gap is called real.")


def gap_not_assessed_reason(group_entries: Sequence[dict], parts: Sequence[str],  # type: ignore[type-arg]
                            minimum: int) -> str:
    """The real reason a gap was not assessed: which groups were left out, and why."""
    hidden, unknown, small, few = [], [], [], []
    for e in group_entries:
        if e.get("hidden_by_small_cell_rule") or e.get("suppressed"):
            hidden.append(e["group"])
        elif e.get("is_unknown"):
            unknown.append(e["group"])
        elif e.get("too_few"):
            small.append(f"{e['group']} ({fmt_evidence(e.get('n'), 'images', e.get('n_patients'))})")
        else:
            for p in parts:
                m = e.get(p) or {}
                if m.get("too_few"):
                    few.append(f"{e['group']} ({fmt_evidence(m.get('denominator'), m.get('denominator_of', 'images'), m.get('denominator_patients'))} for {metric_name(p)})")
                    break
    causes = []
    if hidden:
        causes.append(f"{', '.join(hidden)} hidden by small-cell protection")
    if small:
        causes.append(f"{', '.join(small)} below {fmt_count(minimum)} images or patients")
    if few:
        causes.append(f"too few in the metric's denominator: {', '.join(few)}; at least "
                      f"{fmt_count(minimum)} needed")
    if unknown:
        causes.append(f"{', '.join(unknown)} not compared (group unknown)")
    text = "fewer than two groups can be compared"
    return text + (": " + "; ".join(causes) if causes else "")


def gap_permutations_too_few(n_permutations: int, alpha: float) -> str:
    """Why no gap was judged: the permutation count cannot reach ``alpha``."""
    need = math.ceil(1.0 / alpha - 1e-9) - 1
    return (f"too few permutations to call any gap real: with {fmt_count(n_permutations)} the "
            f"smallest possible p-value is {1.0 / (n_permutations + 1):.3f}, above "
            f"α = {alpha:g}; rerun with at least {fmt_count(need)} (--n-boot; the default is "
            "1,000)")


def attribute_not_assessed(attribute: str, reason: str) -> str:
    """``"Sex: not assessed — <reason>."``"""
    return f"{_cap(attribute.replace('_', ' '))}: not assessed — {reason}."


def gap_verdict(d: dict) -> str:  # type: ignore[type-arg]
    """The verdict clause of a gap, with the adjusted p-value and the power behind it."""
    p = fmt_p(d.get("p_adjusted"))
    if d.get("real"):
        return (f"this gap is larger than chance ({p}, adjusted for "
                f"{fmt_count(d.get('family_size'))} comparisons)")
    text = (f"the data cannot tell whether this gap is real or chance ({p}, adjusted for "
            f"{fmt_count(d.get('family_size'))} comparisons)")
    mdd = d.get("minimum_detectable_gap")
    if not _missing(mdd):
        text += (f"; only a gap of about {fmt_points(mdd)} or more would have been detected "
                 "reliably (80% power)")
    return text


_SIMULTANEOUS = "simultaneous 95% interval"


def gap_sentence(d: dict, positive_class: str = "positive") -> str:  # type: ignore[type-arg]
    """One plain sentence about a disparity entry, numbers and verdict agreeing."""
    attr = d["attribute"].replace("_", " ")
    metric = d.get("metric", "")
    if d.get("status") != "assessed":
        return f"{_cap(attr)}, {metric_name(metric)}: " + not_assessed(
            d.get("reason", "no reason recorded")) + "."
    if metric in ("demographic_parity_difference", "equalized_odds_difference"):
        name = ("share called positive" if metric == "demographic_parity_difference"
                else "error rates (equalized odds)")
        return (f"{_cap(attr)}: the largest difference in {name} between groups is "
                f"{fmt_points_interval(d.get('value'), d.get('ci'), label=_SIMULTANEOUS)}; "
                f"{gap_verdict(d)}.")
    unit_w, unit_b = d.get("units_worst"), d.get("units_best")
    what = d.get("denominator_of", "images")
    n_w = fmt_evidence(d.get("n_worst"), what, unit_w)
    n_b = fmt_evidence(d.get("n_best"), what, unit_b)
    if metric == "sensitivity":
        text = (f"For {attr} {d['worst_group']} the model {share_missed(d['worst'])} of "
                f"{positive_class} cases ({n_w}); for {d['best_group']} it "
                f"{share_missed(d['best'])} ({n_b})")
    elif metric == "specificity":
        text = (f"For {attr} {d['worst_group']} the model {share_false_alarm(d['worst'])} of "
                f"cases without {positive_class} ({n_w}); for {d['best_group']} it "
                f"{share_false_alarm(d['best'])} ({n_b})")
    elif metric == "overconfidence":
        text = (f"Calibration for {attr}: confidence exceeds accuracy by "
                f"{fmt_points(d['worst'])} for {d['worst_group']} ({n_w}) and by "
                f"{fmt_points(d['best'])} for {d['best_group']} ({n_b})")
    else:
        text = (f"{_cap(metric_name(metric))} for {attr}: {d['worst_group']} "
                f"{fmt_pct(d['worst'])} ({n_w}), {d['best_group']} {fmt_pct(d['best'])} ({n_b})")
    return (f"{text}. Gap {fmt_points_interval(d.get('gap'), d.get('gap_ci'), label=_SIMULTANEOUS)}"
            f"; {gap_verdict(d)}.")


def baseline_sentence(kind: str, b: dict) -> str:  # type: ignore[type-arg]
    """The model against a baseline a committee asks about first.

    ``kind`` is ``"majority_class"`` (``b``: ``model``, ``baseline``, ``difference``,
    ``ci``, ``class``) or ``"chance_balanced_accuracy"`` / ``"chance_auroc"``.
    """
    lo, hi = (b.get("ci") or [None, None])[:2]
    diff = b.get("difference")
    interval = f"difference {fmt_points_interval(diff, b.get('ci'), signed=True)}"
    if kind == "majority_class":
        head = (f"Accuracy {fmt_pct(b['model'])} against {fmt_pct(b['baseline'])} for always "
                f"answering '{b['class']}', the most common class ({interval})")
        if _missing(diff):
            return head + "."
        if not _missing(hi) and hi < 0:  # type: ignore[operator]
            return (f"The model is worse than always answering '{b['class']}': " + head[0].lower()
                    + head[1:] + ".")
        if diff < 0:  # type: ignore[operator]
            return (f"The model is less accurate than always answering '{b['class']}' would be: "
                    + head[0].lower() + head[1:] + "; the data cannot tell whether it is really "
                    "worse.")
        if not _missing(lo) and lo > 0:  # type: ignore[operator]
            return head + "; the model beats this baseline."
        return head + "; the data cannot tell the model apart from this baseline."
    name = "Balanced accuracy" if kind == "chance_balanced_accuracy" else "AUROC"
    head = (f"{name} {fmt_pct(b['model'])} against {fmt_pct(b['baseline'])} for guessing "
            f"({interval})")
    if _missing(diff):
        return head + "."
    if not _missing(lo) and lo > 0:  # type: ignore[operator]
        return head + "; better than chance."
    return head + "; the model is no better than chance on this evidence."


def performance_headline(perf: dict) -> str:  # type: ignore[type-arg]
    """The one-line result the CLI prints: accuracy, its interval and the n it rests on."""
    acc = (perf.get("metrics") or {}).get("accuracy") or {}
    text = (f"accuracy {fmt_interval(acc.get('value'), acc.get('ci'))} on "
            f"{fmt_n(perf.get('n'), perf.get('n_patients'))}")
    if perf.get("evaluated_on"):
        text += f" ({perf['evaluated_on']})"
    return text


def membership_finding(auc: float | None, ci: Sequence[float | None] | None,
                       tpr_1pct: float | None = None, *, resolvable: bool = True,
                       subject: str = "a patient's image", n_attacks: int = 1) -> str:
    """What a membership-inference result means, said symmetrically.

    An interval that contains 0.5 rules out neither chance nor leakage up to its upper
    end, and the sentence says both. ``n_attacks > 1``: the interval belongs to the
    strongest of several attacks and was widened for picking it.
    """
    if _missing(auc):
        return "The leak could not be measured (no members or no non-members to compare)."
    lo, hi = (list(ci) + [None, None])[:2] if ci else (None, None)
    label = ("95% CI" if n_attacks <= 1 else
             f"95% CI widened for picking the strongest of {n_attacks} attacks")
    interval = f"AUC {auc:.2f}" + (f", {label} {lo:.2f}–{hi:.2f}" if not _missing(lo)
                                   and not _missing(hi) else "")
    if not _missing(lo) and lo <= 0.5 <= (hi if not _missing(hi) else 1.0):  # type: ignore[operator]
        text = (f"Someone holding the model's outputs could not tell whether {subject} was "
                f"used in training better than a coin toss ({interval}). The data cannot rule "
                f"out chance; nor can they rule out leakage up to an AUC of "
                f"{(hi if not _missing(hi) else 1.0):.2f}.")
    else:
        a = float(auc)  # type: ignore[arg-type]
        degree = ("slightly better than" if a < 0.55 else "somewhat better than" if a < 0.65
                  else "clearly better than" if a < 0.8 else "far better than")
        text = (f"Someone holding the model's outputs could tell whether {subject} was used in "
                f"training {degree} a coin toss ({interval}).")
    if not _missing(tpr_1pct) and resolvable:
        text += (f" When wrongly accusing only 1 in 100 people who were not in training, the "
                 f"attack picks out {100 * tpr_1pct:.1f}% of training patients (chance: 1%).")  # type: ignore[operator]
    elif not _missing(tpr_1pct):
        text += (f" Without wrongly accusing anyone who was not in training, the attack picks "
                 f"out {100 * tpr_1pct:.1f}% of training patients (too few images never "  # type: ignore[operator]
                 "trained on to measure a 1-in-100 false-alarm rate).")
    return text


# --------------------------------------------------------------------------- review (issue 15)
# The committee's answers and decisions (auditkit.store), and the audiences of a file.

#: A reviewer's answer to one Overview question, as read.
ANSWER_LABELS = {"agree": "agree", "disagree": "disagree",
                 "needs_more_evidence": "needs more evidence"}
#: What a chair decides, as read.
DECISION_LABELS = {"approve": "approve", "approve_with_conditions": "approve with conditions",
                   "reject": "reject", "defer": "defer"}
#: Who a file or a view is for (the disclosure rule depends on it).
AUDIENCE_MEANINGS = {
    "in-house": "for signed-in reviewers inside the institution: every group with its exact "
                "number of images and patients, and its own \"too few to judge\"",
    "release": "for anything that leaves the institution: counts and metrics of groups "
               "below the small-cell threshold are withheld, with complementary suppression",
}


def answer_label(answer: str) -> str:
    """``"needs more evidence"`` for ``needs_more_evidence``."""
    if answer not in ANSWER_LABELS:
        raise ValueError(f"answer must be one of {list(ANSWER_LABELS)}; got {answer!r} instead.")
    return ANSWER_LABELS[answer]


def decision_label(decision: str) -> str:
    """``"approve with conditions"`` for ``approve_with_conditions``."""
    if decision not in DECISION_LABELS:
        raise ValueError(
            f"decision must be one of {list(DECISION_LABELS)}; got {decision!r} instead.")
    return DECISION_LABELS[decision]


def decision_sentence(decision: str, conditions: str = "", reaudit_date: str | None = None
                      ) -> str:
    """``"Approve with conditions: <conditions>. Re-audit by 2027-06-01."``"""
    text = decision_label(decision).capitalize()
    text += f": {conditions.rstrip('.')}." if conditions else "."
    if reaudit_date:
        text += f" Re-audit by {reaudit_date}."
    return text


def audience_view(audience: str, *, signed_in_as: str | None = None) -> str:
    """What a page shows its viewer, and why: one sentence for the top of a result.

    ``"In-house view (signed in as Rita Reviewer): every group with its exact number of
    images and patients, ..."``; the release view says how to see the rest.
    """
    if audience not in AUDIENCE_MEANINGS:
        raise ValueError(f"audience must be one of {list(AUDIENCE_MEANINGS)}; got "
                         f"{audience!r} instead.")
    if audience == "in-house":
        who = f" (signed in as {signed_in_as})" if signed_in_as else ""
        return f"In-house view{who}: {AUDIENCE_MEANINGS['in-house']}."
    return (f"Release view: {AUDIENCE_MEANINGS['release']}. Members of the review committee "
            "sign in on the Review page to see every group with its exact n.")


def review_tally(tally: dict[str, int]) -> str:
    """``"agrees on 5 of 7 questions, disagrees on 1, needs more evidence on 1"``."""
    total = sum(tally.values())
    parts = [f"agrees on {tally.get('agree', 0)} of {total} questions"]
    if tally.get("disagree"):
        parts.append(f"disagrees on {tally['disagree']}")
    if tally.get("needs_more_evidence"):
        parts.append(f"needs more evidence on {tally['needs_more_evidence']}")
    return ", ".join(parts)


def audience_note(audience: str) -> str:
    """What an audience sees, for the header of a file or a view."""
    if audience not in AUDIENCE_MEANINGS:
        raise ValueError(
            f"audience must be one of {list(AUDIENCE_MEANINGS)}; got {audience!r} instead.")
    return f"audience: {audience} ({AUDIENCE_MEANINGS[audience]})"
# --------------------------------------------------------------------------- safety (issue 13)


def withheld_count(k: int = 10) -> str:
    """How a count hidden by small-cell protection reads: ``"fewer than 10 (withheld)"``."""
    return f"fewer than {fmt_count(k)} (withheld)"


def withheld_note(k: int = 10) -> str:
    """The one sentence explaining withheld groups, for cards, pages and reports."""
    return (f"Withheld: fewer than {fmt_count(k)} images or patients, or needed so that such "
            "a group cannot be worked out from the others (small-cell protection).")


def unreadable_audits(n: int) -> str:
    """Heading of the list of audit folders whose ``audit.json`` cannot be read."""
    return (f"{fmt_count(n)} audit folder{'s' if n != 1 else ''} could not be read and "
            f"{'are' if n != 1 else 'is'} left out:")




# --------------------------------------------------------------------------- evaluation scope
# (bring your own model and data: which images a performance number is measured on)


TRAINING_MAY_BE_INCLUDED = " — training images may be included"


def evaluated_on_all(n_images: int, dataset: str, *, asked: bool) -> str:
    """Every image measured; ends by saying that training images may be included."""
    why = ("as asked (--evaluate-on all)" if asked
           else "because no split says which images were held out from training")
    return f"all {fmt_count(n_images)} images of {dataset}, {why}{TRAINING_MAY_BE_INCLUDED}"


def evaluated_on_split(n_test: int, n_images: int, dataset: str, source: str) -> str:
    """The held-out test split measured (``source``: where the split came from)."""
    return (f"the model's held-out test split: {fmt_count(n_test)} of {fmt_count(n_images)} "
            f"images of {dataset} ({source})")


def performance_summary(*, evaluated_on: str, may_include_training: bool,
                        accuracy: float | None, accuracy_ci: Sequence[float | None] | None,
                        n_images: int, n_patients: int | None) -> str:
    """Two sentences: what was measured (first saying so when training images may be in
    it), then the accuracy with its interval and sample size."""
    if may_include_training:
        first = ("Training images may be included in this measurement, so it may flatter the "
                 f"model: it covers {evaluated_on.removesuffix(TRAINING_MAY_BE_INCLUDED)}")
    else:
        first = evaluated_on[0].upper() + evaluated_on[1:]
    return (f"{first}. Accuracy {fmt_interval(accuracy, accuracy_ci)}, "
            f"{fmt_n(n_images, n_patients)}.")


# --------------------------------------------------------------------------- model trust

MODEL_TRUST_LABELS = {
    "none": "not needed",
    "bundled": "bundled demo",
    "required": "needs --trust-model-code",
}


def model_trust_label(requirement: str) -> str:
    """What a model needs before it loads: ``"not needed"`` (no code in the file),
    ``"bundled demo"`` (auditkit's own) or ``"needs --trust-model-code"``."""
    return MODEL_TRUST_LABELS.get(requirement, requirement)


def model_trust_warning(ref: str) -> str:
    """The dashboard's note while a code-carrying model is not trusted."""
    return f"{ref} carries code and is not trusted: it will not be run."


# --------------------------------------------------------------------------- overview
# Sentences of the committee's survey (auditkit.overview, the Overview page, the report).

_CHECK_WHAT = {
    "performance": "overall accuracy measured",
    "fairness": "results per patient group measured",
    "evidence": "test data adequate to judge every group",
    "explain": "explanations computed and checked",
    "robustness": "attacks and image corruptions tested",
    "privacy": "membership inference and identifier scan run",
    "change": "compared with the previous version",
}


def overview_check_criterion(check: str) -> str:
    """The implicit criterion of a check that has no rule of its own."""
    return _CHECK_WHAT.get(check, check)


def overview_check_not_run(check: str) -> str:
    return f"the {check} check did not run in this audit"


def overview_how_to_run(ref: str, dataset: str, check: str) -> str:
    """How to produce the missing evidence."""
    return (f"run `auditkit audit --model {ref} --dataset {dataset} --checks {check}`, or press "
            f"Run on the {check.capitalize()} page")


def overview_straddles(*, lo: float, hi: float, threshold: float, pct: bool = True,
                       more: int | None, unit: str) -> str:
    """Why a verdict is *cannot tell*, and how many more patients would settle it."""
    text = (f"the interval ({fmt_value(lo, pct=pct)} to {fmt_value(hi, pct=pct)}) reaches "
            f"across {fmt_value(threshold, pct=pct)}")
    if more is not None:
        text += (f"; about {fmt_count(more)} more {unit} would settle it if the value held")
    else:
        text += "; the value sits on the criterion, so more data may not settle it"
    return text


def overview_majority_sentence(*, accuracy: float | None, baseline: float,
                               majority_class: str) -> str:
    """The clinician sentence comparing the model with always answering the majority class."""
    return (f"This model is right on {fmt_pct(accuracy)} of test images; answering "
            f"'{majority_class}' for every image would be right on {fmt_pct(baseline)}.")


def overview_majority_criterion(majority_class: str) -> str:
    return f"better than answering '{majority_class}' for every image"


def overview_chance_criterion(metric: str, chance: float) -> str:
    return f"{metric_name(metric)} better than chance ({fmt_pct(chance)})"


def overview_chance_sentence(metric: str, value: float | None, chance: float) -> str:
    return (f"This model's {metric_name(metric)} is {fmt_pct(value)}; a coin toss would reach "
            f"{fmt_pct(chance)}: it is no better than chance.")


def overview_at_least(metric: str, threshold: float, positive: str | None = None) -> str:
    about = f" for '{positive}'" if positive and metric == "sensitivity" else ""
    return f"{metric_name(metric)}{about} at least {fmt_pct(threshold)}"


def overview_figure_title(what: str, n: int | None, n_patients: int | None) -> str:
    return f"overall {what} with 95% intervals ({fmt_n(n, n_patients)})"


def overview_evaluated_on(described: str) -> str:
    return f"Measured on {described}." if described else ""


def overview_gaps_not_assessed(where: list[str], reason: str) -> str:
    """One line for every gap left out for the same reason: ``sex (sensitivity), …``."""
    return not_assessed(f"gaps by {', '.join(where)}: {reason}")


def overview_gap_evidence(*, attribute: str, metric: str, worst: Any, best: Any,
                          worst_value: float | None, best_value: float | None,
                          gap: float | None, low: float | None, high: float | None,
                          interval_kind: str, n_worst: int | None, n_best: int | None,
                          detectable: float | None) -> str:
    text = (f"{metric_name(metric)} by {attribute}: {worst} {fmt_pct(worst_value)} "
            f"({fmt_n(n_worst)}) vs {best} {fmt_pct(best_value)} ({fmt_n(n_best)}); gap "
            f"{fmt_interval(gap, [low, high])}"
            + (f" ({interval_kind} interval)" if interval_kind else ""))
    if detectable is not None:
        text += f"; the smallest gap these data could detect is {fmt_pct(detectable)}"
    return text


def overview_max_gap_criterion(metric: str, max_gap: float) -> str:
    return f"{metric_name(metric)} gap between groups at most {fmt_pct(max_gap)}"


def overview_gap_chance_criterion(metric: str) -> str:
    return f"no {metric_name(metric)} gap larger than chance"


def overview_no_gap_found(detectable: float | None) -> str:
    text = "no gap larger than chance was found, which is not the same as no gap"
    if detectable is not None:
        text += f": a gap smaller than {fmt_pct(detectable)} could not have been seen"
    return text


def overview_no_metric_gaps(metrics: list[str]) -> str:
    return not_assessed("the audit holds no group gap for " + ", ".join(
        metric_name(m) for m in metrics))


def overview_missing_attributes(missing: list[str]) -> str:
    return ("The dataset records no " + ", ".join(missing)
            + ": fairness for those groups is not assessed.")


def overview_rows_dropped(n: int, total: int | None) -> str:
    return (f"{fmt_count(n)} of {fmt_count(total)} dataset rows were left out as invalid "
            "before the audit.")


def overview_unjudgeable_evidence(attribute: str, share: float, total: int,
                                  small: list[str]) -> str:
    text = (f"{attribute}: {fmt_pct(share)} of {fmt_count(total)} test images are in groups too "
            "small to judge, hidden by small-cell protection, or of unknown group")
    if small:
        text += " (" + ", ".join(small) + ")"
    return text


def overview_unjudgeable_criterion(attribute: str, max_share: float) -> str:
    return (f"{attribute}: at most {fmt_pct(max_share)} of test images in groups too small "
            "or unknown")


def overview_kappa_evidence(kappa: float, exact: float | None, n: int | None) -> str:
    return (f"skin-tone annotators agree exactly on {fmt_pct(exact)} of {fmt_n(n)}; weighted "
            f"kappa {fmt_number(kappa)} (1 = perfect agreement, 0 = chance)")


def overview_kappa_criterion(min_kappa: float) -> str:
    return f"skin-tone labels reliable (weighted kappa at least {fmt_number(min_kappa)})"


def overview_training_mix_note() -> str:
    return ("How many patients of each group the training data held is in the model card's "
            "training-data section; this audit measures the test data only.")


def overview_sanity_criterion() -> str:
    return "explanations change when the model's weights are scrambled (sanity check)"


def overview_sanity_evidence(value: float | None, low: float | None, high: float | None,
                             n: int | None) -> str:
    return (f"similarity to the trained model's maps with every layer scrambled "
            f"{fmt_interval(value, [low, high], pct=False)} (1 = unchanged, 0 = unrelated), "
            f"{fmt_n(n)}")


def overview_faithfulness_criterion() -> str:
    return "the pixels an explanation points at matter more than random pixels"


def overview_faithfulness_evidence(faith: dict[str, Any]) -> str:
    return (f"deletion: {faith.get('deletion_verdict', '–')} than random, insertion: "
            f"{faith.get('insertion_verdict', '–')} than random, {fmt_n(faith.get('n'))}")


def overview_border_criterion(max_share: float) -> str:
    return f"at most {fmt_pct(max_share)} of the explanation on the image border (shortcuts)"


def overview_border_evidence(value: float | None, low: float | None, high: float | None,
                             area: float | None, n: int | None) -> str:
    text = f"{fmt_interval(value, [low, high])} of the attribution falls on the border"
    if area is not None:
        text += f", which covers {fmt_pct(area)} of the image"
    return text + f", {fmt_n(n)}"


def overview_attack_criterion(attack: str, eps: str, max_rate: float) -> str:
    return (f"an invisible change ({attack.upper()}, ε = {eps}) flips at most "
            f"{fmt_pct(max_rate)} of correct answers")


def overview_attack_missing(attack: str, eps: str, ran: str) -> str:
    return not_assessed(f"the audit did not run {attack} at {eps} (it ran: {ran})")


def overview_attack_evidence(label: str, budget: str, value: float | None, low: float | None,
                             high: float | None, n: int | None, clean: dict[str, Any],
                             robust: dict[str, Any] | None) -> str:
    text = (f"{label} at {budget} flips {fmt_interval(value, [low, high])} of "
            f"{fmt_count(n)} correct answers")
    clean_acc = (clean.get("accuracy") or {}).get("value")
    if robust and clean_acc is not None:
        text += (f"; accuracy {fmt_pct(clean_acc)} before, {fmt_pct(robust.get('value'))} under "
                 f"attack ({fmt_n(clean.get('n'), clean.get('n_patients'))})")
    return text


def overview_corruption_criterion(max_rate: float, max_severity: int) -> str:
    return (f"ordinary image variation (severity up to {max_severity} of 5) changes at most "
            f"{fmt_pct(max_rate)} of answers")


def overview_corruption_evidence(label: str, severity: int, value: float | None,
                                 low: float | None, high: float | None, n: int | None,
                                 n_tested: int) -> str:
    return (f"worst of {n_tested} tested: {label} at severity {severity} changes "
            f"{fmt_interval(value, [low, high])} of answers, {fmt_n(n)}")


def overview_membership_criterion(max_auc: float | None) -> str:
    if max_auc is None:
        return "membership inference measured"
    return (f"an attacker tells training patients from others no better than AUC "
            f"{fmt_number(max_auc)} (0.5 = coin toss)")


def overview_membership_evidence(attack: str, value: float | None, low: float | None,
                                 high: float | None, n_members: int | None,
                                 n_nonmembers: int | None, n_patients: int | None) -> str:
    text = (f"strongest attack ({attack}): AUC {fmt_interval(value, [low, high], pct=False)}, "
            f"{fmt_count(n_members)} training + {fmt_count(n_nonmembers)} unseen images")
    if n_patients:
        text += f" ({fmt_count(n_patients)} patients)"
    return text


def overview_tpr_criterion(max_tpr: float) -> str:
    return (f"at 1 false accusation in 100, at most {fmt_pct(max_tpr)} of training patients "
            "picked out")


def overview_tpr_evidence(value: float | None, low: float | None, high: float | None,
                          resolvable: bool, n_members: int | None) -> str:
    text = f"{fmt_interval(value, [low, high], digits=1)} of {fmt_count(n_members)} training images"
    if not resolvable:
        text += (" (too few unseen images to resolve 1 in 100: this is the share found with no "
                 "false accusation at all)")
    return text


def overview_identifier_criterion(allow: bool) -> str:
    return ("identifier scan run" if allow
            else "no direct patient identifier in the inputs (dates, names, addresses, …)")


def overview_identifier_evidence(n_found: int, kinds: list[str]) -> str:
    if not n_found:
        return "no column or DICOM tag looks like a direct identifier"
    return (f"{fmt_count(n_found)} place(s) look like direct identifiers: "
            + ", ".join(kinds) + " (kinds and places only; no value is ever shown)")


def overview_no_comparison() -> str:
    return "no earlier version compared"


def overview_change_criterion(metric: str, previous: str, margin: float | None) -> str:
    """``"sensitivity not worse than v1 by more than 5 points, for any group"``."""
    by = f" by more than {fmt_points(margin)}" if margin is not None else ""
    return f"{metric_name(metric)} not worse than {previous}{by}, for any group"


def overview_criteria_line(record: dict[str, Any], *, recorded_in_audit: bool,
                           audit_created_at: str, evaluated_at: str | None = None) -> str:
    """Which criteria set, its hash, and when it was fixed relative to the audit."""
    text = (f"Criteria: {record['name']} (hash {record['hash'][:12]}…), fixed on "
            f"{record['fixed_on']}")
    if record.get("fixed_by"):
        text += f" by {record['fixed_by']}"
    if recorded_in_audit:
        text += f"; recorded in the audit when it ran ({audit_created_at}), before its results."
    elif evaluated_at:
        text += (f"; applied on {evaluated_at} to an audit that ran on {audit_created_at} "
                 "(not recorded in the audit beforehand).")
    else:
        text += "; not recorded in the audit beforehand."
    return text


def overview_more_groups_needed(min_group_size: int | None) -> str:
    return (f"test data with at least {fmt_count(min_group_size or 10)} images and patients in "
            "two or more groups of an attribute would let gaps be judged")


def overview_headline(verdict: str, *, criterion: str, evidence: str, n_same: int,
                      n_assessed: int) -> str:
    """The one line under a question: how many criteria share its verdict, and the first."""
    if verdict == "meets":
        lead = (f"All {fmt_count(n_assessed)} criteria met" if n_assessed > 1
                else "Criterion met")
    elif verdict == "concern":
        lead = f"{fmt_count(n_same)} of {fmt_count(n_assessed)} criteria missed"
    elif verdict == "cannot tell":
        lead = f"{fmt_count(n_same)} of {fmt_count(n_assessed)} criteria undecided"
    else:
        return f"{criterion}: {evidence}"
    return f"{lead}; {criterion} — {evidence}"


def overview_training_criterion(attribute: str) -> str:
    return f"{attribute}: every group of the test data was also in the training data"


def overview_training_mix_evidence(attribute: str, rows: list[dict[str, Any]],
                                   absent: list[dict[str, Any]], k: int) -> str:
    """Images per group in training and test; withheld counts read "fewer than k"."""
    def count(c: int | None) -> str:
        return f"fewer than {k}" if c is None else fmt_count(c)

    mix = "; ".join(f"{r['group']} {count(r['n_train'])} / {count(r['n_test'])}" for r in rows)
    text = f"{attribute}, images in training / test: {mix}"
    if absent:
        text = (f"{attribute}: never seen in training: "
                + ", ".join(f"{r['group']} ({count(r['n_test'])} test images)" for r in absent)
                + f". Images in training / test: {mix}")
    return text


def overview_paired_difference(difference: float, ci: Sequence[float | None]) -> str:
    """The model minus the majority-class rule on the same images, in percentage points."""
    lo, hi = ci[0], ci[1]
    return (f"paired difference {100 * difference:+.0f} points "
            f"({100 * float(lo or 0):+.0f} to {100 * float(hi or 0):+.0f})")


# --------------------------------------------------------------------------- control models (issue 16)


def control_banner(card: dict[str, Any]) -> str:
    """The warning shown wherever a control model is selected or listed."""
    planted = str(card.get("intended_use") or "")
    return ("**Control model — not a model for patients.** " + planted
            + " See docs/validation.md for what auditkit found in it.")


def detection_verdict(found: bool) -> str:
    """``found`` / ``missed`` for a planted defect (validation table)."""
    return "found" if found else "MISSED"


# --------------------------------------------------------------------------- presentation (issue 18)
# Tables a committee reads (human column names, at most 4 decimals, every interval with its
# n), chart legends, and the sentences of the page fixes: the fairness what-if, privacy's
# small-cell floor and absent groups, robustness's sample, explanations' counts and the
# overall reading of their trust signals.

#: Kinds of a reader-table column: how :func:`reader_table` writes its cells.
ColumnKind = Literal["text", "count", "pct", "number", "p", "points", "interval_pct",
                     "interval_number"]


@dataclass(frozen=True)
class Column:
    """One column of a table a reviewer reads.

    ``source`` is the raw table's column; ``title`` the heading a committee reads;
    ``kind`` how the cells are written (percent, plain number with ``digits`` decimals —
    never more than 4 —, count, p-value, percentage points, or an interval that joins
    ``source`` with its ``low``/``high`` columns, e.g. ``"58% (55% to 62%)"``).
    """

    source: str
    title: str
    kind: ColumnKind = "text"
    low: str | None = None
    high: str | None = None
    digits: int | None = None


def _cell(value: Any) -> Any:
    """``None`` for missing values (NaN, None, pandas NA) so formatters print a dash."""
    if value is None:
        return None
    try:
        if value != value:  # NaN and pandas NA
            return None
    except (TypeError, ValueError):
        return None
    return value


def reader_table(frame: Any, columns: Sequence[Column]) -> Any:
    """The rows of ``frame`` as a table a committee reads: text cells, human headings.

    Every number passes through this module's formatters, so no cell shows more than
    4 decimals and an interval always reads with its value. The full raw table stays
    available (pages offer it as a CSV download).

    Parameters
    ----------
    frame : pandas.DataFrame
        The raw table (a library function's output).
    columns : sequence of Column
        The columns to show, in order; raw columns not named are left out.

    Returns
    -------
    pandas.DataFrame
        One string column per :class:`Column`, headed by its ``title``.

    Examples
    --------
    >>> import pandas as pd
    >>> raw = pd.DataFrame({"group": ["IV"], "v": [0.61234], "lo": [0.5], "hi": [0.7],
    ...                     "n": [121]})
    >>> reader_table(raw, [Column("group", "group"),
    ...                    Column("v", "sensitivity (95% interval)", "interval_pct",
    ...                           low="lo", high="hi"),
    ...                    Column("n", "images", "count")]).iloc[0].tolist()
    ['IV', '61% (50% to 70%)', '121']
    """
    import pandas as pd

    out: dict[str, list[str]] = {}
    for col in columns:
        if col.source not in frame.columns:
            raise KeyError(f"reader_table: expected a column {col.source!r} in the table; "
                           f"found {list(frame.columns)} instead.")
        cells = []
        for i in range(len(frame)):
            row = frame.iloc[i]
            v = _cell(row[col.source])
            if col.kind == "text":
                cells.append("–" if v is None else str(v))
            elif col.kind == "count":
                cells.append(fmt_count(None if v is None else int(v)))
            elif col.kind == "pct":
                cells.append(fmt_pct(v, col.digits or 0))
            elif col.kind == "number":
                cells.append(fmt_number(v, 2 if col.digits is None else col.digits))
            elif col.kind == "p":
                cells.append(fmt_p(v))
            elif col.kind == "points":
                cells.append(fmt_points(v, col.digits or 0))
            else:
                lo = _cell(row[col.low]) if col.low else None
                hi = _cell(row[col.high]) if col.high else None
                cells.append(fmt_interval(v, [lo, hi], pct=col.kind == "interval_pct",
                                          digits=col.digits))
        out[col.title] = cells
    return pd.DataFrame(out, columns=[c.title for c in columns])


def legend_label(name: str, *, n: int | None, value: float | None = None,
                 ci: Sequence[float | None] | None = None, pct: bool = True,
                 what: str = "") -> str:
    """A chart legend entry carrying its sample size and, when given, value and interval:
    ``"loss: AUC 0.61 (0.58 to 0.64), n = 820 images"``."""
    text = name
    if value is not None or ci is not None:
        text += f": {what + ' ' if what else ''}{fmt_interval(value, ci, pct=pct)}"
    return f"{text}, {fmt_n(n)}" if n is not None else text


def attribute_label(name: str, description: str | None = None) -> str:
    """An attribute as a reader sees it: ``"skin type centaur (Fitzpatrick skin type I-VI,
    second annotation (Centaur Labs))"``; the description is what explains a coined name."""
    words = name.replace("_", " ")
    return f"{words} ({description})" if description else words


def whatif_scope(n_evaluated: int, n_total: int, evaluated_on: str,
                 n_patients: int | None = None, several_per_patient: bool = False) -> str:
    """Which rows the fairness what-if counts (the same rows as the group table).

    ``n_patients``: the evaluated images' patients, when known (``several_per_patient``:
    the group table shows fewer patients than images, the total unknown). The exported
    table carries no patient ids (privacy), so the what-if's intervals count images as
    independent; with several images per patient they are too narrow, and the caption
    says so.
    """
    text = (f"Counted on the same {fmt_count(n_evaluated)} images as the group table above "
            f"({evaluated_on}); the other {fmt_count(n_total - n_evaluated)} rows of "
            "predictions.csv were not evaluated (training or validation images) and are left "
            "out. Intervals: 95% Wilson intervals per group.")
    if n_patients is not None and 0 < n_patients < n_evaluated:
        text += (f" These {fmt_count(n_evaluated)} images come from {fmt_count(n_patients)} "
                 "patients, but the what-if counts each image as independent (the exported "
                 "table holds no patient ids), so its intervals are too narrow; the group "
                 "table above allows for patients.")
    elif several_per_patient:
        text += (" Some patients have several images, but the what-if counts each image as "
                 "independent (the exported table holds no patient ids), so its intervals are "
                 "too narrow; the group table above allows for patients.")
    return text


def whatif_no_scope() -> str:
    """predictions.csv without the ``evaluated`` column (audits before auditkit 0.9)."""
    return ("This audit's predictions.csv does not say which rows were evaluated (it predates "
            "the 'evaluated' column), so the what-if cannot be limited to the test images; "
            "run the audit again to see it.")


SMALL_CELL_FLOOR = 1


def small_cell_k_refused(k: int) -> str:
    """Why privacy results refuse ``k`` below the floor (library and page)."""
    return (f"Small-cell protection must hide groups smaller than at least "
            f"{SMALL_CELL_FLOOR} image for a privacy audit; got k = {k}. With k = 0 the "
            "per-group exposure of tiny groups would be published and one patient could be "
            "singled out. Choose k of 1 or more (10 is the recommended default).")


def membership_group_absent(group: str, n_members: int | None, n_nonmembers: int | None) -> str:
    """Why a group has no attack AUC to draw."""
    if n_members == 0:
        why = "it has no training images, so there is nobody to find"
    elif n_nonmembers == 0:
        why = "it has no images the model never trained on, so there is nothing to compare with"
    else:
        why = "its attack AUC could not be computed"
    return f"{group}: {why}"


def unit_word(has_patients: bool, n: int = 2) -> str:
    """``"patients"`` when the dataset identifies patients, else ``"images"``."""
    word = "patient" if has_patients else "image"
    return word if n == 1 else word + "s"


def thorough_time_label(minutes: float | None) -> str:
    """The radio label of privacy's thorough mode, consistent with its own estimate."""
    if minutes is None:
        return "Thorough (trains 4 reference models: slow; estimated after choosing)"
    return f"Thorough (trains 4 reference models: about {fmt_duration(minutes)} on this computer)"


def fmt_duration(minutes: float) -> str:
    """``"about 2 h 3 min"`` style duration from minutes (``"under 1 min"`` when short)."""
    if minutes < 1:
        return "under 1 min"
    total = int(round(minutes))
    h, m = divmod(total, 60)
    return f"{h} h {m} min" if h else f"{m} min"


def robustness_sample_note(*, n_sample: int, n_available: int, n_card: int | None,
                           stratified_by: str | None) -> str:
    """Why the clean accuracy on the Robustness page differs from the model card's."""
    strata = f"stratified by {stratified_by}" if stratified_by else "drawn at random"
    card = (f" The model card's accuracy is measured on all {fmt_count(n_card)} test images, so "
            "the two differ by sampling alone; their intervals overlap when they agree."
            if n_card else "")
    return (f"Measured on a sample of {fmt_count(n_sample)} of {fmt_count(n_available)} images "
            f"({strata}, seeded): attacks are costly, so they run on a sample.{card}")


def explanations_counts_note(*, n_images: int, n_explanations: int, n_complete: int) -> str:
    """Why "26 of 133 explanations" sits beside "n = 84 images": each image is explained
    for the class the model gave and, where the model was wrong, for the true class too."""
    extra = n_explanations - n_images
    wrong = (f"the {fmt_count(extra)} it got wrong also for the true class" if extra
             else "none was wrong, so none needed the true class too")
    return (f"{fmt_count(n_images)} images were explained: each for the class the model "
            f"gave, and {wrong}, so the "
            f"completeness check counts {fmt_count(n_explanations)} explanations "
            f"({fmt_count(n_complete)} of them add up to the score).")


def explanations_overall_reading(*, completeness: float | None, faithful: bool | None,
                                 sanity_flagged: bool | None) -> tuple[str, str]:
    """An overall reading of the three trust signals: a verdict word and one sentence.

    Sanity comes first (maps that do not depend on the model are not its reasons at all);
    then faithfulness; completeness below 80% means the maps leave part of the score
    unexplained, which weakens but does not void them.
    """
    if sanity_flagged:
        return "concern", ("Do not read these maps as the model's reasons: they barely change "
                           "when its learned weights are replaced by random ones.")
    if faithful is False:
        return "concern", ("Treat the maps with caution: removing the pixels they rank highest "
                           "does not hurt the model more than removing random pixels.")
    if sanity_flagged is None or faithful is None:
        return "cannot tell", ("Not every check ran, so the maps cannot be fully trusted or "
                               "dismissed; read them as hints.")
    if completeness is not None and completeness < 0.8:
        return "cannot tell", (f"The maps point at what the model uses (faithful and sane), but "
                               f"only {fmt_pct(completeness)} add up to the score: read them "
                               "as where the model looks, not as an exact account.")
    return "meets", ("The maps depend on the model, point at what it uses, and add up to its "
                     "score: they can be read as the model's reasons for these images.")


def images_hidden_reason(kind: str, *, allowed: bool) -> str:
    """Why patient images are not shown (identifiable photographs, or switched off)."""
    if not allowed:
        return ("Patient images are switched off on this installation "
                "(AUDITKIT_SHOW_IMAGES=0); only numbers are shown.")
    return (f"These are {kind}: a face, a tattoo or a birthmark can identify a patient, so images "
            "stay hidden until you ask to see them. Ask only where the people watching may see "
            "patient data.")


def skin_tone_agreement_sentence(a: dict[str, Any], *, first: str, second: str) -> str:
    """Agreement of two skin-type ratings in words (exact, within one type, weighted kappa)."""
    if not a.get("n") or a.get("exact") is None:
        return f"{first} and {second}: no image has both ratings, so agreement is not assessed."
    return (f"{first} and {second} agree exactly on {fmt_pct(a['exact'])} of "
            f"{fmt_count(a['n'])} images and within one type on {fmt_pct(a['within_one'])} "
            f"(weighted kappa {fmt_number(a['kappa_quadratic'])}; 1 is perfect, 0 chance).")


# --------------------------------------------------------------------------- multi-label and segmentation (issue 19)


def finding_one_class_reason(finding: str) -> str:
    """Why a finding's groups cannot be compared: its known labels are all one value."""
    return (f"every image with a known label for {finding.replace('_', ' ')} has the same "
            "label, so nothing about telling present from absent can be measured")


def finding_family_note(n_findings: int, alpha: float) -> str:
    """How the false-alarm rate is held across findings x groups x metrics."""
    return (f"A gap is called real only when it survives correction over every group and "
            f"metric of its finding (Westfall-Young) and over all {n_findings} findings "
            f"(Bonferroni), so the chance of any false alarm in the whole table is at most "
            f"{fmt_pct(alpha)}.")


def finding_summary(name: str, entry: dict[str, Any]) -> str:  # type: ignore[type-arg]
    """One sentence per finding: sensitivity and specificity with intervals and n."""
    m = entry.get("metrics") or {}
    sens, spec = m.get("sensitivity") or {}, m.get("specificity") or {}
    unknown = entry.get("n_unknown") or 0
    text = (f"{_cap(name.replace('_', ' '))} (called at probability ≥ "
            f"{fmt_number(entry.get('threshold'))}): catches "
            f"{fmt_interval(sens.get('value'), sens.get('ci'))} of cases with it and clears "
            f"{fmt_interval(spec.get('value'), spec.get('ci'))} of cases without it "
            f"({fmt_n(entry.get('n'), entry.get('n_patients'))} with a known label")
    if unknown:
        text += f"; {fmt_count(unknown)} unknown, not counted"
    return text + ")."


def worst_pair_sentence(row: dict[str, Any]) -> str:  # type: ignore[type-arg]
    """``"Covid19, sex female: sensitivity 61% (45% to 75%), n = ..."``."""
    return (f"{_cap(row['finding'].replace('_', ' '))}, {row['attribute'].replace('_', ' ')} "
            f"{row['group']}: {metric_name(row['metric'])} "
            f"{fmt_interval(row['value'], row['ci'])} "
            f"({fmt_n(row.get('n'), row.get('n_patients'))})")


#: What the segmentation numbers mean, in one place for pages, CLI and report.
SEGMENTATION_METRIC_MEANINGS: dict[str, str] = {
    "dice": "overlap of the outlined and the expert's tumour, 0 (none) to 100% (identical); "
            "on slices where the expert outlined a tumour",
    "iou": "intersection over union of the two outlines (stricter than Dice)",
    "missed_lesion_rate": "share of slices with a tumour where the model outlined nothing",
    "false_lesion_rate": "share of slices without a tumour where the model outlined something",
    "hd95_px": "95th-percentile distance between the two outlines' borders, in pixels of the "
            "expert mask (lower is better); on slices where both outline something",
}


def segmentation_summary(*, metric: str, value: float | None,
                         ci: Sequence[float | None] | None, n_images: int | None,
                         n_patients: int | None, evaluated_on: str) -> str:
    """``"Mean Dice 71% (66% to 76%) on slices with a tumour (n = ...), ..."``."""
    name = {"dice": "Mean Dice", "iou": "Mean IoU", "missed_lesion_rate": "Tumours missed "
            "entirely", "false_lesion_rate": "False tumour on a slice without one",
            "hd95": "Boundary error (HD95)"}.get(metric, metric)
    pct = metric != "hd95"
    unit = "" if pct else " px"
    return (f"{name}: {fmt_interval(value, ci, pct=pct, digits=None if pct else 1)}{unit} "
            f"({fmt_n(n_images, n_patients)}), measured on {evaluated_on}.")


def scope_sentence(*, evaluated_on: str, may_include_training: bool, n_images: int,
                   n_patients: int | None) -> str:
    """What was measured, for models without one accuracy (findings, masks)."""
    if may_include_training:
        first = ("Training images may be included in this measurement, so it may flatter the "
                 f"model: it covers {evaluated_on.removesuffix(TRAINING_MAY_BE_INCLUDED)}")
    else:
        first = evaluated_on[0].upper() + evaluated_on[1:]
    return f"{first} ({fmt_n(n_images, n_patients)})."


def dense_robustness_sentence(*, what: str, measure: str, value: float | None,
                              ci: Sequence[float | None] | None, n: int | None,
                              n_patients: int | None) -> str:
    """Robustness of a segmentation (change in Dice) or multi-label (calls flipped) model."""
    if measure == "segmentation":
        return (f"Under {what}, Dice on slices with a tumour changes by "
                f"{fmt_points_interval(value, ci, signed=True)} ({fmt_n(n, n_patients)}).")
    return (f"Under {what}, {fmt_interval(value, ci)} of finding calls flip "
            f"({fmt_n(n, n_patients)}).")


def dense_explain_sentence(*, kind: str, target: str, n_images: int,
                           checks: dict[str, Any]) -> str:  # type: ignore[type-arg]
    """What was explained, on how many images, and what the trust checks found."""
    head = f"Explained {fmt_count(n_images)} image(s); the explained number is {target}."
    if kind == "segmentation":
        loc = checks.get("locality") or {}
        return (f"{head} Of the positive evidence, a median "
                f"{fmt_pct(loc.get('median_positive_share_inside'))} lies in or within 2 pixels "
                f"of the outlined region, which covers a median "
                f"{fmt_pct(loc.get('median_region_share'))} of the image; completeness error "
                f"{fmt_pct(checks.get('completeness_median_relative_error'))} (median, "
                "relative to the explained score).")
    parts = [f"{name.replace('_', ' ')}: completeness error "
             f"{fmt_pct(v.get('completeness_median_relative_error'))}"
             for name, v in (checks.get("findings") or {}).items()]
    return f"{head} " + "; ".join(parts) + " (median, relative to the explained score)."


def overview_dense_criterion(metric: str, threshold: float) -> str:
    """``"mean Dice at least 70%"`` / ``"tumours missed entirely at most 10%"``."""
    if metric == "dice":
        return f"mean Dice on slices with a lesion at least {fmt_pct(threshold)}"
    what = {"missed_lesion_rate": "lesion slices missed entirely",
            "false_lesion_rate": "empty slices given a false lesion"}.get(metric, metric)
    return f"{what} at most {fmt_pct(threshold)}"


def overview_dense_robustness_criterion(*, seg: bool, what: str, limit: float) -> str:
    """The robustness criterion of a segmentation or multi-label model."""
    if seg:
        return f"{what} lowers mean Dice by at most {fmt_pct(limit).removesuffix('%')} points"
    return f"{what} flips at most {fmt_pct(limit)} of finding calls"


def overview_dense_explain_reason() -> str:
    """Why the explanation criteria are not judged for findings and masks."""
    return ("the explanation criteria (weight-scrambling sanity check, deletion against "
            "random, border share) are defined for classifiers; the maps, what they explain, "
            "their completeness and (for masks) their locality are on the Explanations page")
