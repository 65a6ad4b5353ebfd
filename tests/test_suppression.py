"""Small-cell protection: the rule, complementary suppression, and every export."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import auditkit
from auditkit.exceptions import ConfigError
from auditkit.suppression import (
    apply_small_cell_policy,
    suppress_counts,
    suppress_frame,
    suppress_group_rows,
    suppress_group_table,
    suppressed_label,
)
from tests.conftest import BrightnessNet, make_image_dataset, write_model


def _row(attr: str, group: str, n: int, value: float = 0.5) -> dict:
    return {"attribute": attr, "group": group, "n": n, "n_patients": n, "too_few": n < 10,
            "accuracy": {"value": value, "ci": [value - 0.1, value + 0.1]}}


def test_rows_below_k_are_blanked_but_keep_their_name():
    rows = [_row("sex", "female", 40), _row("sex", "male", 30), _row("sex", "other", 3),
            _row("sex", "unknown", 5)]
    out = suppress_group_rows(rows, k=10)
    assert [r["n"] for r in out] == [40, 30, None, None]
    hidden = out[2]
    assert hidden == {"attribute": "sex", "group": "other", "n": None, "n_patients": None,
                      "too_few": True, "accuracy": None, "suppressed": True}
    assert rows[2]["n"] == 3  # input untouched


def test_single_hidden_cell_triggers_complementary_suppression():
    rows = [_row("site", "a", 50), _row("site", "b", 12), _row("site", "c", 20),
            _row("site", "d", 4), _row("age", "<40", 50), _row("age", "40+", 60)]
    out = suppress_group_rows(rows, k=10)
    hidden = {(r["attribute"], r["group"]) for r in out if r.get("suppressed")}
    # d is below k; b is the next-smallest sibling, so total - visible cannot recover d
    assert hidden == {("site", "d"), ("site", "b")}


def test_k_zero_disables_and_negative_k_is_refused():
    rows = [_row("sex", "other", 1), _row("sex", "male", 30)]
    assert suppress_group_rows(rows, k=0) == rows
    with pytest.raises(ConfigError, match="small_cell_k must be >= 0; got -1 instead"):
        apply_small_cell_policy({"results": {}}, None, k=-1)


def test_counts_mapping_and_table_follow_the_same_rule():
    assert suppress_counts({"I": 100, "II": 30, "VI": 2}, k=10) == {"I": 100, "II": None,
                                                                    "VI": None}
    table = pd.DataFrame([_row("sex", "female", 40), _row("sex", "male", 12),
                          _row("sex", "other", 2)])
    shown = suppress_group_table(table, k=10)
    assert shown["suppressed"].tolist() == [False, True, True]
    assert shown.loc[1, "n"] is None and shown.loc[2, "accuracy"] is None
    assert shown["group"].tolist() == ["female", "male", "other"]


def test_walk_finds_nested_rows_and_group_counts_and_ignores_unknown_shapes():
    audit = {
        "dataset": {"attributes": {"sex": "sex"}},
        "results": {
            "fairness": {
                "by_attribute": {"sex": [_row("sex", "f", 40), _row("sex", "m", 9),
                                         _row("sex", "o", 30)]},
                "intersections": {"a": _row("sex×age", "f & old", 3),
                                  "b": _row("sex×age", "m & old", 50),
                                  "c": _row("sex×age", "f & young", 60)},
                "group_counts": {"sex": {"f": 40, "m": 9, "o": 30}},
                "weird": [1, "two", None, {"group": "x"}, {"n": "many", "group": "y"}],
                "n": 5,
            },
            "robustness": {"status": "not_assessed", "reason": "nothing"},
        },
    }
    out, frame = apply_small_cell_policy(audit, None, k=10)
    assert frame is None
    sex = out["results"]["fairness"]["by_attribute"]["sex"]
    assert [r["n"] for r in sex] == [40, None, None]
    inter = out["results"]["fairness"]["intersections"]
    assert inter["a"]["suppressed"] and inter["b"]["suppressed"] and "suppressed" not in inter["c"]
    assert out["results"]["fairness"]["group_counts"]["sex"] == {"f": 40, "m": None, "o": None}
    assert out["results"]["fairness"]["weird"] == audit["results"]["fairness"]["weird"]
    assert out["results"]["robustness"] == audit["results"]["robustness"]
    assert out["small_cell_protection"]["cells_suppressed"] == 6  # 2 rows + 2 + 2 counts
    # idempotent: applying the policy twice hides nothing more
    again, _ = apply_small_cell_policy(out, None, k=10)
    assert again["results"] == out["results"]


def test_frame_relabels_rare_groups_drops_ids_and_top_codes_age():
    frame = pd.DataFrame({
        "image": [f"i{j}" for j in range(30)], "label": ["a"] * 30, "pred": ["a"] * 30,
        "prob_a": np.ones(30), "patient_id": [f"p{j}" for j in range(30)],
        "sex": ["female"] * 15 + ["male"] * 12 + ["other"] * 3,
        "age": ["60+"] * 30, "age_years": [95.0] * 3 + [70.0] * 27,
    })
    out, hidden = suppress_frame(frame, k=10, attributes=["sex", "age"],
                                 age_attributes=["age"])
    assert "patient_id" not in out.columns
    assert hidden == {"sex": ["male", "other"]}
    assert (out["sex"] == suppressed_label(10)).sum() == 15
    assert out.loc[out["sex"] == "female", "age_years"].max() == 90
    assert out.loc[out["sex"] != "female", "age_years"].isna().all()


@pytest.fixture
def audited(tmp_path: Path) -> tuple[dict, Path]:
    """A real run_audit on a tiny dataset whose attribute groups are mostly < 10 images."""
    toml = make_image_dataset(tmp_path / "data", n=36)
    dataset = auditkit.load_dataset(toml)
    folder = write_model(tmp_path / "reg" / "tiny" / "v1", BrightnessNet(2), fmt="torchscript")
    model = auditkit.load_model(folder, device="cpu")
    pd.DataFrame({"image": dataset.records["image"],
                  "split": ["train" if i % 3 else "test" for i in range(len(dataset))]}
                 ).to_csv(folder / "split.csv", index=False)
    config = auditkit.AuditConfig(checks=["performance", "privacy"], n_boot=50, small_cell_k=10)
    out = tmp_path / "audit"
    audit = auditkit.run_audit(model=model, dataset=dataset, config=config, out_dir=out)
    return audit, out


def _group_rows(node: object) -> list[dict]:
    found = []
    if isinstance(node, dict):
        if "group" in node and "n" in node:
            found.append(node)
        for v in node.values():
            found += _group_rows(v)
    elif isinstance(node, list):
        for v in node:
            found += _group_rows(v)
    return found


def test_policy_holds_in_every_export_of_a_real_audit(audited: tuple[dict, Path]):
    audit, out = audited
    on_disk = json.loads((out / "audit.json").read_text())
    assert on_disk["small_cell_protection"]["k"] == 10
    rows = _group_rows(on_disk["results"])
    assert rows, "the privacy check reports per-group rows"
    for row in rows:
        assert row.get("suppressed") or row["n"] >= 10, row
    assert any(r.get("suppressed") for r in rows)
    assert _group_rows(audit["results"]) == rows
    preds = pd.read_csv(out / "predictions.csv", dtype=str, keep_default_na=False)
    assert "patient_id" not in preds.columns and "path" not in preds.columns
    for attr in ("sex", "age", "skin", "site"):
        counts = preds[attr].value_counts()
        small = counts[(counts < 10) & (counts.index != suppressed_label(10))]
        assert small.empty, (attr, small.to_dict())
    scores = pd.read_csv(out / "membership_scores.csv")
    assert list(scores.columns[:2]) == ["image", "member"]
    assert not set(scores.columns) & {"patient_id", "sex", "age", "skin", "site"}


@pytest.mark.parametrize(("value", "shown"), [(None, True), ("1", True), ("0", False),
                                              ("off", False), ("No", False)])
def test_showing_images_can_be_switched_off(monkeypatch: pytest.MonkeyPatch, value, shown):
    from auditkit.suppression import images_may_be_shown

    if value is None:
        monkeypatch.delenv("AUDITKIT_SHOW_IMAGES", raising=False)
    else:
        monkeypatch.setenv("AUDITKIT_SHOW_IMAGES", value)
    assert images_may_be_shown() is shown


def test_groups_of_few_patients_are_small_even_with_many_images():
    rows = [_row("race", "white", 1400), _row("race", "black", 60), _row("race", "asian", 200)]
    rows[1]["n_patients"] = 2  # 60 MRI slices of two people
    assert not any(r.get("suppressed") for r in suppress_group_rows(rows, k=10))
    out = suppress_group_rows(rows, k=10, count_patients=True)
    assert [r.get("suppressed", False) for r in out] == [False, True, True]
    frame = pd.DataFrame({"image": [f"i{j}" for j in range(80)],
                          "race": ["white"] * 40 + ["black"] * 20 + ["asian"] * 20})
    patients = [f"w{j}" for j in range(40)] + ["b1"] * 10 + ["b2"] * 10 + [
        f"a{j}" for j in range(20)]
    by_images, _ = suppress_frame(frame, k=10, attributes=["race"])
    by_people, hidden = suppress_frame(frame, k=10, attributes=["race"], patient_ids=patients)
    assert (by_images["race"] == "black").sum() == 20
    assert hidden == {"race": ["asian", "black"]}
    assert set(by_people["race"]) == {"white", suppressed_label(10)}
