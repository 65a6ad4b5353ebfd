"""Fixtures shared by the page tests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from tests.conftest import BrightnessNet, write_model, write_tiny_covid


@pytest.fixture
def tiny_covid(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A 40-image stand-in for covid_cxr on disk and a tiny single-logit model."""
    root = tmp_path / "data" / "covid_cxr"
    write_tiny_covid(root)
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
