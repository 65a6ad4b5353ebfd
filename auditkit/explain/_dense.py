"""Explanations of multi-label and segmentation models (SHAP expected gradients).

What is explained is stated in every result, because it is a choice:

- ``multilabel_sigmoid``: **each finding's logit** (its log-odds of being present), one
  map per finding and image; the page shows the finding the reviewer picks.
- ``segmentation``: **the predicted-mask score**, the sum of the foreground logits over
  the pixels of the mask the model predicted on the unperturbed image (the mask is held
  fixed while attributing). Positive attribution is evidence that made the model outline
  what it outlined.

Both use :class:`auditkit.explain.ImageExplainer` (``shap`` expected gradients) on a
one-output wrapper module, so completeness holds as for classifiers
(``sum(attributions) ≈ score - base``). Trust check reported: **completeness** (how far
the sums are from ``score - base``, relative to the score's spread) and, for segmentation,
**locality**: the share of positive attribution inside the predicted mask (dilated by
2 pixels) against that region's share of the image.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from .. import wording
from ._base import ImageExplainer

__all__ = ["FindingLogit", "MaskScore", "dense_explain", "dense_map"]


class FindingLogit(nn.Module):
    """``images01 -> (N, 1)``: the logit of finding ``index`` of a multi-label model."""

    loaded: Any

    def __init__(self, loaded: Any, index: int) -> None:
        super().__init__()
        object.__setattr__(self, "loaded", loaded)
        self.index = int(index)

    def forward(self, images01: torch.Tensor) -> torch.Tensor:
        out = self.loaded.module(self.loaded.normalize(images01))
        return out[:, self.index: self.index + 1]


class MaskScore(nn.Module):
    """``images01 -> (N, 1)``: sum of foreground logits inside a fixed mask ``(H, W)``."""

    loaded: Any
    mask: torch.Tensor

    def __init__(self, loaded: Any, mask: np.ndarray) -> None:
        super().__init__()
        object.__setattr__(self, "loaded", loaded)
        self.register_buffer("mask", torch.as_tensor(mask, dtype=torch.float32,
                                                     device=loaded.device))

    def forward(self, images01: torch.Tensor) -> torch.Tensor:
        out = self.loaded.module(self.loaded.normalize(images01))
        logit = out[:, 0] if out.shape[1] == 1 else (
            out[:, -1] - torch.logsumexp(out[:, :-1], dim=1))
        return (logit * self.mask).flatten(1).sum(1, keepdim=True)


def _completeness(attr: np.ndarray, score: np.ndarray, base: np.ndarray,
                  spread: np.ndarray) -> float:
    gap = np.abs(attr.reshape(len(attr), -1).sum(1) - (score - base))
    scale = np.maximum(np.abs(score - base), np.maximum(spread, 1e-6))
    return float(np.median(gap / scale)) if len(gap) else float("nan")


def dense_explain(ctx: Any) -> dict[str, Any]:
    """The ``explain`` check for ``multilabel_sigmoid`` and ``segmentation`` models."""
    from ..predict import load_model_input
    from ._check import ATTRIBUTIONS_FILE

    model, card = ctx.model, ctx.model.card
    opts = ctx.options("explain")
    n_images = int(opts.get("n_images") or 8)
    explainer = ImageExplainer(n_samples=int(opts.get("n_samples", 32)),
                               background_size=int(opts.get("background_size", 16)),
                               random_state=ctx.config.seed)
    rows, evaluated_on = ctx.evaluation_rows()
    records = ctx.dataset.records
    candidates = np.flatnonzero(rows)
    if card.output == "segmentation":  # explain slices where the model outlined something
        from ..models import segmentation_masks

        masks = segmentation_masks(ctx.predictions.probabilities, card, ctx.predictions.outputs)
        candidates = candidates[masks[candidates].reshape(len(candidates), -1).any(1)]
    if not len(candidates):
        return {"status": "not_assessed",
                "reason": "no evaluated image where the model outlines anything"}
    rng = ctx.rng(801)
    pick = np.sort(rng.choice(candidates, size=min(n_images, len(candidates)), replace=False))
    bg_pool = np.flatnonzero(~rows) if (~rows).any() else np.flatnonzero(rows)
    bg_idx = np.sort(rng.choice(bg_pool, size=min(explainer.background_size, len(bg_pool)),
                                replace=False))

    def load(idx: np.ndarray) -> torch.Tensor:
        return torch.stack([load_model_input(records["path"].iloc[i], input_size=card.input_size,
                                             channels=card.channels, scaling=card.scaling)
                            for i in idx])

    x, bg = load(pick), load(bg_idx)
    keys = records["key"].iloc[pick].astype(str).tolist()
    evidence: dict[str, np.ndarray] = {}
    images: list[dict[str, Any]] = []
    if card.output == "multilabel_sigmoid":
        target = ("each finding's logit (log-odds that the finding is present), one map per "
                  "finding; positive attribution is evidence for the finding")
        per_finding: dict[str, Any] = {}
        maps = np.zeros((len(pick), len(card.class_names), *x.shape[1:]), np.float32)
        for k, finding in enumerate(card.class_names):
            ex = explainer.explain(FindingLogit(model, k), x, background=bg,
                                   targets=[[0]] * len(x))
            maps[:, k] = ex.attributions
            per_finding[finding] = {
                "completeness_median_relative_error": _completeness(
                    ex.attributions, ex.score, ex.base_value, ex.score_spread
                    if ex.score_spread is not None else np.zeros(len(x))),
                "mean_score": float(np.mean(ex.score)),
            }
            if ctx.progress:
                ctx.progress(k + 1, len(card.class_names), f"explain: finding {finding}")
        for i, key in enumerate(keys):
            evidence[key] = maps[i]
            images.append({"image": key, "maps": list(card.class_names),
                           "probabilities": {f: float(ctx.predictions.probabilities[pick[i], k])
                                             for k, f in enumerate(card.class_names)}})
        checks: dict[str, Any] = {"findings": per_finding}
        summary = [wording.dense_explain_sentence(kind=card.output, target=target,
                                                  n_images=len(pick), checks=checks)]
    else:
        from scipy import ndimage

        target = ("the predicted-mask score: the sum of the foreground logits over the pixels "
                  "the model outlined on the unperturbed image (mask held fixed)")
        attrs: list[np.ndarray] = []
        scores: list[float] = []
        bases: list[float] = []
        spreads: list[float] = []
        locality: list[dict[str, Any]] = []
        for j, i in enumerate(pick):
            mask = masks[i]
            ex = explainer.explain(MaskScore(model, mask), x[j:j + 1], background=bg,
                                   targets=[[0]])
            a = ex.attributions[0]
            attrs.append(a)
            scores.append(float(ex.score[0]))
            bases.append(float(ex.base_value[0]))
            spreads.append(0.0 if ex.score_spread is None else float(ex.score_spread[0]))
            region = ndimage.binary_dilation(mask, iterations=2)
            positive = np.clip(a.sum(0), 0, None)
            inside = float(positive[region].sum() / positive.sum()) if positive.sum() > 0 \
                else float("nan")
            locality.append({"image": keys[j], "positive_share_inside": inside,
                             "region_share": float(region.mean())})
            evidence[keys[j]] = a[None]
            images.append({"image": keys[j], "maps": ["predicted mask score"],
                           "mask_area_px": int(mask.sum())})
            if ctx.progress:
                ctx.progress(j + 1, len(pick), "explain: predicted-mask score")
        inside_share = np.array([v["positive_share_inside"] for v in locality], dtype=float)
        region_share = np.array([v["region_share"] for v in locality], dtype=float)
        checks = {
            "completeness_median_relative_error": _completeness(
                np.stack(attrs), np.array(scores), np.array(bases), np.array(spreads)),
            "locality": {"median_positive_share_inside": float(np.nanmedian(inside_share)),
                         "median_region_share": float(np.median(region_share)),
                         "per_image": locality},
        }
        summary = [wording.dense_explain_sentence(kind=card.output, target=target,
                                                  n_images=len(pick), checks=checks)]
    if ctx.out_dir is not None:  # image key -> (maps, C, H, W) float32, as for classifiers
        np.savez_compressed(ctx.out_dir / ATTRIBUTIONS_FILE, **evidence)  # type: ignore[arg-type]
    return {"status": "assessed", "output_kind": card.output, "target": target,
            "evaluated_on": evaluated_on, "method": explainer.settings(),
            "n_images": int(len(pick)), "images": images, "checks": checks,
            "evidence": ATTRIBUTIONS_FILE, "summary": summary}


def dense_map(folder: str | Any, image: str, index: int = 0) -> np.ndarray:
    """One stored attribution map ``(H, W)`` (summed over colour channels) from an audit's
    ``attributions.npz``: ``index`` is the finding's position (0 for a mask score)."""
    from pathlib import Path

    from ._check import ATTRIBUTIONS_FILE

    with np.load(Path(folder) / ATTRIBUTIONS_FILE, allow_pickle=False) as npz:
        return np.asarray(npz[image][index], dtype=np.float32).sum(axis=0)
