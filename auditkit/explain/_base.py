"""The explainer: settings in the constructor, images in :meth:`ImageExplainer.explain`.

Two methods, both from the ``shap`` package (Lundberg & Lee, 2017, "A Unified
Approach to Interpreting Model Predictions"):

``gradient``   expected gradients (Erion et al., 2021), ``shap.GradientExplainer``:
               the average of ``gradient x (x - x')`` along straight paths from
               background images ``x'`` to the image ``x``. Needs a differentiable model;
               the fast default.
``partition``  Owen values over a hierarchy of pixel blocks, ``shap.Explainer`` with a
               ``shap.maskers.Image`` (Partition explainer). Model-agnostic: only calls
               the model forward; hidden pixels take the background's mean colour.

What is explained is one number per image and class: the class logit for models
with more than two classes, the log-odds ``logit_c - logit_other`` for two-class
models (so a binary model's "evidence for benign" is exactly minus its "evidence
for malignant", and the second map costs nothing).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from ..exceptions import ConfigError, ModelError
from ..models import LoadedModel

__all__ = ["METHODS", "Explanations", "ImageExplainer", "ModelLogits", "class_scores"]

METHODS: dict[str, str] = {
    "gradient": "expected gradients (shap.GradientExplainer)",
    "partition": "Owen values over pixel blocks (shap.Explainer, Partition, image masker)",
}
ProgressFn = Callable[[int, int, str], None]


class ModelLogits(nn.Module):
    """``LoadedModel.logits`` as an ``nn.Module``: images in [0, 1] -> logits ``(N, K)``."""

    def __init__(self, model: LoadedModel) -> None:
        super().__init__()
        # held as a plain attribute, not a submodule: exported (.pt2) modules refuse
        # train()/eval(), which shap calls on the module it is given
        object.__setattr__(self, "loaded", model)

    loaded: LoadedModel

    def forward(self, images01: torch.Tensor) -> torch.Tensor:
        return self.loaded.logits(images01)


def as_logits_module(model: LoadedModel | nn.Module) -> nn.Module:
    """A module mapping images in [0, 1] ``(N, C, H, W)`` to logits ``(N, K)``."""
    if isinstance(model, LoadedModel):
        return ModelLogits(model)
    if isinstance(model, nn.Module):
        return model
    raise ConfigError(
        f"expected a LoadedModel or a torch nn.Module; got {type(model).__name__} instead."
    )


def class_scores(logits: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """The explained score of class ``classes[i]`` for row ``i``: ``(N,)``.

    Two classes: the log-odds ``logit_c - logit_other``; more: the class logit.
    """
    idx = classes.long().view(-1, 1).to(logits.device)
    chosen = logits.gather(1, idx).squeeze(1)
    if logits.shape[1] == 2:
        other = logits.gather(1, 1 - idx).squeeze(1)
        return chosen - other
    return chosen


class _TargetScores(nn.Module):
    """The scores of a fixed list of classes, for one image at a time (what shap sees)."""

    def __init__(self, logits: nn.Module, targets: Sequence[int] = (0,)) -> None:
        super().__init__()
        self.logits = logits
        self.targets = list(targets)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.logits(x)
        cols = [class_scores(out, torch.full((out.shape[0],), t, device=out.device))
                for t in self.targets]
        return torch.stack(cols, dim=1)


@dataclass
class Explanations:
    """Attributions for some images, one row per (image, explained class).

    Attributes
    ----------
    attributions : numpy.ndarray
        ``(M, C, H, W)`` float32, in units of the explained score (logit / log-odds).
        Positive values are evidence *for* the class, negative *against*.
    image_index : numpy.ndarray
        ``(M,)`` which input image each row explains.
    target : numpy.ndarray
        ``(M,)`` explained class index.
    role : list of str
        ``"predicted"`` or ``"true"`` (the true class, when it differs).
    score : numpy.ndarray
        ``(M,)`` the explained score ``f(x)`` of the image.
    base_value : numpy.ndarray
        ``(M,)`` what the attributions are measured from: ``E[f(background)]`` for
        ``gradient``, ``f(fully masked image)`` for ``partition``. Completeness says
        ``attributions.sum() == score - base_value``.
    score_spread : numpy.ndarray
        ``(M,)`` standard deviation of the explained score over the background (0 when
        there is none): the natural scale of the score, used by :func:`completeness`.
    settings : dict
        Method and settings that produced them.
    """

    attributions: np.ndarray
    image_index: np.ndarray
    target: np.ndarray
    role: list[str]
    score: np.ndarray
    base_value: np.ndarray
    score_spread: np.ndarray | None = None
    settings: dict[str, Any] = field(default_factory=dict)

    def rows(self, role: str = "predicted") -> np.ndarray:
        """Row indices with the given role, in image order."""
        return np.flatnonzero(np.asarray(self.role) == role)


class ImageExplainer:
    """Attributions for image classifiers, with shap.

    Parameters
    ----------
    method : {"gradient", "partition"}
        See :data:`METHODS`.
    n_samples : int
        ``gradient``: background samples (path points) per explained output.
        ``partition``: model evaluations per explained output (``max_evals``).
    background_size : int
        Background images (``gradient``: path starts; ``partition``: only their mean
        colour is used as the masking value).
    batch_size : int or "auto"
        Images per forward(+backward) pass. ``auto``: 32 on the CPU; on a GPU 64 up to
        128x128 inputs, 32 up to 224x224, 16 above (fits a ResNet-50 at 224x224 in
        well under 16 GB).
    random_state : int
        Seeds the background draw and shap's path sampling.

    Examples
    --------
    >>> explainer = ImageExplainer(method="gradient", n_samples=32, random_state=0)
    >>> expl = explainer.explain(model, images, background=background)  # doctest: +SKIP
    """

    def __init__(self, *, method: str = "gradient", n_samples: int = 32,
                 background_size: int = 16, batch_size: int | str = "auto",
                 random_state: int = 0) -> None:
        if method not in METHODS:
            raise ConfigError(f"method must be one of {list(METHODS)}; got {method!r} instead.")
        if int(n_samples) < 1:
            raise ConfigError(f"n_samples must be >= 1; got {n_samples} instead.")
        if int(background_size) < 1:
            raise ConfigError(f"background_size must be >= 1; got {background_size} instead.")
        if batch_size != "auto" and (not isinstance(batch_size, int) or batch_size < 1):
            raise ConfigError(f"batch_size must be 'auto' or an int >= 1; got {batch_size!r} "
                              "instead.")
        self.method = method
        self.n_samples = int(n_samples)
        self.background_size = int(background_size)
        self.batch_size = batch_size
        self.random_state = int(random_state)

    # ------------------------------------------------------------------ helpers

    def resolved_batch_size(self, shape: Sequence[int], device: torch.device) -> int:
        """The batch size ``auto`` resolves to for images of ``shape`` ``(C, H, W)``."""
        if self.batch_size != "auto":
            return int(self.batch_size)
        if device.type != "cuda":
            return 32
        pixels = int(shape[-1]) * int(shape[-2])
        return 64 if pixels <= 128 * 128 else 32 if pixels <= 224 * 224 else 16

    def settings(self) -> dict[str, Any]:
        return {"method": self.method, "method_name": METHODS[self.method],
                "n_samples": self.n_samples, "background_size": self.background_size,
                "batch_size": self.batch_size, "random_state": self.random_state,
                "explained_score": "class logit (log-odds against the other class for "
                                   "two-class models)"}

    # ------------------------------------------------------------------ main call

    def explain(self, model: LoadedModel | nn.Module, images: torch.Tensor | np.ndarray, *,
                background: torch.Tensor | np.ndarray, targets: Sequence[Sequence[int]] |
                Sequence[int] | None = None, roles: Sequence[Sequence[str]] | None = None,
                progress: ProgressFn | None = None) -> Explanations:
        """Explain ``images`` for the given classes.

        Parameters
        ----------
        model : LoadedModel or nn.Module
            A module must map images in [0, 1] ``(N, C, H, W)`` to logits ``(N, K)``.
        images : tensor or array
            ``(N, C, H, W)`` float in [0, 1].
        background : tensor or array
            ``(B, C, H, W)`` in [0, 1]; the first ``background_size`` are used.
        targets : per-image class lists, optional
            Default: the predicted class. ``[[pred, true], [pred], ...]``.
        roles : per-image role lists, optional
            Names for ``targets`` (default ``"predicted"``, then ``"true"``).
        progress : callable, optional
            ``progress(done, total, message)`` per image.
        """
        net = as_logits_module(model)
        device = _module_device(model)
        x = _as_images(images, "images").to(device)
        bg = _as_images(background, "background").to(device)[: self.background_size]
        if x.shape[1:] != bg.shape[1:]:
            raise ConfigError(f"expected background images of shape {tuple(x.shape[1:])}; got "
                              f"{tuple(bg.shape[1:])} instead.")
        with torch.no_grad():
            logits = net(x)
        if logits.ndim != 2:
            raise ModelError(f"expected logits of shape (N, K); got {tuple(logits.shape)} instead.")
        n_classes = int(logits.shape[1])
        if targets is None:
            targets = [[int(i)] for i in logits.argmax(1).tolist()]
        targets = [[int(t)] if isinstance(t, (int, np.integer)) else [int(c) for c in t]
                   for t in targets]
        if len(targets) != len(x):
            raise ConfigError(f"expected one target list per image ({len(x)}); got "
                              f"{len(targets)} instead.")
        for t in targets:
            if not t or any(c < 0 or c >= n_classes for c in t):
                raise ConfigError(f"expected class indices in [0, {n_classes}); got {t} instead.")
        roles = roles or [["predicted", "true", "other"][: len(t)] if len(t) <= 3
                          else ["predicted"] + ["other"] * (len(t) - 1) for t in targets]
        batch = self.resolved_batch_size(tuple(x.shape[1:]), device)
        wanted_all = [list(dict.fromkeys(t)) for t in targets]
        # two classes: the second map is minus the first (scores are antisymmetric)
        computed_all = [w[:1] if n_classes == 2 else w for w in wanted_all]
        seeds = [self.random_state + i for i in range(len(x))]
        if self.method == "gradient":
            engine = _ExpectedGradients(net, bg, batch)
            done = engine(x, computed_all, n_samples=self.n_samples, seeds=seeds,
                          progress=progress)
        rows_attr, rows_img, rows_t, rows_role, rows_score, rows_base = [], [], [], [], [], []
        rows_spread: list[float] = []
        for i in range(len(x)):
            wanted, computed = wanted_all[i], computed_all[i]
            if self.method == "gradient":
                attr, score, base, spread = done[i]
            else:
                attr, score, base = _partition_rows(self, net, bg, x[i: i + 1], computed,
                                                    batch=batch, seed=seeds[i])
                spread = np.zeros(len(computed))
            if n_classes == 2 and len(wanted) > 1:
                attr = np.concatenate([attr, -attr[:1]])
                score = np.concatenate([score, -score[:1]])
                base = np.concatenate([base, -base[:1]])
                spread = np.concatenate([spread, spread[:1]])
            for k, cls in enumerate(wanted):
                rows_attr.append(attr[k])
                rows_img.append(i)
                rows_t.append(cls)
                rows_role.append(roles[i][targets[i].index(cls)])
                rows_score.append(score[k])
                rows_base.append(base[k])
                rows_spread.append(float(spread[k]))
            if progress and self.method != "gradient":
                progress(i + 1, len(x), "explaining images")
        c, h, w = x.shape[1:]
        return Explanations(
            attributions=(np.stack(rows_attr).astype(np.float32) if rows_attr
                          else np.zeros((0, c, h, w), np.float32)),
            image_index=np.asarray(rows_img, dtype=int),
            target=np.asarray(rows_t, dtype=int), role=rows_role,
            score=np.asarray(rows_score, dtype=np.float64),
            base_value=np.asarray(rows_base, dtype=np.float64),
            score_spread=np.asarray(rows_spread, dtype=np.float64),
            settings={**self.settings(), "batch_size_used": batch, "device": str(device),
                      "n_background": int(len(bg))},
        )


def _module_device(model: LoadedModel | nn.Module) -> torch.device:
    if isinstance(model, LoadedModel):
        return model.device
    if isinstance(model, ModelLogits):
        return model.loaded.device  # type: ignore[no-any-return]
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def _as_images(images: torch.Tensor | np.ndarray, what: str) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(images) if not isinstance(images, torch.Tensor) else images)
    if t.ndim != 4:
        raise ConfigError(f"expected {what} of shape (N, C, H, W); got {tuple(t.shape)} instead.")
    t = t.float()
    if t.numel() and (float(t.min()) < -1e-6 or float(t.max()) > 1 + 1e-6):
        raise ConfigError(f"expected {what} with values in [0, 1]; got values in "
                          f"[{float(t.min()):.3g}, {float(t.max()):.3g}] instead.")
    return t


class _ExpectedGradients:
    """Expected gradients with exactly the draws of ``shap.GradientExplainer``, batched.

    shap's PyTorch explainer builds every path sample in a Python loop and copies each
    one and each gradient batch to the host; on a GPU that loop costs 5-15 times the
    model itself. This replays shap's estimator for the same ``rseed`` (per sample a
    background index ``np.random.choice(B)`` then ``t ~ U(0, 1)`` from a generator seeded
    with ``rseed``; ``phi = mean_k grad f(t x + (1 - t) x'_k) * (x - x'_k)``), building
    samples on the device and packing several images and classes into one
    forward+backward pass. ``tests/test_explain.py`` checks that it equals shap's output.
    """

    def __init__(self, net: nn.Module, bg: torch.Tensor, batch: int) -> None:
        self.net, self.bg, self.batch = net, bg, batch
        with torch.no_grad():
            self.bg_logits = net(bg)

    def draws(self, seed: int, n_samples: int) -> tuple[np.ndarray, np.ndarray]:
        """shap's background indices and path positions for ``rseed = seed``."""
        rs = np.random.RandomState(seed)
        rind = np.empty(n_samples, dtype=np.int64)
        t = np.empty(n_samples)
        for k in range(n_samples):
            rind[k] = rs.choice(len(self.bg))
            t[k] = rs.uniform()
        return rind, t

    def __call__(self, x: torch.Tensor, classes: list[list[int]], *, n_samples: int,
                 seeds: list[int], progress: ProgressFn | None = None
                 ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
        device = x.device
        pair_img = np.asarray([i for i, cs in enumerate(classes) for _ in cs], dtype=np.int64)
        pair_cls = np.asarray([c for cs in classes for c in cs], dtype=np.int64)
        draws = [self.draws(s, n_samples) for s in seeds]
        rind = np.concatenate([draws[i][0] for i in pair_img]) if len(pair_img) else np.zeros(0)
        tt = np.concatenate([draws[i][1] for i in pair_img]) if len(pair_img) else np.zeros(0)
        row_pair = np.repeat(np.arange(len(pair_img)), n_samples)
        rind_t = torch.as_tensor(rind, device=device, dtype=torch.long)
        t_t = torch.as_tensor(tt, device=device, dtype=x.dtype).view(-1, 1, 1, 1)
        pair_t = torch.as_tensor(row_pair, device=device, dtype=torch.long)
        img_t = torch.as_tensor(pair_img, device=device, dtype=torch.long)
        cls_t = torch.as_tensor(pair_cls, device=device, dtype=torch.long)
        total = torch.zeros((len(pair_img), *x.shape[1:]), device=device, dtype=torch.float32)
        n_rows = len(row_pair)
        # row where each image's samples end (images are explained in order)
        image_end = np.asarray([(np.flatnonzero(pair_img == i).max() + 1) * n_samples
                                for i in range(len(classes))])
        for start in range(0, n_rows, self.batch):
            sl = slice(start, min(start + self.batch, n_rows))
            pairs = pair_t[sl]
            xi = x[img_t[pairs]]
            ref = self.bg[rind_t[sl]]
            t = t_t[sl]
            inp = (t * xi + (1 - t) * ref).detach().requires_grad_(True)
            scores = class_scores(self.net(inp), cls_t[pairs])
            (grad,) = torch.autograd.grad(scores.sum(), inp)
            total.index_add_(0, pairs, (grad * (xi - ref)).float())
            if progress:
                progress(int(np.searchsorted(image_end, sl.stop, "right")), len(x),
                         "explaining images")
        attr = (total / n_samples).cpu().numpy()
        with torch.no_grad():
            logits = self.net(x)
        out = []
        for i, cs in enumerate(classes):
            rows = np.flatnonzero(pair_img == i)
            cls = torch.as_tensor(cs, device=device)
            score = class_scores(logits[i: i + 1].expand(len(cs), -1), cls).double().cpu().numpy()
            bg_scores = [class_scores(self.bg_logits, cls[k].repeat(len(self.bg_logits))).double()
                         for k in range(len(cs))]
            base = np.asarray([b.mean().item() for b in bg_scores])
            spread = np.asarray([b.std(unbiased=False).item() for b in bg_scores])
            out.append((attr[rows], score, base, spread))
        return out


class _ShapGradientRows:
    """Reference: ``shap.GradientExplainer`` itself, one image at a time (tests, benchmark).

    shap's explainer runs the model on the whole background when it is built; building
    it once (and switching the explained classes per image) keeps that cost out of the
    per-image loop.
    """

    def __init__(self, n_samples: int, net: nn.Module, bg: torch.Tensor, batch: int) -> None:
        import shap

        self.n_samples = n_samples
        self.wrapper = _TargetScores(net, [0])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            self.explainer = shap.GradientExplainer(self.wrapper, bg, batch_size=batch)
        with torch.no_grad():
            self.bg_logits = net(bg)

    def __call__(self, x: torch.Tensor, classes: list[int], *, seed: int
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        self.wrapper.targets = list(classes)
        # shap explains every output it holds a gradient slot for: exactly ``classes``
        inner = getattr(self.explainer, "explainer", self.explainer)  # the torch backend
        inner.gradients = [None] * len(classes)
        inner.multi_output = len(classes) > 1
        state = np.random.get_state()  # shap seeds numpy's global generator; restore it
        try:
            values = self.explainer.shap_values(x, nsamples=self.n_samples, rseed=seed)
        finally:
            np.random.set_state(state)
        attr = np.moveaxis(np.asarray(values)[0], -1, 0)  # (1, C, H, W, K) -> (K, C, H, W)
        with torch.no_grad():
            score = self.wrapper(x)[0].double().cpu().numpy()
        cls = torch.as_tensor(classes)
        bg_scores = [class_scores(self.bg_logits, cls[k].repeat(len(self.bg_logits))).double()
                     for k in range(len(classes))]
        base = np.asarray([b.mean().item() for b in bg_scores])
        self.spread = np.asarray([b.std(unbiased=False).item() for b in bg_scores])
        return attr, score, base


def _partition_rows(self: ImageExplainer, net: nn.Module, bg: torch.Tensor, x: torch.Tensor,
                    classes: list[int], *, batch: int, seed: int
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Partition-explainer Owen values for one image: ``(K, C, H, W)``, scores, bases."""
    import shap

    device = x.device
    wrapper = _TargetScores(net, classes)
    fill = bg.mean(dim=(0, 2, 3), keepdim=True).expand_as(x[0:1])[0]  # (C, H, W) mean colour
    mask_value = fill.permute(1, 2, 0).cpu().numpy().astype(np.float64)

    def f(hwc: np.ndarray) -> np.ndarray:
        out = []
        arr = torch.as_tensor(np.asarray(hwc), dtype=torch.float32)
        with torch.no_grad():
            for b in range(0, len(arr), batch):
                chunk = arr[b: b + batch].permute(0, 3, 1, 2).to(device)
                out.append(wrapper(chunk).double().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, len(classes)))

    masker = shap.maskers.Image(mask_value)
    explainer = shap.Explainer(f, masker, algorithm="partition", seed=seed)
    img = x[0].permute(1, 2, 0).cpu().numpy().astype(np.float64)[None]
    evals = max(self.n_samples, 3)
    result = explainer(img, max_evals=evals, batch_size=batch, silent=True)
    values = np.asarray(result.values)[0]  # (H, W, C, K)
    if values.ndim == 3:
        values = values[..., None]
    attr = np.moveaxis(values, -1, 0).transpose(0, 3, 1, 2)  # (K, C, H, W)
    score = f(img)[0]
    base = np.asarray(result.base_values, dtype=np.float64).reshape(-1)[: len(classes)]
    return attr, score, base
