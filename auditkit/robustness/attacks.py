"""Adversarial attacks from torchattacks, run through :class:`AttackModel`.

Every attack here is torchattacks' own implementation (Kim, 2020,
arXiv:2010.01950); auditkit only chooses settings, seeds and batches:

==========  =====  ===========================================================
name        norm   method
==========  =====  ===========================================================
fgsm        L∞     Goodfellow et al., 2015, arXiv:1412.6572 (one gradient step)
pgd         L∞     Madry et al., 2018, arXiv:1706.06083 (10 steps, α = ε/4)
pgd_l2      L2     Madry et al., 2018 (10 steps, α = ε/4)
cw          L2     Carlini & Wagner, 2017, arXiv:1608.04644 (c = 1, 50 steps)
deepfool    L2     Moosavi-Dezfooli et al., 2016, arXiv:1511.04599 (50 steps)
square      L∞     Andriushchenko et al., 2020, arXiv:1912.00049 (scores only)
autoattack  L∞     Croce & Hein, 2020, arXiv:2003.01690
==========  =====  ===========================================================

``cw`` and ``deepfool`` have no budget: they look for the *smallest* change that
flips each prediction, and auditkit reports how large that change is.

Randomness: ``torch.manual_seed(seed)`` is called before each attack at each budget
(before its first batch), and torchattacks' own ``seed`` arguments (Square, APGD,
FAB) get the same seed, so an audit is repeatable on the same device.

AutoAttack's targeted parts (APGD-T with the targeted DLR loss, FAB-T) need at least
four classes; torchattacks fails with an IndexError below that. For two- and
three-class models auditkit runs the documented variant ``autoattack-lt4``: APGD-CE,
APGD-DLR (three classes only: the DLR loss needs three logits), FAB-T over the
``n_classes - 1`` other classes, and Square (5,000 queries), chained as AutoAttack
chains them (each image keeps the first perturbation that fools the model). The
variant is named in the results.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..exceptions import ConfigError
from ..models import LoadedModel
from ._base import AttackModel

__all__ = ["ATTACKS", "DEFAULT_ATTACKS", "AdversarialAttack", "AttackOutcome", "AttackSpec"]

ProgressFn = Callable[[int, int, str], None]


@dataclass(frozen=True)
class AttackSpec:
    """What an attack is, for people and for the sweep."""

    name: str
    label: str
    norm: str  # "Linf" or "L2"
    budgeted: bool  # False: searches for the smallest flipping change (no ε)
    access: str  # "white-box" (gradients) or "black-box" (scores only)
    cost: str  # "cheap" or "costly"


ATTACKS: dict[str, AttackSpec] = {
    "fgsm": AttackSpec("fgsm", "FGSM (L∞)", "Linf", True, "white-box", "cheap"),
    "pgd": AttackSpec("pgd", "PGD (L∞)", "Linf", True, "white-box", "cheap"),
    "pgd_l2": AttackSpec("pgd_l2", "PGD (L2)", "L2", True, "white-box", "cheap"),
    "cw": AttackSpec("cw", "Carlini-Wagner (L2)", "L2", False, "white-box", "costly"),
    "deepfool": AttackSpec("deepfool", "DeepFool (L2)", "L2", False, "white-box", "cheap"),
    "square": AttackSpec("square", "Square (L∞, scores only)", "Linf", True, "black-box", "costly"),
    "autoattack": AttackSpec("autoattack", "AutoAttack (L∞)", "Linf", True, "white-box",
                             "costly"),
}
#: Cheap enough for a default CPU audit; the others are opt-in.
DEFAULT_ATTACKS = ("fgsm", "pgd", "deepfool")


@dataclass
class AttackOutcome:
    """Per-image result of one attack at one budget.

    ``adversarial`` ``(N, C, H, W)`` in [0, 1] on the CPU; ``clean_pred`` and
    ``attacked_pred`` class indices ``(N,)``; ``attacked_confidence`` the attacked
    prediction's probability ``(N,)``; ``l2`` and ``linf`` the size of the change
    ``(N,)`` in [0, 1] pixel units.
    """

    adversarial: torch.Tensor
    clean_pred: np.ndarray
    attacked_pred: np.ndarray
    attacked_confidence: np.ndarray
    l2: np.ndarray
    linf: np.ndarray


class AdversarialAttack:
    """One torchattacks attack at one budget, seeded and batched.

    Parameters
    ----------
    name : str
        A key of :data:`ATTACKS`.
    eps : float, optional
        Budget in [0, 1] pixel units: L∞ for ``fgsm``/``pgd``/``square``/``autoattack``,
        L2 for ``pgd_l2``. Ignored by ``cw`` and ``deepfool`` (unbudgeted).
    seed : int
        ``torch.manual_seed(seed)`` before the first batch; also torchattacks' seeds.
    batch_size : int
        Images per attacked batch (on the model's device).
    steps : int, optional
        Iterations (PGD 10, CW 50, DeepFool 50 by default).
    square_queries : int
        Score queries per image for ``square`` (torchattacks' default is 5,000).
    cw_c : float
        Weight of the misclassification term in CW.

    Attributes
    ----------
    variant_ : str or None
        After :meth:`perturb`: ``"autoattack-lt4"`` when the two/three-class variant ran.

    Examples
    --------
    >>> atk = AdversarialAttack("pgd", eps=2 / 255, seed=0)    # doctest: +SKIP
    >>> adv = atk.perturb(model, images01, labels)             # doctest: +SKIP
    """

    def __init__(self, name: str, *, eps: float | None = None, seed: int = 0,
                 batch_size: int = 64, steps: int | None = None, square_queries: int = 1000,
                 cw_c: float = 1.0) -> None:
        if name not in ATTACKS:
            raise ConfigError(f"attack must be one of {list(ATTACKS)}; got {name!r} instead.")
        spec = ATTACKS[name]
        if spec.budgeted and (eps is None or not 0 < float(eps) <= (1.0 if spec.norm == "Linf"
                                                                     else 1e3)):
            raise ConfigError(
                f"{name} needs a budget eps > 0 in [0, 1] pixel units (e.g. 2/255); "
                f"got {eps!r} instead."
            )
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1; got {batch_size} instead.")
        self.name = name
        self.spec = spec
        self.eps = float(eps) if spec.budgeted and eps is not None else None
        self.seed = int(seed)
        self.batch_size = int(batch_size)
        self.steps = steps
        self.square_queries = int(square_queries)
        self.cw_c = float(cw_c)
        self.variant_: str | None = None

    # ------------------------------------------------------------------ building
    def build(self, wrapped: AttackModel) -> Any:
        """The torchattacks attack object for ``wrapped`` (no images touched)."""
        import torchattacks as ta

        n_classes = wrapped.n_classes
        eps, seed, steps = float(self.eps or 0.0), self.seed, self.steps
        self.variant_ = None
        if self.name == "fgsm":
            return ta.FGSM(wrapped, eps=eps)
        if self.name == "pgd":
            return ta.PGD(wrapped, eps=eps, alpha=eps / 4, steps=steps or 10, random_start=True)
        if self.name == "pgd_l2":
            return ta.PGDL2(wrapped, eps=eps, alpha=eps / 4, steps=steps or 10,
                            random_start=True)
        if self.name == "cw":
            return ta.CW(wrapped, c=self.cw_c, kappa=0, steps=steps or 50, lr=0.01)
        if self.name == "deepfool":
            return ta.DeepFool(wrapped, steps=steps or 50, overshoot=0.02)
        if self.name == "square":
            return ta.Square(wrapped, norm="Linf", eps=eps, n_queries=self.square_queries,
                             n_restarts=1, seed=seed, verbose=False)
        # autoattack
        if n_classes >= 4:
            return ta.AutoAttack(wrapped, norm="Linf", eps=eps, version="standard",
                                 n_classes=n_classes, seed=seed)
        from torchattacks.wrappers.multiattack import MultiAttack

        parts = [ta.APGD(wrapped, norm="Linf", eps=eps, seed=seed, loss="ce", n_restarts=1)]
        if n_classes == 3:
            parts.append(ta.APGD(wrapped, norm="Linf", eps=eps, seed=seed, loss="dlr",
                                 n_restarts=1))
        parts += [
            ta.FAB(wrapped, norm="Linf", eps=eps, seed=seed, multi_targeted=True,
                   n_classes=n_classes, n_restarts=1),
            ta.Square(wrapped, norm="Linf", eps=eps, seed=seed, n_queries=5000, n_restarts=1),
        ]
        self.variant_ = "autoattack-lt4"
        return MultiAttack(parts)

    # ------------------------------------------------------------------ running
    def perturb(self, model: LoadedModel | AttackModel, images01: torch.Tensor,
                labels: torch.Tensor | np.ndarray, *, progress: ProgressFn | None = None,
                ) -> torch.Tensor:
        """Adversarial images ``(N, C, H, W)`` in [0, 1], on the CPU.

        Parameters
        ----------
        model : LoadedModel or AttackModel
        images01 : torch.Tensor
            ``(N, C, H, W)`` float in [0, 1] (any device; batches move to the model's).
        labels : array-like of int
            ``(N,)`` true class indices in the model's class order.
        """
        return self.run(model, images01, labels, progress=progress).adversarial

    def run(self, model: LoadedModel | AttackModel, images01: torch.Tensor,
            labels: torch.Tensor | np.ndarray, *, clean_pred: np.ndarray | None = None,
            progress: ProgressFn | None = None) -> AttackOutcome:
        """Attack batch by batch; the attacked predictions and change sizes per image.

        Each batch is attacked and its change measured on the model's device; the
        attacked images are scored afterwards, batch by batch.
        """
        wrapped = model if isinstance(model, AttackModel) else AttackModel(model)
        x_all, y_all = _as_inputs(images01, labels)
        if clean_pred is None:
            clean_pred, _ = predict_classes(wrapped, x_all, batch_size=self.batch_size)
        device = wrapped.loaded.device
        advs: list[torch.Tensor] = []
        sizes: list[torch.Tensor] = []  # (B, 2): l2, linf, measured on the device
        with wrapped.prepared():
            attack = self.build(wrapped)
            torch.manual_seed(self.seed)
            for start in range(0, len(x_all), self.batch_size):
                xb = x_all[start:start + self.batch_size].to(device)
                yb = y_all[start:start + self.batch_size].to(device)
                adv = attack(xb, yb).detach().float()
                delta = (adv - xb).flatten(1)
                sizes.append(torch.stack([delta.norm(p=2, dim=1), delta.abs().amax(dim=1)],
                                         dim=1).cpu())
                advs.append(adv.cpu())
                if progress:
                    progress(min(start + self.batch_size, len(x_all)), len(x_all),
                             self.describe())
        if not advs:
            empty = np.zeros(0)
            return AttackOutcome(x_all.clone(), np.asarray(clean_pred), empty.astype(int),
                                 empty, empty, empty)
        # scored after the attack, not between its batches: interleaving no-grad calls
        # with the attack's gradient calls makes TorchScript models re-specialize (slow)
        adversarial = torch.cat(advs)
        pred, conf = predict_classes(wrapped, adversarial, batch_size=self.batch_size)
        table = torch.cat(sizes).double().numpy()
        return AttackOutcome(
            adversarial=adversarial, clean_pred=np.asarray(clean_pred), attacked_pred=pred,
            attacked_confidence=conf, l2=table[:, 0], linf=table[:, 1],
        )

    def describe(self) -> str:
        if self.eps is None:
            return self.spec.label
        return f"{self.spec.label} at ε = {budget_label(self.eps, self.spec.norm)}"


def budget_label(eps: float, norm: str) -> str:
    """``2/255`` for L∞ budgets that are multiples of 1/510, else the number."""
    if norm == "Linf":
        k = eps * 255
        if abs(k * 2 - round(k * 2)) < 1e-3:
            return f"{round(k * 2) / 2:g}/255"
    return f"{eps:g}"


def _as_inputs(images01: torch.Tensor, labels: torch.Tensor | np.ndarray
               ) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.as_tensor(images01).float()
    if x.ndim != 4:
        raise ConfigError(f"images must be (N, C, H, W) in [0, 1]; got shape {tuple(x.shape)} "
                          "instead.")
    y = torch.as_tensor(np.asarray(labels), dtype=torch.long)
    if y.shape != (x.shape[0],):
        raise ConfigError(f"labels must be ({x.shape[0]},) class indices; got shape "
                          f"{tuple(y.shape)} instead.")
    return x, y


def predict_classes(model: LoadedModel | AttackModel, images01: torch.Tensor, *,
                    batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Argmax class ``(N,)`` and its probability ``(N,)`` for images in [0, 1]."""
    loaded = model.loaded if isinstance(model, AttackModel) else model
    logits = model if isinstance(model, AttackModel) else model.logits
    preds, confs = [], []
    with torch.no_grad():
        for start in range(0, len(images01), batch_size):
            xb = images01[start:start + batch_size].to(loaded.device).float()
            p = torch.softmax(logits(xb).float(), dim=1)
            conf, pred = p.max(dim=1)
            preds.append(pred.cpu().numpy())
            confs.append(conf.cpu().numpy())
    if not preds:
        return np.zeros(0, dtype=int), np.zeros(0)
    return np.concatenate(preds).astype(int), np.concatenate(confs).astype(np.float64)
