"""The one formatter: numbers, intervals and verdict labels read the same everywhere."""

from __future__ import annotations

import math

import pytest

from auditkit import wording


@pytest.mark.parametrize(("value", "ci", "expected"), [
    (0.5849, [0.55, 0.6212], "58% (55% to 62%)"),
    (0.5849, [None, None], "58% (no interval)"),
    (None, None, "–"),
    (math.nan, [0.1, 0.2], "–"),
])
def test_fmt_interval_percent(value, ci, expected) -> None:
    assert wording.fmt_interval(value, ci) == expected


def test_fmt_number_never_more_than_four_decimals() -> None:
    assert wording.fmt_number(-0.1270721456046533, digits=12) == "-0.1271"


def test_fmt_n_names_both_units() -> None:
    assert wording.fmt_n(820) == "n = 820 images"
    assert wording.fmt_n(4087, 1) == "n = 4,087 images, 1 patient"


def test_verdict_label_has_icon_and_word() -> None:
    assert {wording.verdict_label(w) for w in wording.VERDICTS} == {
        "✔ meets", "▲ concern", "? cannot tell", "– not assessed"}
    with pytest.raises(ValueError, match="verdict must be one of"):
        wording.verdict_label("fine")


def test_every_metric_has_a_plain_meaning() -> None:
    from auditkit._metrics import METRICS

    assert set(METRICS) <= set(wording.METRIC_MEANINGS)
    assert set(METRICS) <= set(wording.METRIC_NAMES)


# --------------------------------------------------------------------------- presentation (issue 18)


def test_reader_table_formats_every_number_and_keeps_intervals_with_values():
    import pandas as pd

    from auditkit.wording import Column, reader_table

    raw = pd.DataFrame({"group": ["IV", "V"], "gap": [-0.1270721456046533, None],
                        "lo": [-0.31234, None], "hi": [0.05, None], "p": [0.0004, 0.2],
                        "n": [121, 4087], "ece": [0.123456789, 0.0]})
    table = reader_table(raw, [
        Column("group", "group"),
        Column("gap", "gap (95% interval)", "interval_pct", low="lo", high="hi"),
        Column("p", "adjusted p", "p"), Column("n", "images", "count"),
        Column("ece", "calibration error", "number", digits=9)])
    assert table.to_dict("records") == [
        {"group": "IV", "gap (95% interval)": "-13% (-31% to 5%)", "adjusted p": "p < 0.001",
         "images": "121", "calibration error": "0.1235"},
        {"group": "V", "gap (95% interval)": "–", "adjusted p": "p = 0.200",
         "images": "4,087", "calibration error": "0.0000"}]
    with pytest.raises(KeyError, match="expected a column 'missing'"):
        reader_table(raw, [Column("missing", "x")])


def test_explanations_overall_reading_orders_the_signals():
    from auditkit.wording import explanations_overall_reading

    assert explanations_overall_reading(completeness=1.0, faithful=True,
                                        sanity_flagged=True)[0] == "concern"
    assert explanations_overall_reading(completeness=1.0, faithful=False,
                                        sanity_flagged=False)[0] == "concern"
    word, text = explanations_overall_reading(completeness=0.2, faithful=True,
                                              sanity_flagged=False)
    assert word == "cannot tell" and "only 20% add up" in text
    assert explanations_overall_reading(completeness=0.95, faithful=True,
                                        sanity_flagged=False)[0] == "meets"
    assert explanations_overall_reading(completeness=0.95, faithful=True,
                                        sanity_flagged=None)[0] == "cannot tell"


def test_durations_and_thorough_label_agree():
    from auditkit.wording import fmt_duration, thorough_time_label

    assert fmt_duration(123) == "2 h 3 min" and fmt_duration(0.4) == "under 1 min"
    assert "about 2 h 3 min" in thorough_time_label(123)


def test_explanations_counts_note_adds_up():
    from auditkit.wording import explanations_counts_note

    assert explanations_counts_note(n_images=84, n_explanations=133, n_complete=26) == (
        "84 images were explained: each for the class the model gave, and the 49 it got "
        "wrong also for the true class, so the completeness check counts 133 explanations "
        "(26 of them add up to the score).")
    assert "none was wrong" in explanations_counts_note(n_images=7, n_explanations=7,
                                                         n_complete=1)
