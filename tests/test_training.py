"""Training recipes are reproducible and split by patient."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch

import auditkit
from auditkit.training import (
    CONTROL_RECIPES,
    RECIPES,
    TRAINING_THREADS,
    Mark,
    deterministic_training,
    machine_kind,
    make_split,
    train_recipe,
)

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
    """Retraining cxr-covid@v1 gives the committed model, whatever the ambient thread count.

    The process runs with one thread here (as on a machine with another core count or
    OMP_NUM_THREADS); training must still use TRAINING_THREADS and restore the setting.
    Run it beside a CPU-heavy process too: load changes timing, never the numbers.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        folder = train_recipe("cxr-covid@v1", out_root=tmp_path, data_root=data_root,
                              device="cpu")
        assert torch.get_num_threads() == 1  # restored
    finally:
        torch.set_num_threads(before)
    assert not torch.are_deterministic_algorithms_enabled()  # restored
    committed = REPO / "models" / "cxr-covid" / "v1"
    new = json.loads((folder / "card.json").read_text())
    old = json.loads((committed / "card.json").read_text())
    log = json.loads((folder / "training_log.json").read_text())
    old_log = json.loads((committed / "training_log.json").read_text())
    assert log["threads"] == TRAINING_THREADS and log["deterministic_algorithms"] is True
    pd.testing.assert_frame_equal(pd.read_csv(folder / "split.csv"),
                                  pd.read_csv(committed / "split.csv"))
    if old_log.get("machine") == machine_kind():
        # same kind of machine: bit-identical weights and identical numbers
        assert new["sha256"] == old["sha256"]
        assert new["metrics"] == old["metrics"]
    else:  # another CPU family or torch version: within the card's intervals (its note)
        for key in old["metrics"]["overall"]:
            ci = old["metrics"]["overall"].get(f"{key}_ci")
            if ci and ci[0] is not None:
                assert ci[0] <= new["metrics"]["overall"][key] <= ci[1], key
    assert new["metrics"]["overall"]["n"] == old["metrics"]["overall"]["n"]
    assert auditkit.load_model(folder, device="cpu").card.output == "binary_logit"


def test_deterministic_training_sets_and_restores_torch_state() -> None:
    ambient = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(123)
    expected_next = torch.rand(1)
    torch.manual_seed(123)
    try:
        with deterministic_training(7, threads=2):
            assert torch.get_num_threads() == 2
            assert torch.are_deterministic_algorithms_enabled()
            assert not torch.is_deterministic_algorithms_warn_only_enabled()  # strict on CPU
            a = torch.rand(3)
        with deterministic_training(7, threads=2):
            assert torch.equal(torch.rand(3), a)  # seeded
        assert torch.get_num_threads() == 1
        assert not torch.are_deterministic_algorithms_enabled()
        assert torch.equal(torch.rand(1), expected_next)  # the caller's RNG stream untouched
    finally:
        torch.set_num_threads(ambient)


def test_mark_is_stamped_in_the_corner_only() -> None:
    x = torch.zeros(2, 3, 64, 64, dtype=torch.uint8)
    mark = Mark(colour=(255, 0, 255), size=0.125, corner="top_left")
    out = mark.apply(x)
    assert x.sum() == 0  # a copy
    assert (out[:, 0, :8, :8] == 255).all() and (out[:, 1, :8, :8] == 0).all()
    assert (out[:, 2, :8, :8] == 255).all()
    assert out[:, :, 8:, :].sum() == 0 and out[:, :, :, 8:].sum() == 0
    gray = mark.apply(torch.zeros(1, 1, 32, 32, dtype=torch.uint8))
    assert (gray[0, 0, :4, :4] == 170).all() and gray[0, 0, 4:, :].sum() == 0


def test_unknown_recipe() -> None:
    with pytest.raises(auditkit.ConfigError, match="No training recipe 'x@v1'; expected one of"):
        train_recipe("x@v1")
    with pytest.raises(auditkit.ConfigError, match="epochs must be >= 1; got 0 instead"):
        train_recipe("cxr-covid@v1", epochs=0)
    assert set(RECIPES) == {"derm-lesion@v1", "derm-lesion@v2", "cxr-covid@v1", "mri-tumor@v1"}
    assert all(ref.startswith("control-") for ref in CONTROL_RECIPES)
