"""The Robustness page under AppTest: run button, ε curves, corruption curves, gallery."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tests.ui.conftest import all_text

PAGE = str(Path(__file__).resolve().parents[2] / "pages" / "3_Robustness.py")


@pytest.mark.slow  # a whole audit, then a gallery attack: ~10 s
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # plotly/streamlit internals
def test_robustness_page_runs_and_shows_curves_and_gallery(tiny_covid: Path) -> None:
    at = AppTest.from_file(PAGE, default_timeout=120).run()
    assert not at.exception, at.exception
    assert "No robustness audit" in at.info[0].value
    at.sidebar.number_input(key="robustness_n_images").set_value(24)
    at.sidebar.number_input(key="robustness_n_corruptions").set_value(8)
    at.sidebar.multiselect(key="robustness_attacks").set_value(["fgsm", "pgd"])
    at.sidebar.select_slider(key="robustness_n_boot").set_value(200)
    at.sidebar.number_input(key="robustness_min_group").set_value(3)
    at.sidebar.button(key="robustness_run").click().run()
    assert not at.exception, at.exception
    text = all_text(at)
    assert "In plain words." in text and "flip" in text
    assert "Accuracy on the untouched images" in [m.label for m in at.metric]
    assert "Images attacked" in [m.label for m in at.metric]
    assert "24 of 40" in text
    charts = at.get("plotly_chart")
    assert len(charts) == 2  # ε curves and corruption curves
    curves = json.loads(charts[0].proto.spec)
    names = [t["name"] for t in curves["data"]]
    assert any(n.startswith("all images, n = 24 images") for n in names), names
    assert len(curves["data"][0]["x"]) == 5  # the five default budgets
    # the log ε axis is ticked at the budgets themselves, labelled as numbers
    xaxis = curves["layout"]["xaxis"]
    assert xaxis["tickvals"] == sorted(curves["data"][0]["x"])
    assert xaxis["ticktext"] == ["0.5", "1", "2", "4", "8"]
    table = at.dataframe[0].value
    assert list(table.columns) == ["group", "ε (× 1/255 of the pixel range)",
                                   "accuracy under attack (95% interval)",
                                   "answers flipped (95% interval)", "images"]
    assert set(table["group"]) == {"all images"}  # this attack and grouping only
    # why the clean accuracy differs from the card's: a stratified sample
    assert "Measured on a sample of 24 of 40 images" in text
    # per-group curves: pick the sex attribute
    at.selectbox(key="robustness_curve_attribute").set_value("sex").run()
    assert not at.exception, at.exception
    names = [t["name"] for t in json.loads(at.get("plotly_chart")[0].proto.spec)["data"]]
    # 12 images but fewer than 10 patients per sex: withheld by small-cell protection,
    # so they are not drawn, and the page names them with the reason
    assert sorted(names) == ["all images, n = 24 images"], names
    captions = " ".join(c.value for c in at.caption)
    assert "Not drawn: female, male. Withheld: fewer than 10 images or patients" in captions
    corr = json.loads(at.get("plotly_chart")[1].proto.spec)
    assert corr["data"][0]["x"] == [1, 2, 3, 4, 5]
    # the gallery: original, amplified change and attacked image for two examples
    at.number_input(key="robustness_gallery_n").set_value(2)
    at.button(key="robustness_gallery_run").click().run()
    assert not at.exception, at.exception
    gallery = at.get("plotly_chart")[2:]
    assert len(gallery) == 2
    spec = json.loads(gallery[0].proto.spec)
    titles = [a["text"] for a in spec["layout"]["annotations"]]
    assert titles[0].startswith("original: ") and titles[2].startswith("attacked: ")
    assert sum(t["type"] == "image" for t in spec["data"]) == 3
