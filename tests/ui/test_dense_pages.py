"""Every page and the Overview on stored audits of the multi-label and segmentation demos."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pandas as pd
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

import auditkit
from tests.ui.conftest import all_text

PAGES = Path(__file__).resolve().parents[2] / "pages"
REPO = Path(__file__).resolve().parents[2]
OPTIONS = {"explain": {"n_images": 2, "n_samples": 8, "background_size": 4},
           "robustness": {"n_images": 12, "eps": ["2/255"], "steps": 3}}
VERDICT_WORDS = ("✔ meets", "▲ concern", "? cannot tell", "– not assessed")


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Audits of both demos (every check; the segmentation one on 6 test patients)."""
    from tests.conftest import real_data_root

    if real_data_root() is None:
        pytest.skip("real datasets not found")
    root = tmp_path_factory.mktemp("dense_audits")
    config = auditkit.AuditConfig(checks=["performance", "fairness", "explain", "robustness",
                                          "privacy"], n_boot=200, device="cpu",
                                  options=OPTIONS, min_group_size=3)
    ml = auditkit.load_dataset("covid_cxr_findings")
    auditkit.run_audit(model=auditkit.load_model("cxr-findings@v1", device="cpu"), dataset=ml,
                       config=config, out_dir=root / "ml")
    seg = auditkit.load_dataset("lgg_mri")
    split = pd.read_csv(REPO / "models" / "mri-tumor-seg" / "v1" / "split.csv")
    split = dict(zip(split["image"], split["split"]))
    rec = seg.records
    tests = sorted(set(rec.loc[rec["image"].map(split) == "test", "patient_id"]))[:6]
    trains = sorted(set(rec.loc[rec["image"].map(split) == "train", "patient_id"]))[:6]
    sub = seg.subset(rec["patient_id"].isin(tests + trains).to_numpy())
    auditkit.run_audit(model=auditkit.load_model("mri-tumor-seg@v1", device="cpu"),
                       dataset=sub, config=config, out_dir=root / "seg")
    return root


@pytest.fixture
def audits(stored: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    target = tmp_path / "audits"
    shutil.copytree(stored, target)
    monkeypatch.setenv("AUDITKIT_AUDITS", str(target))
    monkeypatch.setenv("AUDITKIT_DATA_ROOT", os.environ.get("AUDITKIT_DATASETS", ""))
    st.cache_data.clear()
    st.cache_resource.clear()
    return target


def _page(name: str, key: str, ref: str) -> AppTest:
    at = AppTest.from_file(str(PAGES / name), default_timeout=120).run()
    assert not at.exception, at.exception
    at.sidebar.selectbox(key=f"{key}_model").set_value(ref).run()
    assert not at.exception, at.exception
    return at


@pytest.mark.slow  # two audits of every check, then five pages: well under a minute each
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # plotly/streamlit internals
@pytest.mark.parametrize("ref", ["mri-tumor-seg@v1", "cxr-findings@v1"])
def test_pages_show_both_kinds(audits: Path, ref: str) -> None:
    seg = ref.startswith("mri")
    at = _page("1_Fairness.py", "fairness", ref)
    text = all_text(at)
    assert "What the audit finds" in [h.value for h in at.subheader]
    if seg:
        assert "segmentation model" in text and "patient-level means" in text
        table = at.dataframe[0].value
        assert {"group", "dice", "dice_low", "dice_high", "missed_lesion_rate",
                "hd95_px"} <= set(table.columns)
    else:
        assert "multi-label finding model" in text
        at.selectbox(key="fairness_finding").set_value("icu").run()
        assert not at.exception, at.exception
        assert "unknown (not counted)" in all_text(at)
        assert {"group", "value", "low", "high", "n"} <= set(at.dataframe[0].value.columns)
    at = _page("2_Explanations.py", "explain", ref)
    text = all_text(at)
    assert ("predicted-mask score" if seg else "each finding's logit") in text
    assert len(at.get("plotly_chart")) == 1
    if not seg:
        at.selectbox(key="explain_finding").set_value("other_lung_disease").run()
        assert not at.exception, at.exception
    at = _page("3_Robustness.py", "robustness", ref)
    text = all_text(at)
    assert ("Dice on slices with a tumour changes by" if seg else "of finding calls flip") in text
    assert {"kind", "name", "group", "value", "low", "high"} <= set(at.dataframe[0].value.columns)
    at = _page("4_Privacy.py", "privacy", ref)
    assert not at.exception, at.exception
    assert ("pixel_loss" if seg else "finding_loss") in all_text(at) + str(
        [d.value for d in at.dataframe])
    at = _page("0_Overview.py", "overview", ref)
    text = all_text(at) + " ".join(e.label for e in at.expander)
    assert sum(word in text for word in VERDICT_WORDS) >= 2, text[:2000]
    assert ("mean Dice on slices with a lesion at least 70%" if seg
            else "covid19: sensitivity at least 80%") in text
