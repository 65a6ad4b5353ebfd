"""Shortcut finder: how much of an explanation falls where lesions are not.

Rulers, watermarks, scanner labels and vignetting sit on the image border and in the
corners; a model that draws its evidence from there has learned a shortcut. For each
image the share of the *absolute* attribution (summed over channels) inside each
region is measured; the region's share of the image area is what an explanation
spread evenly would give.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["REGIONS", "region_masks", "region_shares"]

#: region -> plain-language definition (``b`` = border fraction, ``k`` = corner fraction).
REGIONS: dict[str, str] = {
    "border": "the outer band of the image, {border:.0%} of the side wide",
    "corners": "the four corner squares, {corner:.0%} of the side each",
    "outside_center": "everything outside the central box of {center:.0%} of each side",
}


def region_masks(height: int, width: int, *, border: float = 0.1, corner: float = 0.2,
                 center: float = 0.5) -> dict[str, np.ndarray]:
    """Boolean ``(H, W)`` masks of :data:`REGIONS`."""
    yy, xx = np.mgrid[0:height, 0:width]
    bh, bw = max(1, round(border * height)), max(1, round(border * width))
    ch, cw = max(1, round(corner * height)), max(1, round(corner * width))
    mh, mw = round((1 - center) / 2 * height), round((1 - center) / 2 * width)
    border_m = (yy < bh) | (yy >= height - bh) | (xx < bw) | (xx >= width - bw)
    near_y = (yy < ch) | (yy >= height - ch)
    near_x = (xx < cw) | (xx >= width - cw)
    central = (yy >= mh) & (yy < height - mh) & (xx >= mw) & (xx < width - mw)
    return {"border": border_m, "corners": near_y & near_x, "outside_center": ~central}


def region_shares(attributions: np.ndarray, masks: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Share of ``|attribution|`` in each region, ``(M,)`` per region (nan for all-zero maps).

    ``attributions`` is ``(M, C, H, W)``.
    """
    mag = np.abs(np.asarray(attributions, dtype=np.float64)).sum(axis=1)  # (M, H, W)
    total = mag.reshape(len(mag), -1).sum(1)
    out: dict[str, np.ndarray] = {}
    for name, mask in masks.items():
        inside = (mag * mask).reshape(len(mag), -1).sum(1)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[name] = np.where(total > 0, inside / np.where(total > 0, total, 1.0), np.nan)
    return out


def area_shares(masks: dict[str, np.ndarray]) -> dict[str, float]:
    """Each region's share of the image area (the even-spread reference)."""
    return {name: float(mask.mean()) for name, mask in masks.items()}


def describe_regions(*, border: float, corner: float, center: float) -> dict[str, Any]:
    return {name: text.format(border=border, corner=corner, center=center)
            for name, text in REGIONS.items()}
