"""The Overview page under AppTest: seven questions, verdicts, criteria, report download."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

import auditkit
from auditkit import wording
from auditkit.cli import main
from auditkit.overview import QUESTIONS, survey, training_mix
from tests.ui.conftest import all_text

PAGE = str(Path(__file__).resolve().parents[2] / "pages" / "0_Overview.py")

STRICT = b"""
[criteria]
name = "Uploaded committee set"
task = "binary"
fixed_on = 2026-11-02

[performance]
min_sensitivity = 0.99
"""


def _run_audit(model_folder: Path, checks: list[str]) -> Path:
    model = auditkit.load_model(model_folder, device="cpu")
    data_root = Path(os.environ["AUDITKIT_DATA_ROOT"])
    dataset = auditkit.load_dataset("covid_cxr", data_root=data_root)
    out = Path(os.environ["AUDITKIT_AUDITS"]) / "cxr-tiny@v1__covid_cxr__test"
    auditkit.run_audit(model=model, dataset=dataset, out_dir=out,
                       config=auditkit.AuditConfig(checks=checks, n_boot=100, device="cpu"))
    return out


def _verdict_lines(at: AppTest) -> list[str]:
    return [m.value for m in at.markdown if m.value.startswith("#### ")]


def test_overview_without_audit_says_how_to_make_one(tiny_covid: Path) -> None:
    at = AppTest.from_file(PAGE, default_timeout=120).run()
    assert not at.exception, at.exception
    assert "No stored audit of **cxr-tiny@v1**" in at.info[0].value
    assert "--checks fairness,explain,robustness,privacy" in at.info[0].value


def test_overview_answers_every_question_with_one_verdict(tiny_covid: Path) -> None:
    folder = _run_audit(tiny_covid, ["performance", "fairness", "privacy"])
    at = AppTest.from_file(PAGE, default_timeout=120).run()
    assert not at.exception, at.exception
    lines = _verdict_lines(at)
    assert len(lines) == len(QUESTIONS)
    for (_, question, _, _), line in zip(QUESTIONS, lines):
        assert question in line
        head = line.split("\n")[1]
        # exactly one verdict, as icon and word together, first on the answer line
        used = [v for v in wording.VERDICTS if f"**{wording.verdict_label(v)}**" in head]
        assert len(used) == 1, head
        assert head.startswith(f"**{wording.verdict_label(used[0])}**")
    text = all_text(at)
    assert "no earlier version compared" in text
    assert "the explain check did not run in this audit" in text
    assert "n = " in text and "patients" in text  # n beside the numbers
    assert "Details: the Fairness page (in the sidebar)." in text
    assert "auditkit default: two-class model" in text  # which criteria, when fixed
    assert "fixed on 2026-11-28" in text
    assert wording.INTERVAL_EXPLANATION in at.caption[0].value
    (button,) = at.get("download_button")
    assert button.proto.label == "Download the report (HTML, one file)"
    assert len(list((folder / "evaluations").glob("*.json"))) == 1


def test_uploaded_criteria_make_a_new_evaluation_beside_the_first(
        tiny_covid: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = _run_audit(tiny_covid, ["performance"])
    at = AppTest.from_file(PAGE, default_timeout=120).run()
    assert not at.exception
    before = (folder / "audit.json").read_bytes()

    class Upload:  # what st.file_uploader returns
        name = "committee.toml"

        @staticmethod
        def getvalue() -> bytes:
            return STRICT

    monkeypatch.setattr(st.sidebar, "file_uploader", lambda *a, **k: Upload())
    at = AppTest.from_file(PAGE, default_timeout=120).run()
    assert not at.exception, at.exception
    text = all_text(at)
    assert "Uploaded committee set" in text and "fixed on 2026-11-02" in text
    assert "sensitivity for 'covid' at least 99%" in text
    assert "not recorded in the audit beforehand" in text
    assert len(list((folder / "evaluations").glob("*.json"))) == 2
    assert (folder / "audit.json").read_bytes() == before


def test_edited_criteria_record_is_refused_on_the_page(tiny_covid: Path) -> None:
    folder = _run_audit(tiny_covid, ["performance"])
    audit = json.loads((folder / "audit.json").read_text())
    from auditkit.criteria import default_criteria

    record = default_criteria("binary").to_record()
    record["rules"]["performance"]["min_sensitivity"] = 0.1  # edited after the hash was taken
    audit["criteria"] = record
    (folder / "audit.json").write_text(json.dumps(audit))
    at = AppTest.from_file(PAGE, default_timeout=120).run()
    assert not at.exception, at.exception
    assert "does not match its rules" in at.error[0].value
    assert not _verdict_lines(at)


DEMO = [("derm-lesion@v1", "fitzpatrick17k"), ("derm-lesion@v2", "fitzpatrick17k"),
        ("cxr-covid@v1", "covid_cxr"), ("mri-tumor@v1", "lgg_mri")]


@pytest.mark.slow
@pytest.mark.parametrize(("ref", "dataset_name"), DEMO)
def test_overview_of_each_demo_model(ref: str, dataset_name: str, data_root: Path,
                                     monkeypatch: pytest.MonkeyPatch,
                                     tmp_path_factory: pytest.TempPathFactory) -> None:
    st.cache_data.clear()
    st.cache_resource.clear()
    monkeypatch.setenv("AUDITKIT_DATA_ROOT", str(data_root))
    out = Path(os.environ["AUDITKIT_AUDITS"]) / f"{ref}__{dataset_name}__demo"
    assert main(["audit", "--model", ref, "--dataset", dataset_name, "--checks",
                 "fairness,privacy", "--n-boot", "200", "--device", "cpu", "--data-root",
                 str(data_root), "--out", str(out), "--cache-dir",
                 str(tmp_path_factory.getbasetemp() / "demo-prediction-cache")]) == 0
    at = AppTest.from_file(PAGE, default_timeout=120).run()
    at.sidebar.selectbox(key="overview_model").set_value(ref).run()
    assert not at.exception, at.exception
    lines = _verdict_lines(at)
    assert len(lines) == len(QUESTIONS)
    audit = json.loads((out / "audit.json").read_text())
    expected = survey(audit, training=training_mix(out, audit))
    for answer, line in zip(expected.answers, lines):
        assert answer.question in line
        assert line.split("\n")[1].startswith(f"**{answer.label}** — ")
    if ref == "derm-lesion@v1":  # trained on skin types I-IV only
        assert lines[2].split("\n")[1].startswith("**▲ concern** — ")
    if ref == "cxr-covid@v1":
        assert ("This model is right on 59% of test images; answering 'covid' for every image "
                "would be right on 66%.") in lines[0]
