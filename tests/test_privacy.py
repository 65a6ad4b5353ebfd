"""Privacy check: membership inference attacks and the identifier scan."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import auditkit
from auditkit.exceptions import ConfigError
from auditkit.predict import load_image_tensor
from auditkit.privacy import (
    balanced_membership_sample,
    describe_exposure,
    evaluate_attack,
    membership_labels,
    metric_attack_scores,
    roc_curve_points,
    scan_dicom_headers,
    scan_table,
)
from tests.conftest import BrightnessNet, make_image_dataset, write_model

# --------------------------------------------------------------------------- attacks


def test_metric_attack_scores_match_their_definitions():
    proba = np.array([[0.9, 0.1], [0.2, 0.8], [0.5, 0.5]])
    y = np.array([0, 0, 1])
    s = metric_attack_scores(proba, y)
    np.testing.assert_allclose(s["loss"], np.log([0.9, 0.2, 0.5]))
    np.testing.assert_allclose(s["confidence"], [0.9, 0.8, 0.5])
    # Song & Mittal: Mentr = -(1-p_y) log p_y - sum_{i!=y} p_i log(1-p_i)
    mentr0 = -(0.1) * np.log(0.9) - 0.1 * np.log(0.9)
    mentr1 = -(0.8) * np.log(0.2) - 0.8 * np.log(0.2)
    np.testing.assert_allclose(s["entropy"][:2], [-mentr0, -mentr1])
    assert s["entropy"][0] > s["entropy"][1]  # the confidently right image looks like a member


def test_auc_and_low_fpr_tpr_against_sklearn_and_by_hand():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    member = np.r_[np.ones(300, bool), np.zeros(300, bool)]
    score = np.round(rng.normal(member * 0.5, 1.0), 1)  # rounded: many ties
    ev = evaluate_attack(score, member, clusters=None, n_boot=200, rng=np.random.default_rng(1))
    assert ev.auc == pytest.approx(roc_auc_score(member, score))
    lo, hi = ev.auc_ci
    assert lo < ev.auc < hi and hi - lo < 0.15
    # by hand: 3 members score above every non-member, then a non-member
    score = np.array([10.0, 9.0, 8.0, 7.0, 1.0, 0.5] + [0.0] * 100)
    member = np.array([True, True, True, False, True, True] + [False] * 100)
    ev = evaluate_attack(score, member, clusters=None, n_boot=0, rng=np.random.default_rng(0))
    assert ev.tpr_at_fpr["tpr_at_1pct_fpr"]["value"] == pytest.approx(1.0)  # 1 FP of 101 < 1%
    assert ev.tpr_at_fpr["tpr_at_0_1pct_fpr"]["value"] == pytest.approx(0.6)  # zero FP allowed
    assert ev.tpr_at_fpr["tpr_at_1pct_fpr"]["resolvable"] is True
    assert ev.tpr_at_fpr["tpr_at_0_1pct_fpr"]["resolvable"] is False
    curve = roc_curve_points(score, member)
    assert curve["fpr"][0] == 0.0 and curve["tpr"][-1] == 1.0
    assert np.all(np.diff(curve["tpr"]) >= 0)


def test_patient_bootstrap_is_wider_than_image_bootstrap_for_clustered_images():
    rng = np.random.default_rng(0)
    # 20 patients x 10 near-identical slices: 20 independent units, not 200
    patients = np.repeat(np.arange(20), 10)
    member = np.repeat(np.arange(20) % 2 == 0, 10)
    score = np.repeat(rng.normal(member[::10] * 0.8, 1.0), 10) + rng.normal(0, 0.01, 200)
    by_image = evaluate_attack(score, member, clusters=None, n_boot=300, rng=np.random.default_rng(1))
    by_patient = evaluate_attack(score, member, clusters=patients, n_boot=300,
                                 rng=np.random.default_rng(1))
    assert by_patient.n_patients == 20
    width = lambda ev: ev.auc_ci[1] - ev.auc_ci[0]  # noqa: E731
    assert width(by_patient) > 2 * width(by_image)


def test_balanced_sample_has_equal_sides_and_the_same_mix():
    rng = np.random.default_rng(0)
    n = 500
    strata = pd.DataFrame({"label": rng.choice(["a", "b"], n), "sex": rng.choice(["f", "m"], n)})
    # members are mostly 'a'/'f': unmatched, an attack could just recognise the mix
    member = rng.random(n) < np.where((strata["label"] == "a") & (strata["sex"] == "f"), 0.9, 0.3)
    idx = balanced_membership_sample(member, strata, np.random.default_rng(3))
    sub, mem = strata.iloc[idx], member[idx]
    assert mem.sum() == (~mem).sum() > 100
    pd.testing.assert_series_equal(sub[mem].value_counts().sort_index(),
                                   sub[~mem].value_counts().sort_index())
    again = balanced_membership_sample(member, strata, np.random.default_rng(3))
    np.testing.assert_array_equal(idx, again)
    capped = balanced_membership_sample(member, strata, np.random.default_rng(3), max_per_side=50)
    assert member[capped].sum() == 50 and (~member[capped]).sum() == 50


def test_membership_labels_reads_split_names():
    out = membership_labels(pd.Series(["train", "TEST", "val", "unused", "1", "no", "?", None]))
    assert out.tolist() == [True, False, False, False, True, False, pd.NA, pd.NA]


@pytest.mark.parametrize(("auc", "ci", "expected"), [
    (0.58, [0.55, 0.61], "somewhat better than a coin toss (AUC 0.58, 95% CI 0.55–0.61)"),
    (0.52, [0.46, 0.58], "could not tell whether a patient's image was used in training better "
                         "than a coin toss"),
    (0.93, [0.88, 0.97], "far better than a coin toss"),
])
def test_plain_language_finding(auc, ci, expected):
    assert expected in describe_exposure(auc, ci)


# --------------------------------------------------------------------------- end to end


class _MLP(torch.nn.Module):
    """A wide MLP on 8x8 images: enough capacity to memorise random labels."""

    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(192, 256),
                                       torch.nn.ReLU(), torch.nn.Linear(256, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def _fit(x: torch.Tensor, y: torch.Tensor, steps: int = 200) -> torch.nn.Module:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: one thread is 10x faster on a busy machine
    try:
        torch.manual_seed(0)
        model = _MLP()
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        for _ in range(steps):
            loss = torch.nn.functional.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
    finally:
        torch.set_num_threads(threads)
    return model.eval()


@pytest.fixture(scope="module")
def random_label_data(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """120 noise images with random labels (nothing to learn, everything to memorise).

    Patients 0-39 are audited: those with ``patient % 4 < 2`` are training members
    (sex, age, site and label are balanced between the sides); patients 40-59 are a
    disjoint set used to train a model that never saw any audited patient.
    """
    root = tmp_path_factory.mktemp("mia")
    toml = make_image_dataset(root / "data", n=120, size=8)
    table = pd.read_csv(root / "data" / "table.csv")
    rng = np.random.default_rng(1)
    table["age"] = 20 + (np.arange(len(table)) * 7) % 70
    table["label"] = np.where(rng.random(len(table)) < 0.5, "benign", "malignant")
    table.to_csv(root / "data" / "table.csv", index=False)
    full = auditkit.load_dataset(toml)
    x = torch.stack([load_image_tensor(p, input_size=(8, 8), channels=3)
                     for p in full.records["path"]]).float() / 255.0
    x = (x - 0.5) / 0.25  # the card's normalization, as write_model writes it
    y = torch.tensor(full.records["label_index"].to_numpy())
    patient = full.records["patient_id"].str[1:].astype(int).to_numpy()
    member = (patient % 4 < 2) & (patient < 40)
    split = np.where(member, "train", np.where(patient < 40, "test", "unused"))
    models = {}
    for name, train in (("overfit", member), ("never_saw", patient >= 40)):
        idx = torch.tensor(np.flatnonzero(train))
        folder = write_model(root / "reg" / name / "v1", _fit(x[idx], y[idx]), fmt="torchscript",
                             size=8, name=name)
        pd.DataFrame({"image": full.records["image"], "split": split}).to_csv(
            folder / "split.csv", index=False)
        models[name] = folder
    return {"dataset": full.subset(patient < 40), "models": models, "root": root}


def _audit(model_folder: Path, dataset: auditkit.Dataset, out: Path | None = None,
           **options) -> dict:
    model = auditkit.load_model(model_folder, device="cpu")
    config = auditkit.AuditConfig(checks=["privacy"], n_boot=300, small_cell_k=1,
                                  options={"privacy": options} if options else {})
    return auditkit.run_audit(model=model, dataset=dataset, config=config, out_dir=out)


def test_attack_finds_a_deliberately_overfitted_model(random_label_data: dict, tmp_path: Path):
    audit = _audit(random_label_data["models"]["overfit"], random_label_data["dataset"],
                   tmp_path / "out")
    mia = audit["results"]["privacy"]["membership"]
    assert mia["status"] == "assessed"
    assert mia["n_members"] == mia["n_nonmembers"] >= 30
    assert mia["resampling_unit"] == "patient"
    loss = mia["overall"]["loss"]
    assert loss["auc"]["value"] > 0.85 and loss["auc"]["ci"][0] > 0.7
    assert loss["tpr_at_1pct_fpr"]["value"] > 0.1  # chance: 0.01
    assert "better than a coin toss" in mia["finding"] and "could not" not in mia["finding"]
    groups = {(g["attribute"], g["group"]): g for g in mia["groups"]}
    female = groups[("sex", "female")]
    assert female["n_members"] > 0 and female["n_nonmembers"] > 0
    assert female["attacks"]["loss"]["auc"]["value"] > 0.8
    scores = pd.read_csv(tmp_path / "out" / "membership_scores.csv")
    assert list(scores.columns) == ["image", "member", "loss", "confidence", "entropy",
                                    "audience"]  # the file states its audience
    assert len(scores) == mia["n"] and scores["member"].sum() == mia["n_members"]
    assert mia["roc"]["loss"]["tpr"][-1] == 1.0


def test_attack_does_not_find_a_model_that_never_saw_the_members(random_label_data: dict):
    audit = _audit(random_label_data["models"]["never_saw"], random_label_data["dataset"])
    mia = audit["results"]["privacy"]["membership"]
    for attack in ("loss", "confidence", "entropy"):
        lo, hi = mia["overall"][attack]["auc"]["ci"]
        assert lo < 0.5 < hi, (attack, lo, hi)
    assert "could not tell" in mia["finding"]


def test_member_column_option_and_missing_split(random_label_data: dict, tmp_path: Path):
    dataset = random_label_data["dataset"]
    folder = write_model(tmp_path / "reg" / "plain" / "v1", BrightnessNet(2), fmt="torchscript",
                         size=8)
    audit = _audit(folder, dataset)
    mia = audit["results"]["privacy"]["membership"]
    assert mia["status"] == "not_assessed" and "split.csv" in mia["reason"]
    table_path = dataset.root / dataset.spec.table
    table = pd.read_csv(table_path)
    table["in_training"] = np.where(table["patient_id"].str[1:].astype(int) % 2, "yes", "no")
    table.to_csv(table_path, index=False)
    try:
        audit = _audit(folder, dataset, member_column="in_training")
    finally:
        table.drop(columns="in_training").to_csv(table_path, index=False)
    mia = audit["results"]["privacy"]["membership"]
    assert mia["status"] == "assessed" and "in_training" in mia["source"]
    with pytest.raises(ConfigError, match="privacy member_column: expected a column of"):
        _audit(folder, dataset, member_column="nope")
    with pytest.raises(ConfigError, match="privacy mode must be one of .*; got 'slow' instead"):
        _audit(folder, dataset, mode="slow")
    with pytest.raises(ConfigError, match=r"Unknown privacy option\(s\) \['modes'\]"):
        _audit(folder, dataset, modes="fast")


def test_thorough_mode_trains_reference_models_and_reports_time(random_label_data: dict):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        audit = _audit(random_label_data["models"]["overfit"], random_label_data["dataset"],
                       mode="thorough", n_reference=2, epochs=2)
    finally:
        torch.set_num_threads(threads)
    mia = audit["results"]["privacy"]["membership"]
    assert "calibrated" in mia["overall"]
    assert mia["thorough"]["n_reference"] == 2 and mia["thorough"]["estimated_seconds"] > 0
    assert mia["thorough"]["seconds"] > 0
    # the calibrated attack still sees the memorisation
    assert mia["overall"]["calibrated"]["auc"]["value"] > 0.7
    with pytest.raises(ConfigError, match="n_reference must be an even number >= 2; got 3"):
        _audit(random_label_data["models"]["overfit"], random_label_data["dataset"],
               mode="thorough", n_reference=3)


# --------------------------------------------------------------------------- identifiers

PLANTED = {
    "Jane Doe": "patient_name", "jane.doe@example.org": "contact", "555-867-5309": "contact",
    "1956-03-14": "dob", "MRN 00123456": "notes", "12 Baker Street": "address",
}


def test_table_scan_finds_planted_identifiers_and_never_shows_values():
    table = pd.DataFrame({
        "image": ["a_20200125.png", "b.png", "c.png"],
        "patient_name": ["Jane Doe", "John Roe", ""],
        "contact": ["jane.doe@example.org", "555-867-5309", ""],
        "dob": ["1956-03-14", "1960-01-01", ""],
        "notes": ["MRN 00123456", "", "fine"],
        "address": ["12 Baker Street", "", ""],
        "patient_id": ["P1", "P2", "P3"],
        "age": ["45", "60", "71"],
        "orig_size": ["790x631", "417x342", "256x256"],
        "md5": ["fd06d13de341cc75ad679916c5d7e6a6", "a4bb4e5206c4e89a303f470576fc5253", "00"],
    })
    findings = scan_table(table, patient_column="patient_id")
    found = {(f["column"], f["kind"]) for f in findings}
    assert {("patient_name", "name"), ("contact", "email"), ("contact", "phone"),
            ("dob", "date_of_birth"), ("notes", "record_number"), ("address", "address"),
            ("image", "date"), ("patient_id", "patient_id")} <= found
    assert not {c for c, _ in found} & {"age", "orig_size", "md5"}
    dob = next(f for f in findings if f["column"] == "dob")
    assert dob["found_by"] == "column name and values" and dob["n_values"] == 2
    text = json.dumps(findings)
    for value in PLANTED:
        assert value not in text


def _write_dicom(path: Path, *, identified: bool, seed: int = 0) -> None:
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=[str(path)])
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "OT"
    ds.PatientSex = "F"
    ds.PatientAge = "045Y"
    if identified:
        ds.PatientName = "Doe^Jane"
        ds.PatientID = "00123456"
        ds.PatientBirthDate = "19560314"
        ds.PatientIdentityRemoved = "NO"
        ds.BurnedInAnnotation = "YES"
    else:
        ds.PatientIdentityRemoved = "YES"
        ds.DeidentificationMethod = "tested"
        ds.BurnedInAnnotation = "NO"
    arr = np.random.default_rng(seed).integers(0, 255, (8, 8), dtype=np.uint8)
    ds.Rows, ds.Columns = arr.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = arr.tobytes()
    ds.save_as(str(path), enforce_file_format=True)


def test_dicom_header_scan_finds_planted_identifiers_and_markers(tmp_path: Path):
    paths = []
    for i in range(3):
        paths.append(tmp_path / f"im{i}.dcm")
        _write_dicom(paths[-1], identified=i == 0, seed=i)
    (tmp_path / "broken.dcm").write_bytes(b"not a dicom file")
    out = scan_dicom_headers([*paths, tmp_path / "broken.dcm"])
    assert out["n_files"] == 3 and out["n_unreadable"] == 1
    tags = {t["tag"]: t for t in out["tags"]}
    assert set(tags) == {"PatientName", "PatientID", "PatientBirthDate"}
    assert tags["PatientName"]["kind"] == "name" and tags["PatientName"]["n_files"] == 1
    assert out["markers"]["PatientIdentityRemoved"] == {"YES": 2, "NO": 1, "absent": 0}
    assert out["markers"]["BurnedInAnnotation"] == {"YES": 1, "NO": 2, "absent": 0}
    assert out["n_with_deidentification_method"] == 2
    text = json.dumps(out)
    assert "Doe" not in text and "19560314" not in text and "00123456" not in text


def test_privacy_check_scans_a_dicom_dataset_end_to_end(tmp_path: Path):
    data = tmp_path / "dcm"
    (data / "images").mkdir(parents=True)
    rows = []
    for i in range(12):
        _write_dicom(data / "images" / f"{i}.dcm", identified=i < 2, seed=i)
        rows.append({"image": f"images/{i}.dcm", "label": ["benign", "malignant"][i % 2],
                     "patient_id": f"p{i}", "email": "x@y.org" if i == 3 else ""})
    pd.DataFrame(rows).to_csv(data / "table.csv", index=False)
    (data / "auditkit.toml").write_text(
        'name = "dcm"\ntable = "table.csv"\nimage_column = "image"\nlabel_column = "label"\n'
        'classes = ["benign", "malignant"]\npatient_column = "patient_id"\n'
        '[[attributes]]\nname = "sex"\ncolumn = "sex"\nkind = "sex"\n')
    dataset = auditkit.load_dataset(data / "auditkit.toml")
    folder = write_model(tmp_path / "reg" / "g" / "v1", BrightnessNet(2), fmt="torchscript",
                         channels=1, size=8)
    ids = _audit(folder, dataset)["results"]["privacy"]["identifiers"]
    assert ids["dicom"]["n_files"] == 12
    assert {t["tag"] for t in ids["dicom"]["tags"]} == {"PatientName", "PatientID",
                                                         "PatientBirthDate"}
    assert ids["dicom"]["markers"]["BurnedInAnnotation"]["YES"] == 2
    assert ("email", "email") in {(f["column"], f["kind"]) for f in ids["table"]["findings"]}
    assert "burned into the pixels" in ids["finding"]
    assert ids["values_shown"] is False and "x@y.org" not in json.dumps(ids)


# --------------------------------------------------------------------------- real data


@pytest.mark.slow
def test_membership_on_a_demo_model_slice(data_root: Path):
    from tests.conftest import demo_models_present

    if not demo_models_present():
        pytest.skip("demo models not trained yet")
    model = auditkit.load_model("derm-lesion@v1", device="cpu")
    dataset = auditkit.load_dataset("fitzpatrick17k", data_root=data_root, check_images=False)
    dataset = dataset.subset(np.arange(len(dataset)) % 10 == 0)  # ~400 images
    config = auditkit.AuditConfig(checks=["privacy"], n_boot=200,
                                  options={"privacy": {"scan_identifiers": True}})
    audit = auditkit.run_audit(model=model, dataset=dataset, config=config)
    mia = audit["results"]["privacy"]["membership"]
    assert mia["status"] == "assessed" and mia["n_members"] == mia["n_nonmembers"] > 50
    assert mia["resampling_unit"] == "image"
    lo, hi = mia["overall"]["loss"]["auc"]["ci"]
    assert 0.3 < lo <= hi < 1.0
    ids = audit["results"]["privacy"]["identifiers"]
    kinds = {(f["column"], f["kind"]) for f in ids["table"]["findings"]}
    assert ("url", "url") in kinds


def test_finding_does_not_claim_a_false_alarm_rate_it_could_not_measure():
    text = describe_exposure(0.61, [0.49, 0.71], 0.068, resolvable=False)
    assert "Without wrongly accusing anyone" in text and "1 in 100" not in text
    assert "1 in 100" in describe_exposure(0.61, [0.59, 0.64], 0.023, resolvable=True)


def test_privacy_refuses_small_cell_k_zero():
    """k = 0 would publish per-group exposure of groups of one patient: refused, with why."""
    with pytest.raises(auditkit.ConfigError, match=r"got k = 0\. With k = 0 the per-group"):
        auditkit.AuditConfig(checks=["privacy"], small_cell_k=0)
    auditkit.AuditConfig(checks=["fairness"], small_cell_k=0)  # other checks keep the switch
    from auditkit.privacy import membership_groups_table

    with pytest.raises(auditkit.ConfigError, match="Small-cell protection must hide"):
        membership_groups_table({"groups": []}, k=0)
