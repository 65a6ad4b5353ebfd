"""The pixel pipeline: real chest X-rays turned into DICOM variants reach the model exactly
as pydicom's own LUT functions say they should, under each declared scaling.

Each test records the tensor the model *receives* (a module that keeps its input) and
compares it with a reference computed independently, here, from pydicom's
``apply_modality_lut`` / ``apply_voi_lut`` and the DICOM standard's value ranges.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from auditkit.data import DatasetSpec, PixelScaling, load_dataset, read_pixels
from auditkit.exceptions import ConfigError, DataError
from auditkit.models import LoadedModel, ModelCard
from auditkit.predict import LocalExecutor, predict
from tests.conftest import dicom_skeleton

N_IMAGES = 4


def write_dicom(path: Path, frames: np.ndarray, *, bits_stored: int, signed: bool = False,
                photometric: str = "MONOCHROME2", **tags: Any) -> None:
    """Write ``frames`` ((H, W) or (F, H, W) integers) as an uncompressed DICOM file."""
    ds = dicom_skeleton()
    ds.Rows, ds.Columns = frames.shape[-2:]
    if frames.ndim == 3:
        ds.NumberOfFrames = frames.shape[0]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, bits_stored, bits_stored - 1
    ds.PixelRepresentation = 1 if signed else 0
    for key, value in tags.items():
        setattr(ds, key, value)
    ds.PixelData = frames.astype(np.int16 if signed else np.uint16).tobytes()
    ds.save_as(path, enforce_file_format=True)


@pytest.fixture(scope="module")
def xrays(data_root: Path) -> tuple[list[np.ndarray], list[str]]:
    """The first real covid_cxr chest X-rays (8-bit grayscale PNG) and their labels."""
    table = pd.read_csv(data_root / "covid_cxr" / "metadata.csv", dtype=str).head(N_IMAGES)
    images = [np.asarray(Image.open(data_root / "covid_cxr" / p).convert("L"), dtype=np.int64)
              for p in table["image"]]
    labels = ["covid" if v == "COVID-19" else "not_covid" for v in table["label_covid"]]
    return images, labels


class Recorder(torch.nn.Module):
    """Keeps every input it receives; answers one logit of 0."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x.detach().clone())
        return torch.zeros(x.shape[0], 1)


def received(folder: Path, files: list[str], labels: list[str], *, scaling: dict | None,
             size: int = 128) -> np.ndarray:
    """Run a recording model over ``files`` (under ``folder``); the inputs it saw ``(N, H, W)``."""
    pd.DataFrame({"file": files, "finding": labels}).to_csv(folder / "t.csv", index=False)
    spec = DatasetSpec(name="dcm", table="t.csv", image_column="file", label_column="finding",
                       classes=("not_covid", "covid"))
    dataset = load_dataset(spec, root=folder)
    card = ModelCard(
        name="rec", version="v1", task="records its input", class_names=["not_covid", "covid"],
        positive_class="covid", output="binary_logit", input_size=[size, size], channels=1,
        normalization={"mean": [0.0], "std": [1.0]}, format="torchscript",
        weights="w.pt", sha256="0" * 64, input_scaling=scaling)
    recorder = Recorder()
    model = LoadedModel(card=card, module=recorder, device=torch.device("cpu"))
    predict(model, dataset, executor=LocalExecutor(batch_size=2), cache=False)
    seen = torch.cat(recorder.seen)
    assert seen.dtype == torch.float32 and seen.shape == (len(files), 1, size, size)
    return seen[:, 0].numpy()


def reference(path: Path, scale: Any, frame: int | None = None) -> np.ndarray:
    """pydicom's modality LUT, then ``scale(values, ds)``; MONOCHROME1 inverted."""
    import pydicom
    from pydicom.pixels import apply_modality_lut

    ds = pydicom.dcmread(path)
    px = ds.pixel_array if frame is None else ds.pixel_array[frame]
    out = np.clip(scale(apply_modality_lut(px, ds).astype(np.float64), ds), 0, 1)
    return 1 - out if ds.PhotometricInterpretation == "MONOCHROME1" else out


def _write_variants(tmp: Path, images: list[np.ndarray], kind: str) -> list[str]:
    files = []
    for i, v in enumerate(images):
        name = f"{kind}_{i}.dcm"
        if kind == "u12":
            write_dicom(tmp / name, v * 16, bits_stored=12)
        elif kind == "s16_rescale":  # stored = 100 v - 15000, slope 0.01, intercept 150 -> v
            write_dicom(tmp / name, v * 100 - 15000, bits_stored=16, signed=True,
                        RescaleSlope="0.01", RescaleIntercept="150")
        elif kind == "mono1":
            write_dicom(tmp / name, 4095 - v * 16, bits_stored=12, photometric="MONOCHROME1")
        elif kind == "windowed":
            write_dicom(tmp / name, v * 16, bits_stored=12, WindowCenter="1800",
                        WindowWidth="2400")
        files.append(name)
    return files


def test_12bit_unsigned_scaled_by_bits_stored(tmp_path: Path, xrays: tuple) -> None:
    images, labels = xrays
    files = _write_variants(tmp_path, images, "u12")
    seen = received(tmp_path, files, labels, scaling=None)  # default: bit_depth
    for got, f, v in zip(seen, files, images):
        want = reference(tmp_path / f, lambda a, ds: a / (2**ds.BitsStored - 1))
        np.testing.assert_allclose(got, want, atol=1e-6)
        np.testing.assert_allclose(got, v * 16 / 4095, atol=1e-6)  # not each image's own range
    assert not np.allclose(seen.max(axis=(1, 2)), 1.0)  # no per-image stretch


def test_16bit_signed_with_rescale_and_fixed_range(tmp_path: Path, xrays: tuple) -> None:
    images, labels = xrays
    files = _write_variants(tmp_path, images, "s16_rescale")
    seen = received(tmp_path, files, labels, scaling={"method": "range", "range": [0, 255]})
    for got, f, v in zip(seen, files, images):
        np.testing.assert_allclose(got, reference(tmp_path / f, lambda a, ds: a / 255),
                                   atol=1e-6)
        np.testing.assert_allclose(got, v / 255, atol=1e-5)  # the original PNG's pixels
    # the full signed 16-bit range through the rescale: -32768 * 0.01 + 150 ... 32767 * 0.01 + 150
    seen_bits = received(tmp_path, files, labels, scaling=None)
    lo, hi = -32768 * 0.01 + 150, 32767 * 0.01 + 150
    np.testing.assert_allclose(seen_bits[0], (images[0] - lo) / (hi - lo), atol=1e-6)


def test_monochrome1_is_inverted(tmp_path: Path, xrays: tuple) -> None:
    images, labels = xrays
    files = _write_variants(tmp_path, images, "mono1")
    seen = received(tmp_path, files, labels, scaling=None)
    for got, f, v in zip(seen, files, images):
        np.testing.assert_allclose(got, reference(tmp_path / f, lambda a, ds: a / 4095),
                                   atol=1e-6)
        np.testing.assert_allclose(got, v * 16 / 4095, atol=1e-6)  # bright bone stays bright


@pytest.mark.parametrize("scaling", [{"method": "dicom_window"},
                                     {"method": "window", "window": [1800, 2400]}])
def test_window_from_the_file_or_stated_in_the_card(tmp_path: Path, xrays: tuple,
                                                    scaling: dict) -> None:
    from pydicom.pixels import apply_voi_lut

    images, labels = xrays
    files = _write_variants(tmp_path, images, "windowed")
    seen = received(tmp_path, files, labels, scaling=scaling)
    for got, f in zip(seen, files):
        want = reference(tmp_path / f, lambda a, ds: apply_voi_lut(a, ds) / 4095)
        np.testing.assert_allclose(got, want, atol=1e-6)
    # the window really clips: values above 1800 + 1200 are all 1, below 600 all 0
    v = images[0] * 16
    assert np.all(seen[0][v > 3000] == 1.0) and np.all(seen[0][v <= 600] == 0.0)


def test_multiframe_uses_the_declared_frame(tmp_path: Path, xrays: tuple) -> None:
    images, labels = xrays
    write_dicom(tmp_path / "mf.dcm", np.stack(images[:3]) * 16, bits_stored=12)
    middle = received(tmp_path, ["mf.dcm"], labels[:1], scaling=None)[0]
    np.testing.assert_allclose(middle, reference(tmp_path / "mf.dcm", lambda a, ds: a / 4095,
                                                 frame=1), atol=1e-6)
    np.testing.assert_allclose(middle, images[1] * 16 / 4095, atol=1e-6)
    first = received(tmp_path, ["mf.dcm"], labels[:1],
                     scaling={"method": "bit_depth", "frame": 0})[0]
    np.testing.assert_allclose(first, images[0] * 16 / 4095, atol=1e-6)


def test_per_image_minmax_when_declared(tmp_path: Path, xrays: tuple) -> None:
    images, labels = xrays
    files = _write_variants(tmp_path, images, "u12")
    seen = received(tmp_path, files, labels, scaling={"method": "minmax"})
    for got, f in zip(seen, files):
        want = reference(tmp_path / f, lambda a, ds: (a - a.min()) / (a.max() - a.min()))
        np.testing.assert_allclose(got, want, atol=1e-6)
        assert got.min() == 0.0 and got.max() == pytest.approx(1.0)


def test_png_8_and_16_bit_follow_the_same_declaration(tmp_path: Path, xrays: tuple,
                                                      data_root: Path) -> None:
    images, labels = xrays
    files8, files16 = [], []
    for i, v in enumerate(images):
        Image.fromarray(v.astype(np.uint8)).save(tmp_path / f"p8_{i}.png")
        Image.fromarray((v * 257).astype(np.uint16)).save(tmp_path / f"p16_{i}.png")
        files8.append(f"p8_{i}.png")
        files16.append(f"p16_{i}.png")
    seen8 = received(tmp_path, files8, labels, scaling=None)
    seen16 = received(tmp_path, files16, labels, scaling=None)
    np.testing.assert_allclose(seen8, np.stack(images) / 255, atol=1e-7)  # today's v / 255
    np.testing.assert_allclose(seen16, np.stack(images) / 255, atol=1e-6)  # 257 v / 65535
    windowed = received(tmp_path, files16, labels,
                        scaling={"method": "window", "window": [32768, 32768]})
    lo, hi = 32767.5 - 32767 / 2, 32767.5 + 32767 / 2  # DICOM linear window, PS3.3 C.11.2.1.2
    want = np.clip((np.stack(images) * 257 - lo) / (hi - lo), 0, 1)
    np.testing.assert_allclose(windowed, want, atol=1e-5)
    with pytest.raises(DataError, match="declares input_scaling 'dicom_window' but p8_0.png"):
        received(tmp_path, files8, labels, scaling={"method": "dicom_window"})


def test_resized_dicom_matches_the_png_it_came_from(tmp_path: Path, xrays: tuple) -> None:
    images, labels = xrays
    files = _write_variants(tmp_path, images, "s16_rescale")
    for i, v in enumerate(images):
        Image.fromarray(v.astype(np.uint8)).save(tmp_path / f"p8_{i}.png")
    dcm = received(tmp_path, files, labels, scaling={"method": "range", "range": [0, 255]},
                   size=64)
    png = received(tmp_path, [f"p8_{i}.png" for i in range(N_IMAGES)], labels, scaling=None,
                   size=64)
    # same bilinear resize; PIL resizes 8-bit images in fixed point and rounds to 8 bits,
    # so the two agree within one grey level, and on average within about a third of one
    diff = np.abs(dcm - png)
    assert diff.max() <= 1 / 255 + 1e-6 and diff.mean() < 0.35 / 255


def test_dicom_window_needs_a_window_in_the_file(tmp_path: Path, xrays: tuple) -> None:
    images, labels = xrays
    files = _write_variants(tmp_path, images[:1], "u12")
    with pytest.raises(DataError, match="no VOI LUT Sequence and no Window Center/Width"):
        received(tmp_path, files, labels[:1], scaling={"method": "dicom_window"})


@pytest.mark.parametrize(("scaling", "message"), [
    ({"method": "stretch"}, "input_scaling.method must be one of"),
    ({"method": "range"}, r"input_scaling.range must be \[low, high\]"),
    ({"method": "range", "range": [5, 1]}, r"input_scaling.range must be \[low, high\]"),
    ({"method": "window", "window": [40, 0]}, "width >= 1"),
    ({"method": "minmax", "range": [0, 1]}, "must be absent unless method is 'range'"),
    ({"method": "bit_depth", "frame": -1}, "frame must be 'middle' or an index"),
])
def test_bad_scaling_declarations(scaling: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        PixelScaling.from_dict(scaling)


def test_read_pixels_default_is_the_bit_range(tmp_path: Path, xrays: tuple) -> None:
    images, _ = xrays
    write_dicom(tmp_path / "a.dcm", images[0] * 16, bits_stored=12)
    np.testing.assert_allclose(read_pixels(tmp_path / "a.dcm"), images[0] * 16 / 4095)
