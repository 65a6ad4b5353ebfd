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
