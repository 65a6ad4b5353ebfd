"""The Explanations page under AppTest: run button, trust checks, gallery, stored run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import streamlit as st
from PIL import Image
from streamlit.testing.v1 import AppTest

from tests.conftest import BrightnessNet, write_model

PAGE = str(Path(__file__).resolve().parents[2] / "pages" / "2_Explanations.py")


@pytest.fixture
def tiny_covid(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A 40-image stand-in for covid_cxr on disk and a tiny single-logit model."""
    root = tmp_path / "data" / "covid_cxr"
    (root / "images").mkdir(parents=True)
    rng = np.random.default_rng(0)
    rows = []
    for i in range(40):
        covid = i % 2 == 1
        arr = np.clip(rng.normal(140 if covid else 115, 20, (8, 8)), 0, 255).astype(np.uint8)
        Image.fromarray(arr).save(root / "images" / f"{i}.png")
        rows.append({"image": f"images/{i}.png",
                     "label_covid": "COVID-19" if covid else "No Finding",
                     "patient_id": f"pat_{i:03d}", "sex": "F" if (i // 2) % 2 else "M",
                     "age": str(30 + i % 40), "view": "PA" if i < 34 else "AP"})
    pd.DataFrame(rows).to_csv(root / "metadata.csv", index=False)
    folder = write_model(tmp_path / "reg" / "cxr-tiny" / "v1", BrightnessNet(1),
                         fmt="torchscript", channels=1, size=8, name="cxr-tiny",
                         output="binary_logit", class_names=["not_covid", "covid"])
    card = json.loads((folder / "card.json").read_text())
    card["dataset"] = "covid_cxr"
    (folder / "card.json").write_text(json.dumps(card))
    monkeypatch.setenv("AUDITKIT_MODELS", str(tmp_path / "reg"))
    monkeypatch.setenv("AUDITKIT_DATA_ROOT", str(tmp_path / "data"))
    st.cache_data.clear()
    st.cache_resource.clear()
    return folder


def _all_text(at: AppTest) -> str:
    parts = [m.value for m in at.markdown] + [c.value for c in at.caption]
    parts += [str(m.value) for m in at.metric] + [i.value for i in at.info]
    return "\n".join(parts)


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
    text = _all_text(at)
    assert "attributions add up to the model's score" in text
    assert "random" in text and "rank similarity" in text
    assert "Share of the explanation" in text and "corners" in text
    assert "Colour scale ±" in text
    charts = at.get("plotly_chart")
    assert len(charts) == 4  # gallery, shares, curves, sanity
    # a stored run is shown without running again (a fresh session)
    again = AppTest.from_file(PAGE, default_timeout=60).run()
    assert not again.exception, again.exception
    assert "Add up to the score (completeness)" in [m.label for m in again.metric]
    assert not [i for i in again.info if "No explanations" in i.value]
    again.selectbox(key="explain_attribute").set_value("age").run()
    assert not again.exception, again.exception
