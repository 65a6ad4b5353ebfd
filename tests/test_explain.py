"""Explanations: exact Shapley values, the trust checks and the shortcut finder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import auditkit
import auditkit.explain as explain
from auditkit import AuditConfig, ConfigError, run_audit
from auditkit.architectures import SmallResNet
from auditkit.explain import (
    ImageExplainer,
    completeness,
    deletion_insertion,
    load_attributions,
    parameter_layers,
    randomized_copy,
    rank_similarity,
    region_masks,
    region_shares,
    select_images,
)
from tests.conftest import BrightnessNet, make_image_dataset, write_model


class LinearNet(torch.nn.Module):
    """Two logits ``[0, w . x]``: Shapley values are ``w * (x - E[background])`` exactly."""

    def __init__(self, shape: tuple[int, int, int] = (3, 8, 8), seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.w = torch.nn.Parameter(torch.randn(shape, generator=g))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = (x * self.w).sum(dim=(1, 2, 3))
        return torch.stack([torch.zeros_like(z), z], dim=1)


class CornerNet(torch.nn.Module):
    """Looks only at the top-left 3x3 pixels: a model built on a shortcut."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = torch.nn.Parameter(torch.tensor([-6.0, 6.0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = (x[:, :, :3, :3].mean(dim=(1, 2, 3)) - 0.5).unsqueeze(1)
        return m * self.scale


class IgnoresInput(torch.nn.Module):
    """Logits that do not depend on the image at all."""

    def __init__(self) -> None:
        super().__init__()
        self.bias = torch.nn.Parameter(torch.tensor([0.3, -0.2]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bias.unsqueeze(0).expand(x.shape[0], 2) + 0.0 * x.sum()


def test_all_is_the_public_api():
    assert sorted(explain.__all__) == sorted(
        n for n in dir(explain) if not n.startswith("_") and n in explain.__all__)
    for name in explain.__all__:
        assert hasattr(explain, name), name
    assert callable(explain.run_check)


def test_gradient_matches_exact_shapley_values_of_a_linear_model():
    torch.manual_seed(0)
    net = LinearNet()
    x, bg = torch.rand(3, 3, 8, 8), torch.rand(1, 3, 8, 8)
    expl = ImageExplainer(method="gradient", n_samples=8, background_size=1,
                          random_state=0).explain(net, x, background=bg)
    exact = (net.w * (x - bg.mean(0))).detach().numpy()
    # classes: the predicted one; for a two-class model the score is the log-odds
    sign = np.where(expl.target == 1, 1.0, -1.0)[:, None, None, None]
    np.testing.assert_allclose(expl.attributions, sign * exact, rtol=1e-4, atol=1e-5)
    assert completeness(expl).max() < 1e-4


def test_gradient_completeness_with_a_larger_background_is_within_tolerance():
    net = LinearNet(seed=1)
    x, bg = torch.rand(2, 3, 8, 8), torch.rand(4, 3, 8, 8)
    expl = ImageExplainer(n_samples=400, background_size=4, random_state=3).explain(
        net, x, background=bg, targets=[[1, 0], [1]])
    assert expl.role == ["predicted", "true", "predicted"]
    assert list(expl.target) == [1, 0, 1]
    # the "true" map of a two-class model is minus the predicted one (not recomputed)
    np.testing.assert_allclose(expl.attributions[1], -expl.attributions[0])
    exact = (net.w * (x - bg.mean(0))).detach().numpy()
    corr = np.corrcoef(expl.attributions[2].ravel(), exact[1].ravel())[0, 1]
    assert corr > 0.99
    assert completeness(expl).max() < 0.1


_PARTITION_SCRIPT = """
import json, torch
from auditkit.explain import ImageExplainer, completeness
from tests.test_explain import LinearNet
torch.manual_seed(0)
net = LinearNet(shape=(3, 8, 8), seed=2)
x, bg = torch.rand(2, 3, 8, 8), torch.rand(4, 3, 8, 8)
expl = ImageExplainer(method="partition", n_samples=20, background_size=4).explain(
    net, x, background=bg, targets=[[1], [0]])
fill = bg.mean(dim=(0, 2, 3)).view(1, 3, 1, 1).expand(1, 3, 8, 8)
print(json.dumps({"shape": list(expl.attributions.shape), "base": expl.base_value.tolist(),
                  "z": float(net(fill)[0, 1].detach()),
                  "completeness": completeness(expl).tolist()}))
"""


@pytest.mark.slow  # a subprocess importing shap: ~10 s
def test_partition_attributions_add_up_to_the_masked_score():
    """shap's Partition explainer on a linear model: Owen values add up exactly.

    Run in a subprocess with numba's JIT off: shap compiles its Partition helpers on
    first use (~40 s on a busy 2-core machine); the algorithm is the same without it.
    """
    import os
    import subprocess
    import sys

    env = {**os.environ, "NUMBA_DISABLE_JIT": "1"}
    out = subprocess.run([sys.executable, "-c", _PARTITION_SCRIPT], cwd=Path(__file__).parents[1],
                         env=env, capture_output=True, text=True, timeout=300, check=True)
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["shape"] == [2, 3, 8, 8]
    # base = f(every pixel at the background's mean colour), for class 1 then class 0
    np.testing.assert_allclose(res["base"], [res["z"], -res["z"]], rtol=1e-5, atol=1e-6)
    assert max(res["completeness"]) < 1e-4


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"method": "lime"}, "method must be one of"),
    ({"n_samples": 0}, "n_samples must be >= 1; got 0 instead"),
    ({"background_size": 0}, "background_size must be >= 1"),
    ({"batch_size": "big"}, "batch_size must be 'auto' or an int"),
])
def test_bad_settings_are_refused(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        ImageExplainer(**kwargs)


def test_bad_inputs_are_refused():
    net, ex = LinearNet(), ImageExplainer()
    with pytest.raises(ConfigError, match=r"values in \[0, 1\]; got values in"):
        ex.explain(net, torch.full((1, 3, 8, 8), 2.0), background=torch.rand(1, 3, 8, 8))
    with pytest.raises(ConfigError, match=r"class indices in \[0, 2\); got \[5\] instead"):
        ex.explain(net, torch.rand(1, 3, 8, 8), background=torch.rand(1, 3, 8, 8), targets=[[5]])
    with pytest.raises(ConfigError, match=r"shape \(N, C, H, W\); got \(3, 8, 8\) instead"):
        ex.explain(net, torch.rand(3, 8, 8), background=torch.rand(1, 3, 8, 8))


def test_deletion_beats_random_for_the_true_attribution():
    net = CornerNet()
    img = torch.rand(3, 16, 16)
    img[:, :3, :3] = 1.0  # the corner says "class 1"
    attr = np.zeros((3, 16, 16))
    attr[:, :3, :3] = 1.0
    out = deletion_insertion(net, img, attr, 1, steps=16, n_random=3,
                             baseline=torch.zeros(3, 16, 16), rng=np.random.default_rng(0))
    assert out["deletion_auc"] < out["deletion_auc_random"] - 0.2
    assert out["insertion_auc"] > out["insertion_auc_random"] + 0.2
    assert len(out["deletion_curve"]) == 17


def test_rank_similarity_of_constant_and_varying_maps():
    a = np.random.default_rng(0).normal(size=(3, 8, 8))
    assert rank_similarity(a, a) == pytest.approx(1.0)
    assert rank_similarity(a, -a) == pytest.approx(-1.0)
    assert rank_similarity(a, -a, absolute=True) == pytest.approx(1.0)
    assert rank_similarity(np.zeros((3, 8, 8)), np.zeros((3, 8, 8))) == 1.0
    assert rank_similarity(np.zeros((3, 8, 8)), a) == 0.0


@pytest.mark.parametrize("fmt", ["safetensors", "torchscript", "export"])
def test_randomized_copy_leaves_the_loaded_model_untouched(tmp_path, fmt):
    kwargs = {"in_channels": 3, "num_outputs": 2, "widths": [4, 8, 8, 8]}
    torch.manual_seed(0)
    folder = write_model(tmp_path / fmt, SmallResNet(**kwargs), fmt=fmt,
                         architecture="small_resnet", architecture_kwargs=kwargs)
    model = auditkit.load_model(folder, device="cpu")
    before = {k: v.clone() for k, v in model.module.state_dict().items()}
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        out_before = model.logits(x)
    layers = parameter_layers(model.module)
    assert layers[0].startswith("stem") and layers[-1] == "head"
    rand = randomized_copy(model, layers[-1:], generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert not torch.allclose(rand.logits(x), out_before)
        torch.testing.assert_close(model.logits(x), out_before)
    for k, v in model.module.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_select_images_is_stratified_by_group_and_outcome():
    n = 200
    rng = np.random.default_rng(0)
    records = pd.DataFrame({"skin": rng.choice(["I", "II", "V"], size=n, p=[0.6, 0.3, 0.1])})
    outcome = rng.choice(["true_positive", "false_positive", "true_negative", "false_negative"],
                         size=n)
    idx = select_images(records, outcome, attribute="skin", n_images=24,
                        rng=np.random.default_rng(1))
    assert len(idx) == 24 and len(set(idx)) == 24
    counts = records["skin"].iloc[idx].value_counts()
    assert counts.to_dict() == {"I": 8, "II": 8, "V": 8}
    for g in ("I", "II", "V"):
        assert len(set(outcome[idx][records["skin"].iloc[idx].to_numpy() == g])) == 4
    again = select_images(records, outcome, attribute="skin", n_images=24,
                          rng=np.random.default_rng(1))
    np.testing.assert_array_equal(idx, again)


def test_region_shares_of_a_corner_map():
    masks = region_masks(16, 16, border=0.1, corner=0.2, center=0.5)
    attr = np.zeros((1, 3, 16, 16))
    attr[0, :, :3, :3] = -2.0
    shares = region_shares(attr, masks)
    assert shares["corners"][0] == pytest.approx(1.0)
    assert shares["outside_center"][0] == pytest.approx(1.0)
    assert np.isnan(region_shares(np.zeros((1, 3, 16, 16)), masks)["border"][0])


# --------------------------------------------------------------------------- the audit check


def _audit(tmp_path: Path, module: torch.nn.Module, options: dict, *, fmt: str = "torchscript",
           n: int = 24, out: bool = True) -> dict:
    data = make_image_dataset(tmp_path / "data", n=n, size=16)
    folder = write_model(tmp_path / "model", module, fmt=fmt)
    model = auditkit.load_model(folder, device="cpu")
    dataset = auditkit.load_dataset(data)
    config = AuditConfig(checks=["explain"], n_boot=100, min_group_size=3, small_cell_k=0,
                         options={"explain": options})
    return run_audit(model=model, dataset=dataset, config=config,
                     out_dir=tmp_path / "audit" if out else None)


def test_shortcut_finder_catches_a_corner_model(tmp_path):
    audit = _audit(tmp_path, CornerNet(), {"n_per_group": 2, "n_samples": 16,
                                           "sanity_images": 2, "sanity_steps": 1})
    res = audit["results"]["explain"]
    sc = res["shortcuts"]
    assert sc["overall"]["corners"]["value"] == pytest.approx(1.0, abs=1e-6)
    assert sc["overall"]["outside_center"]["value"] == pytest.approx(1.0, abs=1e-6)
    assert sc["regions"]["corners"]["area_share"] < 0.2
    skin = [g for g in sc["by_group"] if g["attribute"] == "skin"]
    assert [g["group"] for g in skin] == ["I", "II", "III", "IV", "V", "VI"]
    for g in skin:
        assert set(g) >= {"attribute", "group", "n", "n_patients", "too_few", "corners"}
        assert g["n"] == 2 and g["n_patients"] >= 1 and g["too_few"] is True
        assert g["corners"]["value"] == pytest.approx(1.0, abs=1e-6)
        assert len(g["corners"]["ci"]) == 2
    assert len(sc["top_images"]["corners"]) == 5
    assert "corners: 100% of the attribution" in sc["text"]


def test_shortcut_shares_of_an_even_model_follow_the_area(tmp_path):
    res = _audit(tmp_path, BrightnessNet(2), {"n_images": 6, "n_samples": 8,
                                              "sanity_images": 0})["results"]["explain"]
    overall = res["shortcuts"]["overall"]
    areas = {r: v["area_share"] for r, v in res["shortcuts"]["regions"].items()}
    for region in ("border", "corners", "outside_center"):
        assert overall[region]["value"] == pytest.approx(areas[region], abs=0.15)
    assert res["trust"]["sanity"] == {"status": "not_assessed", "reason": "sanity_images is 0"}


def test_sanity_check_flags_a_model_that_ignores_its_input(tmp_path):
    res = _audit(tmp_path, IgnoresInput(), {"n_images": 4, "n_samples": 8,
                                            "sanity_images": 3})["results"]["explain"]
    sanity = res["trust"]["sanity"]
    assert sanity["status"] == "assessed"
    assert sanity["flagged"] is True and sanity["all_attributions_zero"] is True
    assert sanity["similarity_all_layers_randomized"]["value"] == pytest.approx(1.0)
    assert "FLAGGED" in sanity["text"] and "does not respond to the image" in sanity["text"]


@pytest.mark.slow
def test_sanity_check_passes_a_model_whose_maps_depend_on_its_weights(tmp_path):
    kwargs = {"in_channels": 3, "num_outputs": 2, "widths": [4, 8, 8, 8]}
    torch.manual_seed(0)
    data = make_image_dataset(tmp_path / "data", n=24, size=16)
    folder = write_model(tmp_path / "m", SmallResNet(**kwargs), fmt="safetensors",
                         architecture="small_resnet", architecture_kwargs=kwargs)
    model = auditkit.load_model(folder, device="cpu")
    state = {k: v.clone() for k, v in model.module.state_dict().items()}
    audit = run_audit(model=model, dataset=auditkit.load_dataset(data),
                      config=AuditConfig(checks=["explain"], n_boot=100, min_group_size=3,
                                         options={"explain": {"n_images": 5, "n_samples": 12,
                                                              "sanity_images": 5}}))
    sanity = audit["results"]["explain"]["trust"]["sanity"]
    assert sanity["status"] == "assessed"
    assert sanity["flagged"] is False, sanity["text"]
    assert sanity["steps"][0]["layers_randomized"] == ["head"]
    assert sanity["steps"][-1]["n_layers_randomized"] == sanity["n_layers"]
    for k, v in model.module.state_dict().items():  # the audited model was never changed
        assert torch.equal(v, state[k])


def test_audit_json_and_attributions_file(tmp_path):
    audit = _audit(tmp_path, BrightnessNet(2), {"n_images": 5, "n_samples": 8,
                                                "sanity_images": 2, "sanity_steps": 1})
    res = audit["results"]["explain"]
    json.dumps(audit, allow_nan=False)
    assert res["status"] == "assessed" and res["method"] == "gradient"
    assert res["n_images"] == 5 and len(res["images"]) == 5
    assert res["settings"]["n_samples"] == 8 and res["settings"]["seed"] == 0
    assert res["attributions_file"] == "attributions.npz"
    first = res["images"][0]
    assert first["roles"][0] == "predicted" and first["predicted"] == first["explained_classes"][0]
    assert (len(first["explained_classes"]) == 2) == (first["label"] != first["predicted"])
    comp = res["trust"]["completeness"]
    assert comp["n"] == res["n_explanations"] and comp["tolerance"] == 0.1
    faith = res["trust"]["faithfulness"]
    assert faith["n"] == 5 and faith["deletion_auc"]["value"] is not None
    assert "random" in faith["text"]
    stored = load_attributions(tmp_path / "audit" / "attributions.npz")
    assert set(stored) == {im["image"] for im in res["images"]}
    arr = stored[first["image"]]
    assert arr.shape == (len(first["explained_classes"]), 3, 16, 16) and arr.dtype == np.float32
    # the same seed gives the same numbers
    again = _audit(tmp_path / "again", BrightnessNet(2), {"n_images": 5, "n_samples": 8,
                                                          "sanity_images": 2, "sanity_steps": 1})
    assert again["results"]["explain"]["images"] == res["images"]


def test_user_chosen_images(tmp_path):
    res = _audit(tmp_path, BrightnessNet(2), {"images": ["images/img_003.png"], "n_samples": 4,
                                              "sanity_images": 0}, out=False)["results"]["explain"]
    from auditkit._local import image_key, installation_secret

    # named by its table entry, reported by its pseudonymous key (never the file name)
    key = image_key(installation_secret(), "tiny", "images/img_003.png")
    assert [im["image"] for im in res["images"]] == [key]
    assert res["selection"] == "chosen by the user" and res["attributions_file"] is None


@pytest.mark.parametrize(("options", "match"), [
    ({"images": ["nope.png"]}, r"must name images of the dataset; got unknown \['nope.png'\]"),
    ({"n_samples": 0}, "n_samples must be a positive integer; got 0 instead"),
    ({"colour": 1}, r"explain options must be among .*; got unknown \['colour'\] instead"),
    ({"attribute": "height"}, "attribute must be one of"),
])
def test_bad_options_are_refused(tmp_path, options, match):
    with pytest.raises(ConfigError, match=match):
        _audit(tmp_path, BrightnessNet(2), options, out=False)


@pytest.mark.slow
def test_demo_model_explanations(data_root):
    from tests.conftest import demo_models_present

    if not demo_models_present():
        pytest.skip("demo models are not trained")
    model = auditkit.load_model("derm-lesion@v2", device="cpu")
    dataset = auditkit.load_dataset("fitzpatrick17k", data_root=data_root, check_images=False)
    dataset = dataset.subset(np.arange(len(dataset)) < 300)
    audit = run_audit(model=model, dataset=dataset, config=AuditConfig(
        checks=["explain"], n_boot=100, options={"explain": {
            "n_per_group": 1, "n_samples": 8, "sanity_images": 1, "sanity_steps": 1}}))
    res = audit["results"]["explain"]
    assert res["stratified_by"] == "skin_type"
    groups = {im["groups"]["skin_type"] for im in res["images"]}
    assert len(groups) >= 5
    assert res["trust"]["sanity"]["status"] == "assessed"


@pytest.mark.parametrize("n_classes", [2, 3])
def test_batched_expected_gradients_equal_shaps_own(n_classes):
    """The batched engine replays shap.GradientExplainer's draws: same numbers."""
    from auditkit.explain._base import _ShapGradientRows

    torch.manual_seed(0)
    net = SmallResNet(in_channels=3, num_outputs=n_classes, widths=[4, 8, 8, 8]).eval()
    x, bg = torch.rand(2, 3, 8, 8), torch.rand(5, 3, 8, 8)
    targets = [[1, 0], [n_classes - 1]]
    ours = ImageExplainer(n_samples=10, background_size=5, batch_size=7,
                          random_state=4).explain(net, x, background=bg, targets=targets)
    ref = _ShapGradientRows(10, net, bg, 7)
    for i, cs in enumerate(targets):
        computed = cs[:1] if n_classes == 2 else cs
        attr, score, base = ref(x[i: i + 1], computed, seed=4 + i)
        rows = np.flatnonzero(ours.image_index == i)[: len(computed)]
        np.testing.assert_allclose(ours.attributions[rows], attr, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(ours.score[rows], score, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(ours.base_value[rows], base, rtol=1e-5, atol=1e-6)
