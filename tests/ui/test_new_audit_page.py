"""The "New audit" page under AppTest: a new user's TorchScript model and DICOM images,
drafted, corrected, saved and audited from the browser; then the dataset is in every
page's picker."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pandas as pd
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from tests._byo import make_hospital_dicoms, make_hospital_model

REPO = Path(__file__).resolve().parents[2]
PAGE = str(REPO / "pages" / "6_New_audit.py")


@pytest.fixture
def newcomer(tmp_path: Path, data_root: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """A model file and a DICOM folder somewhere on disk; empty registries to save into."""
    data = tmp_path / "pacs_export"
    make_hospital_dicoms(data_root, data)
    incoming = tmp_path / "incoming"
    built = make_hospital_model(tmp_path / "scratch")
    incoming.mkdir()
    shutil.copyfile(built / "model.torchscript.pt", incoming / "model.torchscript.pt")
    models, datasets = tmp_path / "our_models", tmp_path / "our_datasets"
    models.mkdir()
    datasets.mkdir()
    monkeypatch.setenv("AUDITKIT_MODELS", f"{models}{os.pathsep}@bundled")
    monkeypatch.setenv("AUDITKIT_DATASET_REGISTRY", str(datasets))
    st.cache_data.clear()
    st.cache_resource.clear()
    return {"data": data, "model_file": incoming / "model.torchscript.pt", "models": models,
            "datasets": datasets}


def _errors(at: AppTest) -> str:
    return "\n".join(e.value for e in at.error)


def test_page_without_input_says_what_to_do() -> None:
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    assert not at.exception
    assert "Give a model file and a dataset" in at.info[0].value


def test_code_carrying_model_is_not_run_without_trust(newcomer: dict[str, Path]) -> None:
    at = AppTest.from_file(PAGE, default_timeout=120).run()
    at.text_input(key="new_model_path").set_value(str(newcomer["model_file"]))
    at.text_input(key="new_dataset_path").set_value(str(newcomer["data"]))
    at.button(key="new_draft").click().run()
    assert not at.exception
    card = json.loads(at.text_area(key="new_card_text").value)
    assert card["format"] == "torchscript" and card["input_size"] == []  # no dry run
    assert any("tick 'I trust this model file's code'" in c.value for c in at.caption)


def test_new_user_drafts_corrects_saves_and_runs(newcomer: dict[str, Path]) -> None:
    table = newcomer["data"] / "table.csv"
    good = pd.read_csv(table)
    bad = pd.concat([good, pd.DataFrame([{"file": "dicom/missing.dcm", "finding": "Influenza",
                                          "patient": "P999"}])])
    bad.to_csv(table, index=False)

    at = AppTest.from_file(PAGE, default_timeout=180).run()
    at.text_input(key="new_model_path").set_value(str(newcomer["model_file"]))
    at.text_input(key="new_dataset_path").set_value(str(newcomer["data"]))
    at.checkbox(key="new_trust").check()
    at.button(key="new_draft").click().run()
    assert not at.exception

    # what could be read: format, hash, input shape by a dry run, columns, DICOM tags
    card = json.loads(at.text_area(key="new_card_text").value)
    assert card["format"] == "torchscript" and len(card["sha256"]) == 64
    assert card["input_size"] == [128, 128] and card["channels"] == 1
    assert card["output"] == "binary_logit"
    assert card["class_names"] == sorted(set(bad["finding"]))  # the table's labels
    toml = at.text_area(key="new_dataset_text").value
    assert 'image_column = "file"' in toml and 'label_column = "finding"' in toml
    assert 'patient_column = "patient"' in toml
    assert '[[attributes]]\nname = "sex"\nkind = "sex"' in toml  # from the DICOM header
    assert '[[attributes]]\nname = "age"\nkind = "age"' in toml

    # every problem at once, the dataset's with their table line numbers
    errors = _errors(at)
    assert "field 'task': expected at least 1 character; found ''" in errors
    assert "field 'class_names': expected exactly two (negative, positive)" in errors
    assert "line 42: image file" in errors and "missing.dcm' is missing or not allowed" in errors
    assert at.button(key="new_save").disabled

    # the user corrects the card and the table, as the messages say
    good.to_csv(table, index=False)
    card.update(task="Flag COVID-19 on a chest X-ray", name="cxr-hospital", dataset="hospital_cxr",
                class_names=["not_covid", "covid"], positive_class="covid",
                normalization={"mean": [0.5], "std": [0.25]})
    at.text_area(key="new_card_text").set_value(json.dumps(card, indent=2))
    classes_line = next(line for line in toml.splitlines() if line.startswith("classes = "))
    at.text_area(key="new_dataset_text").set_value(
        toml.replace('name = "pacs_export"', 'name = "hospital_cxr"').replace(
            classes_line, 'classes = ["not_covid", "covid"]')
        + '\n[label_map]\n"COVID-19" = "covid"\n"No Finding" = "not_covid"\n'
          '"Other pneumonia/lung disease" = "not_covid"\n')
    at.run()
    assert not at.exception and not at.error, _errors(at)
    assert "Both files are valid." in at.success[0].value

    at.button(key="new_save").click().run()
    assert not at.exception and not at.error, _errors(at)
    saved = newcomer["models"] / "cxr-hospital" / "v1"
    assert json.loads((saved / "card.json").read_text())["task"].startswith("Flag COVID-19")
    assert (saved / "model.torchscript.pt").read_bytes() == newcomer["model_file"].read_bytes()
    assert (newcomer["datasets"] / "hospital_cxr.toml").is_file()

    # saving again never overwrites unasked
    at.button(key="new_save").click().run()
    assert "exist already and were not overwritten" in _errors(at)

    at.multiselect(key="new_checks").set_value(["performance", "fairness"])
    at.radio(key="new_evaluate_on").set_value("all")
    at.select_slider(key="new_n_boot").set_value(200)
    at.button(key="new_run").click().run()
    assert not at.exception and not at.error, _errors(at)
    summary = " ".join(m.value for m in at.markdown)
    assert "Training images may be included in this measurement" in summary
    assert "all 40 images of hospital_cxr" in summary

    # the dataset is now in every page's picker, and the landing page lists it
    for page, key in [("1_Fairness.py", "fairness"), ("2_Explanations.py", "explain"),
                      ("3_Robustness.py", "robustness"), ("4_Privacy.py", "privacy")]:
        other = AppTest.from_file(str(REPO / "pages" / page), default_timeout=120).run()
        other.sidebar.selectbox(key=f"{key}_model").set_value("cxr-hospital@v1").run()
        assert not other.exception
        picker = other.sidebar.selectbox(key=f"{key}_dataset_cxr-hospital")
        assert "hospital_cxr" in picker.options and picker.value == "hospital_cxr"
        assert {"covid_cxr", "fitzpatrick17k", "lgg_mri"} <= set(picker.options)
    compare = AppTest.from_file(str(REPO / "pages" / "5_Compare_versions.py"),
                                default_timeout=120).run()
    compare.sidebar.selectbox(key="compare_family").set_value("cxr-hospital").run()
    assert not compare.exception
    picker = compare.sidebar.selectbox(key="compare_dataset_cxr-hospital")
    assert "hospital_cxr" in picker.options and picker.value == "hospital_cxr"
    fairness = AppTest.from_file(str(REPO / "pages" / "1_Fairness.py"), default_timeout=120).run()
    fairness.sidebar.selectbox(key="fairness_model").set_value("cxr-hospital@v1").run()
    assert not fairness.exception
    assert "training images may be included" in " ".join(m.value for m in fairness.markdown)
    landing = AppTest.from_file(str(REPO / "app.py"), default_timeout=120).run()
    assert not landing.exception
    assert any("hospital_cxr** (registered)" in e.label for e in landing.expander)
