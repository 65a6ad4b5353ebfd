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
``results.performance.baselines.majority_class`` (``class``, ``baseline``, paired
``difference`` and ``ci``) and, per disparity, ``gap_ci_simultaneous`` and
``minimum_detectable_gap`` (aliases ``min_detectable_gap``, ``minimum_detectable_difference``). Without them the majority-class rate is computed from
the stored confusion matrix and the adjusted interval ``gap_ci_adjusted`` is used.
"""

from ._judge import judge_at_least, judge_at_most, judge_beats_baseline
from ._survey import (
    criteria_for_audit,
    criteria_from_text,
    evaluate_audit,
    list_evaluations,
    load_audit,
    survey,
)
from ._training import find_model_folder, training_mix
from ._trust import compare_with_earlier_version
from ._types import QUESTIONS, Answer, FigureData, Finding, Survey

__all__ = [
    "QUESTIONS",
    "Answer",
    "Finding",
    "FigureData",
    "Survey",
    "compare_with_earlier_version",
    "criteria_for_audit",
    "criteria_from_text",
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
