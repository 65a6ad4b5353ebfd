"""`auditkit audit` runs every check on the multi-label and the segmentation demo."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pandas as pd
import pytest

from auditkit.cli import main

REPO = Path(__file__).resolve().parents[1]


def _lgg_slice(data_root: Path, folder: Path) -> Path:
    """lgg_mri as its own description: every test-split slice and 6 training patients.

    Images and masks stay where they are (symbolic links into the shared folder, which the
    description lists in ``image_roots``); the split still matches its test keys.
    """
    source = data_root / "lgg_mri"
    table = pd.read_csv(source / "metadata.csv", dtype=str, keep_default_na=False)
    split = pd.read_csv(REPO / "models" / "mri-tumor-seg" / "v1" / "split.csv")
    role = table["image"].map(dict(zip(split["image"], split["split"])))
    train = sorted(set(table.loc[role == "train", "patient_id"]))[:6]
    keep = (role == "test") | table["patient_id"].isin(train)
    folder.mkdir(parents=True)
    table[keep].to_csv(folder / "metadata.csv", index=False)
    for sub in ("images", "masks"):
        (folder / sub).symlink_to(source / sub, target_is_directory=True)
    text = (REPO / "auditkit" / "datasets" / "lgg_mri.toml").read_text()
    text = text.replace('name = "lgg_mri"', 'name = "lgg_mri_slice"')
    text = text.replace('table = "metadata.csv"',
                        f'table = "metadata.csv"\nimage_roots = ["{source}"]')
    (folder / "auditkit.toml").write_text(text)
    return folder / "auditkit.toml"

CHECKS = "performance,fairness,explain,robustness,privacy"
OPTIONS = json.dumps({"explain": {"n_images": 4, "n_samples": 16},
                      "robustness": {"n_images": 24, "eps": ["1/255", "2/255"], "steps": 5}})


@pytest.mark.slow  # each under a minute or two on 2 shared cores; the second run is cached
@pytest.mark.parametrize(("model", "dataset", "evidence"), [
    ("cxr-findings@v1", "covid_cxr_findings", "attributions.npz"),
    ("mri-tumor-seg@v1", "lgg_mri_slice", "segmentation_masks.npz"),
])
def test_cli_audit_runs_every_check(data_root: Path, tmp_path: Path, model: str, dataset: str,
                                    evidence: str, capsys: pytest.CaptureFixture[str]) -> None:
    if dataset == "lgg_mri_slice":
        dataset = str(_lgg_slice(data_root, tmp_path / "lgg"))
    out = tmp_path / "audit"
    started = time.monotonic()
    rc = main(["audit", "--model", model, "--dataset", dataset, "--checks", CHECKS,
               "--device", "cpu", "--n-boot", "200", "--options", OPTIONS, "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    audit = json.loads((out / "audit.json").read_text())
    assert audit["model"]["output"] in ("multilabel_sigmoid", "segmentation")
    for check in CHECKS.split(","):
        result = audit["results"][check]
        assert result["status"] == "assessed", (check, result.get("reason"))
    assert audit["results"]["privacy"]["membership"]["status"] == "assessed"
    assert (out / evidence).is_file() and (out / "predictions.csv").is_file()
    first = time.monotonic() - started
    # the same audit again: predictions come from the cache
    rc = main(["audit", "--model", model, "--dataset", dataset, "--checks", "performance",
               "--device", "cpu", "--out", str(tmp_path / "again")])
    assert rc == 0
    again = json.loads((tmp_path / "again" / "audit.json").read_text())
    assert again["execution"]["predictions_from_cache"] is True
    assert first < 120, f"{model}: {first:.0f} s"
