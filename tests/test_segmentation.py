"""Segmentation models: the card, output checks, per-image metrics, evidence, the demo audit."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

import auditkit
from auditkit.exceptions import ModelError
from auditkit.models import ModelCard
from auditkit.predict import check_outputs
from auditkit.segmentation import (
    boundary_hd95,
    per_image_metrics,
    read_masks_file,
    write_masks_file,
)

REPO = Path(__file__).resolve().parents[1]


def _card(**over: object) -> dict:
    card = json.loads((REPO / "models" / "mri-tumor-seg" / "v1" / "card.json").read_text())
    card.update(over)
    return card


# --------------------------------------------------------------------------- the card


def test_demo_card_states_kind_activation_and_size() -> None:
    card = ModelCard.from_dict(_card())
    assert card.output == "segmentation"
    assert card.output_shape == (1, 64, 64)
    assert card.segmentation == {"activation": "sigmoid", "threshold": 0.5, "output_size": None}


@pytest.mark.parametrize(("change", "message"), [
    ({"segmentation": None},
     "field 'segmentation': expected {\"activation\": \"sigmoid\" or \"softmax\""),
    ({"class_names": ["background", "tumor", "edema"]},
     "field 'class_names': expected exactly two (background, foreground) for a sigmoid "
     "segmentation model"),
    ({"segmentation": {"activation": "logits"}},
     "field 'segmentation.activation': expected one of 'sigmoid' or 'softmax'"),
    ({"segmentation": {"activation": "sigmoid", "threshold": 1.5}},
     "field 'segmentation.threshold': expected less than 1"),
    ({"output": "softmax"}, "field 'segmentation': expected only for a segmentation model"),
])
def test_bad_segmentation_cards_say_what_was_expected(change: dict, message: str) -> None:
    with pytest.raises(ModelError, match="is not valid") as info:
        ModelCard.from_dict(_card(**change))
    assert message in str(info.value)


def test_output_size_changes_the_promised_shape() -> None:
    card = ModelCard.from_dict(_card(segmentation={"activation": "softmax", "threshold": 0.5,
                                                   "output_size": [32, 32]}))
    assert card.output_shape == (2, 32, 32)


# --------------------------------------------------------------------------- output shapes


def test_check_outputs_accepts_the_promised_masks() -> None:
    out = check_outputs(torch.zeros(3, 1, 64, 64), n_images=3, expected=(1, 64, 64), ref="m@1")
    assert out.shape == (3, 1, 64, 64) and out.dtype == np.float32


@pytest.mark.parametrize(("shape", "message"), [
    ((3, 1, 32, 32), "The masks are 32x32 pixels; state that size as segmentation.output_size"),
    ((3, 2, 64, 64), "It gives 2 channel(s) per pixel; the card's activation and class_names "
                     "call for 1."),
    ((3, 2), "That is one row per image: is this a classifier, not a segmentation model?"),
])
def test_check_outputs_refuses_wrong_mask_shapes(shape: tuple, message: str) -> None:
    with pytest.raises(ModelError) as info:
        check_outputs(torch.zeros(shape), n_images=3, expected=(1, 64, 64), ref="m@1")
    assert f"m@1 returned outputs of shape {shape} for 3 image(s)" in str(info.value)
    assert message in str(info.value)


def test_check_outputs_names_the_image_with_nan_pixels() -> None:
    out = torch.zeros(4, 1, 8, 8)
    out[2, 0, 3, 3] = float("nan")
    with pytest.raises(ModelError, match=r"NaN or infinite pixel logits for 1 image\(s\) of a "
                                         r"batch \(first: image 13\)"):
        check_outputs(out, n_images=4, expected=(1, 8, 8), ref="m@1", first=10)


# --------------------------------------------------------------------------- metrics


def _square(size: int, top: int, left: int, side: int) -> np.ndarray:
    m = np.zeros((size, size), bool)
    m[top:top + side, left:left + side] = True
    return m


def test_per_image_metrics_known_truth() -> None:
    ref = np.stack([_square(32, 8, 8, 10), _square(32, 8, 8, 10), np.zeros((32, 32), bool),
                    np.zeros((32, 32), bool), _square(32, 8, 8, 10)])
    pred = np.stack([_square(32, 8, 8, 10),          # identical
                     _square(32, 8, 13, 10),         # shifted 5 px: overlap 50
                     np.zeros((32, 32), bool),       # empty, correctly
                     _square(32, 0, 0, 3),           # false lesion
                     np.zeros((32, 32), bool)])      # missed lesion
    table = per_image_metrics(pred, ref)
    np.testing.assert_allclose(table["dice"].to_numpy()[[0, 1, 4]], [1.0, 0.5, 0.0])
    np.testing.assert_allclose(table["iou"].to_numpy()[[0, 1, 4]], [1.0, 50 / 150, 0.0])
    assert table["dice"].isna().tolist() == [False, False, True, True, False]
    assert table["missed"].tolist() == [False, False, False, False, True]
    assert table["false_lesion"].tolist() == [False, False, False, True, False]
    assert table["hd95_px"].iloc[0] == 0.0
    assert table["hd95_px"].iloc[1] == pytest.approx(5.0)
    assert np.isnan(table["hd95_px"].iloc[4])


def test_hd95_matches_a_brute_force_surface_distance() -> None:
    rng = np.random.default_rng(3)
    for _ in range(5):
        a = np.zeros((24, 24), bool)
        b = np.zeros((24, 24), bool)
        a[rng.integers(2, 8):rng.integers(12, 20), rng.integers(2, 8):rng.integers(12, 20)] = True
        b[rng.integers(4, 10):rng.integers(14, 22), rng.integers(4, 10):rng.integers(14, 22)] = True

        def edge(m: np.ndarray) -> np.ndarray:
            inner = m.copy()
            inner[1:-1, 1:-1] = (m[1:-1, 1:-1] & m[:-2, 1:-1] & m[2:, 1:-1] & m[1:-1, :-2]
                                 & m[1:-1, 2:])
            inner[0, :] = inner[-1, :] = inner[:, 0] = inner[:, -1] = False
            return np.argwhere(m & ~inner)

        ea, eb = edge(a), edge(b)
        d = np.sqrt(((ea[:, None, :] - eb[None, :, :]) ** 2).sum(-1))
        expected = max(np.percentile(d.min(1), 95), np.percentile(d.min(0), 95))
        assert boundary_hd95(a, b) == pytest.approx(expected)


def test_masks_file_round_trip_is_compact(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    masks = rng.random((50, 128, 128)) > 0.97
    write_masks_file(tmp_path / "m.npz", keys=[f"k{i}" for i in range(50)], masks=masks)
    keys, back = read_masks_file(tmp_path / "m.npz")
    assert keys == [f"k{i}" for i in range(50)]
    np.testing.assert_array_equal(back, masks)
    assert (tmp_path / "m.npz").stat().st_size < masks.size / 8 * 1.1  # about a bit a pixel


# --------------------------------------------------------------------------- the demo, real data


@pytest.fixture(scope="module")
def seg_audit(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, auditkit.Dataset]:
    from tests.conftest import real_data_root

    if real_data_root() is None:
        pytest.skip("real datasets not found")
    dataset = auditkit.load_dataset("lgg_mri")
    split = pd.read_csv(REPO / "models" / "mri-tumor-seg" / "v1" / "split.csv")
    test_images = set(split.loc[split["split"] == "test", "image"])
    patients = dataset.records.loc[dataset.records["image"].isin(test_images), "patient_id"]
    keep = dataset.records["patient_id"].isin(sorted(set(patients))[:12])
    sub = dataset.subset(keep.to_numpy())
    model = auditkit.load_model("mri-tumor-seg@v1", device="cpu")
    out = tmp_path_factory.mktemp("seg") / "audit"
    auditkit.run_audit(model=model, dataset=sub, out_dir=out,
                       config=auditkit.AuditConfig(checks=["performance", "fairness"],
                                                   n_boot=200, device="cpu", small_cell_k=0,
                                                   evaluate_on="test"))
    return out, sub


@pytest.mark.slow  # the demo U-Net on 12 patients' slices
def test_per_image_dice_recomputed_from_the_stored_evidence(seg_audit) -> None:
    out, sub = seg_audit
    frame = pd.read_csv(out / "predictions.csv")
    keys, masks = read_masks_file(out / "segmentation_masks.npz")
    assert keys == frame["image"].tolist()
    ref = np.stack([np.asarray(Image.open(sub.root / m).convert("L")) > 0
                    for m in sub.records["mask"]])
    inter = (masks & ref).reshape(len(ref), -1).sum(1)
    total = masks.reshape(len(ref), -1).sum(1) + ref.reshape(len(ref), -1).sum(1)
    lesion = ref.reshape(len(ref), -1).any(1)
    dice = np.where(lesion, 2 * inter / np.maximum(total, 1), np.nan)
    np.testing.assert_allclose(frame["dice"].to_numpy(), dice, equal_nan=True)
    assert frame["lesion"].tolist() == lesion.tolist()


@pytest.mark.slow
def test_group_dice_is_the_patient_level_mean_of_the_evidence(seg_audit) -> None:
    out, sub = seg_audit
    audit = json.loads((out / "audit.json").read_text())
    frame = pd.read_csv(out / "predictions.csv")
    frame["patient"] = sub.records["patient_id"].to_numpy()
    measured = frame[frame["evaluated"] & frame["lesion"]]
    perf = audit["results"]["performance"]["metrics"]
    expected = measured.groupby("patient")["dice"].mean().mean()
    assert perf["dice"]["value"] == pytest.approx(expected)
    lo, hi = perf["dice"]["ci"]
    assert lo < expected < hi
    for entry in audit["results"]["fairness"]["groups"]:
        rows = measured[measured[entry["attribute"]].astype(str) == entry["group"]]
        if entry["dice"]["value"] is None:
            assert rows.empty
            continue
        assert entry["dice"]["value"] == pytest.approx(
            rows.groupby("patient")["dice"].mean().mean())
        assert entry["dice"]["denominator"] == len(rows)
    lesion_rows = frame[frame["evaluated"] & frame["lesion"]]
    assert perf["missed_lesion_rate"]["value"] == pytest.approx(lesion_rows["missed"].mean())
    empty = frame[frame["evaluated"] & ~frame["lesion"]]
    assert perf["false_lesion_rate"]["value"] == pytest.approx(empty["false_lesion"].mean())


def test_new_audit_draft_recognises_a_segmentation_model(tmp_path: Path) -> None:
    from auditkit.drafts import draft_card

    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(),
                              torch.nn.Conv2d(4, 1, 1)).eval()
    torch.jit.save(torch.jit.trace(net, torch.zeros(2, 3, 32, 32)), str(tmp_path / "seg.pt"))
    notes: list[str] = []
    card = draft_card(tmp_path / "seg.pt", trusted=True, notes=notes)
    assert card["output"] == "segmentation"
    assert card["segmentation"] == {"activation": "sigmoid", "threshold": 0.5,
                                    "output_size": None}
    assert any("1 channel(s) of" in n and "so output is 'segmentation'" in n for n in notes)


def test_dice_gap_with_too_few_permutations_is_not_assessed() -> None:
    # known truth: group "b" segments far worse (Dice 0.3 against 0.9); 19 permutations
    # call it real, 10 cannot reach alpha = 0.05 and say so instead of "cannot tell"
    from auditkit.segmentation import fairness_table

    rng = np.random.default_rng(0)
    n = 120
    group = np.array(["a", "b"] * (n // 2))
    dice = np.clip(np.where(group == "a", 0.9, 0.3) + rng.normal(0, 0.05, n), 0, 1)
    per_image = pd.DataFrame({
        "lesion": True, "dice": dice, "iou": dice / (2 - dice), "hd95_px": 3.0,
        "missed": False, "false_lesion": False, "ref_area_px": 100, "pred_area_px": 100})
    records = pd.DataFrame({"site": group})
    patients = np.array([f"p{i // 2}" for i in range(n)])  # one patient per group pair
    patients = np.char.add(patients, group)

    def gap(n_permutations: int) -> dict:
        res = fairness_table(per_image, records, attributes=["site"], group_order={},
                             patients=patients, n_boot=50, n_permutations=n_permutations,
                             alpha=0.05, level=0.95, min_count=10, small_cell_k=0,
                             rng=np.random.default_rng(1))
        (d,) = res["disparities"]
        return d

    assert gap(19)["status"] == "assessed" and gap(19)["real"]
    blind = gap(10)
    assert blind["status"] == "not_assessed" and "real" not in blind
    assert "smallest possible p-value is 0.091" in blind["reason"]
