"""Model cards and safe loading: every format and output kind; malicious pickles refused."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

import auditkit
from auditkit.architectures import SmallResNet
from auditkit.exceptions import IntegrityError, ModelError, ModelNotFoundError, UnsafeModelError
from auditkit.models import ModelCard, list_models, load_model, scan_pickle
from tests.conftest import BrightnessNet, write_model

KW = {"in_channels": 3, "num_outputs": 2, "widths": [4, 8, 8, 8]}


@pytest.mark.parametrize("fmt", ["torchscript", "export", "safetensors", "pt"])
def test_every_format_gives_the_same_outputs(tmp_path: Path, fmt: str) -> None:
    torch.manual_seed(0)
    net = SmallResNet(**KW).eval()
    arch = {"architecture": "small_resnet", "architecture_kwargs": KW} if fmt in (
        "safetensors", "pt") else {}
    folder = write_model(tmp_path / fmt, net, fmt=fmt, **arch)
    model = load_model(folder, device="cpu")
    x = torch.rand(3, 3, 16, 16)
    expected = net(model.normalize(x))
    with torch.no_grad():
        got = model.module(model.normalize(x))
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(("output", "n_out", "classes"), [
    ("softmax", 3, ["a", "b", "c"]),
    ("binary_logit", 1, ["neg", "pos"]),
    ("multilabel_sigmoid", 3, ["x", "y", "z"]),
])
def test_output_kinds_to_probabilities(tmp_path: Path, output: str, n_out: int,
                                       classes: list[str]) -> None:
    folder = write_model(tmp_path / output, BrightnessNet(n_out), fmt="torchscript",
                         output=output, class_names=classes)
    model = load_model(folder, device="cpu")
    x = torch.full((2, 3, 16, 16), 0.9)
    outputs = model.module(model.normalize(x)).detach().numpy()
    proba = model.probabilities(outputs)
    assert proba.shape == (2, len(classes))
    if output == "softmax":
        np.testing.assert_allclose(proba.sum(1), 1.0)
    if output == "binary_logit":
        z = outputs.reshape(-1)
        np.testing.assert_allclose(proba[:, 1], 1 / (1 + np.exp(-z)), rtol=1e-6)
        # presented to attacks/explainers as two logits whose softmax is the same
        two = torch.softmax(model.logits(x), dim=1).detach().numpy()
        np.testing.assert_allclose(two, proba, rtol=1e-5)
    if output == "multilabel_sigmoid":
        assert ((proba > 0) & (proba < 1)).all() and not np.allclose(proba.sum(1), 1.0)


def test_sha256_mismatch_is_refused(brightness_model_dir: Path) -> None:
    weights = brightness_model_dir / "weights.torchscript.pt"
    weights.write_bytes(weights.read_bytes() + b"\0")
    with pytest.raises(IntegrityError, match="do not match the model card: expected sha256"):
        load_model(brightness_model_dir, device="cpu")


class _Evil:
    def __reduce__(self):  # runs os.system on unpickle
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("container", ["torch_zip", "legacy_pickle"])
def test_malicious_pickle_is_refused_and_nothing_runs(tmp_path: Path, container: str) -> None:
    marker = tmp_path / "pwned"
    evil = _Evil()
    evil.marker = marker  # type: ignore[attr-defined]
    folder = tmp_path / "m"
    folder.mkdir()
    weights = folder / "weights.pt"
    payload = {"stem.0.weight": torch.zeros(1), "x": evil}
    if container == "torch_zip":
        torch.save(payload, str(weights))
    else:
        weights.write_bytes(pickle.dumps(payload))
    card = json.loads(json.dumps({
        "name": "evil", "version": "v1", "task": "t", "class_names": ["a", "b"],
        "positive_class": "b", "output": "softmax", "input_size": [16, 16], "channels": 3,
        "normalization": {"mean": [0, 0, 0], "std": [1, 1, 1]}, "format": "state_dict",
        "weights": "weights.pt", "sha256": auditkit.sha256_file(weights),
        "architecture": "small_resnet", "architecture_kwargs": KW,
    }))
    (folder / "card.json").write_text(json.dumps(card))
    with pytest.raises(UnsafeModelError, match=r"would import \['posix.system'\]|would import"):
        load_model(folder, device="cpu")
    assert not marker.exists()
    with pytest.raises(UnsafeModelError, match="Nothing from the file was executed"):
        scan_pickle(weights)


def test_plain_state_dict_passes_the_scan(tmp_path: Path) -> None:
    path = tmp_path / "sd.pt"
    torch.save(SmallResNet(**KW).state_dict(), str(path))
    scan_pickle(path)  # no exception


@pytest.mark.parametrize(("change", "message"), [
    ({"output": "regression"}, "field 'output': expected one of 'softmax', 'binary_logit', "
                               "'multilabel_sigmoid' or 'segmentation'; found 'regression'"),
    ({"positive_class": "zebra"}, "field 'positive_class': expected one of class_names "
                                  r"\['benign', 'malignant'\]; found 'zebra'"),
    ({"channels": 4}, "field 'channels': expected one of 1 or 3; found 4"),
    ({"format": "state_dict", "architecture": None},
     "field 'architecture': expected an architecture name for a state_dict card; found None"),
    ({"normalization": {"mean": [0.5], "std": [0.25]}},
     r"field 'normalization.mean': expected 3 value\(s\), one per channel; found \[0.5\]"),
])
def test_invalid_cards(brightness_model_dir: Path, change: dict, message: str) -> None:
    data = json.loads((brightness_model_dir / "card.json").read_text())
    with pytest.raises(ModelError, match=message):
        ModelCard.from_dict({**data, **change})


def test_registry_resolution(tmp_path: Path) -> None:
    reg = tmp_path / "reg"
    write_model(reg / "m" / "v1", BrightnessNet(2), fmt="torchscript", name="m", version="v1")
    write_model(reg / "m" / "v2", BrightnessNet(2, scale=2.0), fmt="torchscript", name="m",
                version="v2")
    assert [m.card.ref for m in list_models(reg)] == ["m@v1", "m@v2"]
    assert auditkit.resolve_model("m", reg).card.version == "v2"
    assert auditkit.resolve_model("m@v1", reg).card.version == "v1"
    with pytest.raises(ModelNotFoundError, match="expected NAME\\[@VERSION\\] of one of: m@v1, m@v2"):
        auditkit.resolve_model("m@v9", reg)


def test_device_selection() -> None:
    assert auditkit.select_device("cpu").type == "cpu"
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert auditkit.select_device("auto").type == expected
    if not torch.cuda.is_available():
        with pytest.raises(auditkit.ConfigError, match="no CUDA GPU visible"):
            auditkit.select_device("cuda")


def test_demo_registry_cards_verify() -> None:
    models = list_models()
    refs = {m.card.ref for m in models}
    assert {"derm-lesion@v1", "derm-lesion@v2", "cxr-covid@v1", "mri-tumor@v1"} <= refs
    assert all(m.verify() for m in models)
    formats = {m.card.format for m in models}
    assert {"torchscript", "state_dict", "export"} <= formats


def test_normalize_works_under_inference_mode_then_autograd(brightness_model_dir: Path) -> None:
    model = load_model(brightness_model_dir, device="cpu")
    x = torch.rand(2, 3, 16, 16)
    with torch.inference_mode():
        first = model.normalize(x.clone())
    y = x.clone().requires_grad_(True)
    model.logits(y).sum().backward()  # cached constants must not be inference tensors
    assert y.grad is not None
    torch.testing.assert_close(first, (x - 0.5) / 0.25)
