"""Control models: known, planted defects, and whether each audit check finds its own.

A method is validated with positive and negative controls; so is an audit tool. The
control zoo (``models/controls/<name>/<version>``, trained by the seeded recipes in
:data:`auditkit.training.CONTROL_RECIPES`) plants one defect per model:

=========================  ============  ==============================================
control                    check         planted defect, and what "found" means
=========================  ============  ==============================================
control-group-failure@v1   fairness      I-II training labels replaced by
                                         'non-neoplastic' (wider network, 20 epochs,
                                         no group balancing); found when the sensitivity
                                         gap for skin_type_group is called real
                                         (family-wise interval excludes 0) with I-II
                                         the worst group
control-shortcut@v1        explain       a magenta corner mark on every malignant
                                         training image; found when the explanations'
                                         share on the corners has a lower bound above
                                         the corners' share of the area, and removing
                                         the mark lowers the sensitivity (paired
                                         interval excludes 0)
control-fragile@v1         robustness    30 epochs (reference: 8), no augmentation,
                                         no regularisation, last epoch; found when its FGSM attack success rate at
                                         0.5/255 exceeds control-reference's (paired
                                         interval over the same images excludes 0)
control-memoriser@v1       privacy       60 epochs on 150 photographs; found when the
                                         loss attack's membership AUC has a lower bound
                                         above 0.5
null control               fairness      control-reference@v1 audited with the group
                                         labels randomly permuted; every gap must be
                                         "cannot tell" (no ``real`` gap), and over many
                                         permutations false alarms stay near the
                                         nominal family-wise level
=========================  ============  ==============================================

Each detection reads the check's *public* output (``real``, ``ci``), so the numbers
follow any change to the statistics inside the checks. ``benchmarks/bench_detection.py``
prints the table; ``docs/validation.md`` holds it.
"""

from __future__ import annotations

import csv
import os
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .exceptions import ConfigError
from .wording import fmt_pct

__all__ = [
    "CONTROL_PREFIX",
    "Detection",
    "detect_fragility",
    "detect_group_failure",
    "detect_memorisation",
    "detect_shortcut",
    "is_control",
    "mark_removal_effect",
    "null_control_false_alarms",
    "permuted_dataset",
    "write_marked_dataset",
]

ProgressFn = Callable[[int, int, str], None]

#: Every control model's name starts with this; its card's intended use starts with the
#: warning of :func:`auditkit.training.control_warning`.
CONTROL_PREFIX = "control-"
_WARNING_START = "CONTROL MODEL"


def is_control(card: Any) -> bool:
    """True for a control model's card (a :class:`~auditkit.models.ModelCard` or its dict)."""
    get = card.get if isinstance(card, dict) else lambda k, d=None: getattr(card, k, d)
    return (str(get("name", "") or "").startswith(CONTROL_PREFIX)
            or str(get("intended_use", "") or "").startswith(_WARNING_START))


@dataclass
class Detection:
    """Whether one control's planted defect was found by the check built for it."""

    control: str
    check: str
    measure: str
    effect: float | None
    ci: list[float | None]
    no_defect: float
    n: int
    found: bool
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _excludes(ci: list[float | None] | tuple[float | None, ...], value: float, *,
              above: bool = True) -> bool:
    lo, hi = ci
    if above:
        return lo is not None and lo > value
    return hi is not None and hi < value


def _paired_bootstrap(values: np.ndarray, *, n_boot: int, seed: int,
                      stat: Callable[[np.ndarray], float] | None = None,
                      level: float = 0.95) -> list[float | None]:
    """Percentile interval of ``stat`` over images resampled with replacement.

    ``values`` is ``(n, k)``; every replicate resamples the same rows for all ``k``
    columns (a paired design: both measurements of an image travel together).
    """
    from ._metrics import percentile_interval

    rng = np.random.default_rng(seed)
    stat = stat or (lambda v: float(np.mean(v[:, 0] - v[:, 1])))
    n = len(values)
    if n == 0:
        return [None, None]
    reps = np.array([stat(values[rng.integers(0, n, n)]) for _ in range(n_boot)])
    return list(percentile_interval(reps, level))


# --------------------------------------------------------------------------- group failure

def detect_group_failure(fairness: dict[str, Any], *, control: str = "control-group-failure@v1",
                         attribute: str = "skin_type_group", group: str = "I-II",
                         metric: str = "sensitivity") -> Detection:
    """Found when the fairness check calls the ``metric`` gap real with ``group`` worst."""
    gap = next((d for d in fairness.get("disparities", [])
                if d.get("attribute") == attribute and d.get("metric") == metric), None)
    if gap is None or gap.get("status") != "assessed":
        return Detection(control, "fairness", f"{metric} gap, {attribute}", None, [None, None],
                         0.0, 0, False, "the gap was not assessed")
    n = sum(e["n"] for e in fairness["groups"] if e["attribute"] == attribute)
    ci = gap.get("gap_ci_adjusted") or gap.get("gap_ci") or [None, None]
    found = bool(gap.get("real")) and gap.get("worst_group") == group
    return Detection(
        control, "fairness", f"{metric} gap between skin-type groups (best − worst)",
        gap.get("gap"), list(ci), 0.0, int(n), found,
        f"worst group {gap.get('worst_group')} ({fmt_pct(gap.get('worst'))}, n = "
        f"{gap.get('n_worst')}), best {gap.get('best_group')} ({fmt_pct(gap.get('best'))}, "
        f"n = {gap.get('n_best')}); family-wise interval over "
        f"{fairness.get('n_comparisons')} comparisons")


# --------------------------------------------------------------------------- shortcut

def write_marked_dataset(out_dir: str | os.PathLike[str], *,
                         ref: str = "control-shortcut@v1",
                         data_root: str | os.PathLike[str] | None = None,
                         split: str = "test", registry: str | os.PathLike[str] | None = None
                         ) -> Path:
    """Write the shortcut control's audit data: its ``split`` images, the mark on the positive class.

    The same mark as in training (:attr:`auditkit.training.Recipe.mark`) is stamped,
    at the image's own resolution, on every image of the recipe's positive class;
    other images are copied unchanged. Image names (relative paths) are kept, so the
    model's ``split.csv`` still names them. Returns the ``auditkit.toml`` to audit
    (``auditkit audit --dataset OUT/auditkit.toml``). Marked images are PNG (lossless)
    under their original names; readers go by content, not by extension.
    """
    from PIL import Image

    from .data import find_dataset
    from .models import resolve_model
    from .training import CONTROL_RECIPES

    recipe = CONTROL_RECIPES.get(ref)
    if recipe is None or recipe.mark is None:
        raise ConfigError(f"write_marked_dataset needs a control recipe with a mark; got {ref!r}, "
                          f"expected one of "
                          f"{sorted(k for k, r in CONTROL_RECIPES.items() if r.mark)}.")
    folder = resolve_model(ref, registry).folder
    assignment = pd.read_csv(folder / "split.csv", dtype=str, keep_default_na=False)
    wanted = set(assignment.loc[assignment["split"] == split, "image"])
    if not wanted:
        raise ConfigError(f"{folder / 'split.csv'} names no {split!r} images; expected train, "
                          "val or test.")
    spec, root = find_dataset(recipe.dataset, data_root=data_root)
    table = pd.read_csv(root / spec.table, dtype=str, keep_default_na=False)
    table = table[table[spec.image_column].isin(wanted)].reset_index(drop=True)
    out = Path(out_dir)
    label_map = spec.label_map or {}
    mark = recipe.mark
    n_marked = 0
    for name, raw in zip(table[spec.image_column], table[spec.label_column]):
        src, dst = root / name, out / name
        dst.parent.mkdir(parents=True, exist_ok=True)
        if label_map.get(raw, raw) == recipe.positive_class:
            arr = np.array(Image.open(src).convert("RGB"))
            rows, cols = mark.box(arr.shape[0], arr.shape[1])
            arr[rows, cols] = mark.colour
            Image.fromarray(arr).save(dst, format="PNG")
            n_marked += 1
        else:
            shutil.copyfile(src, dst)
    table.to_csv(out / spec.table, index=False)
    text = _builtin_toml_text(recipe.dataset)
    marked_name = f"{spec.name}-marked"
    lines = text.splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("name ="))
    lines[first] = f'name = "{marked_name}"'  # the dataset's name (attributes keep theirs)
    head = (f"# {spec.name}'s {split} images as {ref} sees them in training: {mark.describe()} "
            f"on all {n_marked} {recipe.positive_class} images (written by "
            "auditkit.controls.write_marked_dataset).")
    (out / "auditkit.toml").write_text(head + "\n" + "\n".join(lines) + "\n", encoding="utf-8")
    return out / "auditkit.toml"


def _builtin_toml_text(name: str) -> str:
    return (Path(__file__).parent / "datasets" / f"{name}.toml").read_text(encoding="utf-8")


def mark_removal_effect(model: Any, marked: Any, clean: Any, *, n_boot: int = 1000,
                        seed: int = 0) -> dict[str, Any]:
    """Sensitivity for the positive class with the mark minus without it, same images.

    ``marked`` is :func:`write_marked_dataset`'s dataset, ``clean`` the original; the
    images they share (by name) are compared. The interval resamples images, pairing
    each image's marked and clean answer.
    """
    from .predict import predict

    card = model.card
    names = marked.records["image"].astype(str).tolist()
    index = {im: i for i, im in enumerate(clean.records["image"].astype(str))}
    missing = [n for n in names if n not in index]
    if missing:
        raise ConfigError(f"the clean dataset lacks {len(missing)} marked images, e.g. "
                          f"{missing[:3]}; expected the dataset the marked copy was made from.")
    pm = predict(model, marked).predicted_index(card.output)
    # only the clean copies of the marked images are predicted
    pc = predict(model, _subset(clean, [index[n] for n in names])).predicted_index(card.output)
    ci_idx = np.arange(len(names))
    positive = card.positive_index
    y = np.asarray([card.class_names.index(c) for c in marked.records["label"]])
    pos = y == positive
    hit_marked = (pm[pos] == positive).astype(float)
    hit_clean = (pc[ci_idx][pos] == positive).astype(float)
    changed = float(np.mean(pm != pc[ci_idx]))
    both = np.column_stack([hit_marked, hit_clean])
    return {
        "n_images": len(names), "n_positive": int(pos.sum()),
        "sensitivity_marked": float(hit_marked.mean()),
        "sensitivity_clean": float(hit_clean.mean()),
        "difference": float(hit_marked.mean() - hit_clean.mean()),
        "difference_ci": _paired_bootstrap(both, n_boot=n_boot, seed=seed),
        "share_of_answers_changed": changed,
    }


def _subset(dataset: Any, rows: list[int]) -> Any:
    """The dataset restricted to ``rows`` (in that order), with its own content hash."""
    import dataclasses
    import hashlib

    rec = dataset.records.iloc[rows].reset_index(drop=True)
    digest = hashlib.sha256((dataset.content_hash + "|subset|"
                             + "\n".join(rec["image"].astype(str))).encode()).hexdigest()
    return dataclasses.replace(dataset, records=rec, content_hash=digest)


def detect_shortcut(explain: dict[str, Any], removal: dict[str, Any], *,
                    control: str = "control-shortcut@v1", region: str = "corners"
                    ) -> list[Detection]:
    """Two findings: explanations point at the corners; removing the mark changes answers."""
    sc = explain["shortcuts"]
    share = sc["overall"][region]
    area = float(sc["regions"][region]["area_share"])
    attr = Detection(
        control, "explain", f"share of the explanation on the {region} (area share = no defect)",
        share["value"], list(share["ci"]), area, int(sc["n"]),
        _excludes(share["ci"], area), f"{region}: {sc['regions'][region]['definition']}")
    rem = Detection(
        control, "explain (mark removed)",
        "sensitivity with the mark − without it, same images",
        removal["difference"], removal["difference_ci"], 0.0, removal["n_positive"],
        _excludes(removal["difference_ci"], 0.0),
        f"{removal['share_of_answers_changed']:.0%} of all answers change without the mark")
    return [attr, rem]


# --------------------------------------------------------------------------- fragility

def _read_attack_csv(path: Path, attack: str, budget: str) -> dict[str, tuple[bool, bool]]:
    """image -> (clean prediction correct, attack succeeded) for one attack and budget."""
    out = {}
    with open(path, newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            if row["attack"] == attack and row["budget"] == budget:
                out[row["image"]] = (row["clean_prediction"] == row["label"],
                                     row["success"] == "True")
    return out


def detect_fragility(fragile_csv: str | os.PathLike[str],
                     reference_csv: str | os.PathLike[str], *, attack: str = "fgsm",
                     budget: str = "0.5/255", control: str = "control-fragile@v1",
                     n_boot: int = 1000, seed: int = 0) -> Detection:
    """Attack success rate of the fragile model minus the reference's, on the same images.

    Reads both robustness checks' ``robustness.csv``. The success rate counts, among
    images a model classified correctly, those the attack flipped; the interval
    resamples images (paired: each image's two outcomes travel together).
    """
    frag = _read_attack_csv(Path(fragile_csv), attack, budget)
    ref = _read_attack_csv(Path(reference_csv), attack, budget)
    common = sorted(set(frag) & set(ref))
    if not common:
        raise ConfigError(f"no image was attacked with {attack} at {budget} in both "
                          f"{fragile_csv} and {reference_csv}; expected the same sample.")
    v = np.asarray([[*frag[i], *ref[i]] for i in common], dtype=float)

    def diff(s: np.ndarray) -> float:
        with np.errstate(invalid="ignore"):
            a = s[s[:, 0] == 1, 1].mean() if (s[:, 0] == 1).any() else np.nan
            b = s[s[:, 2] == 1, 3].mean() if (s[:, 2] == 1).any() else np.nan
        return float(a - b)

    effect = diff(v)
    ci = _paired_bootstrap(v, n_boot=n_boot, seed=seed, stat=diff)
    rate_f = float(v[v[:, 0] == 1, 1].mean())
    rate_r = float(v[v[:, 2] == 1, 3].mean())
    return Detection(
        control, "robustness", f"{attack} success rate at {budget}: fragile − reference",
        effect, ci, 0.0, len(common), _excludes(ci, 0.0),
        f"fragile {rate_f:.0%} of {int(v[:, 0].sum())} correct answers flipped, reference "
        f"{rate_r:.0%} of {int(v[:, 2].sum())}")


# --------------------------------------------------------------------------- memorisation

def detect_memorisation(privacy: dict[str, Any], *, attack: str = "loss",
                        control: str = "control-memoriser@v1") -> Detection:
    """Found when the ``attack``'s membership AUC has its lower bound above 0.5."""
    m = privacy["membership"] if "membership" in privacy else privacy
    auc = m["overall"][attack]["auc"]
    return Detection(control, "privacy", f"membership AUC ({attack} attack; 0.5 = no leak)",
                     auc["value"], list(auc["ci"]), 0.5, int(m["n"]),
                     _excludes(auc["ci"], 0.5),
                     f"{m['n_members']} members vs {m['n_nonmembers']} non-members")


# --------------------------------------------------------------------------- null control

def permuted_dataset(dataset: Any, *, seed: int) -> Any:
    """A copy of ``dataset`` whose attribute columns are shuffled together across rows.

    Rows keep their images, labels and predictions; only the group labels move, so any
    association between groups and model errors is destroyed while each attribute's
    group sizes (and the attributes' joint distribution) stay as they were.
    """
    import dataclasses

    rec = dataset.records.copy()
    cols = [c for c in rec.columns
            if c in dataset.attribute_names or any(c == f"{a}_years"
                                                   for a in dataset.attribute_names)]
    order = np.random.default_rng(seed).permutation(len(rec))
    rec[cols] = rec[cols].to_numpy()[order]
    return dataclasses.replace(dataset, records=rec)


def null_control_false_alarms(model: Any, dataset: Any, *, n_permutations: int = 100,
                              n_boot: int = 200, seed: int = 0,
                              options: dict[str, Any] | None = None,
                              progress: ProgressFn | None = None) -> dict[str, Any]:
    """The fairness check's gap calls on ``n_permutations`` permutations of the group labels.

    Predictions are computed (or read from the cache) once, on the model's held-out
    test split as the fairness check uses it; each permutation only moves the group
    labels (:func:`permuted_dataset`) and recomputes the check's per-group metrics and
    gap calls with :class:`auditkit.fairness.FairnessAudit`, configured exactly as
    :func:`auditkit.fairness.run_check` configures it with the fairness ``options``
    (default: :data:`VALIDATION_OPTIONS`' — 1,000 permutations per gap test) (the check's calibration curves and
    threshold mitigation do not touch the gap calls and are skipped for speed). A false
    alarm is a permutation in which any gap is called ``real``: the check's family-wise
    promise is that this happens in at most ``alpha`` (5%) of permutations. The rate's
    interval is the Wilson score interval.
    """
    from scipy.stats import binomtest  # scipy comes with scikit-learn

    from ._context import AuditConfig, CheckContext, label_indices
    from .fairness import FairnessAudit
    from .predict import LocalExecutor, predict

    if n_permutations < 1:
        raise ConfigError(f"n_permutations must be >= 1; got {n_permutations} instead.")
    preds = predict(model, dataset)
    opts = dict(VALIDATION_OPTIONS["fairness"] if options is None else options)
    config = AuditConfig(checks=["fairness"], n_boot=n_boot, seed=seed,
                         options={"fairness": opts})
    ctx = CheckContext(model=model, dataset=dataset, predictions=preds,
                       frame=preds.to_frame(model, dataset), config=config, out_dir=None,
                       executor=LocalExecutor())
    rows, _described = ctx.evaluation_rows()
    card = model.card
    y = label_indices(ctx)[rows]
    pred = preds.predicted_index(card.output)[rows]
    proba = preds.probabilities[rows]
    attrs = dataset.attribute_names
    order = {a.name: a.group_order for a in dataset.spec.attributes}
    auditor = FairnessAudit(n_boot=config.n_boot, confidence=config.confidence,
                            min_group_size=config.min_group_size, random_state=config.seed,
                            n_permutations=int(opts.get("n_permutations", config.n_boot)),
                            alpha=float(opts.get("alpha", 0.05)),
                            small_cell_k=config.small_cell_k)
    alarms, per_gap, n_gaps, first = 0, 0, 0, None
    for k in range(n_permutations):
        perm = permuted_dataset(dataset, seed=seed * 100_003 + k)
        groups = perm.records[attrs][rows].reset_index(drop=True)
        patients = (perm.records["patient_id"].to_numpy()[rows].astype(str)
                    if dataset.has_patients else None)
        result = auditor.compute(y=y, pred=pred, proba=proba, positive=card.positive_index,
                                 groups=groups, patients=patients, group_order=order)
        gaps = [d for d in result["disparities"]
                if d.get("status") == "assessed" and "real" in d]
        real = [d for d in gaps if d["real"]]
        if first is None:  # the first permutation's gaps, for the validation table
            first = [{k: d.get(k) for k in ("attribute", "metric", "gap", "gap_ci_adjusted",
                                             "real")} for d in gaps]
        alarms += bool(real)
        per_gap += len(real)
        n_gaps += len(gaps)
        if progress:
            progress(k + 1, n_permutations, "null control: permutations")
    wilson = binomtest(alarms, n_permutations).proportion_ci(0.95, method="wilson")
    return {"n_permutations": n_permutations, "n_boot": n_boot, "n_images": int(rows.sum()),
            "gap_test_permutations": auditor.n_permutations,
            "false_alarms": alarms, "rate": alarms / n_permutations,
            "ci": [float(wilson.low), float(wilson.high)],
            "gaps_per_permutation": n_gaps / n_permutations,
            "gaps_called_real": per_gap, "first": first, "nominal": 0.05,
            "monte_carlo_se": float(np.sqrt(0.05 * 0.95 / n_permutations))}


# --------------------------------------------------------------------------- all controls

#: Settings of each control's audit: small enough for CI on two CPU cores.
VALIDATION_OPTIONS: dict[str, dict[str, Any]] = {
    # The gap test is a permutation test: its smallest p-value is 1 / (permutations + 1),
    # so with 20 gap tests in the family (family-wise 5%) fewer than 400 permutations can
    # never call any gap real. The check's own default (1,000), whatever n_boot is.
    "fairness": {"skin_tone_agreement": False, "n_permutations": 1000},
    "explain": {"n_images": 32, "sanity_images": 0, "n_samples": 8, "background_size": 8,
                "faithfulness_steps": 2, "random_orders": 1, "attribute": "skin_type_group"},
    "robustness": {"attacks": ["fgsm"], "eps": ["0.5/255", "1/255"], "corruptions": [],
                   "n_images": 256},
    "privacy": {"scan_identifiers": False},
}


def validate_controls(out_dir: str | os.PathLike[str], *,
                      data_root: str | os.PathLike[str] | None = None,
                      registry: str | os.PathLike[str] | None = None,
                      n_permutations: int = 100, n_boot: int = 500, seed: int = 0,
                      progress: ProgressFn | None = None) -> dict[str, Any]:
    """Audit every control with the check built for it; returns the detections.

    Writes each audit under ``out_dir`` (``<control>/audit.json`` and evidence) and the
    shortcut control's marked images under ``out_dir/marked``. The committed weights are
    audited, so nothing is trained. ``n_permutations`` permutations of the null control
    (0 skips it).
    """
    from ._context import AuditConfig
    from .audit import run_audit
    from .data import load_dataset
    from .models import load_model

    out = Path(out_dir)
    step = [0]
    total = 7

    def tick(message: str) -> None:
        step[0] += 1
        if progress:
            progress(step[0], total, message)

    clean = load_dataset("fitzpatrick17k", data_root=data_root, on_invalid="drop")
    tick("dataset loaded")

    def audit(ref: str, check: str, dataset: Any = clean) -> dict[str, Any]:
        model = load_model(_registry_ref(ref, registry), device="cpu")
        config = AuditConfig(checks=[check], n_boot=n_boot, seed=seed, device="cpu",
                             options={check: dict(VALIDATION_OPTIONS[check])})
        folder = out / ref.replace("@", "_")
        result = run_audit(model=model, dataset=dataset, config=config, out_dir=folder)
        return result["results"][check]

    detections: list[Detection] = []
    detections.append(detect_group_failure(audit("control-group-failure@v1", "fairness")))
    tick("group failure audited")

    marked = load_dataset(write_marked_dataset(out / "marked", data_root=data_root,
                                               registry=registry))
    explain = audit("control-shortcut@v1", "explain", marked)
    shortcut_model = load_model(_registry_ref("control-shortcut@v1", registry), device="cpu")
    removal = mark_removal_effect(shortcut_model, marked, clean, n_boot=n_boot, seed=seed)
    detections.extend(detect_shortcut(explain, removal))
    tick("shortcut audited")

    audit("control-fragile@v1", "robustness")
    audit("control-reference@v1", "robustness")
    detections.append(detect_fragility(
        out / "control-fragile_v1" / "robustness.csv",
        out / "control-reference_v1" / "robustness.csv", n_boot=n_boot, seed=seed))
    tick("fragility audited")

    privacy = audit("control-memoriser@v1", "privacy")
    detections.append(detect_memorisation(privacy))
    tick("memoriser audited")

    null = None
    if n_permutations:
        reference = load_model(_registry_ref("control-reference@v1", registry), device="cpu")
        null = null_control_false_alarms(reference, clean, n_permutations=n_permutations,
                                         n_boot=min(n_boot, 200), seed=seed)
    tick("null control audited")
    return {"detections": [d.to_dict() for d in detections], "null_control": null,
            "removal": removal, "n_boot": n_boot, "seed": seed}


def _registry_ref(ref: str, registry: str | os.PathLike[str] | None) -> str:
    if registry is None:
        return ref
    from .models import resolve_model

    return str(resolve_model(ref, registry).folder)
