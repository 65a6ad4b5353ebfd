"""Multi-label finding models: card, dataset findings, per-finding metrics, family-wise control."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import roc_auc_score

import auditkit
from auditkit.data import DatasetSpec
from auditkit.exceptions import ConfigError, ModelError
from auditkit.fairness import FairnessAudit
from auditkit.models import ModelCard
from auditkit.multilabel import fairness_by_finding
from auditkit.privacy._membership import task_loss_scores

REPO = Path(__file__).resolve().parents[1]
FINDINGS = ["covid19", "other_lung_disease", "icu"]


def _card(**over: object) -> dict:
    card = json.loads((REPO / "models" / "cxr-findings" / "v1" / "card.json").read_text())
    card.update(over)
    return card


def test_demo_card_states_each_finding_and_threshold() -> None:
    card = ModelCard.from_dict(_card())
    assert card.output == "multilabel_sigmoid"
    assert [f["name"] for f in card.findings] == FINDINGS
    np.testing.assert_allclose(card.thresholds, [0.5, 0.5, 0.5])
    assert "DERIVED" in card.out_of_scope_use and "derived" in card.limitations


@pytest.mark.parametrize(("change", "message"), [
    ({"findings": [{"name": "icu", "positive_class": "x", "threshold": 0.5}]},
     "field 'findings': expected one entry per class, named as class_names in the same order"),
    ({"findings": [{"name": n, "positive_class": "x", "threshold": 0.0} for n in FINDINGS]},
     "field 'findings[0].threshold': expected greater than 0"),
    ({"output": "softmax"}, "field 'findings': expected only for a multilabel_sigmoid model"),
])
def test_bad_finding_cards_say_what_was_expected(change: dict, message: str) -> None:
    with pytest.raises(ModelError) as info:
        ModelCard.from_dict(_card(**change))
    assert message in str(info.value)


def test_card_without_findings_defaults_to_half_and_stays_byte_identical() -> None:
    data = _card()
    del data["findings"]
    card = ModelCard.from_dict(data)
    np.testing.assert_allclose(card.thresholds, 0.5)
    assert "findings" not in card.to_dict() and "segmentation" not in card.to_dict()


@pytest.mark.parametrize(("finding", "message"), [
    ({"name": "a", "column": "c", "positive": ["Y"], "negative": []},
     "Finding 'a' must list raw values for both positive and negative"),
    ({"name": "a", "column": "c", "positive": ["Y"], "negative": ["Y"]},
     "Finding 'a': values ['Y'] are listed as both positive and negative."),
    ({"name": "a", "column": "c", "positive": ["Y"]},
     "[[findings]] number 1 ('a') lacks keys ['negative']"),
])
def test_bad_dataset_findings_are_refused(finding: dict, message: str) -> None:
    spec = {"name": "x", "table": "t.csv", "image_column": "i", "label_column": "l",
            "classes": ["a", "b"], "findings": [finding]}
    with pytest.raises(ConfigError) as info:
        DatasetSpec.from_dict(spec)
    assert message in str(info.value)


def test_findings_dataset_reads_unknown_as_missing(data_root: Path) -> None:
    ds = auditkit.load_dataset("covid_cxr_findings", data_root=data_root)
    table = pd.read_csv(data_root / "covid_cxr" / "metadata.csv", dtype=str,
                        keep_default_na=False)
    icu = ds.records["finding_icu"]
    assert int(icu.isna().sum()) == int((table["went_icu"] == "").sum()) == 128
    assert icu.sum() == (table["went_icu"] == "Y").sum()
    assert ds.records["finding_covid19"].sum() == (table["label_covid"] == "COVID-19").sum()
    # the plain covid_cxr description (no findings) keeps its hash: no findings key
    assert "findings" not in auditkit.load_dataset("covid_cxr", data_root=data_root,
                                                   check_images=False).spec.to_dict()


def test_multilabel_model_needs_the_findings_described(data_root: Path) -> None:
    model = auditkit.load_model("cxr-findings@v1", device="cpu")
    ds = auditkit.load_dataset("covid_cxr", data_root=data_root)
    with pytest.raises(ConfigError, match=r"describes findings none; \['covid19', "
                                          r"'other_lung_disease', 'icu'\] are missing"):
        auditkit.run_audit(model=model, dataset=ds)


# --------------------------------------------------------------------------- the demo audit


@pytest.fixture(scope="module")
def ml_audit(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.conftest import real_data_root

    if real_data_root() is None:
        pytest.skip("real datasets not found")
    model = auditkit.load_model("cxr-findings@v1", device="cpu")
    ds = auditkit.load_dataset("covid_cxr_findings")
    out = tmp_path_factory.mktemp("ml") / "audit"
    auditkit.run_audit(model=model, dataset=ds, out_dir=out,
                       config=auditkit.AuditConfig(checks=["performance", "fairness", "privacy"],
                                                   n_boot=200, device="cpu", small_cell_k=1))
    return out


@pytest.mark.slow  # the demo model's audit of covid_cxr_findings (318 images)
def test_per_finding_metrics_recomputed_from_predictions_csv(ml_audit: Path) -> None:
    audit = json.loads((ml_audit / "audit.json").read_text())
    frame = pd.read_csv(ml_audit / "predictions.csv")
    measured = frame[frame["evaluated"]]
    findings = audit["results"]["performance"]["findings"]
    assert list(findings) == FINDINGS
    for name in FINDINGS:
        rows = measured[measured[f"true_{name}"].notna()]
        y = rows[f"true_{name}"].astype(int).to_numpy()
        p = rows[f"prob_{name}"].to_numpy()
        call = (p >= findings[name]["threshold"]).astype(int)
        np.testing.assert_array_equal(call, rows[f"pred_{name}"].to_numpy())
        m = findings[name]["metrics"]
        assert findings[name]["n"] == len(rows)
        assert m["sensitivity"]["value"] == pytest.approx(call[y == 1].mean())
        assert m["specificity"]["value"] == pytest.approx(1 - call[y == 0].mean())
        assert m["auroc"]["value"] == pytest.approx(roc_auc_score(y, p))
        lo, hi = m["sensitivity"]["ci"]
        assert lo <= m["sensitivity"]["value"] <= hi
    assert findings["icu"]["n_unknown"] == int(measured["true_icu"].isna().sum()) > 0


@pytest.mark.slow
def test_per_group_finding_metrics_recomputed(ml_audit: Path) -> None:
    audit = json.loads((ml_audit / "audit.json").read_text())
    frame = pd.read_csv(ml_audit / "predictions.csv", dtype={"age": str})
    measured = frame[frame["evaluated"]]
    fairness = audit["results"]["fairness"]
    checked = 0
    for name in FINDINGS:
        for e in fairness["findings"][name]["groups"]:
            if e["attribute"] not in ("sex", "view"):
                continue
            rows = measured[(measured[e["attribute"]].astype(str) == e["group"])
                            & measured[f"true_{name}"].notna()]
            y, call = rows[f"true_{name}"].astype(int), rows[f"pred_{name}"]
            assert e["n"] == len(rows)
            if (y == 1).any():
                assert e["sensitivity"]["value"] == pytest.approx(call[y == 1].mean())
                checked += 1
    assert checked >= 6
    assert fairness["family"]["findings"] == 3
    assert len(fairness["worst_pairs"]) <= 5
    for d in (d for f in fairness["findings"].values() for d in f.get("disparities", [])
              if d.get("status") == "assessed"):
        assert d["p_family"] == pytest.approx(min(1.0, 3 * d["p_adjusted"]))


@pytest.mark.slow
def test_membership_uses_the_finding_loss(ml_audit: Path) -> None:
    audit = json.loads((ml_audit / "audit.json").read_text())
    membership = audit["results"]["privacy"]["membership"]
    assert membership["status"] == "assessed"
    assert list(membership["attacks"]) == ["finding_loss"]


# --------------------------------------------------------------------------- statistics


def test_family_wise_false_alarms_stay_below_alpha_across_findings() -> None:
    """Null simulation: three findings, no group differs; any 'real' gap is a false alarm."""
    rng = np.random.default_rng(19)
    n_sims, n, alarms = 40, 240, 0
    auditor = FairnessAudit(n_boot=0, n_permutations=199, min_group_size=10,
                            metrics=["sensitivity", "specificity"], alpha=0.05)
    for sim in range(n_sims):
        patients = np.repeat(np.arange(n // 2), 2).astype(str)
        groups = pd.DataFrame({"sex": rng.choice(["female", "male"], n // 2).repeat(2),
                               "site": rng.choice(["a", "b", "c"], n // 2).repeat(2)})
        truth = (rng.random((n, 3)) < 0.4).astype(float)
        proba = np.clip(0.5 * truth + 0.5 * rng.random((n, 3)), 0, 1)
        auditor.random_state = sim
        result = fairness_by_finding(truth=truth, proba=proba, thresholds=np.full(3, 0.5),
                                     findings=["a", "b", "c"], groups=groups,
                                     patients=patients, auditor=auditor)
        alarms += any(d.get("real") for f in result["findings"].values()
                      for d in f["disparities"])
    # the union bound holds the rate at <= 5%; with 40 runs, 5 alarms would be p < 0.05
    assert alarms <= 4


def test_task_loss_scores_find_planted_members() -> None:
    rng = np.random.default_rng(0)
    truth = (rng.random((200, 3)) < 0.5).astype(float)
    truth[::7, 2] = np.nan
    member = np.arange(200) < 100
    # members fitted closely (low loss), non-members loosely
    noise = np.where(member[:, None], 0.05, 0.4) * rng.random((200, 3))
    proba = np.abs(truth - noise)
    proba = np.where(np.isnan(proba), 0.5, proba)
    scores = task_loss_scores(output_kind="multilabel_sigmoid", proba=proba, truth=truth)
    assert roc_auc_score(member, scores["finding_loss"]) > 0.95
    masks = rng.random((20, 8, 8)) < 0.3
    good = np.where(masks, 0.9, 0.1)
    bad = np.where(masks, 0.6, 0.4)
    seg = task_loss_scores(output_kind="segmentation", proba=np.concatenate([good, bad]),
                           truth=np.concatenate([masks, masks]))
    assert (seg["pixel_loss"][:20] > seg["pixel_loss"][20:]).all()
    assert (seg["soft_dice"][:20] > seg["soft_dice"][20:]).all()


def test_task_loss_pgd_raises_the_loss_and_respects_the_budget(tmp_path: Path) -> None:
    from auditkit.architectures import SmallResNet
    from auditkit.robustness.dense import TaskLossPGD, task_loss
    from tests.conftest import write_model

    torch.manual_seed(0)
    net = SmallResNet(in_channels=3, num_outputs=3, widths=(4, 4, 4, 4))
    folder = write_model(tmp_path / "m", net, fmt="safetensors", output="multilabel_sigmoid",
                         class_names=["x", "y", "z"], architecture="small_resnet",
                         architecture_kwargs={"in_channels": 3, "num_outputs": 3,
                                              "widths": [4, 4, 4, 4]})
    model = auditkit.load_model(folder, device="cpu")
    x = torch.rand(6, 3, 16, 16)
    y = torch.tensor([[1, 0, float("nan")]] * 6)
    eps = 4 / 255
    adv = TaskLossPGD(model, output_kind="multilabel_sigmoid", eps=eps, steps=5, seed=0)(x, y)
    assert float((adv - x).abs().max()) <= eps + 1e-6
    assert float(adv.min()) >= 0 and float(adv.max()) <= 1
    assert not model.module.training  # the attack leaves the model in eval mode
    with torch.no_grad():
        before = task_loss("multilabel_sigmoid", model.module(model.normalize(x)), y)
        after = task_loss("multilabel_sigmoid", model.module(model.normalize(adv)), y)
    assert float(after) > float(before)
