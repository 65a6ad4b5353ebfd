"""Fixtures shared by the page tests."""

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


def all_text(at: AppTest) -> str:
    parts = [m.value for m in at.markdown] + [c.value for c in at.caption]
    parts += [str(m.value) for m in at.metric] + [i.value for i in at.info]
    return "\n".join(parts)
