"""The one attack wrapper: an auditkit model as torchattacks expects it.

torchattacks (Kim, 2020, arXiv:2010.01950) attacks ``nn.Module`` objects that take
images in [0, 1] ``(N, C, H, W)`` and return logits ``(N, K)``. An auditkit model
normalizes inside :meth:`auditkit.LoadedModel.logits` and presents a single-logit
binary model as two logits ``[0, z]``, so wrapping it is all the adaptation needed.

The wrapper deliberately does *not* register the model's module as a child:
torchattacks calls ``.eval()``/``.train()`` on the model it attacks, and modules
loaded from ``torch.export`` archives raise on those calls. Instead
:meth:`AttackModel.prepared` switches the real module to evaluation mode once,
freezes its parameters (the attack needs gradients of the *input* only), enables
gradients even inside ``torch.no_grad()``/``inference_mode`` and restores all three
afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from ..exceptions import ModelError
from ..models import LoadedModel

__all__ = ["AttackModel", "check_attackable"]


def check_attackable(model: LoadedModel) -> None:
    """Raise :class:`ModelError` for models the robustness check cannot judge yet."""
    if model.card.output in ("multilabel_sigmoid", "segmentation"):
        raise ModelError(
            f"AttackModel wraps classifiers (softmax or binary_logit output); got "
            f"{model.card.ref} with output {model.card.output!r}. Multi-label and segmentation "
            "models are attacked with their own loss: auditkit.robustness.dense.TaskLossPGD."
        )


def _set_training(module: nn.Module, mode: bool) -> None:
    try:
        module.train(mode)
    except (NotImplementedError, RuntimeError):
        pass  # exported programs' modules have no train/eval switch; they run as exported


class AttackModel(nn.Module):
    """``images01 (N, C, H, W) in [0, 1] -> logits (N, n_classes)`` for torchattacks.

    Parameters
    ----------
    model : LoadedModel
        Any auditkit model with ``softmax`` or ``binary_logit`` output. Normalization
        from its card is applied inside; a binary single-logit model yields two logits.

    Raises
    ------
    ModelError
        For multi-label and segmentation models (see :mod:`auditkit.robustness.dense`).

    Examples
    --------
    >>> wrapped = AttackModel(model)                       # doctest: +SKIP
    >>> with wrapped.prepared():                           # doctest: +SKIP
    ...     adv = torchattacks.PGD(wrapped, eps=2/255)(x, y)
    """

    loaded: LoadedModel
    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, model: LoadedModel) -> None:
        super().__init__()
        check_attackable(model)
        # not a submodule: torchattacks' .eval()/.train() must not reach an exported module
        object.__setattr__(self, "loaded", model)
        # torchattacks reads the device from the first parameter
        self.device_anchor = nn.Parameter(torch.zeros(0, device=model.device),
                                          requires_grad=False)
        # the card's normalization, made once on the model's device (not per forward pass)
        norm, c = model.card.normalization, model.card.channels
        self.register_buffer("mean", torch.tensor(norm["mean"], device=model.device
                                                  ).view(1, c, 1, 1))
        self.register_buffer("std", torch.tensor(norm["std"], device=model.device
                                                 ).view(1, c, 1, 1))
        self._binary = model.card.output == "binary_logit"

    @property
    def n_classes(self) -> int:
        return self.loaded.n_classes

    def forward(self, images01: torch.Tensor) -> torch.Tensor:
        """Same as :meth:`LoadedModel.logits`: normalize, run, two logits for binary."""
        x = (images01 - self.mean.to(images01.dtype)) / self.std.to(images01.dtype)
        out = self.loaded.module(x)
        if self._binary:
            out = out.reshape(-1, 1)
            out = torch.cat([torch.zeros_like(out), out], dim=1)
        return out

    @contextmanager
    def prepared(self) -> Iterator[AttackModel]:
        """Evaluation mode, frozen weights and gradients on; all restored on exit."""
        inner = self.loaded.module
        was_training = bool(getattr(inner, "training", False))
        params = list(inner.parameters()) if hasattr(inner, "parameters") else []
        flags = [p.requires_grad for p in params]
        _set_training(inner, False)
        for p in params:
            p.requires_grad_(False)
        try:
            with torch.inference_mode(False), torch.enable_grad():
                yield self
        finally:
            for p, flag in zip(params, flags):
                p.requires_grad_(flag)
            if was_training:
                _set_training(inner, True)
