"""Running a model over a dataset: the execution seam and the prediction cache.

Every check that needs the model's answers on a whole dataset gets them from
:func:`predict`, which asks an :class:`Executor` for raw outputs. The default
:class:`LocalExecutor` runs batches through a DataLoader in this process (CPU, or
one GPU with pinned memory and mixed precision); :class:`auditkit.executors.RayExecutor`
runs the same batches on a Ray cluster. Both call :func:`forward_batch`, so the same
batch at the same precision gives the same numbers wherever it runs.

Results are cached on disk by (model sha256, dataset content hash, preprocessing,
precision), so the same audit never runs the model twice. The cache holds plain
arrays in ``.npz`` files read with ``allow_pickle=False``.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader
from torch.utils.data import Dataset as TorchDataset

from ._local import default_cache_dir
from .data import (
    _SIXTEEN_BIT_MODES,
    Dataset,
    PixelScaling,
    _is_dicom,
    check_pixel_limit,
    read_image,
    read_pixels,
)
from .exceptions import ConfigError, DataError, ModelError
from .models import LoadedModel

__all__ = [
    "Executor",
    "ImageTensors",
    "LocalExecutor",
    "Predictions",
    "check_outputs",
    "default_cache_dir",
    "forward_batch",
    "load_image_tensor",
    "load_model_input",
    "predict",
    "resolve_precision",
]

CACHE_SCHEMA = 1
ProgressFn = Callable[[int, int, str], None]


def _resize_uint8(arr: np.ndarray, input_size: tuple[int, int] | list[int],
                  channels: int) -> torch.Tensor:
    from PIL import Image

    img = Image.fromarray(arr)
    img = img.convert("L" if channels == 1 else "RGB")
    height, width = int(input_size[0]), int(input_size[1])
    if img.size != (width, height):
        img = img.resize((width, height), Image.Resampling.BILINEAR)
    out = np.asarray(img)
    if out.ndim == 2:
        out = out[:, :, None]
    return torch.from_numpy(out.transpose(2, 0, 1).copy())  # writable: PIL arrays are read-only


def load_image_tensor(path: str | os.PathLike[str], *, input_size: tuple[int, int] | list[int],
                      channels: int) -> torch.Tensor:
    """Read an image for display and return ``uint8 (channels, H, W)`` at ``input_size``.

    Resizing is bilinear (PIL, with antialiasing); grayscale images are repeated to
    three channels and colour images converted to luminance for one channel. The
    model itself receives :func:`load_model_input`, which follows the card's scaling.
    """
    return _resize_uint8(read_image(path), input_size, channels)


def load_model_input(path: str | os.PathLike[str], *, input_size: tuple[int, int] | list[int],
                     channels: int, scaling: PixelScaling | None = None) -> torch.Tensor:
    """The tensor the model receives for one image, before normalization.

    Pixels are scaled to [0, 1] as the card declares (:class:`auditkit.data.PixelScaling`,
    see :func:`auditkit.data.read_pixels`), converted to the card's channels
    (grayscale repeated to RGB; RGB to luminance with ITU-R 601-2 weights, as PIL does)
    and resized bilinearly (PIL, antialiased) to ``input_size``.

    For 8-bit PNG/JPEG under the default ``bit_depth`` declaration the resize runs on
    the 8-bit image and the result is divided by 255, exactly as before the declaration
    existed, so the demo models' numbers are unchanged.

    Returns
    -------
    torch.Tensor
        float32 ``(channels, H, W)`` in [0, 1].
    """
    from PIL import Image

    scaling = scaling or PixelScaling()
    height, width = int(input_size[0]), int(input_size[1])
    data = Path(path).read_bytes()
    check_pixel_limit(path, data)  # from the header, before anything is decoded
    if scaling.method == "bit_depth" and not _is_dicom(Path(path), data[:132]):
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            if img.mode not in _SIXTEEN_BIT_MODES:
                arr8 = np.asarray(img) if img.mode in ("L", "RGB") else np.asarray(
                    img.convert("RGB"))
                return _resize_uint8(arr8, input_size, channels).float().div_(255.0)
    try:
        arr = read_pixels(path, scaling, data)
    except ValueError as exc:  # a declaration the file cannot meet: say which file and why
        raise DataError(f"Image {Path(path).name} cannot be prepared for the model: {exc}.") from exc
    if arr.ndim == 2 and channels == 3:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    elif arr.ndim == 3 and channels == 1:
        arr = arr @ np.array([0.299, 0.587, 0.114])  # PIL's "L" conversion weights
    if arr.ndim == 2:
        arr = arr[:, :, None]
    planes = []
    for c in range(arr.shape[2]):
        plane = arr[:, :, c].astype(np.float32)
        if plane.shape != (height, width):
            resized = Image.fromarray(plane, mode="F").resize((width, height),
                                                              Image.Resampling.BILINEAR)
            plane = np.asarray(resized, dtype=np.float32)
        planes.append(plane)
    out = np.clip(np.stack(planes), 0.0, 1.0)
    return torch.from_numpy(np.ascontiguousarray(out, dtype=np.float32))


class ImageTensors(TorchDataset):
    """A torch Dataset of ``(float32 image (C, H, W) in [0, 1], index)`` for a list of paths."""

    def __init__(self, paths: list[str], *, input_size: list[int], channels: int,
                 scaling: PixelScaling | None = None) -> None:
        self.paths = list(paths)
        self.input_size = list(input_size)
        self.channels = channels
        self.scaling = scaling or PixelScaling()

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return load_model_input(self.paths[i], input_size=self.input_size,
                                channels=self.channels, scaling=self.scaling), i


class Executor(Protocol):
    """Where model execution happens: the one seam a distributed runner replaces."""

    def describe(self) -> dict[str, Any]:
        """Settings that may change the numbers (precision), for the cache key and audit.json."""

    def outputs(self, model: LoadedModel, dataset: Dataset, *,
                progress: ProgressFn | None = None) -> np.ndarray:
        """Raw model outputs ``(N, K)`` float32, in ``dataset.records`` order."""


class LocalExecutor:
    """Batched inference in this process.

    Parameters
    ----------
    batch_size : int
        Images per forward pass.
    num_workers : int, optional
        DataLoader worker processes decoding images. Default: 0 on the CPU (the
        model needs the cores), ``min(8, cores - 1)`` with a GPU.
    precision : {"auto", "float32", "bf16", "fp16"}
        ``auto`` is float32 on the CPU and mixed precision on a GPU (bf16 where the
        GPU supports it, else fp16).
    """

    def __init__(self, *, batch_size: int = 64, num_workers: int | None = None,
                 precision: str = "auto") -> None:
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1; got {batch_size} instead.")
        if precision not in ("auto", "float32", "bf16", "fp16"):
            raise ConfigError(
                f"precision must be auto, float32, bf16 or fp16; got {precision!r} instead."
            )
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.precision = precision

    def resolved_precision(self, device: torch.device) -> str:
        return resolve_precision(self.precision, device)

    def describe(self, device: torch.device | None = None) -> dict[str, Any]:
        info: dict[str, Any] = {"executor": "local", "batch_size": self.batch_size,
                                "precision": self.precision}
        if device is not None:
            info["precision"] = self.resolved_precision(device)
            info["device"] = str(device)
        return info

    def outputs(self, model: LoadedModel, dataset: Dataset, *,
                progress: ProgressFn | None = None) -> np.ndarray:
        device = model.device
        precision = self.resolved_precision(device)
        on_gpu = device.type == "cuda"
        workers = self.num_workers
        if workers is None:
            workers = min(8, max(0, (os.cpu_count() or 1) - 1)) if on_gpu else 0
        card = model.card
        loader = DataLoader(
            ImageTensors(dataset.records["path"].tolist(), input_size=card.input_size,
                         channels=card.channels, scaling=card.scaling),
            batch_size=self.batch_size,
            shuffle=False,
            num_workers=workers,
            pin_memory=on_gpu,
            persistent_workers=False,
        )
        n = len(dataset)
        chunks: list[np.ndarray] = []
        done = 0
        for batch, _idx in loader:
            chunks.append(forward_batch(model, batch, precision=precision, first=done,
                                        dataset_name=dataset.name))
            done += batch.shape[0]
            if progress:
                progress(done, n, f"running {card.ref}")
        if not chunks:
            raise ModelError(f"{card.ref} produced no outputs for dataset {dataset.name!r}.")
        outputs = np.concatenate(chunks).astype(np.float32)
        return outputs


def resolve_precision(precision: str, device: torch.device) -> str:
    """The precision ``precision`` (``auto``, ``float32``, ``bf16``, ``fp16``) means on ``device``.

    ``auto`` is float32 on the CPU and mixed precision on a GPU (bf16 where the GPU
    supports it, else fp16); bf16 and fp16 on the CPU are a ConfigError.
    """
    if precision != "auto":
        if device.type == "cpu" and precision != "float32":
            raise ConfigError(
                f"precision {precision!r} needs a GPU; on the CPU use float32 or auto."
            )
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "float32"


def forward_batch(model: LoadedModel, images01: torch.Tensor, *, precision: str,
                  first: int = 0, dataset_name: str = "") -> np.ndarray:
    """Run one batch through the model: ``(B, C, H, W)`` in [0, 1] to outputs ``(B, K)`` float32
    (a segmentation model's ``(B, C, H', W')``).

    The one forward pass of every executor (local, Ray), so that the same batch at the
    same ``precision`` (already resolved: ``float32``, ``bf16`` or ``fp16``) gives the
    same numbers wherever it runs. ``first`` is the batch's offset in the dataset, for
    naming the images in a :class:`ModelError`.
    """
    card = model.card
    device = model.device
    amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    expected: int | tuple[int, ...] = (card.output_shape if card.output == "segmentation"
                                       else card.output_shape[0])
    with torch.inference_mode():
        x = images01.to(device, non_blocking=device.type == "cuda")  # float32 in [0, 1]
        x = model.normalize(x)
        try:
            if amp_dtype is not None:
                with torch.autocast(device_type="cuda", dtype=amp_dtype):
                    out = model.module(x)
            else:
                out = model.module(x)
        except Exception as exc:  # the model's own code failed: say so, no traceback
            raise ModelError(
                f"{card.ref} failed on images {first + 1}-{first + x.shape[0]} of "
                f"{dataset_name!r}: {_short_reason(exc)}"
            ) from exc
        return check_outputs(out, n_images=x.shape[0], expected=expected, ref=card.ref,
                             first=first)


def _short_reason(exc: BaseException) -> str:
    """``Type: message`` in one line; TorchScript's own traceback reduced to its last line."""
    lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
    text = lines[-1] if lines else ""
    return f"{type(exc).__name__}: {text[:300]}"


def check_outputs(out: Any, *, n_images: int, expected: int | tuple[int, ...], ref: str,
                  first: int = 0) -> np.ndarray:
    """One batch of raw model outputs as ``(n_images, expected)`` float32, or ModelError.

    Refuses what would otherwise end in a traceback or in silently wrong numbers: a
    tuple or other non-tensor, the wrong number of rows or outputs per image, NaN or
    infinite values (``first`` is the batch's offset, for naming the image).

    ``expected`` is the number of outputs per image (classifiers: ``(N, K)``), or a
    segmentation model's per-image shape ``(C, H, W)``: the batch must then be exactly
    ``(n_images, C, H, W)`` (a reshape would silently scramble pixels).
    """
    if isinstance(expected, tuple):
        return _check_mask_outputs(out, n_images=n_images, expected=expected, ref=ref,
                                   first=first)
    if not isinstance(out, torch.Tensor):
        raise ModelError(
            f"{ref} returned a {type(out).__name__} for a batch of images; expected one "
            f"tensor of shape (N, {expected})."
        )
    if out.ndim == 0 or out.shape[0] != n_images:
        raise ModelError(
            f"{ref} returned outputs of shape {tuple(out.shape)} for {n_images} image(s); "
            f"expected one row per image, ({n_images}, {expected})."
        )
    if out.numel() != n_images * expected:
        per_image = out.numel() / n_images
        shown = int(per_image) if per_image == int(per_image) else round(per_image, 2)
        raise ModelError(
            f"{ref} returned {shown} output(s) per image (shape {tuple(out.shape)}); its card "
            f"says {expected}."
        )
    arr = out.detach().float().reshape(n_images, expected).cpu().numpy()
    finite = np.isfinite(arr)
    if not finite.all():
        bad_rows = np.flatnonzero(~finite.all(axis=1))
        raise ModelError(
            f"{ref} returned NaN or infinite outputs for {len(bad_rows)} image(s) of a batch "
            f"(first: image {first + int(bad_rows[0]) + 1}); expected finite numbers."
        )
    return arr


def _check_mask_outputs(out: Any, *, n_images: int, expected: tuple[int, ...], ref: str,
                        first: int) -> np.ndarray:
    shape = f"(N, {', '.join(str(v) for v in expected)})"
    if not isinstance(out, torch.Tensor):
        raise ModelError(
            f"{ref} returned a {type(out).__name__} for a batch of images; expected one "
            f"tensor of per-pixel logits of shape {shape}.")
    want = (n_images, *expected)
    if tuple(out.shape) != want:
        hint = ""
        if out.ndim == 4 and out.shape[0] == n_images and out.shape[1] == expected[0]:
            hint = (f" The masks are {out.shape[2]}x{out.shape[3]} pixels; state that size as "
                    "segmentation.output_size in the card.")
        elif out.ndim == 4 and out.shape[0] == n_images:
            hint = (f" It gives {out.shape[1]} channel(s) per pixel; the card's activation and "
                    f"class_names call for {expected[0]}.")
        elif out.ndim == 2:
            hint = " That is one row per image: is this a classifier, not a segmentation model?"
        raise ModelError(
            f"{ref} returned outputs of shape {tuple(out.shape)} for {n_images} image(s); its "
            f"card says per-pixel logits {want} (N, channels, height, width).{hint}")
    arr = out.detach().float().cpu().numpy()
    finite = np.isfinite(arr.reshape(n_images, -1))
    if not finite.all():
        bad_rows = np.flatnonzero(~finite.all(axis=1))
        raise ModelError(
            f"{ref} returned NaN or infinite pixel logits for {len(bad_rows)} image(s) of a "
            f"batch (first: image {first + int(bad_rows[0]) + 1}); expected finite numbers.")
    return arr


@dataclass
class Predictions:
    """A model's answers on a dataset.

    Attributes
    ----------
    outputs : numpy.ndarray
        Raw outputs ``(N, K)``, float32; for a segmentation model ``(N, C, H, W)``.
    probabilities : numpy.ndarray
        ``(N, n_classes)`` in [0, 1], float64; for a segmentation model each pixel's
        probability of the positive class, ``(N, H, W)`` float32.
    images : list of str
        Image ids in ``dataset.records`` order.
    from_cache : bool
        True when nothing was run because the cache held the answer.
    cache_key : str
    settings : dict
        Executor settings that produced them (precision, device).
    """

    outputs: np.ndarray
    probabilities: np.ndarray
    images: list[str]
    from_cache: bool
    cache_key: str
    settings: dict[str, Any]

    def predicted_index(self, output_kind: str) -> np.ndarray:
        """Predicted class index ``(N,)`` (argmax; sigmoid >= 0.5 for binary)."""
        if output_kind == "binary_logit":
            return (self.probabilities[:, 1] >= 0.5).astype(int)
        if output_kind in ("multilabel_sigmoid", "segmentation"):
            raise ModelError(f"A {output_kind} model has no single predicted class per image; "
                             "use finding_calls() or the segmentation masks.")
        return self.probabilities.argmax(axis=1)

    def finding_calls(self, thresholds: np.ndarray) -> np.ndarray:
        """Multi-label calls ``(N, K)`` bool: each finding's probability ``>= threshold``."""
        return self.probabilities >= np.asarray(thresholds)[None, :]

    def to_frame(self, model: LoadedModel, dataset: Dataset) -> pd.DataFrame:
        """The ``predictions.csv`` table: image, label, pred, prob_<class>, attributes.

        ``image`` holds each image's pseudonymous key (``dataset.records["key"]``),
        never its file name, which may carry a patient id or a scan date.
        """
        card = model.card
        classes = card.class_names
        frame = pd.DataFrame({"image": dataset.records["key"].to_numpy(),
                              "label": dataset.records["label"].to_numpy()})
        if card.output == "multilabel_sigmoid":
            calls = self.finding_calls(card.thresholds)
            frame["pred"] = ["|".join(c for c, hit in zip(classes, row) if hit)
                             for row in calls]
            for k, name in enumerate(classes):
                column = f"finding_{name}"
                if column in dataset.records:
                    frame[f"true_{name}"] = dataset.records[column].to_numpy()
                frame[f"prob_{name}"] = self.probabilities[:, k]
                frame[f"pred_{name}"] = calls[:, k].astype(int)
            return self._with_attributes(frame, dataset)
        if card.output == "segmentation":
            from .models import segmentation_masks

            masks = segmentation_masks(self.probabilities, card, self.outputs)
            area = masks.reshape(len(masks), -1).sum(axis=1)
            others = [c for c in classes if c != card.positive_class]
            frame["pred"] = [card.positive_class if a > 0 else (others[0] if others else "")
                             for a in area]
            frame["max_prob"] = self.probabilities.reshape(len(masks), -1).max(axis=1)
            return self._with_attributes(frame, dataset)
        else:
            frame["pred"] = [classes[i] for i in self.predicted_index(card.output)]
        for k, name in enumerate(classes):
            frame[f"prob_{name}"] = self.probabilities[:, k]
        return self._with_attributes(frame, dataset)

    @staticmethod
    def _with_attributes(frame: pd.DataFrame, dataset: Dataset) -> pd.DataFrame:
        for attr in dataset.spec.attributes:
            frame[attr.name] = dataset.records[attr.name].to_numpy()
            if attr.kind == "age":
                frame[f"{attr.name}_years"] = dataset.records[f"{attr.name}_years"].to_numpy()
        return frame


def _cache_key(model: LoadedModel, dataset: Dataset, settings: dict[str, Any]) -> str:
    payload = {
        "schema": CACHE_SCHEMA,
        "model_sha256": model.sha256,
        "output": model.card.output,
        "dataset_hash": dataset.content_hash,
        "preprocessing": model.card.preprocessing,
        "precision": settings.get("precision"),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _read_cache_entry(path: Path, images: list[str]) -> np.ndarray | None:
    """The cached outputs at ``path`` for exactly these images, or None.

    A damaged entry (empty, truncated, not an npz, wrong arrays, wrong length, NaN) is
    deleted and None returned, so the outputs are recomputed instead of every later
    audit failing. Arrays are read with ``allow_pickle=False``.
    """
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as npz:
            outputs, cached_images = np.asarray(npz["outputs"]), npz["images"].tolist()
        ok = (cached_images == images and outputs.ndim in (2, 4) and len(outputs) == len(images)
              and outputs.dtype.kind == "f" and bool(np.isfinite(outputs).all()))
    except Exception:  # noqa: BLE001 - zipfile, EOF, pickle refusal...: any damage is recomputed
        ok = False
    if ok:
        return outputs.astype(np.float32, copy=False)
    # a key names one model, dataset and precision, so any mismatch is damage
    try:
        path.unlink()
    except OSError:
        pass  # a read-only cache: the entry is ignored (the rewrite then reports the folder)
    return None


def _write_cache_entry(path: Path, outputs: np.ndarray, images: list[str]) -> None:
    """Write the entry atomically; an unwritable cache folder is a clear ConfigError."""
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.npz")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(tmp, outputs=outputs, images=np.asarray(images, dtype=str))
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise ConfigError(
            f"The prediction cache folder {path.parent} cannot be written "
            f"({exc.strerror or exc}); expected a folder this user may write. Set "
            "AUDITKIT_CACHE (CLI: --cache-dir) to one."
        ) from exc


def predict(
    model: LoadedModel,
    dataset: Dataset,
    *,
    executor: Executor | None = None,
    cache: bool = True,
    cache_dir: str | os.PathLike[str] | None = None,
    progress: ProgressFn | None = None,
) -> Predictions:
    """The model's outputs on every image of ``dataset``, from the cache when possible.

    Parameters
    ----------
    model : LoadedModel
    dataset : Dataset
    executor : Executor, optional
        Default :class:`LocalExecutor` with its defaults.
    cache : bool
        Read and write the on-disk cache.
    cache_dir : path, optional
        Default :func:`default_cache_dir`; predictions live in ``predictions/``.
    progress : callable, optional
        ``progress(done, total, message)``.
    """
    executor = executor or LocalExecutor()
    settings = (executor.describe(model.device) if isinstance(executor, LocalExecutor)
                else executor.describe())
    key = _cache_key(model, dataset, settings)
    images = dataset.records["image"].tolist()
    path = Path(cache_dir or default_cache_dir()) / "predictions" / f"{key}.npz"
    if cache:
        outputs = _read_cache_entry(path, images)
        if outputs is not None:
            if progress:
                progress(len(images), len(images), "predictions from cache")
            return Predictions(outputs=outputs, probabilities=model.probabilities(outputs),
                               images=images, from_cache=True, cache_key=key, settings=settings)
    outputs = executor.outputs(model, dataset, progress=progress)
    if cache:
        _write_cache_entry(path, outputs, images)
    return Predictions(outputs=outputs, probabilities=model.probabilities(outputs), images=images,
                       from_cache=False, cache_key=key, settings=settings)
