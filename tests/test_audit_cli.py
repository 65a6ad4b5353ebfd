"""The audit runner and the auditkit command."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

import auditkit
from auditkit.cli import main


def test_audit_json_schema(tmp_path: Path, tiny_dataset_dir: Path,
                           brightness_model_dir: Path) -> None:
    rc = main(["audit", "--model", str(brightness_model_dir), "--dataset", str(tiny_dataset_dir),
               "--out", str(tmp_path / "out"), "--n-boot", "200", "--device", "cpu"])
    assert rc == 0
    audit = json.loads((tmp_path / "out" / "audit.json").read_text())
    assert audit["schema_version"] == auditkit.SCHEMA_VERSION
    assert audit["auditkit_version"] == auditkit.__version__
    assert audit["model"]["name"] == "tiny" and len(audit["model"]["sha256"]) == 64
    assert audit["dataset"]["n_images"] == 24 and len(audit["dataset"]["hash"]) == 64
    assert audit["config"]["seed"] == 0 and audit["config"]["n_boot"] == 200
    perf = audit["results"]["performance"]
    assert perf["metrics"]["accuracy"]["value"] == 1.0 and perf["n"] == 24
    assert perf["resampling_unit"] == "patient" and perf["n_patients"] == 12
    frame = pd.read_csv(tmp_path / "out" / "predictions.csv")
    assert len(frame) == 24 and (frame["label"] == frame["pred"]).all()


def test_same_inputs_same_audit(tmp_path: Path, tiny_dataset_dir: Path,
                                brightness_model_dir: Path) -> None:
    model = auditkit.load_model(brightness_model_dir, device="cpu")
    ds = auditkit.load_dataset(tiny_dataset_dir)
    cfg = auditkit.AuditConfig(checks=["performance", "fairness"], n_boot=100)
    a = auditkit.run_audit(model=model, dataset=ds, config=cfg)
    b = auditkit.run_audit(model=model, dataset=ds, config=cfg)
    a.pop("created_at"), b.pop("created_at")
    a["execution"].pop("predictions_from_cache"), b["execution"].pop("predictions_from_cache")
    assert a == b


def test_bad_input_exits_2_with_message(tmp_path: Path, tiny_dataset_dir: Path,
                                        brightness_model_dir: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", "--model", "nope@v1", "--dataset", str(tiny_dataset_dir)]) == 2
    assert "No model 'nope@v1'" in capsys.readouterr().err
    assert main(["audit", "--model", str(brightness_model_dir), "--dataset", "nowhere"]) == 2
    assert "Unknown dataset 'nowhere'" in capsys.readouterr().err
    assert main(["audit", "--model", str(brightness_model_dir), "--dataset",
                 str(tiny_dataset_dir), "--checks", "magic"]) == 2
    assert "Unknown check(s) ['magic']" in capsys.readouterr().err


def test_failed_audit_keeps_earlier_audit(tmp_path: Path, tiny_dataset_dir: Path,
                                          brightness_model_dir: Path) -> None:
    out = tmp_path / "out"
    assert main(["audit", "--model", str(brightness_model_dir), "--dataset",
                 str(tiny_dataset_dir), "--out", str(out), "--n-boot", "50"]) == 0
    before = (out / "audit.json").read_text()
    table = tiny_dataset_dir / "table.csv"
    df = pd.read_csv(table, dtype=str)
    df.loc[0, "label"] = "??"
    df.to_csv(table, index=False)
    assert main(["audit", "--model", str(brightness_model_dir), "--dataset",
                 str(tiny_dataset_dir), "--out", str(out)]) == 2
    assert (out / "audit.json").read_text() == before


def test_drop_invalid_goes_on(tmp_path: Path, tiny_dataset_dir: Path,
                              brightness_model_dir: Path) -> None:
    table = tiny_dataset_dir / "table.csv"
    df = pd.read_csv(table, dtype=str)
    df.loc[0, "image"] = "images/gone.png"
    df.to_csv(table, index=False)
    assert main(["audit", "--model", str(brightness_model_dir), "--dataset",
                 str(tiny_dataset_dir), "--out", str(tmp_path / "o"), "--drop-invalid",
                 "--n-boot", "50"]) == 0
    audit = json.loads((tmp_path / "o" / "audit.json").read_text())
    assert audit["dataset"]["n_images"] == 23 and audit["dataset"]["n_invalid_rows_dropped"] == 1


def test_models_command_lists_registry(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "derm-lesion@v1" in out and "mri-tumor@v1" in out and "NO -" not in out


def test_import_does_not_pull_streamlit() -> None:
    import subprocess
    import sys

    code = "import sys, auditkit, auditkit.cli, auditkit.fairness; print('streamlit' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_public_api_names_exist() -> None:
    for name in auditkit.__all__:
        assert hasattr(auditkit, name), name
    assert sorted(auditkit.__all__) == sorted(set(auditkit.__all__))


@pytest.mark.slow
@pytest.mark.parametrize(("model", "dataset"), [
    ("derm-lesion@v1", "fitzpatrick17k"), ("derm-lesion@v2", "fitzpatrick17k"),
    ("cxr-covid@v1", "covid_cxr"), ("mri-tumor@v1", "lgg_mri"),
])
def test_demo_audits_run_end_to_end(tmp_path: Path, data_root: Path, model: str,
                                    dataset: str) -> None:
    out = tmp_path / "a"
    assert main(["audit", "--model", model, "--dataset", dataset, "--out", str(out),
                 "--n-boot", "200", "--data-root", str(data_root)]) == 0
    audit = json.loads((out / "audit.json").read_text())
    perf = audit["results"]["performance"]
    assert "held-out test split" in perf["evaluated_on"]
    card = auditkit.resolve_model(model).card
    # the audit reproduces the card's test accuracy
    assert perf["metrics"]["accuracy"]["value"] == pytest.approx(
        card.metrics["overall"]["accuracy"], abs=1e-3)


def test_no_export_contains_a_patient_id(tmp_path: Path, tiny_dataset_dir: Path,
                                         brightness_model_dir: Path) -> None:
    table = tiny_dataset_dir / "table.csv"
    df = pd.read_csv(table, dtype=str)
    df["patient_id"] = [f"PID-ZQ-{i // 2:04d}" for i in range(len(df))]
    df.to_csv(table, index=False)
    out = tmp_path / "all"
    options = {"explain": {"n_images": 4, "n_samples": 4, "sanity_images": 2},
               "robustness": {"n_images": 6, "attacks": ["fgsm"], "eps": ["2/255"],
                              "n_images_corruptions": 4, "corruptions": ["gaussian_noise"]}}
    assert main(["audit", "--model", str(brightness_model_dir), "--dataset",
                 str(tiny_dataset_dir), "--out", str(out), "--n-boot", "50",
                 "--checks", "fairness,explain,robustness,privacy",
                 "--options", json.dumps(options)]) == 0
    files = [p for p in out.iterdir() if p.suffix in (".json", ".csv")]
    assert {"audit.json", "predictions.csv"} <= {p.name for p in files}
    for path in files:
        assert "PID-ZQ-" not in path.read_text(encoding="utf-8"), path.name
