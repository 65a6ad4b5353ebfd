"""Tests for auditkit.robustness: the attack wrapper, attacks, corruptions, the check."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import auditkit
import auditkit.robustness as rob
from auditkit.architectures import SmallResNet
from auditkit.exceptions import ConfigError, ModelError
from auditkit.robustness import (
    ATTACKS,
    CORRUPTIONS,
    AdversarialAttack,
    AttackModel,
    corrupt,
    sample_images,
)
from tests.conftest import BrightnessNet, make_image_dataset, write_model

SIZE = 8


def _model(tmp_path: Path, kind: str, *, size: int = SIZE, fmt: str = "torchscript"
           ) -> auditkit.LoadedModel:
    """binary (single logit), softmax2, softmax3, softmax4, resnet3 or multilabel."""
    torch.manual_seed(0)
    if kind == "binary":
        module, output, classes = BrightnessNet(1), "binary_logit", None
    elif kind == "multilabel":
        module, output, classes = BrightnessNet(2), "multilabel_sigmoid", None
    elif kind == "resnet3":
        module = SmallResNet(in_channels=3, num_outputs=3, widths=(4, 4, 4, 4))
        output, classes = "softmax", ["benign", "malignant", "other"]
    else:
        k = int(kind[-1])
        module, output = BrightnessNet(k), "softmax"
        classes = ["benign", "malignant", "other", "fourth"][:k]
    arch = {}
    if kind == "resnet3":  # a state dict: TorchScript re-specializes per batch shape (slow)
        fmt = "safetensors"
        arch = {"architecture": "small_resnet", "architecture_kwargs": {
            "in_channels": 3, "num_outputs": 3, "widths": [4, 4, 4, 4]}}
    folder = write_model(tmp_path / kind, module, fmt=fmt, output=output, class_names=classes,
                         size=size, **arch)
    return auditkit.load_model(folder, device="cpu")


def _images(n: int = 6, size: int = SIZE, seed: int = 0) -> tuple[torch.Tensor, np.ndarray]:
    g = torch.Generator().manual_seed(seed)
    base = torch.linspace(0.42, 0.58, n).view(n, 1, 1, 1)
    x = (base + 0.05 * torch.randn(n, 3, size, size, generator=g)).clamp(0, 1)
    y = (np.arange(n) % 2).astype(int)
    return x, y


class _Direct(torch.nn.Module):
    """What a user would hand torchattacks by hand: normalization, then the module."""

    def __init__(self, loaded: auditkit.LoadedModel) -> None:
        super().__init__()
        self.inner = loaded.module
        c = loaded.card.normalization
        self.register_buffer("mean", torch.tensor(c["mean"]).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(c["std"]).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner((x - self.mean) / self.std)


def test_public_names_are_exported() -> None:
    assert len(set(rob.__all__)) == len(rob.__all__)
    for name in rob.__all__:
        assert hasattr(rob, name), name
    assert auditkit.audit.CHECKS["robustness"] == "auditkit.robustness:run_check"


# --------------------------------------------------------------------------- wrapper

def test_wrapper_presents_binary_logit_as_two_logits_and_normalizes(tmp_path: Path) -> None:
    model = _model(tmp_path, "binary")
    x, _ = _images()
    wrapped = AttackModel(model)
    out = wrapped(x)
    z = model.module((x - 0.5) / 0.25).reshape(-1)
    assert out.shape == (len(x), 2)
    torch.testing.assert_close(out[:, 0], torch.zeros(len(x)))
    torch.testing.assert_close(out[:, 1], z)
    torch.testing.assert_close(out, model.logits(x))  # LoadedModel.logits semantics


def test_wrapper_refuses_multilabel_models(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="AttackModel wraps classifiers"):
        AttackModel(_model(tmp_path, "multilabel"))


def test_wrapper_restores_training_mode_and_grad_flags(tmp_path: Path) -> None:
    model = _model(tmp_path, "softmax3")
    model.module.train()
    params = list(model.module.parameters())
    assert all(p.requires_grad for p in params)
    x, y = _images()
    with torch.no_grad():  # an attack must still get input gradients here
        adv = AdversarialAttack("pgd", eps=4 / 255).perturb(model, x, y)
        assert not torch.is_grad_enabled()
    assert model.module.training
    assert all(p.requires_grad for p in params)
    assert (adv - x).abs().max() <= 4 / 255 + 1e-6
    assert (adv - x).abs().max() > 0


def test_exported_pt2_model_is_attacked(tmp_path: Path) -> None:
    model = _model(tmp_path, "softmax2", fmt="export")
    x, y = _images()
    out = AdversarialAttack("pgd", eps=8 / 255).run(model, x, y)
    assert (out.attacked_pred != out.clean_pred).any()


# --------------------------------------------------------------------------- attacks

@pytest.mark.slow  # 8 attacks of a small ResNet: ~15 s in all on a loaded 2-core CPU
@pytest.mark.parametrize("kind", ["binary", "resnet3"])
@pytest.mark.parametrize("name,eps,make", [
    ("fgsm", 2 / 255, lambda m, e: __import__("torchattacks").FGSM(m, eps=e)),
    ("pgd", 2 / 255, lambda m, e: __import__("torchattacks").PGD(
        m, eps=e, alpha=e / 4, steps=10, random_start=True)),
    ("pgd_l2", 0.25, lambda m, e: __import__("torchattacks").PGDL2(
        m, eps=e, alpha=e / 4, steps=10, random_start=True)),
    ("deepfool", None, lambda m, e: __import__("torchattacks").DeepFool(
        m, steps=50, overshoot=0.02)),
])
def test_robust_accuracy_equals_torchattacks_called_directly(tmp_path: Path, kind: str,
                                                             name: str, eps, make) -> None:
    if name == "deepfool" and kind == "resnet3":
        kind = "softmax3"  # DeepFool loops per image in Python: keep the 3-class model tiny
    model = _model(tmp_path, kind)
    x, y = _images(6)
    batch = 4  # several batches: seeding happens once, before the first
    ours = AdversarialAttack(name, eps=eps, seed=7, batch_size=batch).run(model, x, y)

    direct = _Direct(model).eval()
    if kind == "binary":
        inner = direct

        class _Two(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.inner = inner

            def forward(self, t: torch.Tensor) -> torch.Tensor:
                z = self.inner(t).reshape(-1, 1)
                return torch.cat([torch.zeros_like(z), z], 1)

        direct = _Two().eval()
    attack = make(direct, eps)
    torch.manual_seed(7)
    adv = torch.cat([attack(x[i:i + batch], torch.as_tensor(y[i:i + batch]))
                     for i in range(0, len(x), batch)])
    with torch.no_grad():
        pred = direct(adv).argmax(1).numpy()
    torch.testing.assert_close(ours.adversarial, adv)
    assert (ours.attacked_pred == y).mean() == (pred == y).mean()
    np.testing.assert_array_equal(ours.attacked_pred, pred)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["binary", "softmax3", "softmax4"])
@pytest.mark.parametrize("name", list(ATTACKS))
def test_every_attack_runs_on_binary_three_and_four_class_models(tmp_path: Path, kind: str,
                                                                 name: str) -> None:
    model = _model(tmp_path, kind)
    x, _ = _images(4)
    x = 0.5 + (x - 0.5) * 0.3  # near the decision boundary of BrightnessNet
    y, _ = rob.predict_classes(model, x)  # every image starts correctly classified
    eps = 1.0 if ATTACKS[name].norm == "L2" else 8 / 255
    atk = AdversarialAttack(name, eps=eps, seed=0, square_queries=100)
    out = atk.run(model, x, y)
    assert out.adversarial.shape == x.shape
    assert out.adversarial.min() >= 0 and out.adversarial.max() <= 1
    if ATTACKS[name].budgeted and ATTACKS[name].norm == "Linf":
        assert out.linf.max() <= 8 / 255 + 1e-5
    if name == "autoattack":
        assert atk.variant_ == (None if kind == "softmax4" else "autoattack-lt4")
    # every attack fools this trivially attackable model at 8/255 on some image
    assert (out.attacked_pred != y).any()


def test_attack_settings_are_validated() -> None:
    with pytest.raises(ConfigError, match="attack must be one of"):
        AdversarialAttack("bim", eps=0.1)
    with pytest.raises(ConfigError, match="needs a budget eps > 0"):
        AdversarialAttack("pgd")
    with pytest.raises(ConfigError, match="needs a budget eps > 0"):
        AdversarialAttack("fgsm", eps=8)


def test_pgd_is_repeatable_with_the_same_seed_and_not_with_another(tmp_path: Path) -> None:
    model = _model(tmp_path, "resnet3")
    x, y = _images()
    a = AdversarialAttack("pgd", eps=8 / 255, seed=1, steps=1).perturb(model, x, y)
    b = AdversarialAttack("pgd", eps=8 / 255, seed=1, steps=1).perturb(model, x, y)
    c = AdversarialAttack("pgd", eps=8 / 255, seed=2, steps=1).perturb(model, x, y)
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, c)


# --------------------------------------------------------------------------- corruptions

@pytest.mark.parametrize("name", list(CORRUPTIONS))
@pytest.mark.parametrize("channels", [1, 3])
def test_corruptions_keep_shape_and_range_and_grow_with_severity(name: str,
                                                                 channels: int) -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(4, channels, 16, 16, generator=g) * 0.6 + 0.2
    changes = []
    for severity in rob.SEVERITIES:
        out = corrupt(x, name, severity, seed=0)
        assert out.shape == x.shape
        assert out.min() >= 0 and out.max() <= 1
        torch.testing.assert_close(out, corrupt(x, name, severity, seed=0))
        changes.append(float((out - x).abs().mean()))
    colour_only = CORRUPTIONS[name].modality == "skin"
    if channels == 1 and colour_only:
        assert max(changes) == 0.0  # a colour shift leaves a grayscale image alone
    else:
        assert changes[-1] > changes[0] > 0.0


def test_corruption_arguments_are_validated() -> None:
    x = torch.rand(1, 3, 8, 8)
    with pytest.raises(ConfigError, match="corruption must be one of"):
        corrupt(x, "snow", 1)
    with pytest.raises(ConfigError, match="severity must be 1-5; got 6 instead"):
        corrupt(x, "jpeg", 6)
    assert "windowing" in rob.corruptions_for("xray")
    assert "colour_darker" in rob.corruptions_for("skin")
    assert "windowing" not in rob.corruptions_for("skin")


# --------------------------------------------------------------------------- sampling, stats

def test_sampling_is_stratified_seeded_and_gives_small_groups_their_share() -> None:
    import pandas as pd

    groups = ["I"] * 50 + ["II"] * 30 + ["VI"] * 3
    records = pd.DataFrame({"skin": groups})
    a = sample_images(records, 12, stratify_by="skin", rng=np.random.default_rng(0))
    b = sample_images(records, 12, stratify_by="skin", rng=np.random.default_rng(0))
    np.testing.assert_array_equal(a, b)
    picked = records["skin"].iloc[a].value_counts()
    assert len(a) == 12 and len(set(a)) == 12
    assert picked["VI"] == 3  # all of the small group
    assert abs(picked["I"] - picked["II"]) <= 1  # the rest shared equally


def test_proportion_interval_resamples_patients() -> None:
    from auditkit.robustness import _stats

    flags = np.array([1, 1, 1, 1, 0, 0, 0, 0], dtype=float)
    per_image = _stats.proportion(flags, None, n_boot=500, rng=np.random.default_rng(0),
                                  level=0.95)
    # two patients, each with four identical images: much less information
    patients = np.array(["a"] * 4 + ["b"] * 4)
    per_patient = _stats.proportion(flags, patients, n_boot=500, rng=np.random.default_rng(0),
                                    level=0.95)
    assert per_image["value"] == per_patient["value"] == 0.5
    assert per_patient["ci"] == [0.0, 1.0]
    assert 0.0 < per_image["ci"][0] < 0.5 < per_image["ci"][1] < 1.0


# --------------------------------------------------------------------------- the check

def _tiny_audit(tmp_path: Path, options: dict, *, min_group_size: int = 3,
                kind: str = "softmax2", device: str = "cpu") -> dict:
    toml = make_image_dataset(tmp_path / "data", n=24, size=SIZE)
    dataset = auditkit.load_dataset(toml)
    model = _model(tmp_path, kind)
    if device != "cpu":
        model = auditkit.load_model(tmp_path / kind, device=device)
    config = auditkit.AuditConfig(checks=["robustness"], n_boot=50, small_cell_k=0,
                                  min_group_size=min_group_size,
                                  options={"robustness": options})
    return auditkit.run_audit(model=model, dataset=dataset, config=config,
                              out_dir=tmp_path / "out")


def test_check_reports_per_attack_budget_and_group_and_writes_the_csv(tmp_path: Path) -> None:
    opts = {"n_images": 12, "attacks": ["fgsm", "pgd", "deepfool"],
            "eps": ["1/255", 0.0313725], "n_images_corruptions": 8,
            "corruptions": ["jpeg", "colour_darker"]}
    audit = _tiny_audit(tmp_path, opts)
    json.dumps(audit, allow_nan=False)
    res = audit["results"]["robustness"]
    assert res["status"] == "assessed" and res["n_images"] == 12
    assert res["sampling"]["stratified_by"] == "skin"
    plan = [(a["attack"], a["budget_label"]) for a in res["attacks"]]
    assert plan == [("fgsm", "1/255"), ("fgsm", "8/255"), ("pgd", "1/255"), ("pgd", "8/255"),
                    ("deepfool", None)]
    pgd8 = res["attacks"][3]
    assert pgd8["overall"]["n"] == 12
    assert pgd8["overall"]["robust_accuracy"]["value"] <= res["clean"]["overall"]["accuracy"][
        "value"]
    lo, hi = pgd8["overall"]["robust_accuracy"]["ci"]
    assert lo <= pgd8["overall"]["robust_accuracy"]["value"] <= hi
    skin = [g for g in pgd8["by_group"] if g["attribute"] == "skin"]
    assert [g["group"] for g in skin] == ["I", "II", "III", "IV", "V", "VI"]
    for g in pgd8["by_group"]:
        assert {"attribute", "group", "n", "n_patients", "too_few", "robust_accuracy",
                "attack_success_rate"} <= set(g)
        assert g["too_few"] == (g["n_patients"] < 3)
        assert set(g["robust_accuracy"]) >= {"value", "ci"}
    assert sum(g["n"] for g in skin) == 12
    mp = res["min_perturbation"][0]
    assert mp["attack"] == "deepfool" and mp["overall"]["median_l2"]["value"] > 0
    assert [c["severity"] for c in res["corruptions"]] == [1, 2, 3, 4, 5] * 2
    assert "flip" in res["summary"]
    with open(tmp_path / "out" / "robustness.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0])[:6] == ["image", "attack", "budget", "clean_prediction",
                                 "attacked_prediction", "success"]
    assert len(rows) == 12 * 5
    pgd_rows = [r for r in rows if r["attack"] == "pgd" and r["budget"] == "8/255"]
    flips = sum(r["success"] == "True" for r in pgd_rows)
    n_correct = pgd8["overall"]["attack_success_rate"]["n"]
    assert flips == round(pgd8["overall"]["attack_success_rate"]["value"] * n_correct)
    # the same seed gives the same numbers
    again = _tiny_audit(tmp_path / "again", opts)["results"]["robustness"]
    assert again["attacks"] == res["attacks"]


def test_check_with_binary_logit_model_and_xray_windowing(tmp_path: Path) -> None:
    opts = {"n_images": 6, "attacks": ["pgd"], "eps": ["2/255"], "modality": "xray",
            "n_images_corruptions": 6}
    res = _tiny_audit(tmp_path, opts, kind="binary")["results"]["robustness"]
    assert res["modality"] == "xray"
    assert "windowing" in {c["corruption"] for c in res["corruptions"]}
    assert "colour_darker" not in {c["corruption"] for c in res["corruptions"]}
    assert res["attacks"][0]["overall"]["positive_flip_rate"]["value"] is not None


def test_check_marks_small_groups_instead_of_dropping_them(tmp_path: Path) -> None:
    res = _tiny_audit(tmp_path, {"n_images": 6, "attacks": ["fgsm"], "eps": [0.01],
                                 "corruptions": []}, min_group_size=50)["results"]["robustness"]
    groups = res["attacks"][0]["by_group"]
    assert groups and all(g["too_few"] for g in groups)
    assert res["corruptions"] == []


def test_check_rejects_unknown_options(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"Unknown robustness option\(s\) \['n_img'\]"):
        _tiny_audit(tmp_path, {"n_img": 5})
    with pytest.raises(ConfigError, match="robustness.eps are L∞ budgets in \\[0, 1\\]"):
        _tiny_audit(tmp_path, {"eps": [8]})


def test_check_on_multilabel_model_needs_findings_in_the_dataset(tmp_path: Path) -> None:
    # a multi-label model is attacked with its own loss, which needs each finding's label
    with pytest.raises(ConfigError, match=r"describes findings none; \['benign', "
                                          r"'malignant'\] are missing"):
        _tiny_audit(tmp_path, {}, kind="multilabel")


def test_gallery_returns_original_perturbation_and_adversarial(tmp_path: Path) -> None:
    toml = make_image_dataset(tmp_path / "data", n=12, size=SIZE)
    dataset = auditkit.load_dataset(toml)
    model = _model(tmp_path, "softmax2")
    items = rob.adversarial_examples(model, dataset, attack="fgsm", eps="8/255", n=3,
                                     group=("skin", "II"), seed=0)
    assert len(items) == 2  # only two images of skin type II in this dataset
    for it in items:
        assert it["group"]["skin"] == "II"
        assert it["original"].shape == (SIZE, SIZE, 3)
        assert it["perturbation"].shape == it["adversarial"].shape == (SIZE, SIZE, 3)
        assert it["linf_255"] <= 8 + 1e-3
        assert 0.5 <= it["clean_confidence"] <= 1.0
    with pytest.raises(ConfigError, match="has no images of group '2'; expected one of"):
        rob.adversarial_examples(model, dataset, group=("skin", "2"))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_attack_runs_on_gpu_and_matches_cpu_decisions(tmp_path: Path) -> None:
    folder = tmp_path / "softmax2"
    _model(tmp_path, "softmax2")
    model = auditkit.load_model(folder, device="cuda")
    x, y = _images()
    out = AdversarialAttack("fgsm", eps=8 / 255).run(model, x, y)
    cpu = AdversarialAttack("fgsm", eps=8 / 255).run(auditkit.load_model(folder, device="cpu"),
                                                     x, y)
    np.testing.assert_array_equal(out.attacked_pred, cpu.attacked_pred)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_check_runs_on_gpu_like_on_cpu(tmp_path: Path) -> None:
    opts = {"n_images": 12, "attacks": ["fgsm", "deepfool"], "eps": ["8/255"],
            "n_images_corruptions": 8, "corruptions": ["jpeg", "rotation"]}
    gpu = _tiny_audit(tmp_path / "gpu", opts, device="cuda")["results"]["robustness"]
    cpu = _tiny_audit(tmp_path / "cpu", opts)["results"]["robustness"]
    assert gpu["device"].startswith("cuda")
    for a, b in zip(gpu["attacks"], cpu["attacks"]):
        assert a["overall"]["robust_accuracy"]["value"] == b["overall"]["robust_accuracy"]["value"]
