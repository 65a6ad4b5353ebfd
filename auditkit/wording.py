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
    "INTERVAL_EXPLANATION",
    "METRIC_MEANINGS",
    "METRIC_NAMES",
    "VERDICTS",
    "Verdict",
    "VerdictWord",
    "fmt_count",
    "fmt_interval",
    "fmt_n",
    "fmt_number",
    "fmt_pct",
    "fmt_value",
    "metric_meaning",
    "metric_name",
    "not_assessed",
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
