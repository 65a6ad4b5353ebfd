"""`auditkit audit` runs every check on the multi-label and the segmentation demo."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from auditkit.cli import main

CHECKS = "performance,fairness,explain,robustness,privacy"
OPTIONS = json.dumps({"explain": {"n_images": 4, "n_samples": 16},
                      "robustness": {"n_images": 32, "eps": ["1/255", "2/255"], "steps": 5}})


@pytest.mark.slow  # each under a minute or two on 2 shared cores; the second run is cached
@pytest.mark.parametrize(("model", "dataset", "evidence"), [
    ("cxr-findings@v1", "covid_cxr_findings", "attributions.npz"),
    ("mri-tumor-seg@v1", "lgg_mri", "segmentation_masks.npz"),
])
def test_cli_audit_runs_every_check(data_root: Path, tmp_path: Path, model: str, dataset: str,
                                    evidence: str, capsys: pytest.CaptureFixture[str]) -> None:
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
    assert first < 240, f"{model}: {first:.0f} s"
