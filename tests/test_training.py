"""Training recipes are reproducible and split by patient."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

import auditkit
from auditkit.training import RECIPES, make_split, train_recipe

REPO = Path(__file__).resolve().parents[1]


def test_splits_keep_patients_on_one_side_and_cover_groups(data_root: Path) -> None:
    ds = auditkit.load_dataset("lgg_mri", data_root=data_root)
    split = make_split(ds, strata=("race", "ethnicity"), test_fraction=0.2, val_fraction=0.1,
                       seed=0)
    per_patient = split.groupby(ds.records["patient_id"]).nunique()
    assert (per_patient == 1).all()
    test = ds.records[split == "test"]
    assert {"black or african american", "white"} <= set(test["race"])
    assert "hispanic or latino" in set(test["ethnicity"])


def test_committed_split_matches_recipe(data_root: Path) -> None:
    committed = pd.read_csv(REPO / "models" / "derm-lesion" / "v1" / "split.csv")
    v2 = pd.read_csv(REPO / "models" / "derm-lesion" / "v2" / "split.csv")
    # same test set for both versions; v1 never trained on skin types V-VI
    assert (committed["split"] == "test").equals(v2["split"] == "test")
    ds = auditkit.load_dataset("fitzpatrick17k", data_root=data_root)
    trained = ds.records["image"].isin(committed.loc[committed["split"] == "train", "image"])
    assert set(ds.records.loc[trained, "skin_type_group"]) == {"I-II", "III-IV"}
    assert set(ds.records.loc[committed["split"].eq("test").to_numpy(), "skin_type_group"]) == {
        "I-II", "III-IV", "V-VI", "unknown"}


@pytest.mark.slow
def test_retraining_reproduces_committed_model(tmp_path: Path, data_root: Path) -> None:
    folder = train_recipe("cxr-covid@v1", out_root=tmp_path, data_root=data_root, device="cpu")
    new = json.loads((folder / "card.json").read_text())
    old = json.loads((REPO / "models" / "cxr-covid" / "v1" / "card.json").read_text())
    for key, value in old["metrics"]["overall"].items():
        if isinstance(value, list):  # interval bounds
            assert new["metrics"]["overall"][key] == pytest.approx(value, abs=0.02), key
        else:
            assert new["metrics"]["overall"][key] == pytest.approx(value, abs=1e-3), key
    pd.testing.assert_frame_equal(pd.read_csv(folder / "split.csv"),
                                  pd.read_csv(REPO / "models" / "cxr-covid" / "v1" / "split.csv"))
    assert auditkit.load_model(folder, device="cpu").card.output == "binary_logit"


def test_unknown_recipe() -> None:
    with pytest.raises(auditkit.ConfigError, match="No training recipe 'x@v1'; expected one of"):
        train_recipe("x@v1")
    with pytest.raises(auditkit.ConfigError, match="epochs must be >= 1; got 0 instead"):
        train_recipe("cxr-covid@v1", epochs=0)
    assert set(RECIPES) == {"derm-lesion@v1", "derm-lesion@v2", "cxr-covid@v1", "mri-tumor@v1"}
