"""Can the explanations be trusted? Completeness, faithfulness and the sanity check.

Each check is computed from the model, never asserted:

completeness   attributions sum to ``f(x) - base`` (``base = E[f(background)]`` for
               expected gradients), within a stated relative tolerance.
faithfulness   deletion and insertion curves (Petsiuk et al., 2018, "RISE"): pixels are
               removed from (inserted into) the image in the attribution's order and the
               class probability is tracked; their areas are compared with random orders.
sanity         model-parameter randomization (Adebayo et al., 2018, "Sanity Checks for
               Saliency Maps"): the weights of a *copy* of the model are re-drawn layer by
               layer from the output down and the image re-explained; a map that barely
               changes does not depend on what the model learned.
"""

from __future__ import annotations

import copy
import io
import warnings
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np
import torch
from torch import nn

from ..models import LoadedModel
from ._base import Explanations, ImageExplainer, as_logits_module

__all__ = [
    "completeness",
    "deletion_insertion",
    "randomized_copy",
    "rank_similarity",
    "sanity_similarity",
]


def completeness(expl: Explanations, *, tolerance: float = 0.1, floor: float = 0.05
                 ) -> np.ndarray:
    """Relative completeness error per row ``(M,)``.

    ``|sum(attr) - (f(x) - base)| / max(|f(x) - base|, spread, floor)`` where ``spread``
    is the score's standard deviation over the background; a row passes when this is
    at most ``tolerance``. The spread (and ``floor``, in score units) keep images whose
    score happens to sit near the base from dividing by ~0.
    """
    total = expl.attributions.reshape(len(expl.attributions), -1).sum(1).astype(np.float64)
    delta = expl.score - expl.base_value
    spread = (expl.score_spread if expl.score_spread is not None
              else np.zeros_like(delta))
    return np.abs(total - delta) / np.maximum(np.maximum(np.abs(delta), spread), floor)


def _probability(logits: torch.Tensor, cls: int) -> torch.Tensor:
    return torch.softmax(logits.float(), dim=1)[:, cls]


def deletion_insertion(model: LoadedModel | nn.Module, image: torch.Tensor,
                       attribution: np.ndarray, cls: int, *, steps: int = 16,
                       n_random: int = 3, baseline: torch.Tensor | None = None,
                       rng: np.random.Generator, batch_size: int = 64
                       ) -> dict[str, Any]:
    """Deletion and insertion curves for one image, by attribution and random order.

    Parameters
    ----------
    image : tensor
        ``(C, H, W)`` in [0, 1].
    attribution : array
        ``(C, H, W)``; pixels are ranked by the channel sum (most evidence *for* first).
    cls : int
        Class whose softmax probability is tracked.
    steps : int
        Curve points after the start (pixels move in ``steps`` equal groups).
    n_random : int
        Random orders averaged for the reference.
    baseline : tensor, optional
        ``(C, H, W)`` what deleted pixels become and insertion starts from (default:
        the image's mean colour).

    Returns
    -------
    dict
        ``deletion_auc``, ``insertion_auc`` (attribution order), ``deletion_auc_random``,
        ``insertion_auc_random`` (mean over random orders), and the curves.
    """
    net = as_logits_module(model)
    device = image.device
    c, h, w = image.shape
    if baseline is None:
        baseline = image.mean(dim=(1, 2), keepdim=True).expand_as(image)
    score_map = np.asarray(attribution, dtype=np.float64).reshape(c, h * w).sum(0)
    orders = [np.argsort(-score_map, kind="stable")]
    orders += [rng.permutation(h * w) for _ in range(n_random)]
    bounds = np.linspace(0, h * w, steps + 1).round().astype(int)
    masks = []
    for order in orders:
        rank = np.empty(h * w, dtype=int)
        rank[order] = np.arange(h * w)
        for b in bounds:
            masks.append(rank < b)  # True = moved so far
    moved = torch.as_tensor(np.stack(masks), device=device).view(-1, 1, h, w).float()
    img, base = image.unsqueeze(0), baseline.unsqueeze(0).to(device)
    probs = []
    with torch.no_grad():
        for start in range(0, len(moved), batch_size):
            m = moved[start: start + batch_size]
            deleted = img * (1 - m) + base * m
            inserted = base * (1 - m) + img * m
            probs.append(torch.stack([_probability(net(deleted), cls),
                                      _probability(net(inserted), cls)], 1).cpu())
    curve = torch.cat(probs).numpy().astype(np.float64).reshape(len(orders), steps + 1, 2)
    frac = bounds / (h * w)
    auc = np.asarray(np.trapezoid(curve, frac, axis=1))  # (orders, 2)
    return {
        "deletion_auc": float(auc[0, 0]), "insertion_auc": float(auc[0, 1]),
        "deletion_auc_random": float(auc[1:, 0].mean()),
        "insertion_auc_random": float(auc[1:, 1].mean()),
        "fraction": frac.tolist(),
        "deletion_curve": curve[0, :, 0].tolist(), "insertion_curve": curve[0, :, 1].tolist(),
        "deletion_curve_random": curve[1:, :, 0].mean(0).tolist(),
        "insertion_curve_random": curve[1:, :, 1].mean(0).tolist(),
    }


def rank_similarity(a: np.ndarray, b: np.ndarray, *, absolute: bool = False) -> float:
    """Spearman rank correlation of two ``(C, H, W)`` maps summed over channels.

    ``absolute=True`` compares ``|a|`` and ``|b|`` (where the map looks, whatever the
    sign). Two maps that are both constant (e.g. all zero) are identical (1.0); a
    constant map and a varying one share nothing (0.0).
    """
    x = np.asarray(a, dtype=np.float64).reshape(a.shape[0], -1).sum(0)
    y = np.asarray(b, dtype=np.float64).reshape(b.shape[0], -1).sum(0)
    if absolute:
        x, y = np.abs(x), np.abs(y)
    scale = max(np.abs(x).max(), np.abs(y).max(), 1e-30)
    const_x = np.ptp(x) <= 1e-9 * scale
    const_y = np.ptp(y) <= 1e-9 * scale
    if const_x and const_y:
        return 1.0
    if const_x or const_y:
        return 0.0
    rx = _ranks(x)
    ry = _ranks(y)
    return float(np.corrcoef(rx, ry)[0, 1])


def _ranks(v: np.ndarray) -> np.ndarray:
    order = np.argsort(v, kind="mergesort")
    ranks = np.empty(len(v))
    ranks[order] = np.arange(len(v))
    # average ties
    _, inv, counts = np.unique(v, return_inverse=True, return_counts=True)
    sums = np.bincount(inv, weights=ranks)
    return sums[inv] / counts[inv]


def _copy_module(module: Any) -> nn.Module:
    """A private copy of a module: TorchScript through a save/load round trip."""
    if isinstance(module, torch.jit.ScriptModule):
        buf = io.BytesIO()
        torch.jit.save(module, buf)
        buf.seek(0)
        device = next((p.device for p in module.parameters()), torch.device("cpu"))
        return torch.jit.load(buf, map_location=device)
    with warnings.catch_warnings():
        # torch.export graph modules: torch's own pytree deprecation notice on copy
        warnings.simplefilter("ignore", FutureWarning)
        return copy.deepcopy(module)


def parameter_layers(module: nn.Module) -> list[str]:
    """Layers owning parameters (module paths), from the input to the output."""
    layers: list[str] = []
    for name, _ in module.named_parameters():
        prefix = name.rsplit(".", 1)[0] if "." in name else ""
        if prefix not in layers:
            layers.append(prefix)
    return layers


def randomized_copy(model: LoadedModel | nn.Module, layers: list[str], *,
                    generator: torch.Generator) -> LoadedModel | nn.Module:
    """A copy of ``model`` whose parameters in ``layers`` are re-drawn; the model is untouched.

    Each re-drawn tensor is Gaussian with the original tensor's standard deviation
    (1 where that is 0, e.g. batch-norm scales), so activations keep their size.

    Raises
    ------
    RuntimeError
        When the model's format cannot be copied or has no parameters to randomize.
    """
    inner = model.module if isinstance(model, LoadedModel) else model
    clone = _copy_module(inner)
    wanted = set(layers)
    params = list(clone.named_parameters())
    if not params:
        raise RuntimeError("the model exposes no parameters to randomize")
    with torch.no_grad():
        for name, p in params:
            prefix = name.rsplit(".", 1)[0] if "." in name else ""
            if prefix not in wanted:
                continue
            std = float(p.detach().float().std()) if p.numel() > 1 else 0.0
            std = std if std > 0 else 1.0
            noise = torch.randn(p.shape, generator=generator, dtype=torch.float32)
            p.copy_((noise * std).to(device=p.device, dtype=p.dtype))
    if isinstance(model, LoadedModel):
        return replace(model, module=clone)
    return clone


def sanity_similarity(model: LoadedModel | nn.Module, explainer: ImageExplainer,
                      images: torch.Tensor, background: torch.Tensor, targets: list[int],
                      original: np.ndarray, *, n_steps: int = 3, seed: int = 0,
                      progress: Callable[[int, int, str], None] | None = None
                      ) -> dict[str, Any]:
    """Cascading randomization: similarity of each image's map to its randomized-model map.

    Parameters
    ----------
    images : tensor
        ``(n, C, H, W)`` in [0, 1].
    targets : list of int
        Class explained for each image.
    original : array
        ``(n, C, H, W)`` the attributions of the trained model.
    n_steps : int
        Cumulative cut points from the output layer down; the last always randomizes
        every layer.

    Returns
    -------
    dict
        ``layers`` (input to output), ``steps``: one entry per cut with the layers
        randomized, ``similarity`` ``(n,)`` (Spearman rank correlation of the signed
        maps) and ``similarity_abs`` (of their absolute values).
    """
    inner = model.module if isinstance(model, LoadedModel) else model
    layers = parameter_layers(inner)
    if not layers:
        raise RuntimeError("the model exposes no parameters to randomize")
    n_layers = len(layers)
    cuts = sorted({max(1, int(round(n_layers * k / n_steps))) for k in range(1, n_steps + 1)})
    cuts = sorted(set(cuts) | {1, n_layers})
    steps = []
    for s, cut in enumerate(cuts):
        top = layers[n_layers - cut:]
        gen = torch.Generator().manual_seed(seed)  # same draw for shared layers across cuts
        rand_model = randomized_copy(model, list(reversed(top)), generator=gen)
        expl = explainer.explain(rand_model, images, background=background,
                                 targets=[[t] for t in targets])
        sims = np.asarray([rank_similarity(original[i], expl.attributions[i])
                           for i in range(len(images))])
        sims_abs = np.asarray([rank_similarity(original[i], expl.attributions[i], absolute=True)
                               for i in range(len(images))])
        steps.append({"n_layers_randomized": cut, "fraction_of_layers": cut / n_layers,
                      "layers_randomized": top[::-1], "similarity": sims,
                      "similarity_abs": sims_abs})
        if progress:
            progress(s + 1, len(cuts), "sanity check: re-explaining randomized models")
    return {"layers": layers, "steps": steps}
