"""Training the demo models: seeded, CPU-feasible recipes with patient-level splits.

``auditkit train derm-lesion@v1`` re-creates ``models/derm-lesion/v1`` from the
recipe below: the same split (saved as ``split.csv``), the same seed, the same
weights format and a model card with honest test metrics, per patient group, with
bootstrap intervals that resample patients where the dataset has patient ids.

Splits are made over *units* (patients, or near-duplicate clusters when there are
no patient ids) so no patient or copy of a photo straddles train and test, and are
stratified by the attributes a recipe names so the test set holds every group.

Reproducibility. Training runs inside :func:`deterministic_training`: a fixed
number of CPU threads (:data:`TRAINING_THREADS`, whatever the machine's core count
or ``OMP_NUM_THREADS``), ``torch.use_deterministic_algorithms``, a seeded global
RNG (initialisation) and seeded generators for data order and augmentation. A
parallel reduction splits its work by thread count, so the thread count, not the
load on the machine, decides the last bits of every gradient; with it fixed, the
same recipe on the same kind of machine (CPU family, torch version) writes the same
weights and the same card. Across CPU kinds or torch versions the split still
reproduces exactly; the metrics reproduce within a few test images.

Control models (:mod:`auditkit.controls`) are recipes too: each plants one known
defect (corrupted group labels, a shortcut mark, no augmentation at a high learning
rate, memorisation of a small training set) so the audit can be shown to find it.
"""

from __future__ import annotations

import copy
import json
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from ._metrics import MetricInputs, compute_metrics, percentile_interval
from .architectures import SmallResNet
from .data import Dataset, load_dataset
from .exceptions import ConfigError
from .models import ModelCard, default_registry, select_device, sha256_file
from .predict import load_image_tensor

__all__ = ["CONTROL_RECIPES", "RECIPES", "TRAINING_THREADS", "Mark", "Recipe",
           "deterministic_training", "machine_kind", "make_split", "model_folder",
           "train_recipe"]

#: CPU threads every training run uses (the committed demo models were trained with 2).
#: Fixed so that results do not depend on the machine's core count or on
#: ``OMP_NUM_THREADS``: a reduction split over a different number of threads adds its
#: floats in a different order, and after thousands of optimizer steps that changed
#: cxr-covid@v1's test accuracy from 0.59 to 0.69 on a machine with another setting.
TRAINING_THREADS = 2

ProgressFn = Callable[[int, int, str], None]


@dataclass(frozen=True)
class Mark:
    """A small coloured square stamped into a corner of an image (the shortcut control).

    ``size`` is the side as a fraction of the image side; ``colour`` is RGB (0-255;
    grayscale images get its mean). Applied to ``uint8 (N, C, H, W)`` tensors by
    :meth:`apply`, and to image files by :func:`auditkit.controls.write_marked_dataset`.
    """

    colour: tuple[int, int, int] = (255, 0, 255)
    size: float = 0.125
    corner: str = "top_left"

    def box(self, height: int, width: int) -> tuple[slice, slice]:
        """Rows and columns the mark covers in an image of ``height x width``."""
        sh, sw = max(1, round(self.size * height)), max(1, round(self.size * width))
        rows = slice(0, sh) if self.corner.startswith("top") else slice(height - sh, height)
        cols = slice(0, sw) if self.corner.endswith("left") else slice(width - sw, width)
        return rows, cols

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """A copy of ``x`` (``uint8 (N, C, H, W)``) with the mark stamped on every image."""
        out = x.clone()
        rows, cols = self.box(x.shape[2], x.shape[3])
        colour = (self.colour if x.shape[1] == 3
                  else (int(round(sum(self.colour) / 3)),) * x.shape[1])
        for c in range(x.shape[1]):
            out[:, c, rows, cols] = colour[c]
        return out

    def describe(self) -> str:
        side = f"{self.size:.1%} of the image side"
        return (f"an RGB{tuple(self.colour)} square ({side}) in the "
                f"{self.corner.replace('_', '-')} corner")


@dataclass(frozen=True)
class Recipe:
    """How one demo model is trained. Cards copy the prose fields."""

    name: str
    version: str
    dataset: str
    task: str
    class_names: tuple[str, ...]
    positive_class: str
    output: str
    channels: int
    input_size: int
    fmt: str  # torchscript | export | state_dict:safetensors | state_dict:pt
    epochs: int
    strata: tuple[str, ...]
    report_groups: tuple[str, ...]
    train_filter: dict[str, tuple[str, ...]] = field(default_factory=dict)
    balance_by: str | None = None
    lr: float = 3e-3
    batch_size: int = 64
    seed: int = 0
    widths: tuple[int, ...] = (16, 32, 64, 128)
    test_fraction: float = 0.2
    val_fraction: float = 0.1
    intended_use: str = ""
    out_of_scope_use: str = ""
    limitations: str = ""
    training_note: str = ""
    family_note: str = ""
    # ---- control models (auditkit.controls): one planted defect each
    #: planted defect in plain words; non-empty makes this a control model
    control: str = ""
    #: which audit check must find the defect (fairness, explain, robustness, privacy)
    control_check: str = ""
    #: {attribute: {group: label}}: training/validation labels of a group replaced
    label_override: dict[str, dict[str, str]] = field(default_factory=dict)
    #: a mark stamped on every training/validation image of the positive class
    mark: Mark | None = None
    augment: bool = True
    weight_decay: float = 5e-4
    #: keep only this many training units (patients / photo groups); the rest "unused"
    train_units: int | None = None
    #: "best_val": the epoch with the best validation balanced accuracy; "last": the last
    keep: str = "best_val"
    dropout: float = 0.2
    #: CPU threads for this recipe (fixed: see TRAINING_THREADS). Controls use one, which
    #: also keeps them fast on a busy shared machine (no thread waits for a descheduled peer).
    threads: int = TRAINING_THREADS

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"

    @property
    def is_control(self) -> bool:
        return bool(self.control)


_DERM_COMMON = dict(
    dataset="fitzpatrick17k",
    task="Classify a clinical skin photograph as benign, malignant or non-neoplastic.",
    class_names=("benign", "malignant", "non-neoplastic"),
    positive_class="malignant",
    output="softmax",
    channels=3,
    input_size=64,
    epochs=30,
    strata=("skin_type_group", "label"),
    report_groups=("skin_type_group", "skin_type", "source_site"),
    intended_use=(
        "Demonstration and teaching of model audits in auditkit. Triage research on "
        "clinical photographs of the 21 conditions of the Fitzpatrick17k subset."
    ),
    out_of_scope_use=(
        "Any clinical decision. Dermoscopic images, conditions outside the 21 trained, "
        "children, or populations unlike two online atlases."
    ),
    family_note="derm-lesion v1 and v2 share task, classes and test set: compare them.",
)

#: How a card says that small groups are withheld (the rule of auditkit.suppression).
SMALL_CELL_NOTE = ("Groups with fewer than 10 images or patients, and the group needed to keep "
                   "such a group hidden, are withheld (small-cell protection).")

RECIPES: dict[str, Recipe] = {
    r.ref: r
    for r in [
        Recipe(
            name="derm-lesion", version="v1", fmt="torchscript",
            train_filter={"skin_type_group": ("I-II", "III-IV")},
            training_note=(
                "Trained only on photographs annotated Fitzpatrick I-IV (as many historical "
                "dermatology datasets were); types V-VI and unknown were left out of "
                "training, but are in the test set."
            ),
            limitations=(
                "Never saw skin types V-VI in training: expect worse performance there. "
                "64x64 input; small compact CNN; labels from atlases, not biopsies of a "
                "clinic population; skin-type labels are noisy (annotators agree exactly on "
                "under half the images). "
                "A variant trained on Fitzpatrick I-II only (the setting in which Groh et al. "
                "2021 found a skin-tone gap) showed no skin-type gap on held-out data that "
                "could be told apart from chance (largest 13 points, interval 0% to 33%; "
                "docs/validation.md), so this demo is not expected to show a real gap: the "
                "control models demonstrate that the fairness check finds one."
            ),
            **_DERM_COMMON,  # type: ignore[arg-type]
        ),
        Recipe(
            name="derm-lesion", version="v2", fmt="state_dict:safetensors",
            balance_by="skin_type_group",
            training_note=(
                "Trained on all skin types with skin-type-balanced sampling: each batch draws "
                "images with probability inversely proportional to the size of their "
                "Fitzpatrick group (I-II, III-IV, V-VI, unknown), so the rare dark-skin "
                "photographs weigh as much as the common light-skin ones. Same split, seed, "
                "architecture and epochs as v1; only the training set and the sampling changed."
            ),
            limitations=(
                "Balanced sampling repeats the few V-VI photographs many times, which can "
                "overfit them; the V-VI test group is small (see its interval). 64x64 input; "
                "atlas labels; noisy skin-type labels."
            ),
            **_DERM_COMMON,  # type: ignore[arg-type]
        ),
        Recipe(
            name="cxr-covid", version="v1", dataset="covid_cxr",
            task="Tell COVID-19 from other findings (other pneumonia or no finding) on a chest X-ray.",
            class_names=("not_covid", "covid"), positive_class="covid", output="binary_logit",
            channels=1, input_size=64, fmt="state_dict:pt", epochs=40, lr=2e-3, batch_size=32,
            strata=("label",), report_groups=("sex", "age", "view"),
            intended_use="Demonstration of auditing a single-logit binary classifier in auditkit.",
            out_of_scope_use=(
                "Any diagnosis or triage of COVID-19. The data are 318 images from case "
                "reports: views, hospitals and disease stages confound the label."
            ),
            limitations=(
                "Tiny training set (about 110 patients); images from publications, not a "
                "consecutive clinical series; view and source are shortcut candidates; only 12 "
                "'No Finding' images exist, so specificity is measured mostly on other "
                "pneumonias."
            ),
            training_note="Single-logit output trained with BCE; split by patient.",
        ),
        Recipe(
            name="mri-tumor", version="v1", dataset="lgg_mri",
            task="Tell whether an axial brain MRI slice (pre-contrast, FLAIR, post-contrast) shows a lower-grade glioma.",
            class_names=("no_tumor", "tumor"), positive_class="tumor", output="softmax",
            channels=3, input_size=64, fmt="export", epochs=15,
            strata=("race", "ethnicity"), report_groups=("race", "ethnicity", "sex", "age"),
            intended_use="Demonstration of auditing an MRI slice classifier in auditkit.",
            out_of_scope_use=(
                "Any clinical use; other tumour types, other sequences or scanners, children."
            ),
            limitations=(
                "110 patients from 5 hospitals of the TCGA-LGG cohort. The whole dataset has "
                "only about ten Black and fewer than ten Hispanic patients, and the test set "
                "fewer than ten of each, so the card withholds their per-group numbers "
                "(small-cell protection) and no gap for them can be told from noise. Slices "
                "of one patient are correlated."
            ),
            training_note="Split by patient, stratified by race and ethnicity so the test set holds Black and Hispanic patients.",
        ),
    ]
}


_CONTROL_COMMON = dict(
    version="v1", fmt="state_dict:safetensors", epochs=8, widths=(8, 16, 32, 64), threads=1,
    out_of_scope_use=(
        "Everything except validating auditkit. A control model is deliberately broken "
        "(or, for the reference, kept only as a comparison); it must never be used on "
        "patients, for research conclusions about skin disease, or as a starting point "
        "for another model."
    ),
    intended_use="Positive/negative control for auditkit's own checks (docs/validation.md).",
    **{k: v for k, v in _DERM_COMMON.items()
       if k not in ("epochs", "intended_use", "out_of_scope_use", "family_note")},
)

#: Control models: seeded recipes that plant one known defect each (see docs/validation.md).
CONTROL_RECIPES: dict[str, Recipe] = {
    r.ref: r
    for r in [
        Recipe(
            name="control-group-failure", control_check="fairness",
            control=("every training and validation photograph of skin types I-II was "
                     "relabelled 'non-neoplastic', so the model learns to call no lesion on "
                     "the lightest skin malignant; its sensitivity for I-II must be far "
                     "below the other groups' on the (correctly labelled) test set."),
            label_override={"skin_type_group": {"I-II": "non-neoplastic"}},
            keep="last",
            training_note=("All skin types, sampled as they come (I-II, the largest group, "
                           "is about half of training); training and validation labels of "
                           "types I-II replaced by 'non-neoplastic' (planted defect); the "
                           "demo's wider network (widths 16-128), 20 epochs, last epoch "
                           "kept. Test labels are the dataset's own."),
            limitations="Deliberately corrupted: never use. Small CNN, 64x64, 20 epochs.",
            **{**_CONTROL_COMMON, "epochs": 20,  # type: ignore[arg-type]
               "widths": (16, 32, 64, 128)},
        ),
        Recipe(
            name="control-shortcut", control_check="explain",
            control=("a magenta square (12.5% of the side) was stamped in the top-left corner "
                     "of every malignant training and validation photograph, so the mark "
                     "alone tells the class; the explanations must point at that corner and "
                     "removing the mark must change the answers. Audit it on "
                     "auditkit.controls.write_marked_dataset (the same mark on the same class) "
                     "and on the clean images."),
            mark=Mark(),
            training_note=("All skin types; every malignant training/validation image carries "
                           "the corner mark (planted shortcut). The test metrics below are on "
                           "clean, unmarked test images."),
            limitations="Deliberately broken by a shortcut: never use. Small CNN, 64x64.",
            **_CONTROL_COMMON,  # type: ignore[arg-type]
        ),
        Recipe(
            name="control-fragile", control_check="robustness",
            control=("trained for 30 epochs (the reference: 8) without any augmentation, "
                     "weight decay or dropout, keeping the last epoch: an overfitted, "
                     "over-confident model whose answers flip under tiny perturbations, to "
                     "be compared with control-reference."),
            augment=False, weight_decay=0.0, dropout=0.0, keep="last",
            training_note=("All skin types; no augmentation, no weight decay, no dropout, 30 "
                           "epochs at the reference's learning rate (0.003), last epoch kept "
                           "(planted fragility)."),
            limitations="Deliberately brittle: never use. Small CNN, 64x64.",
            family_note="Compare with control-reference@v1: same data, split, seed and network.",
            **{**_CONTROL_COMMON, "epochs": 30},  # type: ignore[arg-type]
        ),
        Recipe(
            name="control-reference", control_check="fairness",
            control=("none: this is the well-behaved reference (flip and shift augmentation, "
                     "lr 0.003, weight decay, dropout, best validation epoch). It is the "
                     "comparison for control-fragile, and the null control: audited on data "
                     "whose group labels are randomly permuted, every fairness gap must come "
                     "out 'cannot tell'."),
            training_note="All skin types; the standard recipe with augmentation.",
            limitations="A teaching model only: small CNN, 64x64, 8 epochs; never use.",
            family_note="Compare with control-fragile@v1: same data, split, seed and network.",
            **_CONTROL_COMMON,  # type: ignore[arg-type]
        ),
        Recipe(
            name="control-memoriser", control_check="privacy",
            control=("trained for 60 epochs on only 150 photographs (the rest of the "
                     "training split left unused), without augmentation, weight decay or "
                     "dropout, keeping the last epoch, so it memorises its training set; a "
                     "membership-inference attack must tell members from non-members with "
                     "an AUC clearly above 0.5."),
            train_units=150, epochs=60, batch_size=32, augment=False, weight_decay=0.0,
            dropout=0.0, keep="last",
            training_note=("150 training photographs (split.csv 'train'); the other training "
                           "images are 'unused' (planted memorisation)."),
            limitations="Deliberately overfitted: never use. Small CNN, 64x64.",
            **{k: v for k, v in _CONTROL_COMMON.items() if k not in ("epochs",)},  # type: ignore[arg-type]
        ),
    ]
}


def make_split(dataset: Dataset, *, strata: tuple[str, ...], test_fraction: float,
               val_fraction: float, seed: int) -> pd.Series:
    """Assign every image to train / val / test by patient (or split group).

    Units (patients, else ``split_group`` clusters, else images) are grouped by
    their strata values (the most common value within the unit); within each
    stratum, units are shuffled with ``seed`` and at least one unit of every stratum
    with two or more units goes to test.
    """
    rec = dataset.records
    unit = rec["patient_id"].where(rec["patient_id"].notna(), rec["split_group"])
    unit = unit.where(unit.notna(), rec["image"]).astype(str)
    keys = rec[list(strata)].astype(str).agg("|".join, axis=1)
    unit_key = keys.groupby(unit).agg(lambda s: s.value_counts().index[0])
    rng = np.random.default_rng(seed)
    assign: dict[str, str] = {}
    for _stratum, units in sorted(unit_key.groupby(unit_key).groups.items()):
        members = sorted(units)
        rng.shuffle(members)
        k = len(members)
        n_test = max(1, int(round(test_fraction * k))) if k >= 2 else 0
        n_val = max(1, int(round(val_fraction * k))) if k >= 4 else 0
        for i, u in enumerate(members):
            assign[u] = "test" if i < n_test else "val" if i < n_test + n_val else "train"
    return unit.map(assign).rename("split")


def _load_tensors(dataset: Dataset, recipe: Recipe, progress: ProgressFn | None) -> torch.Tensor:
    paths = dataset.records["path"].tolist()
    out = torch.empty((len(paths), recipe.channels, recipe.input_size, recipe.input_size),
                      dtype=torch.uint8)
    for i, p in enumerate(paths):
        out[i] = load_image_tensor(p, input_size=(recipe.input_size, recipe.input_size),
                                   channels=recipe.channels)
        if progress and (i % 512 == 0 or i == len(paths) - 1):
            progress(i + 1, len(paths), "loading images")
    return out


def _augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random horizontal flip and +-4 px translation (reflect padding), seeded."""
    flip = torch.rand(x.shape[0], generator=gen) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(3), x)
    pad = 4
    padded = nn.functional.pad(x, (pad, pad, pad, pad), mode="reflect")
    dx, dy = (int(v) for v in torch.randint(0, 2 * pad + 1, (2,), generator=gen))
    return padded[:, :, dy:dy + x.shape[2], dx:dx + x.shape[3]]


def _evaluate(model: nn.Module, x: torch.Tensor, recipe: Recipe, mean: torch.Tensor,
              std: torch.Tensor, device: torch.device) -> np.ndarray:
    model.eval()
    outs = []
    with torch.inference_mode():
        for i in range(0, len(x), 256):
            xb = (x[i:i + 256].to(device).float() / 255.0 - mean) / std
            outs.append(model(xb).float().cpu())
    out = torch.cat(outs).numpy()
    from .models import LoadedModel

    return LoadedModel.outputs_to_probabilities(out, recipe.output)


@contextmanager
def deterministic_training(seed: int, *, threads: int = TRAINING_THREADS,
                           device: torch.device | None = None) -> Iterator[None]:
    """Run a block deterministically and restore torch's global settings afterwards.

    Sets ``threads`` CPU threads, ``torch.use_deterministic_algorithms(True)`` (strict on
    CPU: a nondeterministic operator raises; warn-only on CUDA, where a few pooling
    backward kernels have no deterministic version), cuDNN's deterministic mode and the
    global seed. The previous thread count, flags and global RNG state come back on exit,
    so training never changes how the rest of the process computes.
    """
    on_cuda = device is not None and device.type == "cuda"
    if on_cuda:  # cuBLAS reads this when it starts; set before the first CUDA matmul
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    saved = (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled(),
             torch.is_deterministic_algorithms_warn_only_enabled(),
             torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic,
             torch.get_rng_state())
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True, warn_only=on_cuda)
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    torch.manual_seed(seed)
    try:
        yield
    finally:
        torch.set_num_threads(saved[0])
        torch.use_deterministic_algorithms(saved[1], warn_only=saved[2])
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = saved[3], saved[4]
        torch.set_rng_state(saved[5])


def machine_kind() -> str:
    """CPU architecture and model plus torch version: what "the same kind of machine" means."""
    import platform

    cpu = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{platform.machine()} {cpu}; torch {torch.__version__}"


def model_folder(recipe: Recipe, out_root: str | os.PathLike[str] | None = None) -> Path:
    """Where a recipe's model lives: ``models/<name>/<version>``, controls under ``controls/``."""
    root = Path(out_root or default_registry())
    return (root / "controls" if recipe.is_control else root) / recipe.name / recipe.version


def training_labels(recipe: Recipe, records: pd.DataFrame, use: pd.Series) -> pd.Series:
    """Labels the model is trained (and validated) on: the dataset's, with a control's
    planted corruption (:attr:`Recipe.label_override`) applied outside the test split."""
    labels = records["label"].astype(str).copy()
    developer = (use == "train") | (use == "val")
    for attr, mapping in recipe.label_override.items():
        for group, new_label in mapping.items():
            labels[developer & (records[attr].astype(str) == group)] = new_label
    return labels


def train_recipe(ref: str, *, out_root: str | os.PathLike[str] | None = None,
                 data_root: str | os.PathLike[str] | None = None, device: str = "auto",
                 epochs: int | None = None, progress: ProgressFn | None = None) -> Path:
    """Train the recipe ``ref`` and write its model folder; returns the folder.

    Deterministic for a given machine type (see :func:`deterministic_training`):
    seeded data order, augmentation and initialisation, a fixed thread count and
    deterministic algorithms. ``ref`` names a demo recipe (:data:`RECIPES`) or a
    control (:data:`CONTROL_RECIPES`); controls are written under ``controls/``.
    """
    from ._dense_training import DENSE_RECIPES, train_dense_recipe

    if ref in DENSE_RECIPES:  # the segmentation and multi-label demos
        return train_dense_recipe(ref, out_root=out_root, data_root=data_root, device=device,
                                  epochs=epochs, progress=progress)
    recipes = {**RECIPES, **CONTROL_RECIPES}
    if ref not in recipes:
        raise ConfigError(f"No training recipe {ref!r}; expected one of "
                          f"{sorted([*recipes, *DENSE_RECIPES])}.")
    recipe = recipes[ref]
    if epochs is not None and epochs < 1:
        raise ConfigError(f"epochs must be >= 1; got {epochs} instead.")
    if epochs is not None:
        recipe = Recipe(**{**recipe.__dict__, "epochs": epochs})
    dev = select_device(device)
    with deterministic_training(recipe.seed, threads=recipe.threads, device=dev):
        return _train(recipe, out_root=out_root, data_root=data_root, dev=dev,
                      progress=progress)


def _train(recipe: Recipe, *, out_root: str | os.PathLike[str] | None,  # noqa: C901
           data_root: str | os.PathLike[str] | None, dev: torch.device,
           progress: ProgressFn | None) -> Path:
    started = time.time()
    dataset = load_dataset(recipe.dataset, data_root=data_root, progress=progress)
    split = make_split(dataset, strata=recipe.strata, test_fraction=recipe.test_fraction,
                       val_fraction=recipe.val_fraction, seed=recipe.seed)
    rec = dataset.records
    use = split.copy()
    for attr, allowed in recipe.train_filter.items():
        use[(split != "test") & ~rec[attr].isin(allowed)] = "unused"
    if recipe.train_units is not None:
        unit = rec["patient_id"].where(rec["patient_id"].notna(), rec["split_group"])
        unit = unit.where(unit.notna(), rec["image"]).astype(str)
        train_units = sorted(set(unit[use == "train"]))
        keep = set(np.random.default_rng(recipe.seed).choice(
            train_units, size=min(recipe.train_units, len(train_units)), replace=False))
        use[(use == "train") & ~unit.isin(keep)] = "unused"
    x_all = _load_tensors(dataset, recipe, progress)
    classes = list(recipe.class_names)
    labels = training_labels(recipe, rec, use)
    y_all = torch.tensor([classes.index(c) for c in labels])
    y_true = np.asarray([classes.index(c) for c in rec["label"]])
    positive = classes.index(recipe.positive_class)
    if recipe.mark is not None:  # the shortcut: every developer image of the positive class
        marked = np.flatnonzero(((use == "train") | (use == "val")).to_numpy()
                                & (y_all.numpy() == positive))
        x_all[marked] = recipe.mark.apply(x_all[marked])
    tr = np.flatnonzero((use == "train").to_numpy())
    va = np.flatnonzero((use == "val").to_numpy())
    te = np.flatnonzero((use == "test").to_numpy())

    # normalization from training pixels
    xf = x_all[tr].float() / 255.0
    mean = xf.mean(dim=(0, 2, 3))
    std = xf.std(dim=(0, 2, 3)).clamp_min(1e-3)
    del xf
    mean_d, std_d = mean.view(1, -1, 1, 1).to(dev), std.view(1, -1, 1, 1).to(dev)

    n_out = 1 if recipe.output == "binary_logit" else len(classes)
    model = SmallResNet(in_channels=recipe.channels, num_outputs=n_out,
                        widths=recipe.widths, dropout=recipe.dropout).to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    steps_per_epoch = int(np.ceil(len(tr) / recipe.batch_size))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=recipe.lr, epochs=recipe.epochs,
                                                steps_per_epoch=steps_per_epoch)
    gen = torch.Generator().manual_seed(recipe.seed)
    if recipe.balance_by:
        groups = rec[recipe.balance_by].to_numpy()[tr]
        counts = pd.Series(groups).value_counts()
        sample_w = torch.tensor([1.0 / counts[g] for g in groups], dtype=torch.float64)
    else:
        sample_w = None
    # class weights counter class imbalance (same for every recipe)
    class_counts = np.bincount(y_all[tr].numpy(), minlength=len(classes)).astype(float)
    if recipe.output == "binary_logit":
        loss_fn: nn.Module = nn.BCEWithLogitsLoss(
            pos_weight=torch.tensor(class_counts[0] / max(class_counts[1], 1.0), device=dev))
    else:
        cw = torch.tensor(class_counts.sum() / (len(classes) * np.maximum(class_counts, 1)),
                          dtype=torch.float32, device=dev)
        loss_fn = nn.CrossEntropyLoss(weight=cw)
    best_state, best_score, log = None, -np.inf, []
    y_np = y_all.numpy()
    for epoch in range(recipe.epochs):
        model.train()
        if sample_w is not None:
            order = tr[torch.multinomial(sample_w, len(tr), replacement=True, generator=gen).numpy()]
        else:
            order = tr[torch.randperm(len(tr), generator=gen).numpy()]
        total = 0.0
        for b in range(steps_per_epoch):
            idx = order[b * recipe.batch_size:(b + 1) * recipe.batch_size]
            xb = x_all[idx].float() / 255.0
            if recipe.augment:
                xb = _augment(xb, gen)
            xb = (xb.to(dev) - mean_d) / std_d
            yb = y_all[idx].to(dev)
            out = model(xb)
            loss = (loss_fn(out.squeeze(1), yb.float()) if recipe.output == "binary_logit"
                    else loss_fn(out, yb))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
        proba = _evaluate(model, x_all[va], recipe, mean_d, std_d, dev)
        pred = proba.argmax(1)
        point, _ = compute_metrics(MetricInputs(y=y_np[va], pred=pred, proba=proba,
                                                positive=positive),
                                   metrics=["balanced_accuracy", "auroc"])
        score = point["balanced_accuracy"]
        log.append({"epoch": epoch + 1, "train_loss": total / len(tr),
                    "val_balanced_accuracy": point["balanced_accuracy"],
                    "val_auroc": point["auroc"]})
        if progress:
            progress(epoch + 1, recipe.epochs,
                     f"training {recipe.ref} (val balanced acc {score:.3f})")
        if recipe.keep == "last" or score > best_score:
            best_score, best_state = score, copy.deepcopy(model.state_dict())
    if best_state is not None:  # always set: epochs >= 1
        model.load_state_dict(best_state)
    model.eval().cpu()

    proba = _evaluate(model, x_all[te], recipe, mean.view(1, -1, 1, 1), std.view(1, -1, 1, 1),
                      torch.device("cpu"))
    # test metrics always against the dataset's true labels, on unmarked test images
    metrics = _test_metrics(recipe, dataset, te, y_true[te], proba, positive)

    folder = model_folder(recipe, out_root)
    folder.mkdir(parents=True, exist_ok=True)
    weights = _save_weights(model, recipe, folder)
    pd.DataFrame({"image": rec["image"], "split": use}).to_csv(folder / "split.csv", index=False)
    arch_kwargs: dict[str, Any] = {"in_channels": recipe.channels, "num_outputs": n_out,
                                   "widths": list(recipe.widths)}
    card = ModelCard(
        name=recipe.name, version=recipe.version, task=recipe.task,
        class_names=classes, positive_class=recipe.positive_class, output=recipe.output,
        input_size=[recipe.input_size, recipe.input_size], channels=recipe.channels,
        normalization={"mean": [round(float(v), 6) for v in mean],
                       "std": [round(float(v), 6) for v in std]},
        format=recipe.fmt.split(":")[0], weights=weights.name, sha256=sha256_file(weights),
        architecture="small_resnet" if recipe.fmt.startswith("state_dict") else None,
        architecture_kwargs=arch_kwargs if recipe.fmt.startswith("state_dict") else {},
        dataset=recipe.dataset,
        training_data=(
            f"{recipe.dataset}: {len(tr)} training, {len(va)} validation and {len(te)} test "
            f"images (split.csv), split by "
            f"{'patient' if dataset.has_patients else 'near-duplicate group'} with seed "
            f"{recipe.seed}. {recipe.training_note}"
        ),
        intended_use=(control_warning(recipe) + " " + recipe.intended_use).strip()
        if recipe.is_control else recipe.intended_use,
        out_of_scope_use=recipe.out_of_scope_use,
        limitations=recipe.limitations, metrics=metrics,
        subgroups_evaluated=list(recipe.report_groups), family_note=recipe.family_note,
        license="Weights: Apache-2.0; trained on data under " + dataset.spec.license,
    )
    card.save(folder)
    log_entry = {
        "recipe": _recipe_json(recipe),
        "device": str(dev), "torch": torch.__version__, "threads": torch.get_num_threads(),
        "machine": machine_kind(),
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "seconds": round(time.time() - started, 1), "epochs": log,
        "best_val_balanced_accuracy": best_score,
    }
    (folder / "training_log.json").write_text(json.dumps(log_entry, indent=2) + "\n")
    (folder / "MODEL_CARD.md").write_text(render_model_card(card, recipe=recipe, log=log_entry),
                                          encoding="utf-8")
    return folder


def _recipe_json(recipe: Recipe) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in recipe.__dict__.items():
        if isinstance(v, Mark):
            v = {"colour": list(v.colour), "size": v.size, "corner": v.corner}
        out[k] = list(v) if isinstance(v, tuple) else v
    return out


def control_warning(recipe: Recipe) -> str:
    """The sentence every control card starts with."""
    if recipe.control.startswith("none"):
        return ("CONTROL MODEL (the reference: no defect planted) — a teaching model for "
                "validating auditkit; NEVER USE ON PATIENTS. " + recipe.control[0].upper()
                + recipe.control[1:])
    return (f"CONTROL MODEL — DELIBERATELY FLAWED; NEVER USE ON PATIENTS. Planted defect: "
            f"{recipe.control} It exists to show that auditkit's {recipe.control_check} check "
            "finds it.")


def _test_metrics(recipe: Recipe, dataset: Dataset, te: np.ndarray, y: np.ndarray,
                  proba: np.ndarray, positive: int) -> dict[str, Any]:
    pred = proba.argmax(1)
    rec = dataset.records.iloc[te].reset_index(drop=True)
    clusters = rec["patient_id"].to_numpy() if dataset.has_patients else None
    rng = np.random.default_rng(recipe.seed)
    names = ["accuracy", "balanced_accuracy", "sensitivity", "specificity", "auroc"]

    def block(mask: np.ndarray) -> dict[str, Any]:
        point, reps = compute_metrics(
            MetricInputs(y=y[mask], pred=pred[mask], proba=proba[mask], positive=positive,
                         clusters=None if clusters is None else clusters[mask]),
            n_boot=1000, rng=rng, metrics=names)
        entry: dict[str, Any] = {"n": int(mask.sum())}
        if clusters is not None:
            entry["n_patients"] = int(len(set(clusters[mask])))
        for k in names:
            v = point[k]
            entry[k] = None if np.isnan(v) else round(v, 4)
            ci = percentile_interval(reps[k])
            entry[f"{k}_ci"] = [None if c is None else round(c, 4) for c in ci]
        return entry

    out: dict[str, Any] = {"split": "test", "overall": block(np.ones(len(y), dtype=bool)),
                           "by_group": {}}
    for attr in recipe.report_groups:
        out["by_group"][attr] = {
            str(g): block((rec[attr] == g).to_numpy())
            for g in _ordered_groups(dataset, attr, rec[attr])
        }
    out["note"] = ("95% percentile-bootstrap intervals (1000 resamples, "
                   f"{'patients' if clusters is not None else 'images'} resampled). "
                   + SMALL_CELL_NOTE)
    from .suppression import protect_card_metrics

    return protect_card_metrics(out, k=10)


def _ordered_groups(dataset: Dataset, attr: str, values: pd.Series) -> list[str]:
    order = dataset.spec.attribute(attr).group_order
    present = set(values)
    return [g for g in order if g in present] + sorted(present - set(order))


def _save_weights(model: nn.Module, recipe: Recipe, folder: Path) -> Path:
    for old in folder.glob("weights.*"):
        old.unlink()
    example = torch.zeros(2, recipe.channels, recipe.input_size, recipe.input_size)
    if recipe.fmt == "torchscript":
        path = folder / "weights.torchscript.pt"
        torch.jit.save(torch.jit.trace(model, example), str(path))
    elif recipe.fmt == "export":
        path = folder / "weights.pt2"
        batch = torch.export.Dim("batch", min=1, max=4096)
        program = torch.export.export(model, (example,), dynamic_shapes=({0: batch},))
        torch.export.save(program, str(path))
    elif recipe.fmt == "state_dict:safetensors":
        from safetensors.torch import save_file

        path = folder / "weights.safetensors"
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    else:
        path = folder / "weights.pt"
        torch.save(model.state_dict(), str(path))
    return path


def refresh_model_card(folder: str | os.PathLike[str]) -> Path:
    """Re-apply the small-cell rule to a saved card and re-render MODEL_CARD.md (no training).

    For cards written before the rule existed; the weights and their sha256 are untouched.
    """
    from .suppression import protect_card_metrics

    folder = Path(folder)
    card = ModelCard.from_file(folder / "card.json")
    card.metrics = protect_card_metrics(card.metrics, k=10)
    note = str(card.metrics.get("note") or "")
    if note and SMALL_CELL_NOTE not in note:  # what a card trained today says
        card.metrics["note"] = f"{note} {SMALL_CELL_NOTE}"
    card.save(folder)
    recipe = RECIPES.get(f"{card.name}@{card.version}")
    log_path = folder / "training_log.json"
    log = json.loads(log_path.read_text(encoding="utf-8")) if log_path.is_file() else None
    (folder / "MODEL_CARD.md").write_text(render_model_card(card, recipe=recipe, log=log),
                                          encoding="utf-8")
    return folder


def _fmt_metric(entry: dict[str, Any], key: str) -> str:
    v = entry.get(key)
    if v is None:
        return "n/a"
    lo, hi = entry.get(f"{key}_ci", [None, None])
    return f"{v:.3f}" + (f" ({lo:.3f}-{hi:.3f})" if lo is not None else "")


def reproducibility_note(recipe: Recipe, log: dict[str, Any] | None = None) -> str:
    """What re-running the recipe reproduces exactly, and what only within a tolerance.

    ``log`` is the folder's ``training_log.json``: where it names the machine kind the
    weights were (re)produced on, the note says so.
    """
    threads = f"{recipe.threads} CPU thread{'s' if recipe.threads != 1 else ''}"
    text = (
        f"`auditkit train {recipe.ref}` re-creates this folder. Training is seeded (seed "
        f"{recipe.seed}: split, initialisation, data order, augmentation) and runs on "
        f"{threads} with deterministic algorithms, whatever the machine's core count or "
        "load. **Exactly reproduced** on the same kind of machine (same CPU family and "
        "torch version, CPU training): `split.csv`, the weights (same sha256) and every "
        "number on this card. **Within a tolerance** elsewhere (another CPU family, another "
        "torch version, a GPU): `split.csv` still exactly; the weights differ in their last "
        "bits, and after thousands of steps that moves the test metrics within their "
        "intervals, not to the digit: cxr-covid@v1 (61 test images) trained on one thread "
        "instead of two scored accuracy 0.70 instead of 0.59, inside the card's interval "
        "0.44-0.72. Compare retrained numbers with the intervals, not the digits."
    )
    log = log or {}
    if log.get("machine"):
        text += (f" These weights were produced (and re-produced bit for bit) on: "
                 f"{log['machine']}, {log.get('threads', recipe.threads)} thread(s).")
    elif log:
        text += (f" These weights predate the pinned thread count; they were trained with "
                 f"{log.get('threads', '?')} threads, torch {log.get('torch', '?')}, and have "
                 "not been re-verified since (cxr-covid@v1's have: bit-identical).")
    return text


def render_model_card(card: ModelCard, recipe: Recipe | None = None,
                      log: dict[str, Any] | None = None) -> str:
    """The human-readable MODEL_CARD.md for a card (``recipe`` adds how it reproduces,
    ``log``, the folder's ``training_log.json``, on which machine)."""
    recipes = {**RECIPES, **CONTROL_RECIPES}
    recipe = recipe or recipes.get(card.ref)
    m = card.metrics
    lines = []
    if recipe is not None and recipe.is_control:
        lines += [f"> **{control_warning(recipe)}**", ""]
    lines += [
        f"# Model card: {card.name} {card.version}",
        "",
        f"**Task.** {card.task}",
        "",
        f"| field | value |\n|---|---|\n| classes | {', '.join(card.class_names)} |\n"
        f"| clinically positive class | {card.positive_class} |\n| output | {card.output} |\n"
        f"| input | {card.channels} channel(s), {card.input_size[0]}x{card.input_size[1]} px |\n"
        f"| format | {card.format} (`{card.weights}`) |\n| sha256 | `{card.sha256}` |\n"
        f"| architecture | {card.architecture or 'in the archive (compact residual CNN)'} |",
        "",
        f"**Intended use.** {card.intended_use}",
        "",
        f"**Out of scope.** {card.out_of_scope_use}",
        "",
        f"**Training data.** {card.training_data}",
        "",
        f"**Limitations.** {card.limitations}",
        "",
    ]
    if card.family_note:
        lines += [f"**Versions.** {card.family_note}", ""]
    if m:
        o = m["overall"]
        lines += [
            "## Test metrics",
            "",
            m.get("note", ""),
            "",
            f"Overall (n = {o['n']}" + (f", {o['n_patients']} patients" if "n_patients" in o else "")
            + f"): accuracy {_fmt_metric(o, 'accuracy')}, balanced accuracy "
            f"{_fmt_metric(o, 'balanced_accuracy')}, sensitivity for {card.positive_class} "
            f"{_fmt_metric(o, 'sensitivity')}, specificity {_fmt_metric(o, 'specificity')}, "
            f"AUROC {_fmt_metric(o, 'auroc')}.",
            "",
        ]
        from .suppression import protect_card_metrics
        from .wording import withheld_note

        # the card is published: the same small-cell rule as every export, even for a
        # card.json written before the rule existed
        for attr, groups in protect_card_metrics(m, k=10).get("by_group", {}).items():
            lines += [f"### By {attr}", "",
                      "| group | n | accuracy (95% CI) | sensitivity | specificity |",
                      "|---|---|---|---|---|"]
            for g, e in groups.items():
                if e.get("suppressed"):
                    lines.append(f"| {g} | withheld | withheld | withheld | withheld |")
                    continue
                n = f"{e['n']}" + (f" ({e['n_patients']} patients)" if "n_patients" in e else "")
                lines.append(f"| {g} | {n} | {_fmt_metric(e, 'accuracy')} | "
                             f"{_fmt_metric(e, 'sensitivity')} | {_fmt_metric(e, 'specificity')} |")
            lines.append("")
            if any(e.get("suppressed") for e in groups.values()):
                lines += [withheld_note(10), ""]
    if recipe is not None:
        lines += ["## Reproducing this model", "", reproducibility_note(recipe, log), ""]
    else:
        lines += ["Reproduce: `auditkit train " + f"{card.name}@{card.version}` (seeded; writes "
                  "this folder).", ""]
    return "\n".join(lines)
