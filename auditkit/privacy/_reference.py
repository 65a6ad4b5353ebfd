"""The calibrated attack: reference models that never saw the image ("thorough" mode).

A low loss may mean the model memorised an image, or only that the image is easy.
Difficulty calibration (Watson et al., "On the Importance of Difficulty Calibration
in Membership Inference Attacks", ICLR 2022) subtracts what models that never saw
the image would say. With logit-scaled confidence ``phi = log(p_y / (1 - p_y))``
and a global variance this is the offline likelihood-ratio attack of Carlini et
al. ("Membership Inference Attacks From First Principles", IEEE S&P 2022)::

    score(x) = phi_target(x) - mean_r phi_ref_r(x)

Reference models are trained with the project's own recipe (SmallResNet, the
demo models' optimiser, augmentation and loss; the recipe's epochs when the model
is a demo model) and cross-fitted: the evaluated images are split in two halves by
patient, and the reference models that score one half are trained on a random
half of (the other half + every image outside the evaluation sample). No
reference model ever sees an image it scores.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from ..architectures import SmallResNet
from ..exceptions import ConfigError
from ..models import LoadedModel
from ..predict import load_image_tensor
from ..training import RECIPES, _augment

__all__ = [
    "ReferenceSettings",
    "calibrated_scores",
    "estimate_thorough_seconds",
    "logit_confidence",
]

ProgressFn = Callable[[int, int, str], None]


def logit_confidence(proba: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``log(p_y / (1 - p_y))`` ``(N,)``, clipped for stability (Carlini et al., 2022)."""
    p = np.clip(np.asarray(proba, dtype=np.float64)[np.arange(len(y)), y], 1e-7, 1 - 1e-7)
    return np.log(p) - np.log1p(-p)


class ReferenceSettings:
    """How reference models are trained.

    Parameters
    ----------
    n_reference : int
        Reference models (even; half score each half of the evaluation sample).
    epochs : int, optional
        Default: the demo recipe's epochs for a demo model, else 10.
    lr, batch_size, widths :
        Default: the demo recipe's, else 3e-3, 64, (16, 32, 64, 128).
    """

    def __init__(self, *, model: LoadedModel, n_reference: int = 4, epochs: int | None = None,
                 lr: float | None = None, batch_size: int | None = None,
                 widths: tuple[int, ...] | None = None) -> None:
        if n_reference < 2 or n_reference % 2:
            raise ConfigError(
                f"privacy n_reference must be an even number >= 2; got {n_reference} instead.")
        recipe = RECIPES.get(model.card.ref)
        self.n_reference = int(n_reference)
        self.epochs = int(epochs or (recipe.epochs if recipe else 10))
        self.lr = float(lr or (recipe.lr if recipe else 3e-3))
        self.batch_size = int(batch_size or (recipe.batch_size if recipe else 64))
        self.widths = tuple(widths or (recipe.widths if recipe else (16, 32, 64, 128)))
        self.output = model.card.output
        self.n_classes = model.n_classes
        self.channels = model.card.channels
        self.size = list(model.card.input_size)
        self.mean = torch.tensor(model.card.normalization["mean"]).view(1, -1, 1, 1)
        self.std = torch.tensor(model.card.normalization["std"]).view(1, -1, 1, 1)

    def to_dict(self) -> dict[str, Any]:
        return {"n_reference": self.n_reference, "epochs": self.epochs, "lr": self.lr,
                "batch_size": self.batch_size, "widths": list(self.widths)}


def _train_one(x: torch.Tensor, y: torch.Tensor, s: ReferenceSettings, seed: int,
               progress: Callable[[int], None] | None = None) -> nn.Module:
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    n_out = 1 if s.output == "binary_logit" else s.n_classes
    model = SmallResNet(in_channels=s.channels, num_outputs=n_out, widths=s.widths)
    opt = torch.optim.AdamW(model.parameters(), lr=s.lr, weight_decay=5e-4)
    steps = max(1, int(np.ceil(len(x) / s.batch_size)))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=s.lr, epochs=s.epochs,
                                                steps_per_epoch=steps)
    counts = np.bincount(y.numpy(), minlength=s.n_classes).astype(float)
    if s.output == "binary_logit":
        loss_fn: nn.Module = nn.BCEWithLogitsLoss(
            pos_weight=torch.tensor(counts[0] / max(counts[1], 1.0)))
    else:
        cw = torch.tensor(counts.sum() / (s.n_classes * np.maximum(counts, 1)),
                          dtype=torch.float32)
        loss_fn = nn.CrossEntropyLoss(weight=cw)
    for epoch in range(s.epochs):
        model.train()
        order = torch.randperm(len(x), generator=gen)
        for b in range(steps):
            idx = order[b * s.batch_size:(b + 1) * s.batch_size]
            if len(idx) < 2:
                continue  # batch norm needs two images
            xb = (_augment(x[idx].float() / 255.0, gen) - s.mean) / s.std
            out = model(xb)
            loss = (loss_fn(out.squeeze(1), y[idx].float()) if s.output == "binary_logit"
                    else loss_fn(out, y[idx]))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        if progress:
            progress(epoch + 1)
    return model.eval()


def _predict_proba(model: nn.Module, x: torch.Tensor, s: ReferenceSettings) -> np.ndarray:
    outs = []
    with torch.inference_mode():
        for i in range(0, len(x), 256):
            outs.append(model((x[i:i + 256].float() / 255.0 - s.mean) / s.std).float())
    return LoadedModel.outputs_to_probabilities(torch.cat(outs).numpy(), s.output)


def _seconds_per_image_epoch(x: torch.Tensor, y: torch.Tensor, s: ReferenceSettings) -> float:
    """Measured seconds to train on one image for one epoch (one timed step)."""
    probe = ReferenceSettings.__new__(ReferenceSettings)
    probe.__dict__.update({**s.__dict__, "epochs": 1})
    n = min(len(x), s.batch_size)
    _train_one(x[:n], y[:n], probe, seed=0)  # warm-up: first calls allocate and plan
    start = time.perf_counter()
    _train_one(x[:n], y[:n], probe, seed=0)
    return (time.perf_counter() - start) / max(n, 1)


def calibrated_scores(*, model: LoadedModel, paths: list[str], y: np.ndarray,
                      eval_idx: np.ndarray, units: np.ndarray, target_proba: np.ndarray,
                      settings: ReferenceSettings, rng: np.random.Generator,
                      progress: ProgressFn | None = None) -> tuple[np.ndarray, dict[str, Any]]:
    """Calibrated membership scores of the images ``eval_idx``.

    Parameters
    ----------
    model : LoadedModel
        The audited model (only its card is used).
    paths : list of str
        Image files of the whole dataset ``(N,)``.
    y : numpy.ndarray
        True class index ``(N,)`` in the model's class order.
    eval_idx : numpy.ndarray
        Indices of the evaluated images ``(n,)``.
    units : numpy.ndarray
        Patient (or image) id ``(N,)``: halves are split by unit.
    target_proba : numpy.ndarray
        The audited model's probabilities ``(N, C)``.
    settings : ReferenceSettings
    rng : numpy.random.Generator

    Returns
    -------
    scores : numpy.ndarray
        ``(n,)`` in ``eval_idx`` order, higher = more likely a member.
    info : dict
        Settings, measured seconds and the estimate made before training.
    """
    started = time.perf_counter()
    n_all = len(paths)
    x = torch.empty((n_all, settings.channels, *settings.size), dtype=torch.uint8)
    for i, p in enumerate(paths):
        x[i] = load_image_tensor(p, input_size=settings.size, channels=settings.channels)
        if progress and (i % 256 == 0 or i == n_all - 1):
            progress(i + 1, n_all, "loading images for reference models")
    y_t = torch.as_tensor(np.asarray(y, dtype=np.int64))
    eval_idx = np.asarray(eval_idx, dtype=int)
    pool = np.setdiff1d(np.arange(n_all), eval_idx)
    eval_units = np.unique(units[eval_idx].astype(str))
    half_of_unit = dict(zip(rng.permutation(eval_units), np.arange(len(eval_units)) % 2))
    half = np.array([half_of_unit[u] for u in units[eval_idx].astype(str)])
    per_half = settings.n_reference // 2
    train_sizes = []
    for h in (0, 1):
        train_sizes.append((len(pool) + int((half != h).sum())) // 2)
    sec = _seconds_per_image_epoch(x[eval_idx], y_t[eval_idx], settings)
    estimate = sec * settings.epochs * per_half * sum(train_sizes)
    total_epochs = settings.n_reference * settings.epochs
    if progress:
        progress(0, total_epochs, f"training reference models (about {estimate / 60:.0f} min "
                                  "estimated)")
    training_started = time.perf_counter()
    ref_phi = np.zeros((per_half, len(eval_idx)))
    done = 0
    for h in (0, 1):
        scored = eval_idx[half == h]
        candidates = np.concatenate([pool, eval_idx[half != h]])
        for r in range(per_half):
            train = np.sort(rng.choice(candidates, size=max(2, len(candidates) // 2),
                                       replace=False))
            seed = int(rng.integers(2**31))

            def tick(epoch: int, _done: int = done) -> None:
                if progress:
                    finished = _done + epoch
                    spent = time.perf_counter() - training_started
                    # measured pace once epochs are done, the up-front estimate before
                    left = spent / finished * (total_epochs - finished)
                    progress(finished, total_epochs,
                             f"training reference models (about {left / 60:.0f} min left)")

            ref = _train_one(x[train], y_t[train], settings, seed, tick)
            done += settings.epochs
            proba = _predict_proba(ref, x[scored], settings)
            ref_phi[r, half == h] = logit_confidence(proba, y[scored])
    target_phi = logit_confidence(target_proba[eval_idx], y[eval_idx])
    scores = target_phi - ref_phi.mean(axis=0)
    info = {**settings.to_dict(), "estimated_seconds": round(estimate, 3),
            "seconds": round(time.perf_counter() - started, 3),
            "reference_training_images": train_sizes,
            "method": ("offline likelihood-ratio / difficulty calibration: target logit "
                       "confidence minus the mean over cross-fitted reference models")}
    return scores, info


def estimate_thorough_seconds(*, model: LoadedModel, n_images: int, n_reference: int = 4,
                              epochs: int | None = None,
                              seconds_per_image_epoch: float = 0.03) -> float:
    """Rough wall time of thorough mode before anything is run (for pages and the CLI).

    Each of ``n_reference`` models trains for the recipe's epochs on about half of
    ``n_images``. ``seconds_per_image_epoch`` defaults to what a busy 2-core CPU
    takes for 64x64 images and the demo architecture; the run itself times a step
    and reports ``estimated_seconds`` and the real ``seconds``.
    """
    settings = ReferenceSettings(model=model, n_reference=n_reference, epochs=epochs)
    return float(seconds_per_image_epoch * settings.epochs * settings.n_reference
                 * (n_images // 2))
