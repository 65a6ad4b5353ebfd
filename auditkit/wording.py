"""One vocabulary and one formatter for everything a reviewer reads.

The library, the CLI, the pages and the report call these functions, so the same
fact reads the same everywhere (house style, habit 17). No module outside this one
formats a percentage, an interval or a sample size for display, and no module
invents its own verdict word.

Sections (each issue adds its sentences to its own section, below the formatters):

- verdicts: the four verdict words and their icons;
- numbers: percentages, plain numbers, intervals, sample sizes;
- metric meanings: one plain sentence per metric name;
- sentences: shared phrasings ("too few to judge", "not assessed because …").
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "ANSWER_LABELS",
    "AUDIENCE_MEANINGS",
    "DECISION_LABELS",
    "INTERVAL_EXPLANATION",
    "METRIC_MEANINGS",
    "METRIC_NAMES",
    "VERDICTS",
    "Verdict",
    "VerdictWord",
    "answer_label",
    "audience_note",
    "comparison_changes_sentence",
    "comparison_group_sentence",
    "comparison_overall_sentence",
    "decision_label",
    "decision_sentence",
    "fmt_count",
    "fmt_difference",
    "fmt_interval",
    "fmt_n",
    "fmt_number",
    "fmt_pct",
    "fmt_signed_points",
    "fmt_value",
    "gap_change_sentence",
    "metric_meaning",
    "metric_name",
    "noninferiority_sentence",
    "not_assessed",
    "review_tally",
    "shared_images_sentence",
    "too_few",
    "verdict_label",
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
    "accuracy": "accuracy",
    "balanced_accuracy": "balanced accuracy",
    "sensitivity": "sensitivity",
    "specificity": "specificity",
    "ppv": "positive predictive value",
    "npv": "negative predictive value",
    "auroc": "AUROC",
    "auroc_macro": "AUROC (averaged over classes)",
    "ece": "calibration error",
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
