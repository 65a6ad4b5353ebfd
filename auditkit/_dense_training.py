"""Training recipes of the two demo models that are not one-label classifiers.

``mri-tumor-seg@v1``  a small U-Net (:class:`auditkit.architectures.SmallUNet`) outlining
                      the lower-grade glioma on ``lgg_mri`` slices (64x64 input and masks);
``cxr-findings@v1``   a multi-label CNN scoring three findings *derived* from the
                      ``covid_cxr`` metadata (``covid_cxr_findings``).

Same discipline as :mod:`auditkit.training`: split by patient with a fixed seed, fixed
threads and deterministic algorithms (:func:`auditkit.training.deterministic_training`),
weights as safetensors state dicts of an architecture auditkit defines (no code, no
pickle), a ``card.json`` and ``MODEL_CARD.md`` beside them. The test metrics written to
the card come from the same functions the audit uses (:mod:`auditkit.dense`).
"""

from __future__ import annotations

import copy
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from .architectures import SmallResNet, SmallUNet
from .data import load_dataset
from .exceptions import ConfigError
from .models import ModelCard, default_registry, select_device, sha256_file
from .predict import load_image_tensor
from .segmentation import load_mask_tensor

__all__ = ["DENSE_RECIPES", "DenseRecipe", "finish_card", "render_dense_card", "train_dense_recipe"]

ProgressFn = Any


@dataclass(frozen=True)
class DenseRecipe:
    """How one segmentation or multi-label demo model is trained."""

    name: str
    version: str
    dataset: str
    output: str  # segmentation | multilabel_sigmoid
    task: str
    class_names: tuple[str, ...]
    positive_class: str
    channels: int
    input_size: int
    epochs: int
    strata: tuple[str, ...]
    report_groups: tuple[str, ...]
    widths: tuple[int, ...]
    lr: float = 3e-3
    batch_size: int = 32
    seed: int = 0
    threads: int = 2
    test_fraction: float = 0.2
    val_fraction: float = 0.1
    findings: tuple[tuple[str, str], ...] = ()  # (name, what a positive call means)
    intended_use: str = ""
    out_of_scope_use: str = ""
    limitations: str = ""
    training_note: str = ""

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"


DENSE_RECIPES: dict[str, DenseRecipe] = {
    r.ref: r for r in [
        DenseRecipe(
            name="mri-tumor-seg", version="v1", dataset="lgg_mri", output="segmentation",
            task=("Outline the lower-grade glioma (FLAIR abnormality) on an axial brain MRI "
                  "slice (pre-contrast, FLAIR, post-contrast), pixel by pixel."),
            class_names=("background", "tumor"), positive_class="tumor", channels=3,
            input_size=64, epochs=12, strata=("race", "ethnicity"),
            report_groups=("race", "ethnicity", "sex", "age"), widths=(8, 16, 32),
            intended_use="Demonstration of auditing a segmentation model in auditkit.",
            out_of_scope_use=("Any clinical use (surgical or radiotherapy planning, volumetry); "
                              "other tumour types, sequences or scanners; children."),
            limitations=(
                "64x64 input (from 128x128): small lesions are a few pixels and boundaries are "
                "coarse, so Dice and boundary errors are measured on the 128x128 expert masks "
                "after upsampling the prediction. 110 patients from 5 TCGA hospitals; about "
                "ten Black and fewer than ten Hispanic patients in all, so their per-group "
                "numbers cannot be told from noise. Slices of one patient are correlated."),
            training_note=("Loss: per-pixel binary cross-entropy plus soft Dice; the epoch with "
                           "the best validation Dice (lesion slices) is kept. Split by patient, "
                           "stratified by race and ethnicity."),
        ),
        DenseRecipe(
            name="cxr-findings", version="v1", dataset="covid_cxr_findings",
            output="multilabel_sigmoid",
            task=("Score three findings on a chest X-ray at once: COVID-19 pneumonia, another "
                  "pneumonia or lung disease, and later admission to intensive care."),
            class_names=("covid19", "other_lung_disease", "icu"), positive_class="covid19",
            channels=1, input_size=64, epochs=40, strata=("label",),
            report_groups=("sex", "age", "view"), widths=(16, 32, 64, 128), lr=2e-3,
            findings=(("covid19", "COVID-19 pneumonia"),
                      ("other_lung_disease", "another pneumonia or lung disease"),
                      ("icu", "admitted to intensive care")),
            intended_use="Demonstration of auditing a multi-label finding model in auditkit.",
            out_of_scope_use=("Any diagnosis, triage or prognosis. The findings are DERIVED "
                              "from case-report metadata, not read off the images by "
                              "radiologists."),
            limitations=(
                "The three findings are derived labels: covid19 and other_lung_disease from the "
                "case report's diagnosis (label_covid; they exclude each other), icu from "
                "went_icu, a severity outcome that is unknown for 128 of 318 images (those "
                "images do not count for icu). 318 images of 160 patients from publications; "
                "view and source are shortcut candidates."),
            training_note=("Masked binary cross-entropy per finding (unknown labels do not "
                           "count), positives weighted by the negative/positive ratio of the "
                           "training set so the stated 0.5 thresholds sit near a balanced "
                           "operating point; the epoch with the best mean validation AUROC is "
                           "kept. Split by patient, stratified by diagnosis."),
        ),
    ]
}


def train_dense_recipe(ref: str, *, out_root: str | os.PathLike[str] | None = None,
                       data_root: str | os.PathLike[str] | None = None, device: str = "cpu",
                       epochs: int | None = None, progress: ProgressFn | None = None) -> Path:
    """Train ``mri-tumor-seg@v1`` or ``cxr-findings@v1`` and write its model folder."""
    from .training import deterministic_training

    if ref not in DENSE_RECIPES:
        raise ConfigError(f"No training recipe {ref!r}; expected one of {sorted(DENSE_RECIPES)}.")
    recipe = DENSE_RECIPES[ref]
    if epochs is not None:
        if epochs < 1:
            raise ConfigError(f"epochs must be >= 1; got {epochs} instead.")
        recipe = DenseRecipe(**{**recipe.__dict__, "epochs": epochs})
    dev = select_device(device)
    with deterministic_training(recipe.seed, threads=recipe.threads, device=dev):
        return _train(recipe, out_root=out_root, data_root=data_root, dev=dev,
                      progress=progress)


def _train(recipe: DenseRecipe, *, out_root: str | os.PathLike[str] | None,
           data_root: str | os.PathLike[str] | None, dev: torch.device,
           progress: ProgressFn | None) -> Path:
    from .training import machine_kind, make_split

    started = time.time()
    dataset = load_dataset(recipe.dataset, data_root=data_root, progress=progress)
    split = make_split(dataset, strata=recipe.strata, test_fraction=recipe.test_fraction,
                       val_fraction=recipe.val_fraction, seed=recipe.seed)
    rec = dataset.records
    size = (recipe.input_size, recipe.input_size)
    x_all = torch.stack([load_image_tensor(p, input_size=size, channels=recipe.channels)
                         for p in rec["path"]])
    tr, va, te = (np.flatnonzero((split == s).to_numpy()) for s in ("train", "val", "test"))
    xf = x_all[tr].float() / 255.0
    mean, std = xf.mean(dim=(0, 2, 3)), xf.std(dim=(0, 2, 3)).clamp_min(1e-3)
    del xf
    mean4, std4 = mean.view(1, -1, 1, 1), std.view(1, -1, 1, 1)

    def batch_x(idx: np.ndarray) -> torch.Tensor:
        return ((x_all[idx].float() / 255.0 - mean4) / std4).to(dev)

    model: nn.Module
    arch: dict[str, Any]
    if recipe.output == "segmentation":
        y_all = torch.from_numpy(np.stack([
            load_mask_tensor(dataset.root / m, size) if m else np.zeros(size, bool)
            for m in rec["mask"]])).float()[:, None]
        model = SmallUNet(in_channels=recipe.channels, num_outputs=1, widths=recipe.widths)
        arch = {"architecture": "small_unet", "architecture_kwargs": {
            "in_channels": recipe.channels, "num_outputs": 1, "widths": list(recipe.widths)}}
    else:
        cols = [f"finding_{n}" for n in recipe.class_names]
        y_all = torch.tensor(rec[cols].to_numpy(dtype=float), dtype=torch.float32)
        model = SmallResNet(in_channels=recipe.channels, num_outputs=len(recipe.class_names),
                            widths=recipe.widths)
        arch = {"architecture": "small_resnet", "architecture_kwargs": {
            "in_channels": recipe.channels, "num_outputs": len(recipe.class_names),
            "widths": list(recipe.widths)}}
        known = ~torch.isnan(y_all[tr])
        pos = (torch.nan_to_num(y_all[tr]) * known).sum(0)
        pos_weight = ((known.sum(0) - pos) / pos.clamp_min(1)).to(dev)
    model = model.to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=5e-4)
    steps = int(np.ceil(len(tr) / recipe.batch_size))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=recipe.lr, epochs=recipe.epochs,
                                                steps_per_epoch=steps)
    gen = torch.Generator().manual_seed(recipe.seed)
    best, best_state, log = -1.0, None, []
    for epoch in range(recipe.epochs):
        model.train()
        order = tr[torch.randperm(len(tr), generator=gen).numpy()]
        total = 0.0
        for i in range(0, len(order), recipe.batch_size):
            idx = order[i:i + recipe.batch_size]
            x, y = batch_x(idx), y_all[idx].to(dev)
            flip = torch.rand(len(idx), generator=gen) < 0.5
            x = torch.where(flip.to(dev)[:, None, None, None], x.flip(3), x)
            out = model(x)
            if recipe.output == "segmentation":
                y = torch.where(flip.to(dev)[:, None, None, None], y.flip(3), y)
                prob = torch.sigmoid(out)
                inter = (prob * y).sum()
                dice = (2 * inter + 1.0) / (prob.sum() + y.sum() + 1.0)
                loss = nn.functional.binary_cross_entropy_with_logits(out, y) + (1 - dice)
            else:
                known_b = ~torch.isnan(y)
                per = nn.functional.binary_cross_entropy_with_logits(
                    out, torch.nan_to_num(y), pos_weight=pos_weight, reduction="none")
                loss = (per * known_b).sum() / known_b.sum().clamp_min(1)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
        score = _validation_score(recipe, model, batch_x, y_all, va)
        log.append({"epoch": epoch + 1, "train_loss": round(total / len(tr), 5),
                    "val_score": round(score, 5)})
        if progress:
            progress(epoch + 1, recipe.epochs, f"training {recipe.ref} (val {score:.3f})")
        if score > best:
            best, best_state = score, copy.deepcopy(model.state_dict())
    if best_state is not None:  # always set: epochs >= 1
        model.load_state_dict(best_state)
    model.eval().cpu()

    folder = Path(out_root or default_registry()) / recipe.name / recipe.version
    folder.mkdir(parents=True, exist_ok=True)
    from safetensors.torch import save_file

    weights = folder / "weights.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(weights))
    pd.DataFrame({"image": rec["image"], "split": split}).to_csv(folder / "split.csv",
                                                                 index=False)
    card_fields: dict[str, Any] = {}
    if recipe.output == "segmentation":
        card_fields["segmentation"] = {"activation": "sigmoid", "threshold": 0.5,
                                       "output_size": None}
    else:
        card_fields["findings"] = [{"name": n, "positive_class": what, "threshold": 0.5}
                                   for n, what in recipe.findings]
    card = ModelCard(
        name=recipe.name, version=recipe.version, task=recipe.task,
        class_names=list(recipe.class_names), positive_class=recipe.positive_class,
        output=recipe.output, input_size=list(size), channels=recipe.channels,
        normalization={"mean": [round(float(v), 6) for v in mean],
                       "std": [round(float(v), 6) for v in std]},
        format="state_dict", weights=weights.name, sha256=sha256_file(weights),
        dataset=recipe.dataset,
        training_data=(f"{recipe.dataset}: {len(tr)} training, {len(va)} validation and "
                       f"{len(te)} test images (split.csv), split by patient with seed "
                       f"{recipe.seed}. {recipe.training_note}"),
        intended_use=recipe.intended_use, out_of_scope_use=recipe.out_of_scope_use,
        limitations=recipe.limitations, metrics={},
        subgroups_evaluated=list(recipe.report_groups),
        license="Weights: Apache-2.0; trained on data under " + dataset.spec.license,
        **arch, **card_fields)
    card.save(folder)
    log_entry = {"recipe": {k: (list(v) if isinstance(v, tuple) else v)
                            for k, v in recipe.__dict__.items()},
                 "device": str(dev), "torch": torch.__version__,
                 "threads": torch.get_num_threads(), "machine": machine_kind(),
                 "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
                 "seconds": round(time.time() - started, 1), "epochs": log,
                 "best_val_score": best}
    (folder / "training_log.json").write_text(json.dumps(log_entry, indent=2) + "\n")
    return finish_card(folder)


def _validation_score(recipe: DenseRecipe, model: nn.Module, batch_x: Any,
                      y_all: torch.Tensor, va: np.ndarray) -> float:
    """Mean Dice on validation lesion slices, or mean validation AUROC over findings."""
    from sklearn.metrics import roc_auc_score

    model.eval()
    with torch.inference_mode():
        out = torch.cat([model(batch_x(va[i:i + 256])).cpu() for i in range(0, len(va), 256)])
    y = y_all[va]
    if recipe.output == "segmentation":
        pred = (out > 0).float()
        lesion = y.flatten(1).sum(1) > 0
        inter = (pred * y).flatten(1).sum(1)
        dice = 2 * inter / (pred.flatten(1).sum(1) + y.flatten(1).sum(1)).clamp_min(1)
        return float(dice[lesion].mean()) if bool(lesion.any()) else 0.0
    scores = []
    for k in range(y.shape[1]):
        known = ~torch.isnan(y[:, k])
        yk = y[known, k].numpy()
        if 0 < yk.sum() < len(yk):
            scores.append(float(roc_auc_score(yk, out[known, k].numpy())))
    return float(np.mean(scores)) if scores else 0.0


def finish_card(folder: str | os.PathLike[str], *, n_boot: int = 1000) -> Path:
    """Measure the trained model on its test split and write the card's metrics and
    ``MODEL_CARD.md`` (the same functions as the audit's performance check)."""
    from .audit import run_audit
    from .models import load_model

    folder = Path(folder)
    model = load_model(folder, device="cpu")
    card = model.card
    dataset = load_dataset(str(card.dataset))
    audit = run_audit(model=model, dataset=dataset,
                      config=_card_config(n_boot))
    perf = audit["results"]["performance"]
    note = (f"95% intervals over patients ({n_boot} bootstrap resamples for "
            "patient-level means; clustered Wilson for proportions). Per-group numbers: "
            f"`auditkit audit --model {card.ref} --dataset {card.dataset} --checks fairness`.")
    metrics: dict[str, Any] = {"split": "test", "note": note, "n": perf["n"],
                               "n_patients": perf["n_patients"]}
    if card.output == "segmentation":
        metrics["overall"] = {name: {"value": _r(m["value"]), "ci": [_r(v) for v in m["ci"]],
                                     "n": m["denominator"], "n_patients":
                                     m["denominator_patients"], "of": m["denominator_of"]}
                              for name, m in perf["metrics"].items()}
    else:
        metrics["findings"] = {
            name: {"threshold": f["threshold"], "n": f["n"], "n_patients": f["n_patients"],
                   "n_unknown": f["n_unknown"],
                   **{m: {"value": _r(v["value"]), "ci": [_r(c) for c in v["ci"]]}
                      for m, v in f["metrics"].items()
                      if m in ("sensitivity", "specificity", "auroc", "prevalence")}}
            for name, f in perf["findings"].items()}
    metrics["summary"] = perf["summary"]
    card.metrics = metrics
    card.save(folder)
    log = json.loads((folder / "training_log.json").read_text())
    (folder / "MODEL_CARD.md").write_text(render_dense_card(card, log), encoding="utf-8")
    return folder


def _card_config(n_boot: int) -> Any:
    from ._context import AuditConfig

    return AuditConfig(checks=["performance"], n_boot=n_boot, device="cpu",
                       evaluate_on="test", small_cell_k=10)


def _r(value: Any) -> float | None:
    return None if value is None or value != value else round(float(value), 4)


def render_dense_card(card: ModelCard, log: dict[str, Any]) -> str:
    """``MODEL_CARD.md`` of a segmentation or multi-label demo model."""
    m = card.metrics
    lines = [f"# Model card: {card.name} {card.version}", "", f"**Task.** {card.task}", "",
             "| field | value |", "|---|---|", f"| output | {card.output} |",
             f"| classes | {', '.join(card.class_names)} |",
             f"| input | {card.channels} channel(s), {card.input_size[0]}x{card.input_size[1]} "
             "px |",
             f"| format | {card.format} (`{card.weights}`), architecture {card.architecture} |",
             f"| sha256 | `{card.sha256}` |"]
    if card.segmentation:
        seg = card.segmentation
        lines.append(f"| masks | {seg['activation']} per pixel, threshold {seg['threshold']}, "
                     f"{card.output_size[0]}x{card.output_size[1]} px |")
    for f in card.findings:
        lines.append(f"| finding `{f['name']}` | positive = {f['positive_class']}; called at "
                     f"probability >= {f['threshold']} |")
    lines += ["", f"**Intended use.** {card.intended_use}", "",
              f"**Out of scope.** {card.out_of_scope_use}", "",
              f"**Training data.** {card.training_data}", "",
              f"**Limitations.** {card.limitations}", ""]
    if m:
        lines += ["## Test metrics", "", m.get("note", ""), ""]
        lines += [f"- {s}" for s in m.get("summary", [])]
        lines.append("")
    lines += ["## Reproducing this model", "",
              f"`auditkit train {card.ref}` re-creates this folder (seed 0 for split, "
              f"initialisation and data order; {log.get('threads', 2)} CPU threads; "
              "deterministic algorithms). Produced on: "
              f"{log.get('machine', 'unknown')}, in {log.get('seconds', '?')} s.", ""]
    return "\n".join(lines)
