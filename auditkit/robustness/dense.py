"""Robustness of multi-label and segmentation models, with each task's own loss.

:class:`TaskLossPGD` is projected gradient descent (Madry et al., 2018,
arXiv:1706.06083; L∞, ``steps`` steps of size ``alpha``, random start) written on
torchattacks' :class:`torchattacks.attack.Attack` base (model mode, device and
``[0, 1]`` handling come from it). It ascends the loss the model was trained to lower:

- ``multilabel_sigmoid``: binary cross-entropy over the image's findings with a known
  label (unknown labels do not count);
- ``segmentation``: per-pixel binary cross-entropy plus soft-Dice loss against the
  reference mask at the model's output size.

What is reported is what a reviewer cares about, per group of patients:
segmentation — the change in Dice (attacked or corrupted minus clean) on slices with a
tumour; multi-label — the share of finding calls that flip. Intervals treat a
patient's images as one unit (:func:`auditkit.stats.ratio_interval`). Corruptions
(:mod:`auditkit.robustness.corruptions`, severity 3) are measured the same way.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from .. import wording
from ..stats import ratio_interval

__all__ = ["TaskLossPGD", "dense_robustness", "effects_frame", "task_loss"]

DEFAULTS: dict[str, Any] = {"n_images": 96, "eps": [1 / 255, 2 / 255], "steps": 10,
                            "corruption_severity": 3, "batch_size": 32}


class _RawOutputs(nn.Module):
    """``images01 -> raw model outputs`` (the card's normalization applied inside)."""

    def __init__(self, loaded: Any) -> None:
        super().__init__()
        self.net = loaded.module
        self.loaded = loaded
        # torchattacks reads the device from the first parameter
        self.anchor = nn.Parameter(torch.zeros(1, device=loaded.device), requires_grad=False)

    def forward(self, images01: torch.Tensor) -> torch.Tensor:
        return self.net(self.loaded.normalize(images01))


def task_loss(output_kind: str, outputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The task's own loss, summed over the batch (what the attack ascends).

    ``multilabel_sigmoid``: ``outputs (N, K)`` logits, ``target (N, K)`` 1 / 0 / NaN.
    ``segmentation``: ``outputs (N, 1, H, W)`` foreground logits (or ``(N, C, H, W)``,
    whose last channel minus the others' log-sum-exp is used), ``target (N, H, W)`` 0/1.
    """
    if output_kind == "multilabel_sigmoid":
        known = ~torch.isnan(target)
        per = nn.functional.binary_cross_entropy_with_logits(
            outputs, torch.nan_to_num(target), reduction="none")
        return (per * known).sum()
    logit = outputs[:, 0] if outputs.shape[1] == 1 else (
        outputs[:, -1] - torch.logsumexp(outputs[:, :-1], dim=1))
    bce = nn.functional.binary_cross_entropy_with_logits(logit, target, reduction="none")
    prob = torch.sigmoid(logit)
    inter = (prob * target).flatten(1).sum(1)
    dice = (2 * inter + 1.0) / (prob.flatten(1).sum(1) + target.flatten(1).sum(1) + 1.0)
    return bce.flatten(1).mean(1).sum() + (1.0 - dice).sum()


class TaskLossPGD:
    """PGD under L∞ on the task's own loss, built on torchattacks' ``Attack`` base.

    Parameters
    ----------
    model : LoadedModel
    output_kind : {"multilabel_sigmoid", "segmentation"}
    eps : float
        L∞ budget on pixels in [0, 1].
    steps : int
        Gradient steps of size ``eps / 4``, from a uniform random start.
    seed : int
        Seeds the random start.
    """

    def __init__(self, model: Any, *, output_kind: str, eps: float, steps: int = 10,
                 seed: int = 0) -> None:
        from torchattacks.attack import Attack

        kind, budget, n_steps, random_seed = output_kind, float(eps), int(steps), int(seed)

        class _PGD(Attack):  # type: ignore[misc]
            def __init__(self, wrapped: nn.Module) -> None:
                super().__init__("TaskLossPGD", wrapped)
                self.supported_mode = ["default"]

            def forward(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
                images = images.clone().detach().to(self.device)
                labels = labels.clone().detach().to(self.device)
                gen = torch.Generator(device="cpu").manual_seed(random_seed)
                start = (torch.rand(images.shape, generator=gen) * 2 - 1) * budget
                adv = (images + start.to(self.device)).clamp(0, 1).detach()
                alpha = budget / 4
                for _ in range(n_steps):
                    adv.requires_grad_(True)
                    cost = task_loss(kind, self.get_logits(adv), labels)
                    grad = torch.autograd.grad(cost, adv)[0]
                    adv = adv.detach() + alpha * grad.sign()
                    adv = (images + (adv - images).clamp(-budget, budget)).clamp(0, 1).detach()
                return adv

        # in eval mode before torchattacks sees it: the base class puts the model back in
        # the mode it found it in, and a fresh module starts in training mode (which would
        # leave batch norm updating its statistics after the attack)
        self.wrapped = _RawOutputs(model).eval()
        self.attack = _PGD(self.wrapped)
        self.eps = budget

    def __call__(self, images01: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.attack(images01, target)


def _outputs(model: Any, x: torch.Tensor) -> np.ndarray:
    with torch.inference_mode():
        return model.module(model.normalize(x.to(model.device))).float().cpu().numpy()


def _dice(prob: np.ndarray, ref: np.ndarray, threshold: float) -> np.ndarray:
    pred = prob >= threshold
    n = len(pred)
    p2, r2 = pred.reshape(n, -1), ref.reshape(n, -1)
    inter = (p2 & r2).sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(r2.any(1), 2.0 * inter / (p2.sum(1) + r2.sum(1)), np.nan)


def _effect(model: Any, kind: str, x: np.ndarray, truth: np.ndarray, clean: np.ndarray
            ) -> np.ndarray:
    """Per image: change in Dice (segmentation) or share of finding calls flipped."""
    card = model.card
    if kind == "segmentation":
        from ..models import segmentation_probabilities

        threshold = float((card.segmentation or {}).get("threshold", 0.5))
        after = _dice(segmentation_probabilities(x, card), truth, threshold)
        before = _dice(segmentation_probabilities(clean, card), truth, threshold)
        return after - before
    thresholds = card.thresholds[None, :]
    flipped = (1 / (1 + np.exp(-x)) >= thresholds) != (1 / (1 + np.exp(-clean)) >= thresholds)
    return flipped.mean(axis=1)


def _summarise(effect: np.ndarray, records: Any, patients: np.ndarray | None,
               attributes: list[str], level: float, min_count: int) -> dict[str, Any]:
    keep = ~np.isnan(effect)

    def entry(mask: np.ndarray) -> dict[str, Any]:
        m = mask & keep
        cl = None if patients is None else patients[m]
        value, ci, _ = ratio_interval(effect[m], np.ones(int(m.sum())), cl, level=level,
                                      bounds=(-1.0, 1.0))
        n_pat = int(len(set(cl.tolist()))) if cl is not None else None
        return {"value": value, "ci": ci, "n": int(m.sum()), "n_patients": n_pat,
                "too_few": bool(m.sum() < min_count or (n_pat is not None
                                                        and n_pat < min_count))}

    overall = entry(np.ones(len(effect), bool))
    groups = []
    for attr in attributes:
        values = records[attr].astype(str).to_numpy()
        for group in dict.fromkeys(values.tolist()):
            groups.append({"attribute": attr, "group": group, **entry(values == group)})
    return {"overall": overall, "groups": groups}


def _budget(value: Any) -> float:
    """An L∞ budget given as a number or as ``"k/255"``."""
    from ..exceptions import ConfigError

    text = str(value).strip()
    try:
        if "/" in text:
            num, den = text.split("/", 1)
            return float(num) / float(den)
        return float(text)
    except ValueError:
        raise ConfigError(f"robustness eps must be numbers or 'k/255'; got {value!r} "
                          "instead.") from None


def dense_robustness(ctx: Any) -> dict[str, Any]:
    """The ``robustness`` check for ``multilabel_sigmoid`` and ``segmentation`` models."""
    from ..predict import load_model_input
    from ._check import detect_modality, sample_images
    from .corruptions import corrupt, corruptions_for

    model, card = ctx.model, ctx.model.card
    kind = card.output
    opts = {**DEFAULTS, **ctx.options("robustness")}
    rows, evaluated_on = ctx.evaluation_rows()
    eligible = np.flatnonzero(rows)
    rec_all = ctx.dataset.records
    if kind == "segmentation":  # tumour slices: Dice is defined there
        eligible = eligible[rec_all["mask"].iloc[eligible].fillna("").astype(bool).to_numpy()]
        from ..segmentation import evaluate_masks

        # slices with a reference lesion (shared with the performance check when it ran)
        lesion = evaluate_masks(ctx)["per_image"]["lesion"].to_numpy(bool)
        eligible = eligible[lesion[eligible]]
    pool = rec_all.iloc[eligible].reset_index(drop=True)
    pick = eligible[sample_images(pool, int(opts["n_images"]), stratify_by=None,
                                  rng=ctx.rng(611))]
    records = rec_all.iloc[pick].reset_index(drop=True)
    if not len(pick):
        return {"status": "not_assessed", "reason": "no evaluated image to attack"}
    x = torch.stack([load_model_input(p, input_size=card.input_size, channels=card.channels,
                                      scaling=card.scaling) for p in records["path"]])
    if kind == "segmentation":
        from ..segmentation import load_mask_tensor

        truth = np.stack([load_mask_tensor(ctx.dataset.root / m, card.output_size)
                          for m in records["mask"]])
        target = torch.from_numpy(truth.astype(np.float32))
    else:
        from ..multilabel import finding_labels

        truth = finding_labels(records, list(card.class_names))
        target = torch.from_numpy(truth.astype(np.float32))
    clean = _outputs(model, x)
    patients = records["patient_id"].to_numpy().astype(str) if ctx.dataset.has_patients else None
    attrs = ctx.dataset.attribute_names
    level, min_count = ctx.config.confidence, ctx.config.min_group_size
    measure = ("change in Dice on slices with a tumour (attacked minus clean), at the model's "
               "output size" if kind == "segmentation"
               else "share of finding calls that flip")
    attacks = []
    batch = int(opts["batch_size"])
    for eps in [_budget(e) for e in opts["eps"]]:
        attack = TaskLossPGD(model, output_kind=kind, eps=eps, steps=int(opts["steps"]),
                             seed=ctx.config.seed)
        adv = torch.cat([attack(x[i:i + batch], target[i:i + batch])
                         for i in range(0, len(x), batch)])
        effect = _effect(model, kind, _outputs(model, adv), truth, clean)
        summary = _summarise(effect, records, patients, attrs, level, min_count)
        attacks.append({"attack": "task_loss_pgd", "norm": "Linf", "eps": eps,
                        "eps_label": f"{eps * 255:g}/255", "steps": int(opts["steps"]),
                        **summary})
        if ctx.progress:
            ctx.progress(len(attacks), len(opts["eps"]), f"robustness: PGD at {eps * 255:g}/255")
    corruptions = []
    severity = int(opts["corruption_severity"])
    for name in corruptions_for(detect_modality(model, ctx.dataset)):
        xc = corrupt(x, name, severity, seed=ctx.config.seed)
        effect = _effect(model, kind, _outputs(model, xc), truth, clean)
        corruptions.append({"corruption": name, "severity": severity,
                            **_summarise(effect, records, patients, attrs, level, min_count)})
    lines = []
    pct_points = kind == "segmentation"
    for a in attacks:
        lines.append(wording.dense_robustness_sentence(
            what=f"PGD on the model's own loss at {a['eps_label']}", measure=kind,
            value=a["overall"]["value"], ci=a["overall"]["ci"], n=a["overall"]["n"],
            n_patients=a["overall"]["n_patients"]))
    worst = min(corruptions, key=lambda c: (c["overall"]["value"] if pct_points
                                            else -c["overall"]["value"]), default=None)
    if worst is not None:
        lines.append(wording.dense_robustness_sentence(
            what=f"the worst corruption ({worst['corruption']}, severity {severity})",
            measure=kind, value=worst["overall"]["value"], ci=worst["overall"]["ci"],
            n=worst["overall"]["n"], n_patients=worst["overall"]["n_patients"]))
    return {"status": "assessed", "output_kind": kind, "evaluated_on": evaluated_on,
            "n_images": int(len(pick)), "measure": measure,
            "loss": ("binary cross-entropy over known findings" if kind != "segmentation"
                     else "per-pixel binary cross-entropy + soft Dice"),
            "attacks": attacks, "corruptions": corruptions, "summary": lines}


def effects_frame(result: dict[str, Any]) -> Any:
    """Every attack and corruption, overall and per group: one row each.

    Columns: ``kind`` (attack / corruption), ``name``, ``attribute`` ("all" overall),
    ``group``, ``value`` (change in Dice, or share of calls flipped), ``low``, ``high``,
    ``n``, ``n_patients``, ``too_few``, ``suppressed``.
    """
    import pandas as pd

    rows = []
    for kind, entries in (("attack", result.get("attacks", [])),
                          ("corruption", result.get("corruptions", []))):
        for e in entries:
            name = (f"PGD (own loss) {e['eps_label']}" if kind == "attack"
                    else f"{e['corruption']} (severity {e['severity']})")
            for attribute, group, o in [("all", "all images", e.get("overall") or {})] + [
                    (g["attribute"], g["group"], g) for g in e.get("groups", [])]:
                ci = o.get("ci") or [None, None]
                rows.append({"kind": kind, "name": name, "attribute": attribute,
                             "group": group, "value": o.get("value"), "low": ci[0],
                             "high": ci[1], "n": o.get("n"), "n_patients": o.get("n_patients"),
                             "too_few": bool(o.get("too_few")),
                             "suppressed": bool(o.get("suppressed"))})
    return pd.DataFrame(rows)
