"""Clinical image corruptions at five severities.

Modelled on ImageNet-C (Hendrycks & Dietterich, 2019, arXiv:1903.12261) but with
milder, clinically plausible levels for small (e.g. 64 × 64) inputs: a phone photo
that is a little out of focus or shaken, a JPEG sent by e-mail, an under-exposed
film, a slightly rotated or cropped image. Two families apply by modality:

* skin photographs: a colour shift towards darker / lighter apparent skin and a
  white-balance (warm / cool) cast — does the model's answer change with apparent
  skin colour?
* X-rays: a narrower display window (windowing / contrast), as on a viewing station.

Every function maps ``(N, C, H, W)`` float images in [0, 1] to the same shape and
range. Random parts (noise, blur direction, crop position, rotation sign) are drawn
from ``numpy.random.default_rng(seed)``, so a corruption is repeatable.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..exceptions import ConfigError

__all__ = ["CORRUPTIONS", "CorruptionSpec", "corrupt", "corruptions_for"]

SEVERITIES = (1, 2, 3, 4, 5)


@dataclass(frozen=True)
class CorruptionSpec:
    """A corruption: its label, where it applies, its parameter at severities 1-5."""

    name: str
    label: str
    modality: str  # "any", "skin" (colour photos) or "xray" (radiographs)
    levels: tuple[float, ...]
    unit: str


def _noise(x: torch.Tensor, sigma: float, rng: np.random.Generator) -> torch.Tensor:
    noise = torch.from_numpy(rng.normal(0.0, sigma, size=tuple(x.shape))).to(x)
    return (x + noise).clamp(0, 1)


def _conv_per_channel(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    c = x.shape[1]
    k = kernel.to(x).expand(c, 1, *kernel.shape)
    pad_h, pad_w = kernel.shape[0] // 2, kernel.shape[1] // 2
    padded = F.pad(x, (pad_w, pad_w, pad_h, pad_h), mode="reflect")
    return F.conv2d(padded, k, groups=c).clamp(0, 1)


def _disk(radius: float) -> torch.Tensor:
    half = int(math.ceil(radius))
    sub = (np.arange(8) + 0.5) / 8 - 0.5
    ker = np.zeros((2 * half + 1, 2 * half + 1))
    for i in range(2 * half + 1):
        for j in range(2 * half + 1):
            yy = (i - half) + sub[:, None]
            xx = (j - half) + sub[None, :]
            ker[i, j] = ((yy ** 2 + xx ** 2) <= radius ** 2).mean()
    return torch.from_numpy(ker / ker.sum()).float()


def _defocus(x: torch.Tensor, radius: float, rng: np.random.Generator) -> torch.Tensor:
    return _conv_per_channel(x, _disk(radius))


def _motion_kernel(length: float, angle: float) -> torch.Tensor:
    size = int(length) | 1
    ker = np.zeros((size, size))
    c = size // 2
    for t in np.linspace(-(length - 1) / 2, (length - 1) / 2, 4 * size):
        i = int(round(c + t * math.sin(angle)))
        j = int(round(c + t * math.cos(angle)))
        ker[i, j] += 1
    return torch.from_numpy(ker / ker.sum()).float()


def _motion(x: torch.Tensor, length: float, rng: np.random.Generator) -> torch.Tensor:
    """Streaks of ``length`` pixels in a random direction per image (one grouped conv)."""
    if not len(x):
        return x
    n, c, h, w = x.shape
    angles = rng.uniform(0, math.pi, size=n)
    kernels = torch.stack([_motion_kernel(length, a) for a in angles]).to(x)  # (N, k, k)
    k = kernels.shape[-1]
    weight = kernels.repeat_interleave(c, dim=0).unsqueeze(1)  # (N*C, 1, k, k)
    padded = F.pad(x.reshape(1, n * c, h, w), (k // 2,) * 4, mode="reflect")
    return F.conv2d(padded, weight, groups=n * c).reshape(n, c, h, w).clamp(0, 1)


def _jpeg(x: torch.Tensor, quality: float, rng: np.random.Generator) -> torch.Tensor:
    from PIL import Image

    out = []
    for img in x:
        arr = (img.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).cpu().numpy()
        pil = Image.fromarray(arr[:, :, 0] if arr.shape[2] == 1 else arr)
        buf = io.BytesIO()
        pil.save(buf, format="JPEG", quality=int(quality))
        back = np.asarray(Image.open(io.BytesIO(buf.getvalue())))
        if back.ndim == 2:
            back = back[:, :, None]
        out.append(torch.from_numpy(back.copy()).permute(2, 0, 1).float() / 255.0)
    return torch.stack(out).to(x) if out else x


def _brightness(x: torch.Tensor, factor: float, rng: np.random.Generator) -> torch.Tensor:
    return (x * factor).clamp(0, 1)


def _contrast(x: torch.Tensor, factor: float, rng: np.random.Generator) -> torch.Tensor:
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return ((x - mean) * factor + mean).clamp(0, 1)


def _gamma(x: torch.Tensor, gamma: float, rng: np.random.Generator) -> torch.Tensor:
    return x.clamp(0, 1) ** gamma


def _affine(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    grid = F.affine_grid(theta.to(x), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection",
                         align_corners=False).clamp(0, 1)


def _rotation(x: torch.Tensor, degrees: float, rng: np.random.Generator) -> torch.Tensor:
    signs = rng.choice([-1.0, 1.0], size=len(x))
    a = torch.from_numpy(signs * math.radians(degrees))
    cos, sin = torch.cos(a), torch.sin(a)
    zero = torch.zeros_like(a)
    theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
    return _affine(x, theta.float())


def _crop(x: torch.Tensor, keep: float, rng: np.random.Generator) -> torch.Tensor:
    """Keep a ``keep`` fraction of height and width at a random position, zoomed back."""
    shift = rng.uniform(-(1 - keep), 1 - keep, size=(len(x), 2))
    theta = torch.zeros(len(x), 2, 3)
    theta[:, 0, 0] = keep
    theta[:, 1, 1] = keep
    theta[:, 0, 2] = torch.from_numpy(shift[:, 0]).float()
    theta[:, 1, 2] = torch.from_numpy(shift[:, 1]).float()
    return _affine(x, theta)


def _colour_gains(x: torch.Tensor, gains: tuple[float, float, float]) -> torch.Tensor:
    if x.shape[1] != 3:
        return x
    return (x * torch.tensor(gains).to(x).view(1, 3, 1, 1)).clamp(0, 1)


def _darker(x: torch.Tensor, s: float, rng: np.random.Generator) -> torch.Tensor:
    """Darker, browner apparent skin: blue and green lose more than red."""
    return _colour_gains(x, (1 - 0.5 * s, 1 - 0.8 * s, 1 - s))


def _lighter(x: torch.Tensor, s: float, rng: np.random.Generator) -> torch.Tensor:
    """Lighter, paler apparent skin: the mirror image of ``_darker`` towards white."""
    if x.shape[1] != 3:
        return x
    return 1 - _colour_gains(1 - x, (1 - s, 1 - 0.8 * s, 1 - 0.5 * s))


def _white_balance(x: torch.Tensor, s: float, rng: np.random.Generator) -> torch.Tensor:
    """A warm or cool cast (sign drawn per image): red up and blue down, or the reverse."""
    if x.shape[1] != 3:
        return x
    signs = torch.from_numpy(rng.choice([-1.0, 1.0], size=len(x))).to(x).view(-1, 1, 1, 1)
    gains = torch.cat([1 + s * signs, torch.ones_like(signs), 1 - s * signs], dim=1)
    return (x * gains).clamp(0, 1)


def _window(x: torch.Tensor, width: float, rng: np.random.Generator) -> torch.Tensor:
    """Narrower display window of ``width`` (of the full range) around each image's median."""
    centre = x.flatten(1).median(dim=1).values.view(-1, 1, 1, 1)
    low = (centre - width / 2).clamp(0, 1 - width)
    return ((x - low) / width).clamp(0, 1)


_FUNCS: dict[str, Callable[[torch.Tensor, float, np.random.Generator], torch.Tensor]] = {
    "gaussian_noise": _noise, "defocus_blur": _defocus, "motion_blur": _motion,
    "jpeg": _jpeg, "brightness": _brightness, "contrast": _contrast, "gamma": _gamma,
    "rotation": _rotation, "crop": _crop, "colour_darker": _darker,
    "colour_lighter": _lighter, "white_balance": _white_balance, "windowing": _window,
}

#: name -> spec; parameter values at severities 1-5.
CORRUPTIONS: dict[str, CorruptionSpec] = {
    s.name: s for s in (
        CorruptionSpec("gaussian_noise", "Gaussian noise", "any",
                       (0.02, 0.04, 0.06, 0.09, 0.12), "noise SD (share of pixel range)"),
        CorruptionSpec("defocus_blur", "Defocus blur", "any", (0.75, 1.0, 1.5, 2.0, 3.0),
                       "blur radius (pixels)"),
        CorruptionSpec("motion_blur", "Motion blur", "any", (3, 5, 7, 9, 11),
                       "streak length (pixels)"),
        CorruptionSpec("jpeg", "JPEG compression", "any", (80, 60, 40, 25, 10), "JPEG quality"),
        CorruptionSpec("brightness", "Under-exposure (brightness)", "any",
                       (0.85, 0.7, 0.55, 0.45, 0.35), "brightness factor"),
        CorruptionSpec("contrast", "Low contrast", "any", (0.8, 0.65, 0.5, 0.4, 0.3),
                       "contrast factor"),
        CorruptionSpec("gamma", "Gamma (exposure curve)", "any", (1.25, 1.5, 1.8, 2.2, 2.7),
                       "gamma"),
        CorruptionSpec("rotation", "Small rotation", "any", (3, 6, 9, 12, 15), "degrees"),
        CorruptionSpec("crop", "Crop and zoom", "any", (0.95, 0.9, 0.85, 0.8, 0.7),
                       "share of width kept"),
        CorruptionSpec("colour_darker", "Colour shift: darker apparent skin", "skin",
                       (0.05, 0.1, 0.15, 0.2, 0.3), "blue-channel reduction"),
        CorruptionSpec("colour_lighter", "Colour shift: lighter apparent skin", "skin",
                       (0.05, 0.1, 0.15, 0.2, 0.3), "red-channel lift towards white"),
        CorruptionSpec("white_balance", "White-balance cast (warm/cool)", "skin",
                       (0.03, 0.06, 0.09, 0.12, 0.18), "red/blue gain change"),
        CorruptionSpec("windowing", "Narrow display window (X-ray)", "xray",
                       (0.85, 0.7, 0.55, 0.45, 0.35), "window width (share of range)"),
    )
}


def corruptions_for(modality: str) -> list[str]:
    """Corruption names that apply to ``modality`` (``skin``, ``xray`` or ``other``)."""
    if modality not in ("skin", "xray", "other"):
        raise ConfigError(f"modality must be skin, xray or other; got {modality!r} instead.")
    return [n for n, s in CORRUPTIONS.items() if s.modality in ("any", modality)]


def corrupt(images01: torch.Tensor, name: str, severity: int, *, seed: int = 0) -> torch.Tensor:
    """Apply corruption ``name`` at ``severity`` (1-5) to ``(N, C, H, W)`` images in [0, 1].

    Examples
    --------
    >>> x = torch.full((1, 3, 16, 16), 0.5)
    >>> round(corrupt(x, "brightness", 5).max().item(), 4)
    0.175
    """
    if name not in CORRUPTIONS:
        raise ConfigError(f"corruption must be one of {list(CORRUPTIONS)}; got {name!r} instead.")
    if severity not in SEVERITIES:
        raise ConfigError(f"severity must be 1-5; got {severity!r} instead.")
    x = torch.as_tensor(images01).float()
    if x.ndim != 4:
        raise ConfigError(f"images must be (N, C, H, W) in [0, 1]; got shape {tuple(x.shape)} "
                          "instead.")
    rng = np.random.default_rng([seed, severity, list(CORRUPTIONS).index(name)])
    return _FUNCS[name](x, float(CORRUPTIONS[name].levels[severity - 1]), rng)
