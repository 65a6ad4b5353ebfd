"""Fairness: subgroup metrics agree with fairlearn/scikit-learn; intervals; gaps; small groups."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fairlearn.metrics import MetricFrame
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    precision_score,
    recall_score,
    roc_auc_score,
)

from auditkit._metrics import MetricInputs, compute_metrics
from auditkit.cli import main
from auditkit.fairness import (
    FairnessAudit,
    describe_gap,
    estimate_skin_tone,
    skin_tone_agreement,
    threshold_optimizer_mitigation,
)


def _synthetic(n: int = 2000, seed: int = 0, gap: float = 0.3):
    rng = np.random.default_rng(seed)
    group = np.where(rng.random(n) < 0.5, "a", "b")
    y = (rng.random(n) < 0.4).astype(int)
    # group b's positives are missed much more often
    hit = np.where(group == "a", 0.9, 0.9 - gap)
    pred = np.where(y == 1, rng.random(n) < hit, rng.random(n) < 0.1).astype(int)
    p1 = np.clip(0.5 * pred + 0.5 * rng.random(n), 0, 1)
    proba = np.column_stack([1 - p1, p1])
    return y, pred, proba, group


def test_points_equal_metricframe_and_sklearn() -> None:
    y, pred, proba, group = _synthetic()
    res = FairnessAudit(n_boot=0).compute(y=y, pred=pred, proba=proba, positive=1,
                                          groups=pd.DataFrame({"g": group}))
    mf = MetricFrame(metrics={"accuracy": accuracy_score, "sensitivity": recall_score,
                              "ppv": precision_score},
                     y_true=y, y_pred=pred, sensitive_features=group)
    for e in res["groups"]:
        for metric in ("accuracy", "sensitivity", "ppv"):
            assert e[metric]["value"] == pytest.approx(mf.by_group.loc[e["group"], metric])
        m = group == e["group"]
        assert e["auroc"]["value"] == pytest.approx(roc_auc_score(y[m], proba[m, 1]))
        assert e["balanced_accuracy"]["value"] == pytest.approx(
            balanced_accuracy_score(y[m], pred[m]))
        assert e["specificity"]["value"] == pytest.approx(
            recall_score(y[m], pred[m], pos_label=0))


def test_real_gap_is_called_and_noise_is_not() -> None:
    y, pred, proba, group = _synthetic(gap=0.4)
    res = FairnessAudit(n_boot=300).compute(y=y, pred=pred, proba=proba, positive=1,
                                            groups=pd.DataFrame({"g": group}))
    sens = next(d for d in res["disparities"] if d["metric"] == "sensitivity")
    assert sens["worst_group"] == "b" and sens["real"]
    assert "larger than chance" in describe_gap(sens, "malignant")
    y, pred, proba, group = _synthetic(gap=0.0, n=300)
    res = FairnessAudit(n_boot=300).compute(y=y, pred=pred, proba=proba, positive=1,
                                            groups=pd.DataFrame({"g": group}))
    sens = next(d for d in res["disparities"] if d["metric"] == "sensitivity")
    assert not sens["real"]
    assert "cannot tell" in describe_gap(sens, "malignant")


def test_small_groups_are_marked_not_dropped() -> None:
    y, pred, proba, group = _synthetic(n=400)
    group = group.astype(object)
    group[:5] = "tiny"
    res = FairnessAudit(n_boot=100, min_group_size=10).compute(
        y=y, pred=pred, proba=proba, positive=1, groups=pd.DataFrame({"g": group}))
    tiny = next(e for e in res["groups"] if e["group"] == "tiny")
    assert tiny["too_few"] and tiny["n"] == 5
    for d in res["disparities"]:
        assert "tiny" in d["excluded_groups"]
        assert d.get("worst_group") != "tiny" and d.get("best_group") != "tiny"


def test_patient_bootstrap_is_wider_than_image_bootstrap() -> None:
    rng = np.random.default_rng(1)
    patients = np.repeat(np.arange(20), 30)  # 20 patients x 30 correlated slices
    patient_right = rng.random(20) < 0.7
    y = np.ones(600, dtype=int)
    pred = np.where(patient_right[patients], 1, 0)
    proba = np.column_stack([1 - pred * 0.9, pred * 0.9 + 0.05])
    inputs = dict(y=y, pred=pred, proba=proba, positive=1)
    _, by_image = compute_metrics(MetricInputs(**inputs), n_boot=500,
                                  rng=np.random.default_rng(0), metrics=["accuracy"])
    _, by_patient = compute_metrics(MetricInputs(**inputs, clusters=patients), n_boot=500,
                                    rng=np.random.default_rng(0), metrics=["accuracy"])
    assert np.std(by_patient["accuracy"]) > 3 * np.std(by_image["accuracy"])


def test_skin_tone_estimate_orders_light_and_dark(tmp_path: Path) -> None:
    from PIL import Image

    paths = []
    for name, rgb in {"light": (236, 200, 180), "dark": (95, 60, 45)}.items():
        arr = np.zeros((40, 40, 3), dtype=np.uint8)
        arr[:] = rgb
        arr[15:25, 15:25] = (120, 40, 40)  # a "lesion" in the centre
        Image.fromarray(arr).save(tmp_path / f"{name}.png")
        paths.append(str(tmp_path / f"{name}.png"))
    est = estimate_skin_tone(paths)
    assert est["ita"][0] > 30 > est["ita"][1]
    assert est["skin_type_estimated"][0] in ("I", "II", "III")
    assert est["skin_type_estimated"][1] in ("V", "VI")
    agree = skin_tone_agreement(["I", "II", "VI", "unknown"], ["I", "III", "VI", "II"])
    assert agree["n"] == 3 and agree["exact"] == pytest.approx(2 / 3)
    assert agree["within_one"] == 1.0


def test_threshold_optimizer_reports_cost() -> None:
    y, pred, proba, group = _synthetic(gap=0.4)
    mit = threshold_optimizer_mitigation(score=proba[:, 1], is_positive=y == 1, groups=group)
    rows = {r["group"]: r for r in mit["groups"]}
    gap_before = abs(rows["a"]["sensitivity_before"] - rows["b"]["sensitivity_before"])
    gap_after = abs(rows["a"]["sensitivity_after"] - rows["b"]["sensitivity_after"])
    assert gap_after < gap_before
    assert 0 <= mit["accuracy_after"] <= 1 and "thresholds" in mit["note"]


@pytest.mark.slow
@pytest.mark.parametrize(("model", "dataset", "attributes"), [
    ("derm-lesion@v1", "fitzpatrick17k", ["skin_type_group", "skin_type"]),
    ("derm-lesion@v2", "fitzpatrick17k", ["skin_type_group", "skin_type"]),
    ("cxr-covid@v1", "covid_cxr", ["sex", "age"]),
    ("mri-tumor@v1", "lgg_mri", ["race", "ethnicity", "sex"]),
])
def test_audit_json_matches_recomputation_from_predictions_csv(
        tmp_path: Path, data_root: Path, model: str, dataset: str, attributes: list[str]) -> None:
    out = tmp_path / "a"
    assert main(["audit", "--model", model, "--dataset", dataset, "--out", str(out),
                 "--checks", "fairness", "--n-boot", "100", "--evaluate-on", "all",
                 "--data-root", str(data_root)]) == 0
    audit = json.loads((out / "audit.json").read_text())
    fair = audit["results"]["fairness"]
    frame = pd.read_csv(out / "predictions.csv", dtype=str, keep_default_na=False)
    hidden = {(e["attribute"], e["group"]) for e in fair["groups"] if e.get("suppressed")}
    for d in fair["disparities"]:  # a gap never reveals a group hidden by small-cell protection
        assert (d["attribute"], d.get("worst_group")) not in hidden
        assert (d["attribute"], d.get("best_group")) not in hidden
    positive = audit["model"]["positive_class"]
    y_pos = (frame["label"] == positive).to_numpy()
    p_pos = (frame["pred"] == positive).to_numpy()
    score = frame[f"prob_{positive}"].astype(float).to_numpy()
    for attribute in attributes:
        mf = MetricFrame(metrics={"accuracy": accuracy_score, "sensitivity": recall_score},
                         y_true=y_pos.astype(int),
                         y_pred=p_pos, sensitive_features=frame[attribute])
        entries = [e for e in fair["groups"] if e["attribute"] == attribute]
        assert entries
        for e in entries:
            if e.get("suppressed"):  # small-cell protection hid it, in both exports
                assert e["n"] is None and e["group"] not in set(frame[attribute])
                continue
            m = (frame[attribute] == e["group"]).to_numpy()
            assert e["n"] == int(m.sum())
            acc = accuracy_score(frame["label"][m], frame["pred"][m])
            assert e["accuracy"]["value"] == pytest.approx(acc)
            if y_pos[m].any():
                assert e["sensitivity"]["value"] == pytest.approx(
                    mf.by_group.loc[e["group"], "sensitivity"])
            if y_pos[m].any() and (~y_pos[m]).any():
                assert e["auroc"]["value"] == pytest.approx(roc_auc_score(y_pos[m], score[m]))
            lo, hi = e["accuracy"]["ci"]
            if lo is not None:
                assert lo <= acc + 1e-9 and acc - 1e-9 <= hi


@pytest.mark.slow
def test_gaps_and_mitigation_never_reveal_hidden_groups(tmp_path: Path, data_root: Path) -> None:
    out = tmp_path / "a"
    assert main(["audit", "--model", "cxr-covid@v1", "--dataset", "covid_cxr", "--out", str(out),
                 "--checks", "fairness", "--n-boot", "100", "--data-root", str(data_root)]) == 0
    fair = json.loads((out / "audit.json").read_text())["results"]["fairness"]
    hidden = {e["group"] for e in fair["groups"] if e["attribute"] == "sex" and e.get("suppressed")}
    assert hidden  # the test split has few women with a known sex record: hidden, not dropped
    text = json.dumps([d for d in fair["disparities"] if d["attribute"] == "sex"])
    assert all(f'"worst_group": "{g}"' not in text and f'"best_group": "{g}"' not in text
               for g in hidden)
    for rows in fair["threshold_mitigation"].values():
        assert not {r["group"] for r in rows.get("groups", [])} & hidden
    assert any(line.startswith("Sex: not assessed") for line in fair["summary"])


def test_mitigation_before_is_the_models_own_decisions() -> None:
    """A three-class model: the positive class can be the argmax below 0.5, so "before"
    must be the model's decisions, not p(positive) >= 0.5."""
    rng = np.random.default_rng(0)
    n = 600
    group = np.where(rng.random(n) < 0.5, "a", "b")
    p = rng.dirichlet([1, 1, 1], n)
    decisions = p.argmax(axis=1) == 1
    assert (decisions != (p[:, 1] >= 0.5)).sum() > 30
    is_pos = rng.random(n) < np.where(decisions, 0.7, 0.2)
    mit = threshold_optimizer_mitigation(score=p[:, 1], is_positive=is_pos, groups=group,
                                         decisions=decisions)
    assert mit["before_is"] == "the model's own decisions"
    assert mit["accuracy_before"] == pytest.approx(float((decisions == is_pos).mean()))
    rows = {r["group"]: r for r in mit["groups"]}
    m = (group == "a") & is_pos
    assert rows["a"]["sensitivity_before"] == pytest.approx(float(decisions[m].mean()))


def test_stats_module_public_surface() -> None:
    import auditkit.stats as stats

    assert sorted(stats.__all__) == sorted(set(stats.__all__))
    for name in stats.__all__:
        assert getattr(stats, name).__doc__
