"""The Privacy page under AppTest: run button, attack findings, groups, identifier scan."""

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
    assert {t["name"].split(" ")[0] for t in roc["data"]} >= {"loss", "confidence", "entropy"}
    groups = at.dataframe[0].value
    assert set(groups["attribute"]) == {"sex"} and {"auc", "auc_low", "n"} <= set(groups.columns)
    # identifiers: the planted e-mail column is reported, its value is not
    ids = at.dataframe[1].value
    assert "table column 'email'" in set(ids["where"])
    assert "someone@example.org" not in text
    for patient in tiny_covid["patients"]:
        assert patient not in text
    # per-group view follows the attribute picker; small groups are hidden, never shown
    at.sidebar.radio(key="privacy_mode").set_value("thorough").run()
    assert not at.exception
    assert any("roughly" in c.value and "minutes" in c.value for c in at.sidebar.caption)
    at.selectbox(key="privacy_attribute").set_value("view").run()
    view = at.dataframe[0].value
    assert not at.exception
    assert view.set_index("group").loc["AP", "suppressed"]
    assert view.set_index("group").loc["AP", "n"] is None or pd.isna(
        view.set_index("group").loc["AP", "n"])


def test_privacy_page_explains_when_membership_is_unknown(tiny_covid: dict):
    (tiny_covid["folder"] / "split.csv").unlink()
    at = AppTest.from_file(PAGE, default_timeout=120).run()
    at.sidebar.button(key="privacy_run").click().run()
    assert not at.exception, at.exception
    assert any("Not assessed" in w.value and "split.csv" in w.value for w in at.warning)
    assert any("identifiers" in m.value or "What the scan finds" in m.value
               for m in at.markdown)
