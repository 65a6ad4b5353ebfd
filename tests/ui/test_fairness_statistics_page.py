"""The fairness page shows tested gaps with adjusted intervals, power and denominators."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from auditkit.cli import main

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_fairness_page_shows_gap_tests_and_denominators(data_root: Path) -> None:
    assert main(["audit", "--model", "cxr-covid@v1", "--dataset", "covid_cxr", "--checks",
                 "fairness", "--n-boot", "200", "--evaluate-on", "all",
                 "--data-root", str(data_root)]) == 0
    at = AppTest.from_file(str(REPO / "pages" / "1_Fairness.py"), default_timeout=120)
    at.run()
    at.sidebar.selectbox(key="fairness_model").set_value("cxr-covid@v1").run()
    at.selectbox(key="fairness_attribute").set_value("view").run()
    at.selectbox(key="fairness_metric").set_value("sensitivity").run()
    assert not at.exception
    groups = next(d.value for d in at.dataframe if "the denominator counts" in d.value.columns)
    assert set(groups["the denominator counts"]) - {"–"} == {"positives"}
    gaps = next(d.value for d in at.dataframe if "adjusted p" in d.value.columns)
    assessed = gaps[gaps["why not assessed"] == ""]
    assert not assessed.empty
    # "-12% (-30% to 5%)": the gap lies inside its simultaneous interval
    parts = assessed["gap, worst − best (simultaneous 95% interval)"].str.extract(
        r"^(-?\d+)% \((-?\d+)% to (-?\d+)%\)").astype(float)
    assert (parts[1] <= parts[0]).all() and (parts[0] <= parts[2]).all()
    assert assessed["verdict"].isin(["▲ concern", "? cannot tell"]).all()
    captions = " ".join(c.value for c in at.caption)
    assert "Westfall-Young" in captions
