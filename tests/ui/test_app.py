"""The landing page and the fairness page under streamlit's AppTest."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from auditkit.cli import main

REPO = Path(__file__).resolve().parents[2]


def test_landing_page_lists_models_and_datasets(data_root: Path) -> None:
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=120).run()
    assert not at.exception
    text = " ".join(m.value for m in at.markdown)
    for name in ("derm-lesion v1", "derm-lesion v2", "cxr-covid v1", "mri-tumor v1"):
        assert name in text
    assert "versions to compare" in text
    captions = " ".join(c.value for c in at.caption)
    assert "weights match the card" in captions and "do NOT match" not in captions
    expanders = " ".join(e.label for e in at.expander)
    assert "fitzpatrick17k" in expanders and "lgg_mri" in expanders
    assert not at.error


def test_landing_page_shows_tampered_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             data_root: Path) -> None:
    reg = tmp_path / "models"
    shutil.copytree(REPO / "models" / "cxr-covid", reg / "cxr-covid")
    weights = reg / "cxr-covid" / "v1" / "weights.pt"
    weights.write_bytes(weights.read_bytes()[:-1] + b"\1")
    monkeypatch.setenv("AUDITKIT_MODELS", str(reg))
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=120).run()
    assert not at.exception
    assert "do NOT match" in " ".join(c.value for c in at.caption)


@pytest.mark.slow
def test_fairness_page_shows_stored_audit_and_threshold(data_root: Path) -> None:
    assert main(["audit", "--model", "cxr-covid@v1", "--dataset", "covid_cxr", "--checks",
                 "fairness", "--n-boot", "100", "--data-root", str(data_root)]) == 0
    at = AppTest.from_file(str(REPO / "pages" / "1_Fairness.py"), default_timeout=120)
    at.run()
    at.sidebar.selectbox(key="fairness_model").set_value("cxr-covid@v1").run()
    assert not at.exception
    text = " ".join(m.value for m in at.markdown)
    assert "cxr-covid@v1" in text and "held-out test split" in text
    assert at.selectbox(key="fairness_attribute").options
    at.selectbox(key="fairness_attribute").set_value("sex").run()
    before = _sensitivity(_threshold_table(at))
    at.slider(key="fairness_threshold").set_value(0.2).run()
    after = _sensitivity(_threshold_table(at))
    assert not at.exception
    # a lower threshold catches at least as many positives in every group
    assert (after >= before).all() and (after > before).any()
    # the what-if counts the test split only: each group's n is the group table's n
    groups = next(d.value for d in at.dataframe if "counted in the denominator" in d.value)
    points = _threshold_table(at)
    assert dict(zip(points["group"], points["images"])) == {
        g: n for g, n in zip(groups["group"], groups["images"]) if g in set(points["group"])}
    total = sum(int(n.replace(",", "")) for n in points["images"])
    assert total < 318  # the dataset's 318 images include the training split
    captions = " ".join(c.value for c in at.caption)
    assert "not evaluated" in captions
    # covid_cxr has several images per patient: the what-if says its intervals are too narrow
    assert "counts each image as independent" in captions and "too narrow" in captions


def test_fairness_page_without_audit_says_what_to_do(data_root: Path) -> None:
    at = AppTest.from_file(str(REPO / "pages" / "1_Fairness.py"), default_timeout=60).run()
    assert not at.exception
    assert any("Run fairness audit" in i.value for i in at.info)


def _threshold_table(at: AppTest):
    tables = [d.value for d in at.dataframe
              if {"group", "images", "sensitivity (95% interval)",
                  "specificity (95% interval)"} <= set(d.value.columns)]
    assert len(tables) == 1
    return tables[0]


def _sensitivity(table: pd.DataFrame) -> pd.Series:
    """The value before the interval, as a number: "61% (50% to 70%)" -> 61.0; "–" -> 0."""
    return pd.to_numeric(table["sensitivity (95% interval)"].str.extract(r"^(\d+)%")[0],
                         errors="coerce").fillna(0)


def test_landing_page_counts_the_images_measured(data_root: Path, capsys) -> None:
    """An audit measured on the test split says so: n of the dataset's images, as the CLI."""
    assert main(["audit", "--model", "cxr-covid@v1", "--dataset", "covid_cxr", "--checks",
                 "performance", "--n-boot", "50", "--data-root", str(data_root)]) == 0
    printed = capsys.readouterr().out
    n_test = int(re.search(r"on n = (\d+) images", printed)[1])
    assert n_test < 318  # the test split, not every image
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=120).run()
    assert not at.exception
    listed = at.dataframe[-1].value
    assert listed["images measured"].tolist() == [f"{n_test} of 318"]
    assert any("Select a row to open it" in c.value for c in at.caption)
    assert "versions to compare on the **Compare versions** page" in " ".join(
        m.value for m in at.markdown)
