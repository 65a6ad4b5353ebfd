"""Control models: each planted defect is found by the check built for it (docs/validation.md)."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import auditkit
from auditkit.controls import (
    detect_fragility,
    detect_group_failure,
    detect_memorisation,
    is_control,
    permuted_dataset,
    validate_controls,
)
from auditkit.training import (
    CONTROL_RECIPES,
    RECIPES,
    _recipe_json,
    model_folder,
    training_labels,
)

REPO = Path(__file__).resolve().parents[1]
MODELS = REPO / "models"


# --------------------------------------------------------------------------- the zoo

@pytest.mark.parametrize("ref", sorted(CONTROL_RECIPES))
def test_each_control_is_committed_with_a_card_that_warns_first(ref: str) -> None:
    recipe = CONTROL_RECIPES[ref]
    folder = model_folder(recipe, MODELS)
    assert folder == MODELS / "controls" / recipe.name / recipe.version
    first = (folder / "MODEL_CARD.md").read_text(encoding="utf-8").splitlines()[0]
    assert first.startswith("> **CONTROL MODEL") and "NEVER USE ON PATIENTS" in first
    if recipe.control.startswith("none"):
        assert "no defect planted" in first
    else:
        assert "DELIBERATELY FLAWED" in first and "Planted defect:" in first
        assert recipe.control in first
    card = json.loads((folder / "card.json").read_text())
    assert is_control(card) and card["intended_use"].startswith("CONTROL MODEL")
    registered = auditkit.resolve_model(ref)
    assert registered.folder == folder and registered.verify()
    log = json.loads((folder / "training_log.json").read_text())
    # the committed weights came from today's recipe, deterministically
    assert log["recipe"] == json.loads(json.dumps(_recipe_json(recipe)))
    assert log["threads"] == recipe.threads and log["deterministic_algorithms"] is True


def test_demo_models_are_not_controls_and_the_zoo_is_small() -> None:
    for ref in RECIPES:
        assert not is_control(auditkit.resolve_model(ref).card)
    size = sum(p.stat().st_size for p in (MODELS / "controls").rglob("*") if p.is_file())
    assert size < 4_000_000  # committed weights stay a few MB (the demo's are 1.2 MB each)


def test_group_failure_labels_are_corrupted_only_outside_the_test_split(data_root: Path) -> None:
    recipe = CONTROL_RECIPES["control-group-failure@v1"]
    ds = auditkit.load_dataset("fitzpatrick17k", data_root=data_root, check_images=False)
    split = pd.read_csv(model_folder(recipe, MODELS) / "split.csv", dtype=str)
    use = pd.Series(ds.records["image"].map(dict(zip(split["image"], split["split"]))))
    labels = training_labels(recipe, ds.records, use)
    light = ds.records["skin_type_group"] == "I-II"
    developer = use.isin(["train", "val"])
    assert (labels[developer & light] == "non-neoplastic").all()
    assert (ds.records.loc[developer & light, "label"] != "non-neoplastic").sum() > 500
    untouched = ~(developer & light)
    assert (labels[untouched] == ds.records.loc[untouched, "label"]).all()
    assert (use[light] == "test").sum() > 300  # the held-out truth has I-II images


def test_permuted_dataset_moves_only_the_group_labels(data_root: Path) -> None:
    ds = auditkit.load_dataset("fitzpatrick17k", data_root=data_root, check_images=False)
    perm = permuted_dataset(ds, seed=3)
    for col in ("image", "path", "label"):
        assert perm.records[col].equals(ds.records[col])
    for attr in ds.attribute_names:
        assert perm.records[attr].value_counts().equals(ds.records[attr].value_counts())
    assert (perm.records["skin_type"] != ds.records["skin_type"]).mean() > 0.5
    # attributes move together: the joint table is unchanged
    joint = ["skin_type", "skin_type_group"]
    assert (perm.records[joint].value_counts().sort_index()
            .equals(ds.records[joint].value_counts().sort_index()))
    assert ds.records["skin_type"].equals(
        auditkit.load_dataset("fitzpatrick17k", data_root=data_root,
                              check_images=False).records["skin_type"])  # original untouched


# --------------------------------------------------------------------------- detectors

def _gap(real: bool, worst: str) -> dict[str, Any]:
    return {"groups": [{"attribute": "skin_type_group", "n": 100}],
            "disparities": [{"attribute": "skin_type_group", "metric": "sensitivity",
                             "status": "assessed", "real": real, "worst_group": worst,
                             "best_group": "V-VI", "gap": 0.3, "gap_ci_adjusted": [0.1, 0.5],
                             "worst": 0.2, "n_worst": 50, "n_best": 50}]}


def test_detectors_follow_the_checks_public_output(tmp_path: Path) -> None:
    assert detect_group_failure(_gap(True, "I-II")).found
    assert not detect_group_failure(_gap(False, "I-II")).found
    assert not detect_group_failure(_gap(True, "III-IV")).found  # the wrong group
    assert not detect_group_failure({"groups": [], "disparities": []}).found
    privacy = {"n": 300, "n_members": 150, "n_nonmembers": 150,
               "overall": {"loss": {"auc": {"value": 0.55, "ci": [0.49, 0.61]}}}}
    assert not detect_memorisation(privacy).found
    privacy["overall"]["loss"]["auc"] = {"value": 0.7, "ci": [0.62, 0.78]}
    assert detect_memorisation(privacy).found

    def write(path: Path, success: list[bool]) -> Path:
        with open(path, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["image", "attack", "budget", "clean_prediction", "attacked_prediction",
                        "success", "label", "l2", "linf"])
            for i, s in enumerate(success):
                w.writerow([f"im{i}", "fgsm", "0.5/255", "a", "b" if s else "a", s, "a", 0, 0])
        return path

    rng = np.random.default_rng(0)
    same = list(rng.random(200) < 0.3)
    tie = detect_fragility(write(tmp_path / "f.csv", same), write(tmp_path / "r.csv", same))
    assert tie.effect == 0 and not tie.found
    worse = detect_fragility(write(tmp_path / "f2.csv", list(rng.random(200) < 0.8)),
                             tmp_path / "r.csv")
    assert worse.found and worse.ci[0] > 0
    with pytest.raises(auditkit.ConfigError, match="no image was attacked with pgd"):
        detect_fragility(tmp_path / "f.csv", tmp_path / "r.csv", attack="pgd")


# --------------------------------------------------------------------------- detection

@pytest.fixture(scope="module")
def validated(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Audit the committed controls once (nothing is trained): all slow tests read this."""
    from tests.conftest import real_data_root

    root = real_data_root()
    if root is None:
        pytest.skip("real datasets not found")
    out = tmp_path_factory.mktemp("validation")
    res = validate_controls(out, data_root=root, n_permutations=20, n_boot=300)
    res["out"] = out
    return res


def _detection(res: dict[str, Any], control: str, check: str) -> dict[str, Any]:
    return next(d for d in res["detections"] if d["control"] == control and d["check"] == check)


@pytest.mark.slow
def test_every_detection_reports_effect_interval_and_sample(validated: dict[str, Any]) -> None:
    assert len(validated["detections"]) == 5
    for d in validated["detections"]:
        lo, hi = d["ci"]
        assert lo is not None and lo <= d["effect"] <= hi, d
        assert d["n"] > 20
        # "found" is exactly "the interval excludes no defect, on the defect's side"
        if d["check"] != "fairness":
            assert d["found"] == (lo > d["no_defect"]), d


@pytest.mark.slow
def test_group_failure_is_found_by_the_fairness_check(validated: dict[str, Any]) -> None:
    d = _detection(validated, "control-group-failure@v1", "fairness")
    assert d["found"], d
    assert d["ci"][0] > d["no_defect"] and d["effect"] > 0.3
    assert "worst group I-II" in d["detail"]


@pytest.mark.slow
def test_shortcut_is_found_by_the_explanations_and_removing_the_mark(
        validated: dict[str, Any]) -> None:
    attr = _detection(validated, "control-shortcut@v1", "explain")
    assert attr["found"], attr
    assert attr["ci"][0] > attr["no_defect"]
    removal = _detection(validated, "control-shortcut@v1", "explain (mark removed)")
    assert removal["found"], removal
    assert removal["ci"][0] > 0
    r = validated["removal"]
    assert r["sensitivity_marked"] > r["sensitivity_clean"]
    # the audit data: the mark on every malignant test image, on no other image
    marked = auditkit.load_dataset(validated["out"] / "marked" / "auditkit.toml")
    from PIL import Image

    for _, row in marked.records.groupby("label").head(3).iterrows():
        corner = np.asarray(Image.open(row["path"]).convert("RGB"))[:8, :8]
        is_mark = bool((corner == [255, 0, 255]).all())
        assert is_mark == (row["label"] == "malignant")


@pytest.mark.slow
def test_fragile_model_is_found_by_the_robustness_check(validated: dict[str, Any]) -> None:
    d = _detection(validated, "control-fragile@v1", "robustness")
    assert d["found"], d
    assert d["ci"][0] > 0 and d["n"] >= 100
    # the reference keeps most of its correct answers at this budget; the fragile one not
    assert d["effect"] > 0.3


@pytest.mark.slow
def test_memoriser_is_found_by_the_privacy_check(validated: dict[str, Any]) -> None:
    d = _detection(validated, "control-memoriser@v1", "privacy")
    assert d["found"], d
    assert d["ci"][0] > 0.5 and d["effect"] > 0.6


@pytest.mark.slow
def test_null_control_calls_no_gap_real(validated: dict[str, Any]) -> None:
    null = validated["null_control"]
    assert null["first"] and not any(g["real"] for g in null["first"])
    assert null["n_permutations"] == 20
    # the gap test can call a gap real at all: 20 tests at family-wise 5% need > 400
    assert null["gap_test_permutations"] >= 1000
    # within the nominal family-wise 5% plus two Monte Carlo standard errors
    assert null["rate"] <= null["nominal"] + 2 * null["monte_carlo_se"]
