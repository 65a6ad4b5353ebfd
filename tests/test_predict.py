"""Batched prediction and the on-disk cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import auditkit
from auditkit.predict import LocalExecutor, predict


class CountingExecutor(LocalExecutor):
    calls = 0

    def outputs(self, model, dataset, *, progress=None):  # type: ignore[override]
        CountingExecutor.calls += 1
        return super().outputs(model, dataset, progress=progress)


def test_cache_second_run_does_no_inference(tmp_path: Path, tiny_dataset_dir: Path,
                                            brightness_model_dir: Path) -> None:
    model = auditkit.load_model(brightness_model_dir, device="cpu")
    ds = auditkit.load_dataset(tiny_dataset_dir)
    ex = CountingExecutor(batch_size=5)
    first = predict(model, ds, executor=ex, cache_dir=tmp_path)
    second = predict(model, ds, executor=ex, cache_dir=tmp_path)
    assert CountingExecutor.calls == 1
    assert not first.from_cache and second.from_cache
    np.testing.assert_array_equal(first.outputs, second.outputs)
    # bright images are malignant: the brightness model gets every image right
    assert (first.predicted_index("softmax") == ds.records["label_index"].to_numpy()).all()
    # a different dataset (one image changed) misses the cache
    sub = ds.subset(np.arange(len(ds)) < 10)
    predict(model, sub, executor=ex, cache_dir=tmp_path)
    assert CountingExecutor.calls == 2


def test_progress_and_batches_cover_every_image(tiny_dataset_dir: Path,
                                                brightness_model_dir: Path) -> None:
    model = auditkit.load_model(brightness_model_dir, device="cpu")
    ds = auditkit.load_dataset(tiny_dataset_dir)
    seen: list[tuple[int, int]] = []
    preds = predict(model, ds, executor=LocalExecutor(batch_size=7), cache=False,
                    progress=lambda d, t, m: seen.append((d, t)))
    assert seen == [(7, 24), (14, 24), (21, 24), (24, 24)]
    assert preds.outputs.shape == (24, 2)
    frame = preds.to_frame(model, ds)
    assert list(frame.columns[:5]) == ["image", "label", "pred", "prob_benign", "prob_malignant"]
    assert {"sex", "age", "age_years", "skin", "site"} <= set(frame.columns)
    assert "patient_id" not in frame.columns


def test_grayscale_images_for_rgb_model(tmp_path: Path, brightness_model_dir: Path) -> None:
    from tests.conftest import make_image_dataset

    make_image_dataset(tmp_path / "gray", mode="L", size=20)
    ds = auditkit.load_dataset(tmp_path / "gray")
    model = auditkit.load_model(brightness_model_dir, device="cpu")
    out = predict(model, ds, cache=False)
    assert out.probabilities.shape == (24, 2)


def test_wrong_output_width_is_reported(tmp_path: Path, tiny_dataset_dir: Path) -> None:
    from tests.conftest import BrightnessNet, write_model

    folder = write_model(tmp_path / "m", BrightnessNet(3), fmt="torchscript",
                         class_names=["benign", "malignant"])
    model = auditkit.load_model(folder, device="cpu")
    with pytest.raises(auditkit.ModelError, match="returned 3 output\\(s\\) per image"):
        predict(model, auditkit.load_dataset(tiny_dataset_dir), cache=False)


def test_precision_options() -> None:
    ex = LocalExecutor(precision="auto")
    assert ex.resolved_precision(torch.device("cpu")) == "float32"
    with pytest.raises(auditkit.ConfigError, match="needs a GPU"):
        LocalExecutor(precision="bf16").resolved_precision(torch.device("cpu"))
    with pytest.raises(auditkit.ConfigError, match="got 'half' instead"):
        LocalExecutor(precision="half")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_mixed_precision_matches_cpu(tiny_dataset_dir: Path, small_resnet_dir: Path) -> None:
    ds = auditkit.load_dataset(tiny_dataset_dir)
    cpu = predict(auditkit.load_model(small_resnet_dir, device="cpu"), ds, cache=False)
    gpu_model = auditkit.load_model(small_resnet_dir, device="cuda")
    gpu = predict(gpu_model, ds, executor=LocalExecutor(num_workers=2), cache=False)
    assert gpu.settings["precision"] in ("bf16", "fp16")
    np.testing.assert_allclose(gpu.probabilities, cpu.probabilities, atol=0.02)
