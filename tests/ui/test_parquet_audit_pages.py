"""Pages read a large audit's Parquet evidence through the library (issue 17)."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

import auditkit
from auditkit.evidence import read_table
from auditkit.fairness import operating_points_from_audit

REPO = Path(__file__).resolve().parents[2]


def _threshold_table(at: AppTest) -> pd.DataFrame:
    return next(d.value for d in at.dataframe
                if "specificity (95% interval)" in d.value.columns)


def test_fairness_and_overview_pages_on_a_parquet_audit(tiny_covid: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUDITKIT_PARQUET_MIN_ROWS", "1")  # the 40-image audit counts as large
    model = auditkit.load_model(tiny_covid, device="cpu")
    dataset = auditkit.load_dataset("covid_cxr", data_root=Path(os.environ["AUDITKIT_DATA_ROOT"]))
    out = Path(os.environ["AUDITKIT_AUDITS"]) / "cxr-tiny@v1__covid_cxr__parquet"
    audit = auditkit.run_audit(model=model, dataset=dataset, out_dir=out, config=auditkit.AuditConfig(
        checks=["performance", "fairness"], n_boot=100, device="cpu", small_cell_k=0))
    assert audit["evidence_files"]["predictions"]["format"] == "parquet"
    assert not (out / "predictions.csv").exists()

    at = AppTest.from_file(str(REPO / "pages" / "1_Fairness.py"), default_timeout=120).run()
    assert not at.exception, at.exception
    at.selectbox(key="fairness_attribute").set_value("sex").run()
    shown = _threshold_table(at)
    expected = operating_points_from_audit(out, attribute="sex", positive_class="covid",
                                           threshold=0.5, groups=list(shown["group"]))
    assert expected is not None
    # the page shows the library's numbers, formatted: same groups, same n
    assert shown["group"].tolist() == expected["group"].tolist()
    assert shown["images"].tolist() == [str(n) for n in expected["n"]]
    # only evaluated rows count (here every row: the model has no split)
    evaluated = read_table(out, "predictions", columns=["evaluated"])["evaluated"]
    assert expected["n"].sum() <= int(evaluated.astype(str).str.lower().isin(["true", "1"]).sum())
    at.slider(key="fairness_threshold").set_value(0.2).run()
    assert not at.exception

    overview = AppTest.from_file(str(REPO / "pages" / "0_Overview.py"), default_timeout=120).run()
    assert not overview.exception, overview.exception
