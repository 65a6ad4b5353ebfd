"""The Privacy page under AppTest: run button, attack findings, groups, identifier scan."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import streamlit as st
from PIL import Image
from streamlit.testing.v1 import AppTest

from tests.conftest import BrightnessNet, write_model

PAGE = str(Path(__file__).resolve().parents[2] / "pages" / "4_Privacy.py")


@pytest.fixture
def tiny_covid(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    """A 60-image stand-in for covid_cxr on disk and a tiny model with a split.csv."""
    root = tmp_path / "data" / "covid_cxr"
    (root / "images").mkdir(parents=True)
    rng = np.random.default_rng(0)
    rows = []
    for i in range(60):
        covid = i % 2 == 1
        arr = np.clip(rng.normal(170 if covid else 80, 30, (8, 8)), 0, 255).astype(np.uint8)
        Image.fromarray(arr).save(root / "images" / f"{i}.png")
        rows.append({"image": f"images/{i}.png",
                     "label_covid": "COVID-19" if covid else "No Finding",
                     "patient_id": f"pat_{i // 2:03d}", "sex": "F" if (i // 2) % 2 else "M",
                     "age": str(30 + i % 40), "view": "PA" if i < 54 else "AP",
                     "email": "someone@example.org" if i == 5 else ""})
    pd.DataFrame(rows).to_csv(root / "metadata.csv", index=False)
    folder = write_model(tmp_path / "reg" / "cxr-tiny" / "v1", BrightnessNet(2),
                         fmt="torchscript", channels=1, size=8, name="cxr-tiny",
                         class_names=["not_covid", "covid"])
    card = json.loads((folder / "card.json").read_text())
    card["dataset"] = "covid_cxr"
    (folder / "card.json").write_text(json.dumps(card))
    pd.DataFrame({"image": [r["image"] for r in rows],
                  "split": ["train" if (i // 2) % 3 else "test" for i in range(60)]}
                 ).to_csv(folder / "split.csv", index=False)
    monkeypatch.setenv("AUDITKIT_MODELS", str(tmp_path / "reg"))
    monkeypatch.setenv("AUDITKIT_DATA_ROOT", str(tmp_path / "data"))
    st.cache_data.clear()
    st.cache_resource.clear()
    return {"folder": folder, "patients": sorted({r["patient_id"] for r in rows})}


def _all_text(at: AppTest) -> str:
    parts = [m.value for m in at.markdown] + [c.value for c in at.caption]
    parts += [str(m.value) for m in at.metric] + [w.value for w in at.warning]
    parts += [i.value for i in at.info]
    for frame in at.dataframe:
        parts.append(frame.value.to_csv())
    return "\n".join(parts)


def test_privacy_page_runs_and_shows_findings(tiny_covid: dict):
    at = AppTest.from_file(PAGE, default_timeout=120).run()
    assert not at.exception
    assert "No privacy audit" in at.info[0].value
    at.sidebar.number_input(key="privacy_k").set_value(5)
    at.sidebar.button(key="privacy_run").click().run()
    assert not at.exception, at.exception
    text = _all_text(at)
    assert "What the audit finds." in text and "coin toss" in text
    assert "Attack AUC (0.5 = coin toss)" in [m.label for m in at.metric]
    charts = at.get("plotly_chart")
    assert len(charts) == 2  # ROC and per-group exposure
    roc = json.loads(charts[0].proto.spec)
    assert {t["name"].split(":")[0] for t in roc["data"]} >= {"loss", "confidence", "entropy"}
    groups = at.dataframe[0].value
    assert set(groups["group"]) == {"female", "male"}
    assert {"attack AUC (95% interval)", "images", "from training"} <= set(groups.columns)
    # every AUC is shown with its interval, at most 2 decimals
    assert groups["attack AUC (95% interval)"].str.fullmatch(
        r"\d\.\d\d \(\d\.\d\d to \d\.\d\d\)|–").all()
    # identifiers: the planted e-mail column is reported, its value is not
    ids = at.dataframe[1].value
    assert "table column 'email'" in set(ids["where"])
    assert "someone@example.org" not in text
    for patient in tiny_covid["patients"]:
        assert patient not in text
    # per-group view follows the attribute picker; small groups are hidden, never shown
    at.sidebar.radio(key="privacy_mode").set_value("thorough").run()
    assert not at.exception
    estimate = next(c.value for c in at.sidebar.caption if "Thorough mode trains" in c.value)
    assert "about" in estimate and "min" in estimate
    # the radio label does not contradict the estimate ("minutes to an hour")
    assert "hour" not in at.sidebar.radio(key="privacy_mode").format_func("thorough")
    at.selectbox(key="privacy_attribute").set_value("view").run()
    view = at.dataframe[0].value
    assert not at.exception
    assert view.set_index("group").loc["AP", "images"] == "–"
    assert view.set_index("group").loc["AP", "attack AUC (95% interval)"] == "–"
    assert any("Hidden to protect small groups" in c.value and "AP" in c.value
               for c in at.caption)


def test_privacy_roc_chance_line_is_the_diagonal(tiny_covid: dict):
    at = AppTest.from_file(PAGE, default_timeout=120).run()
    at.sidebar.button(key="privacy_run").click().run()
    assert not at.exception, at.exception
    roc = json.loads(at.get("plotly_chart")[0].proto.spec)
    chance = next(t for t in roc["data"] if t["name"].startswith("coin toss"))
    x, y = np.asarray(chance["x"], dtype=float), np.asarray(chance["y"], dtype=float)
    assert chance["mode"] == "lines" and len(x) > 50  # a line, not two points on a log axis
    np.testing.assert_allclose(x, y)  # y = x everywhere it is drawn
    assert x[-1] == pytest.approx(1.0)
    # from the left edge of the log axis: no attack curve point lies left of it
    curves = [t for t in roc["data"] if not t["name"].startswith("coin toss")]
    first = min(v for t in curves for v in t["x"] if v > 0)
    assert x[0] == pytest.approx(min(first, 0.01))
    assert roc["layout"]["xaxis"]["type"] == "log"
    assert roc["layout"]["xaxis"]["ticktext"][-1] == "100%"  # labelled decades
    # every attack's legend carries its AUC interval and n
    assert all(re.search(r"AUC \d\.\d\d \(\d\.\d\d to \d\.\d\d\), n = \d+ images",
                         t["name"]) for t in curves)


def test_privacy_page_refuses_k_zero(tiny_covid: dict):
    at = AppTest.from_file(PAGE, default_timeout=120).run()
    at.sidebar.number_input(key="privacy_k").set_value(0).run()
    assert not at.exception
    assert any("got k = 0" in e.value and "10 is the recommended default" in e.value
               for e in at.error)
    # nothing can be run or shown with protection off
    assert not [b for b in at.sidebar.button if b.key == "privacy_run"]
    assert not at.get("plotly_chart")


def test_privacy_page_explains_when_membership_is_unknown(tiny_covid: dict):
    (tiny_covid["folder"] / "split.csv").unlink()
    at = AppTest.from_file(PAGE, default_timeout=120).run()
    at.sidebar.button(key="privacy_run").click().run()
    assert not at.exception, at.exception
    assert any("Not assessed" in w.value and "split.csv" in w.value for w in at.warning)
    assert any("identifiers" in m.value or "What the scan finds" in m.value
               for m in at.markdown)
