"""The Explanations page under AppTest: run button, trust checks, gallery, stored run."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tests.ui.conftest import all_text

PAGE = str(Path(__file__).resolve().parents[2] / "pages" / "2_Explanations.py")


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # plotly/streamlit internals
def test_explain_page_runs_and_shows_trust_checks_and_gallery(tiny_covid: Path) -> None:
    at = AppTest.from_file(PAGE, default_timeout=120).run()
    assert not at.exception, at.exception
    assert "No explanations" in at.info[0].value
    at.sidebar.number_input(key="explain_n_per_group").set_value(3)
    at.sidebar.number_input(key="explain_n_samples").set_value(4)
    at.sidebar.number_input(key="explain_sanity_images").set_value(2)
    at.sidebar.number_input(key="explain_min_group").set_value(3)
    at.sidebar.button(key="explain_run").click().run()
    assert not at.exception, at.exception
    labels = [m.label for m in at.metric]
    assert "Add up to the score (completeness)" in labels
    assert "Beat random order (faithfulness)" in labels
    assert "Depend on the model (sanity)" in labels
    text = all_text(at)
    assert "attributions add up to the model's score" in text
    assert "random" in text and "rank similarity" in text
    assert "Share of the explanation" in text and "corners" in text
    assert "Colour scale ±" in text
    # an overall reading of the three signals, and why explanations outnumber images
    assert re.search(r"\*\*Overall: (✔ meets|▲ concern|\? cannot tell)\.\*\*", text)
    note = re.search(r"(\d+) images were explained: each for the class the model gave, and "
                     r"(?:the (\d+) it got wrong also for the true class|none was wrong, so "
                     r"none needed the true class too), so the completeness check counts "
                     r"(\d+) explanations", text)
    assert note and int(note[1]) + int(note[2] or 0) == int(note[3])
    charts = at.get("plotly_chart")
    assert len(charts) == 4  # gallery, shares, curves, sanity
    # a stored run is shown without running again (a fresh session)
    again = AppTest.from_file(PAGE, default_timeout=60).run()
    assert not again.exception, again.exception
    assert "Add up to the score (completeness)" in [m.label for m in again.metric]
    assert not [i for i in again.info if "No explanations" in i.value]
    again.selectbox(key="explain_attribute").set_value("age").run()
    assert not again.exception, again.exception
