"""Bring your own model and data: the split rules, the registries, the CLI settings, and a
new user's journey following docs/models.md and docs/datasets.md only."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pytest

import auditkit
from auditkit.cli import main
from auditkit.data import dataset_names, find_dataset, load_dataset
from auditkit.exceptions import ConfigError, ModelError
from auditkit.models import ModelCard, card_problems, list_models
from tests._byo import (
    describe_hospital_dataset,
    expected_covid_probability,
    make_hospital_dicoms,
    make_hospital_model,
)
from tests.conftest import BrightnessNet, write_model

REPO = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------- the split


def _split(folder: Path, rows: list[tuple[str, str]]) -> None:
    pd.DataFrame(rows, columns=["image", "split"]).to_csv(folder / "split.csv", index=False)


def test_split_matching_no_image_stops_with_exit_2(tmp_path: Path, tiny_dataset_dir: Path,
                                                   brightness_model_dir: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    # keys written from another machine's folder layout: none equals the table's image column
    _split(brightness_model_dir, [(f"/mnt/train/img_{i:03d}.png", "test" if i % 4 == 0
                                   else "train") for i in range(24)])
    args = ["audit", "--model", str(brightness_model_dir), "--dataset", str(tiny_dataset_dir),
            "--n-boot", "50"]
    assert main([*args, "--out", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err
    assert "matches none of the 24 images of dataset 'tiny': 0 of 24 split keys match" in err
    assert "Example split key: '/mnt/train/img_000.png'" in err
    assert "example dataset image: 'images/img_000.png'" in err
    assert "--evaluate-on all" in err
    assert not (tmp_path / "a" / "audit.json").exists()

    assert main([*args, "--out", str(tmp_path / "b"), "--evaluate-on", "all"]) == 0
    out = capsys.readouterr().out
    perf = json.loads((tmp_path / "b" / "audit.json").read_text())["results"]["performance"]
    first_sentence = perf["summary"][0].split(". ")[0]
    assert first_sentence.startswith("Training images may be included in this measurement")
    assert "all 24 images of tiny" in first_sentence and perf["may_include_training"]
    assert perf["n"] == 24
    assert out.startswith("Training images may be included")  # the CLI prints it first


def test_split_missing_some_test_keys_stops(tmp_path: Path, tiny_dataset_dir: Path,
                                            brightness_model_dir: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    rows = [(f"images/img_{i:03d}.png", "test" if i < 8 else "train") for i in range(24)]
    rows += [("images/img_999.png", "test")]  # a test image this dataset does not have
    _split(brightness_model_dir, rows)
    assert main(["audit", "--model", str(brightness_model_dir), "--dataset",
                 str(tiny_dataset_dir), "--out", str(tmp_path / "a"), "--n-boot", "50"]) == 2
    err = capsys.readouterr().err
    assert "names 9 test image(s), of which 1 are not in dataset 'tiny'" in err
    assert "(24 of 25 split keys match its 24 images)" in err
    assert "Example missing test key: 'images/img_999.png'" in err


def test_matching_split_measures_the_test_rows_only(tmp_path: Path, tiny_dataset_dir: Path,
                                                    brightness_model_dir: Path) -> None:
    _split(brightness_model_dir, [(f"images/img_{i:03d}.png", "test" if i < 8 else "train")
                                  for i in range(24)])
    assert main(["audit", "--model", str(brightness_model_dir), "--dataset",
                 str(tiny_dataset_dir), "--out", str(tmp_path / "a"), "--n-boot", "50"]) == 0
    perf = json.loads((tmp_path / "a" / "audit.json").read_text())["results"]["performance"]
    assert perf["n"] == 8 and not perf["may_include_training"]
    assert perf["summary"][0].startswith("The model's held-out test split: 8 of 24 images of "
                                         "tiny")
    assert "n = 8 images, 4 patients" in perf["summary"][0]


def test_a_slice_of_the_dataset_still_fits_its_split(tiny_dataset_dir: Path,
                                                     brightness_model_dir: Path) -> None:
    """Test keys outside the slice (or in rows left out as invalid) are not a mismatch."""
    import numpy as np

    _split(brightness_model_dir, [(f"images/img_{i:03d}.png", "test" if i < 8 else "train")
                                  for i in range(24)])
    full = load_dataset(tiny_dataset_dir)
    part = full.subset(np.arange(len(full)) % 2 == 0)  # 12 rows, 4 of them test rows
    model = auditkit.load_model(brightness_model_dir, device="cpu")
    audit = auditkit.run_audit(model=model, dataset=part,
                               config=auditkit.AuditConfig(n_boot=20))
    perf = audit["results"]["performance"]
    assert perf["n"] == 4 and "4 of 12 images of tiny" in perf["evaluated_on"]
    (tiny_dataset_dir / "images" / "img_002.png").unlink()  # a test row becomes invalid
    dropped = load_dataset(tiny_dataset_dir, on_invalid="drop")
    audit = auditkit.run_audit(model=model, dataset=dropped,
                               config=auditkit.AuditConfig(n_boot=20))
    assert audit["results"]["performance"]["n"] == 7


def test_split_as_a_column_of_the_dataset_table(tmp_path: Path, tiny_dataset_dir: Path,
                                                brightness_model_dir: Path) -> None:
    table = pd.read_csv(tiny_dataset_dir / "table.csv")
    table["fold"] = ["test" if i >= 18 else "train" for i in range(len(table))]
    table.to_csv(tiny_dataset_dir / "table.csv", index=False)
    toml = tiny_dataset_dir / "auditkit.toml"
    toml.write_text(toml.read_text().replace('patient_column = "patient_id"\n',
                                             'patient_column = "patient_id"\n'
                                             'split_column = "fold"\n'))
    # the model's own split.csv is ignored when the dataset names its split
    _split(brightness_model_dir, [("nothing/matches.png", "test")])
    assert main(["audit", "--model", str(brightness_model_dir), "--dataset",
                 str(tiny_dataset_dir), "--out", str(tmp_path / "a"), "--n-boot", "50"]) == 0
    perf = json.loads((tmp_path / "a" / "audit.json").read_text())["results"]["performance"]
    assert perf["n"] == 6 and perf["evaluation_source"] == "split column fold"


def test_no_split_at_all_says_so_first(tmp_path: Path, tiny_dataset_dir: Path,
                                       brightness_model_dir: Path) -> None:
    assert main(["audit", "--model", str(brightness_model_dir), "--dataset",
                 str(tiny_dataset_dir), "--out", str(tmp_path / "a"), "--n-boot", "50"]) == 0
    perf = json.loads((tmp_path / "a" / "audit.json").read_text())["results"]["performance"]
    assert perf["summary"][0].startswith("Training images may be included in this measurement")
    assert "because no split says which images were held out" in perf["summary"][0]
    assert main(["audit", "--model", str(brightness_model_dir), "--dataset",
                 str(tiny_dataset_dir), "--out", str(tmp_path / "b"), "--evaluate-on",
                 "test"]) == 2


# --------------------------------------------------------------------------- CLI settings


def test_config_file_and_flags_set_every_audit_setting(tmp_path: Path, tiny_dataset_dir: Path,
                                                       brightness_model_dir: Path) -> None:
    config = tmp_path / "audit.toml"
    config.write_text('checks = "fairness"\nseed = 7\nn_boot = 60\nconfidence = 0.9\n'
                      'min_group_size = 3\nsmall_cell_k = 2\nevaluate_on = "all"\n'
                      'batch_size = 5\nintersections = [["sex", "site"]]\n'
                      '[options.fairness]\n')
    assert main(["audit", "--model", str(brightness_model_dir), "--dataset",
                 str(tiny_dataset_dir), "--out", str(tmp_path / "a"), "--config", str(config),
                 "--small-cell-k", "4", "--seed", "8"]) == 0
    got = json.loads((tmp_path / "a" / "audit.json").read_text())["config"]
    assert got["checks"] == ["performance", "fairness"]
    assert (got["seed"], got["n_boot"], got["confidence"]) == (8, 60, 0.9)  # flag beats file
    assert (got["min_group_size"], got["small_cell_k"], got["batch_size"]) == (3, 4, 5)
    assert got["evaluate_on"] == "all" and got["intersections"] == [["sex", "site"]]


def test_config_file_errors_exit_2(tmp_path: Path, tiny_dataset_dir: Path,
                                   brightness_model_dir: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "audit.toml"
    config.write_text("small_cell = 5\n")
    base = ["audit", "--model", str(brightness_model_dir), "--dataset", str(tiny_dataset_dir)]
    assert main([*base, "--config", str(config)]) == 2
    assert "has unknown settings ['small_cell']; expected among" in capsys.readouterr().err
    assert main([*base, "--config", str(tmp_path / "none.toml")]) == 2
    assert main([*base, "--confidence", "1.5"]) == 2
    assert "confidence must be in [0.5, 1); got 1.5" in capsys.readouterr().err


def test_help_documents_every_setting(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["audit", "--help"])
    text = capsys.readouterr().out
    for flag in ("--small-cell-k", "--n-boot", "--confidence", "--min-group-size", "--seed",
                 "--options", "--config", "--evaluate-on", "--intersection", "--precision",
                 "--batch-size", "--device", "--checks"):
        assert flag in text
    for field in auditkit.AuditConfig.__dataclass_fields__:
        assert field in text  # the config file's keys are listed too


# --------------------------------------------------------------------------- card schema


def test_card_errors_are_one_line_each_naming_the_field(brightness_model_dir: Path) -> None:
    data = json.loads((brightness_model_dir / "card.json").read_text())
    bad = {**data, "output": "sigmoid", "input_size": [224], "sha256": "abc",
           "normalisation": {}, "input_scaling": {"method": "window", "window": [40, 0]},
           "positive_class": "zebra"}
    del bad["task"]
    with pytest.raises(ModelError) as info:
        ModelCard.from_dict(bad)
    lines = str(info.value).splitlines()
    assert lines[0] == "Model card tiny@v1 is not valid (7 problem(s)):"
    problems = [line.strip() for line in lines[1:]]
    assert problems == card_problems(bad)
    assert problems == [
        "field 'task': expected a value (required field); found nothing",
        "field 'output': expected one of 'softmax', 'binary_logit', 'multilabel_sigmoid' or "
        "'segmentation'; found 'sigmoid'",
        "field 'input_size': expected at least 2 items after validation, not 1; found [224]",
        "field 'sha256': expected 64 lowercase hex digits (sha256sum of the weights file); "
        "found 'abc'",
        "field 'normalisation': expected one of the card fields (name, version, task, "
        "class_names, positive_class, output, input_size, channels, normalization, format, "
        "weights, sha256, architecture, architecture_kwargs, dataset, training_data, "
        "intended_use, out_of_scope_use, limitations, metrics, subgroups_evaluated, "
        "family_note, license, input_scaling, findings, segmentation); found an unknown field set to {}",
        # rules tying two fields together are reported in the same pass
        "field 'positive_class': expected one of class_names ['benign', 'malignant']; "
        "found 'zebra'",
        "field 'input_scaling.window': expected [center, width] with width >= 1; found [40, 0]",
    ]


def test_card_file_errors_name_the_file(brightness_model_dir: Path) -> None:
    card = brightness_model_dir / "card.json"
    card.write_text(card.read_text().replace('"channels": 3', '"channels": "3"'))
    with pytest.raises(ModelError, match=r"card.json is not valid \(1 problem\(s\)\):\n  "
                                         r"field 'channels': expected one of 1 or 3; found '3'"):
        ModelCard.from_file(card)


# --------------------------------------------------------------------------- registries


def test_registries_combine_and_clash(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    own = tmp_path / "hospital"
    write_model(own / "ours" / "v1", BrightnessNet(2), fmt="torchscript", name="ours")
    monkeypatch.setenv("AUDITKIT_MODELS", str(own))
    assert [m.card.ref for m in list_models()] == ["ours@v1"]  # replaces the demo models
    monkeypatch.setenv("AUDITKIT_MODELS", f"{own}{os.pathsep}@bundled")
    refs = [m.card.ref for m in list_models()]
    assert "ours@v1" in refs and "cxr-covid@v1" in refs and "derm-lesion@v2" in refs
    write_model(own / "copy" / "v1", BrightnessNet(2), fmt="torchscript", name="cxr-covid")
    with pytest.raises(ModelError, match="cxr-covid@v1 is registered twice"):
        list_models()


def test_dataset_registry_names_and_errors(tmp_path: Path, tiny_dataset_dir: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    reg = tmp_path / "dsreg"
    reg.mkdir()
    text = (tiny_dataset_dir / "auditkit.toml").read_text()
    (reg / "tiny.toml").write_text(f'root = "{tiny_dataset_dir}"\n' + text)
    monkeypatch.setenv("AUDITKIT_DATASET_REGISTRY", str(reg))
    assert dataset_names() == [*auditkit.builtin_dataset_names(), "tiny"]
    spec, root = find_dataset("tiny")
    assert root == tiny_dataset_dir and len(load_dataset("tiny")) == 24
    (reg / "clash.toml").write_text(text.replace('name = "tiny"', 'name = "covid_cxr"'))
    with pytest.raises(ConfigError, match="dataset name 'covid_cxr' is already taken by the "
                                          "built-in dataset"):
        dataset_names()
    (reg / "clash.toml").write_text(text.replace('kind = "sex"', 'kind = "gender"'))
    with pytest.raises(ConfigError, match=r"clash.toml: Attribute 'sex' has kind 'gender'"):
        dataset_names()
    # a broken registry file never hides a built-in dataset
    assert auditkit.dataset_spec("covid_cxr").name == "covid_cxr"


def test_attribute_without_column_must_be_a_dicom_header(tmp_path: Path) -> None:
    from auditkit.data import DatasetSpec

    base = {"name": "d", "table": "t.csv", "image_column": "f", "label_column": "y",
            "classes": ["a", "b"]}
    spec = DatasetSpec.from_dict({**base, "attributes": [{"name": "sex", "kind": "sex"}]})
    assert spec.attributes[0].column == ""
    with pytest.raises(ConfigError, match="Attribute 'site' of kind 'categorical' needs a table "
                                          "column; only \\['age', 'ethnicity', 'sex'\\]"):
        DatasetSpec.from_dict({**base, "attributes": [{"name": "site", "kind": "categorical"}]})
    with pytest.raises(ConfigError, match=r"\[\[attributes\]\] number 1 \('sex'\) lacks keys "
                                          r"\['kind'\]"):
        DatasetSpec.from_dict({**base, "attributes": [{"name": "sex"}]})


# --------------------------------------------------------------------------- a new user


@pytest.fixture
def hospital(tmp_path: Path, data_root: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """A model registry and a dataset registry set up as the two docs say."""
    data = tmp_path / "pacs_export"
    make_hospital_dicoms(data_root, data)
    models = tmp_path / "our_models"
    folder = make_hospital_model(models)
    datasets = tmp_path / "our_datasets"
    describe_hospital_dataset(datasets, data)
    monkeypatch.setenv("AUDITKIT_MODELS", f"{models}{os.pathsep}@bundled")
    monkeypatch.setenv("AUDITKIT_DATASET_REGISTRY", str(datasets))
    return {"data": data, "models": models, "model": folder, "datasets": datasets}


def test_new_user_audits_own_torchscript_model_on_own_dicoms(
        tmp_path: Path, hospital: dict[str, Path], data_root: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models"]) == 0
    listing = capsys.readouterr().out
    assert "cxr-hospital@v1" in listing and "cxr-covid@v1" in listing
    assert main(["datasets"]) == 0
    listing = capsys.readouterr().out
    assert f"hospital_cxr (registered): 40 images at {hospital['data']}" in listing
    assert "covid_cxr (built-in)" in listing
    # the model has no split: auto measures all images and says so; sex/age from headers only
    out = tmp_path / "audit"
    assert main(["audit", "--model", "cxr-hospital", "--dataset", "hospital_cxr", "--checks",
                 "fairness", "--n-boot", "100", "--small-cell-k", "5", "--out", str(out)]) == 0
    audit = json.loads((out / "audit.json").read_text())
    assert audit["model"]["pixel_pipeline"]["scaling"] == {"method": "bit_depth"}
    assert "full range of the stored bits" in audit["model"]["pixel_pipeline"]["description"]
    assert audit["dataset"]["attributes"] == {"sex": "sex", "age": "age"}
    assert audit["config"]["small_cell_k"] == 5
    assert audit["results"]["fairness"]["status"] == "assessed"
    preds = pd.read_csv(out / "predictions.csv")
    table = pd.read_csv(hospital["data"] / "table.csv")
    want = [expected_covid_probability(hospital["data"] / f) for f in table["file"]]
    assert preds["prob_covid"].tolist() == pytest.approx(want, abs=1e-5)
    counts = load_dataset("hospital_cxr").group_counts()["sex"]
    meta = pd.read_csv(data_root / "covid_cxr" / "metadata.csv", dtype=str,
                       keep_default_na=False).head(40)
    assert counts.get("female", 0) == int((meta["sex"] == "F").sum())
    assert counts.get("male", 0) == int((meta["sex"] == "M").sum())


# --------------------------------------------------------------------------- drafting


def test_drafts_from_an_image_folder_save_once(tmp_path: Path, data_root: Path) -> None:
    from PIL import Image

    from auditkit.drafts import draft_dataset, save_drafts, validate_drafts

    table = pd.read_csv(data_root / "covid_cxr" / "metadata.csv", dtype=str).head(12)
    folder = tmp_path / "by_class"
    for row in table.itertuples():
        label = "covid" if row.label_covid == "COVID-19" else "not_covid"
        (folder / label).mkdir(parents=True, exist_ok=True)
        Image.open(data_root / "covid_cxr" / row.image).save(folder / label / Path(row.image).name)
    notes: list[str] = []
    draft = draft_dataset(folder, notes=notes)
    assert draft["image_column"] == "image" and draft["label_column"] == "label"
    assert draft["classes"] == ["covid", "not_covid"]  # the sub-folder names
    assert "drafted table.csv from 12 image files" in " ".join(notes)
    problems = validate_drafts({}, draft)
    assert problems["dataset"] == ["the table table.csv will be written when saved; its 12 rows "
                                   "are checked then"]
    model = write_model(tmp_path / "incoming", BrightnessNet(2), fmt="torchscript",
                        class_names=["not_covid", "covid"], channels=3, size=16)
    card = json.loads((model / "card.json").read_text())
    saved = save_drafts(card=card, weights=model / card["weights"], dataset=draft,
                        model_registry=tmp_path / "reg", dataset_registry=tmp_path / "dreg")
    assert saved["table"] == folder / "table.csv" and saved["card"].is_file()
    assert len(load_dataset(saved["dataset"])) == 12
    with pytest.raises(ConfigError, match="exist already and were not overwritten: .*card.json"):
        save_drafts(card=card, weights=model / card["weights"], dataset=draft,
                    model_registry=tmp_path / "reg", dataset_registry=tmp_path / "dreg")


def test_uploaded_table_is_described_against_the_folder(tmp_path: Path,
                                                        tiny_dataset_dir: Path) -> None:
    from auditkit.drafts import draft_dataset

    uploaded = pd.read_csv(tiny_dataset_dir / "table.csv", dtype=str)
    draft = draft_dataset(tiny_dataset_dir, table=uploaded, table_name="upload.csv")
    assert draft["table"] == "upload.csv" and draft["root"] == str(tiny_dataset_dir.resolve())
    assert draft["_table"] is uploaded and draft["patient_column"] == "patient_id"
    assert [a["kind"] for a in draft["attributes"]] == ["sex", "age", "skin_tone", "categorical"]
    with pytest.raises(ConfigError, match="needs the folder its image paths are relative to"):
        draft_dataset(tiny_dataset_dir / "table.csv", table=uploaded)
