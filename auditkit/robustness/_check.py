"""The ``robustness`` check: adversarial attacks and clinical corruptions, per group."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import torch

from .._context import CheckContext, label_indices
from ..data import Dataset
from ..exceptions import ConfigError, ModelError
from ..models import LoadedModel
from ..predict import load_model_input
from . import _stats
from ._base import AttackModel, check_attackable
from .attacks import ATTACKS, DEFAULT_ATTACKS, AdversarialAttack, budget_label, predict_classes
from .corruptions import CORRUPTIONS, SEVERITIES, corrupt, corruptions_for

__all__ = ["DEFAULT_OPTIONS", "adversarial_examples", "resolve_options", "run_check",
           "sample_images"]

#: Defaults keep a CPU audit of a 64 × 64 model to a couple of minutes.
DEFAULT_OPTIONS: dict[str, Any] = {
    "n_images": 128,
    "n_images_corruptions": 256,
    "attacks": list(DEFAULT_ATTACKS),
    "eps": ["0.5/255", "1/255", "2/255", "4/255", "8/255"],
    "eps_l2": [0.25, 0.5, 1.0],
    "corruptions": "auto",
    "modality": "auto",
    "stratify_by": "auto",
    "batch_size": None,
    "steps": None,
    "square_queries": 1000,
    "headline_eps": "2/255",
}
CSV_NAME = "robustness.csv"
ProgressFn = Callable[[int, int, str], None]


# --------------------------------------------------------------------------- options

def _parse_eps(value: Any, key: str) -> float:
    try:
        if isinstance(value, str) and "/" in value:
            num, _, den = value.partition("/")
            eps = float(num) / float(den)
        else:
            eps = float(value)
    except (ValueError, ZeroDivisionError) as exc:
        raise ConfigError(f"robustness.{key} values must be numbers or fractions like '2/255'; "
                          f"got {value!r} instead.") from exc
    if not math.isfinite(eps) or eps <= 0:
        raise ConfigError(f"robustness.{key} values must be > 0; got {value!r} instead.")
    return eps


def resolve_options(options: dict[str, Any], *, modality: str = "other") -> dict[str, Any]:
    """Defaults merged with ``options``, validated; budgets as floats in pixel units."""
    unknown = sorted(set(options) - set(DEFAULT_OPTIONS))
    if unknown:
        raise ConfigError(f"Unknown robustness option(s) {unknown}; expected among "
                          f"{sorted(DEFAULT_OPTIONS)}.")
    opts = {**DEFAULT_OPTIONS, **options}
    for key in ("n_images", "n_images_corruptions"):
        if not isinstance(opts[key], int) or opts[key] < 0:
            raise ConfigError(f"robustness.{key} must be an integer >= 0; got {opts[key]!r} "
                              "instead.")
    attacks = list(opts["attacks"])
    bad = [a for a in attacks if a not in ATTACKS]
    if bad:
        raise ConfigError(f"robustness.attacks must be among {list(ATTACKS)}; got {bad} instead.")
    opts["attacks"] = attacks
    opts["eps"] = [_parse_eps(e, "eps") for e in opts["eps"]]
    if any(e > 1 for e in opts["eps"]):
        raise ConfigError(f"robustness.eps are L∞ budgets in [0, 1] pixel units (e.g. '2/255'); "
                          f"got {options.get('eps')!r} instead.")
    opts["eps_l2"] = [_parse_eps(e, "eps_l2") for e in opts["eps_l2"]]
    opts["headline_eps"] = _parse_eps(opts["headline_eps"], "headline_eps")
    if opts["modality"] not in ("auto", "skin", "xray", "other"):
        raise ConfigError(f"robustness.modality must be auto, skin, xray or other; got "
                          f"{opts['modality']!r} instead.")
    if opts["modality"] != "auto":
        modality = opts["modality"]
    opts["modality"] = modality
    if opts["corruptions"] == "auto":
        opts["corruptions"] = corruptions_for(modality)
    bad = [c for c in opts["corruptions"] if c not in CORRUPTIONS]
    if bad:
        raise ConfigError(f"robustness.corruptions must be 'auto' or among {list(CORRUPTIONS)}; "
                          f"got {bad} instead.")
    if opts["batch_size"] is not None and (not isinstance(opts["batch_size"], int)
                                           or opts["batch_size"] < 1):
        raise ConfigError(f"robustness.batch_size must be an integer >= 1; got "
                          f"{opts['batch_size']!r} instead.")
    return opts


def detect_modality(model: LoadedModel, dataset: Dataset) -> str:
    """``skin`` when the dataset records skin tone, ``xray`` for X-ray data, else ``other``."""
    if any(a.kind == "skin_tone" for a in dataset.spec.attributes) and model.card.channels == 3:
        return "skin"
    text = f"{dataset.name} {dataset.spec.description} {model.card.task}".lower()
    if any(word in text for word in ("x-ray", "xray", "radiograph", "cxr")):
        return "xray"
    return "other"


# --------------------------------------------------------------------------- sampling

def _stratify_attribute(dataset: Dataset, choice: str | None) -> str | None:
    names = dataset.attribute_names
    if choice in (None, "none"):
        return None
    if choice != "auto":
        if choice not in names:
            raise ConfigError(f"robustness.stratify_by must be one of {names} or 'none'; got "
                              f"{choice!r} instead.")
        return choice
    for attr in dataset.spec.attributes:
        if attr.kind == "skin_tone":
            return attr.name
    return names[0] if names else None


def sample_images(records: pd.DataFrame, n: int, *, stratify_by: str | None,
                  rng: np.random.Generator) -> np.ndarray:
    """Row indices of a seeded sample of ``n`` images, stratified by ``stratify_by``.

    Each group gets an equal share (all of a group smaller than its share), so small
    groups are represented; leftover places are filled at random. Sorted indices.
    """
    total = len(records)
    if n >= total:
        return np.arange(total)
    if stratify_by is None:
        return np.sort(rng.choice(total, size=n, replace=False))
    labels = records[stratify_by].astype("string").fillna("unknown").to_numpy(dtype=object)
    groups = sorted(set(labels.tolist()))
    chosen: list[int] = []
    remaining = n
    pools = {g: rng.permutation(np.flatnonzero(labels == g)) for g in groups}
    # water-filling: equal shares, groups that run out hand their places on
    active = [g for g in groups if len(pools[g])]
    taken = {g: 0 for g in groups}
    while remaining > 0 and active:
        share = max(1, remaining // len(active))
        for g in list(active):
            k = min(share, len(pools[g]) - taken[g], remaining)
            chosen.extend(pools[g][taken[g]:taken[g] + k].tolist())
            taken[g] += k
            remaining -= k
            if taken[g] >= len(pools[g]):
                active.remove(g)
            if remaining == 0:
                break
    return np.sort(np.asarray(chosen, dtype=int))


def _load_images(model: LoadedModel, paths: list[str]) -> torch.Tensor:
    card = model.card
    if not paths:
        return torch.zeros(0, card.channels, *card.input_size)
    # the very tensor the model receives in predict(): the card's declared pixel scaling
    return torch.stack([load_model_input(p, input_size=card.input_size, channels=card.channels,
                                         scaling=card.scaling) for p in paths])


# --------------------------------------------------------------------------- measuring

class _Measurer:
    """Per-group entries with intervals for one sample of images."""

    def __init__(self, ctx: CheckContext, rows: np.ndarray, salt: int) -> None:
        ds = ctx.dataset
        records = ds.records.iloc[rows]
        self.clusters = (records["patient_id"].astype(str).to_numpy() if ds.has_patients
                         else None)
        order = [(a.name, list(a.group_order)) for a in ds.spec.attributes]
        self.groups = _stats.group_masks(records, order)
        self.n = len(rows)
        self.cfg = ctx.config
        self.ctx = ctx
        self.salt = salt

    def _sub(self, mask: np.ndarray) -> np.ndarray | None:
        return self.clusters[mask] if self.clusters is not None else None

    def entry(self, mask: np.ndarray, metrics: dict[str, tuple[np.ndarray, np.ndarray]],
              medians: dict[str, tuple[np.ndarray, np.ndarray]] | None = None,
              ) -> dict[str, Any]:
        """metrics: name -> (flags, subset mask within ``mask``) for proportions."""
        out = _stats.size_entry(mask, self.clusters, self.cfg.min_group_size)
        for name, (flags, within) in metrics.items():
            sel = mask & within
            self.salt += 1
            out[name] = _stats.proportion(flags[sel], self._sub(sel), n_boot=self.cfg.n_boot,
                                          rng=self.ctx.rng(self.salt), level=self.cfg.confidence)
            out[name]["n"] = int(sel.sum())
        for name, (values, within) in (medians or {}).items():
            sel = mask & within
            self.salt += 1
            out[name] = _stats.median(values[sel], self._sub(sel), n_boot=self.cfg.n_boot,
                                      rng=self.ctx.rng(self.salt), level=self.cfg.confidence)
            out[name]["n"] = int(sel.sum())
        return out

    def overall_and_groups(self, metrics: dict[str, tuple[np.ndarray, np.ndarray]],
                           medians: dict[str, tuple[np.ndarray, np.ndarray]] | None = None,
                           ) -> dict[str, Any]:
        everything = np.ones(self.n, dtype=bool)
        return {
            "overall": self.entry(everything, metrics, medians),
            "by_group": [{"attribute": a, "group": g, **self.entry(m, metrics, medians)}
                         for a, g, m in self.groups],
        }


def run_check(ctx: CheckContext) -> dict[str, Any]:
    """Adversarial robustness and corruption robustness, overall and per group.

    Options (``ctx.options("robustness")``, see :data:`DEFAULT_OPTIONS`): ``n_images``
    attacked images (seeded, stratified by ``stratify_by``), ``attacks``, ``eps`` (L∞
    budgets, numbers or ``"k/255"``), ``eps_l2``, ``corruptions`` (``"auto"`` picks by
    modality, ``[]`` skips), ``n_images_corruptions``, ``batch_size``, ``steps``,
    ``square_queries``, ``headline_eps``. Writes ``robustness.csv`` into ``ctx.out_dir``.
    """
    model, dataset = ctx.model, ctx.dataset
    if model.card.output in ("multilabel_sigmoid", "segmentation"):
        from .dense import dense_robustness

        return dense_robustness(ctx)
    try:
        check_attackable(model)
    except ModelError as exc:
        return {"status": "not_assessed", "reason": str(exc)}
    opts = resolve_options(ctx.options("robustness"), modality=detect_modality(model, dataset))
    batch_size = opts["batch_size"] or ctx.config.batch_size
    seed = ctx.config.seed
    card = model.card
    classes = card.class_names
    y_all = label_indices(ctx)
    strat = _stratify_attribute(dataset, opts["stratify_by"])
    # attack only images the model did not learn from (its held-out test split when known)
    eval_mask, evaluated_on = ctx.evaluation_rows()
    eligible = np.flatnonzero(eval_mask)
    pool = dataset.records.iloc[eligible].reset_index(drop=True)
    rows = eligible[sample_images(pool, opts["n_images"] if opts["attacks"] else 0,
                                  stratify_by=strat, rng=ctx.rng(601))]
    crow = eligible[sample_images(pool, opts["n_images_corruptions"]
                                  if opts["corruptions"] else 0, stratify_by=strat,
                                  rng=ctx.rng(602))]
    plan = [(a, e) for a in opts["attacks"] for e in _budgets(a, opts)]
    total = len(rows) * len(plan) + len(crow) * len(opts["corruptions"]) * len(SEVERITIES)
    done = 0

    def tick(k: int, message: str) -> None:
        nonlocal done
        done += k
        if ctx.progress:
            ctx.progress(done, max(total, 1), message)

    wrapped = AttackModel(model)
    images = _load_images(model, dataset.records["path"].iloc[rows].tolist())
    y = y_all[rows]
    clean_pred, clean_conf = predict_classes(wrapped, images, batch_size=batch_size)
    correct = clean_pred == y
    positive = y == card.positive_index
    meas = _Measurer(ctx, rows, salt=700)
    everyone = np.ones(len(rows), dtype=bool)
    result: dict[str, Any] = {
        "status": "assessed",
        "n_images": int(len(rows)),
        "n_available": int(len(eligible)),
        "evaluated_on": evaluated_on,
        "sampling": {"stratified_by": strat, "seed": seed, "salt": 601,
                     "method": "equal share per group, seeded"},
        "resampling_unit": "patient" if dataset.has_patients else "image",
        "device": str(model.device),
        "batch_size": batch_size,
        "precision": "float32",
        "modality": opts["modality"],
        "settings": {k: opts[k] for k in ("attacks", "eps", "eps_l2", "corruptions", "steps",
                                          "square_queries", "n_images",
                                          "n_images_corruptions", "headline_eps")},
        "seeding": "torch.manual_seed(seed) before each attack at each budget; torchattacks' "
                   "own seeds (Square, APGD, FAB) = seed",
        "positive_class": card.positive_class,
        "clean": meas.overall_and_groups({"accuracy": (correct, everyone)}),
        "attacks": [],
        "min_perturbation": [],
        "corruptions": [],
    }
    csv_rows: list[list[Any]] = []
    # pseudonymous keys, never file names (they may carry patient ids and scan dates)
    image_ids = dataset.records["key"].iloc[rows].astype(str).tolist()
    for name, eps in plan:
        spec = ATTACKS[name]
        atk = AdversarialAttack(name, eps=eps, seed=seed, batch_size=batch_size,
                                steps=opts["steps"], square_queries=opts["square_queries"])
        base = done

        def batch_progress(d: int, t: int, m: str, base: int = base) -> None:
            if ctx.progress:
                ctx.progress(base + d, max(total, 1), m)

        outcome = atk.run(wrapped, images, y, clean_pred=clean_pred, progress=batch_progress)
        tick(len(rows), atk.describe())
        robust = outcome.attacked_pred == y
        success = correct & (outcome.attacked_pred != y)
        entry: dict[str, Any] = {
            "attack": name, "label": spec.label, "norm": spec.norm, "access": spec.access,
            "budget": eps, "budget_label": budget_label(eps, spec.norm) if eps else None,
            "budget_share_of_range": eps if spec.norm == "Linf" else None,
            "variant": atk.variant_,
            **meas.overall_and_groups({
                "robust_accuracy": (robust, everyone),
                "attack_success_rate": (success, correct),
                "positive_flip_rate": (success, correct & positive),
            }),
        }
        result["attacks"].append(entry)
        if not spec.budgeted:
            flipped = success
            result["min_perturbation"].append({
                "attack": name, "label": spec.label,
                "note": "size of the smallest change found that flips a correct prediction; "
                        "images it could not flip are left out",
                **meas.overall_and_groups({}, {
                    "median_l2": (outcome.l2, flipped),
                    "median_linf_255": (outcome.linf * 255.0, flipped),
                }),
                "quantiles_linf_255": _quantiles(outcome.linf[flipped] * 255.0),
                "quantiles_l2": _quantiles(outcome.l2[flipped]),
            })
        label = budget_label(eps, spec.norm) if eps else "minimal"
        for i in range(len(rows)):
            csv_rows.append([image_ids[i], name, label, classes[clean_pred[i]],
                             classes[outcome.attacked_pred[i]], bool(success[i]),
                             classes[y[i]], f"{outcome.l2[i]:.6g}", f"{outcome.linf[i]:.6g}"])
    result["corruptions"] = _corruption_results(ctx, wrapped, crow, y_all, opts, batch_size,
                                                tick)
    result["summary"] = plain_summary(result, small_cell_k=ctx.config.small_cell_k)
    if ctx.out_dir is not None:
        from .._export import write_csv_rows

        write_csv_rows(ctx.out_dir / CSV_NAME,
                       ["image", "attack", "budget", "clean_prediction", "attacked_prediction",
                        "success", "label", "l2", "linf"], csv_rows,
                       audience="in-house")  # per image, not covered by the small-cell rule
        result["evidence"] = {"csv": CSV_NAME}
    return result


def _budgets(name: str, opts: dict[str, Any]) -> list[float | None]:
    spec = ATTACKS[name]
    if not spec.budgeted:
        return [None]
    return list(opts["eps"] if spec.norm == "Linf" else opts["eps_l2"])


def _quantiles(values: np.ndarray) -> dict[str, float | None]:
    if values.size == 0:
        return {"q10": None, "q25": None, "q50": None, "q75": None, "q90": None}
    q = np.quantile(values, [0.1, 0.25, 0.5, 0.75, 0.9])
    return {k: float(v) for k, v in zip(("q10", "q25", "q50", "q75", "q90"), q)}


def _corruption_results(ctx: CheckContext, wrapped: AttackModel, rows: np.ndarray,
                        y_all: np.ndarray, opts: dict[str, Any], batch_size: int,
                        tick: Callable[[int, str], None]) -> list[dict[str, Any]]:
    if not len(rows) or not opts["corruptions"]:
        return []
    images = _load_images(ctx.model, ctx.dataset.records["path"].iloc[rows].tolist())
    y = y_all[rows]
    clean_pred, _ = predict_classes(wrapped, images, batch_size=batch_size)
    meas = _Measurer(ctx, rows, salt=5000)
    everyone = np.ones(len(rows), dtype=bool)
    out = []
    for name in opts["corruptions"]:
        spec = CORRUPTIONS[name]
        for severity in SEVERITIES:
            pred, _ = predict_classes(wrapped, corrupt(images, name, severity,
                                                       seed=ctx.config.seed),
                                      batch_size=batch_size)
            tick(len(rows), f"{spec.label}, severity {severity}")
            out.append({
                "corruption": name, "label": spec.label, "severity": severity,
                "parameter": spec.levels[severity - 1], "unit": spec.unit,
                **meas.overall_and_groups({"accuracy": (pred == y, everyone),
                                           "flip_rate": (pred != clean_pred, everyone)}),
            })
    return out


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.0f}%"


def plain_summary(result: dict[str, Any], *, small_cell_k: int = 0) -> str:
    """A few sentences for a clinician, at the PGD (else FGSM) budget nearest ``headline_eps``."""
    parts = []
    headline: dict[str, Any] | None = None
    candidates = [a for a in result["attacks"] if a["attack"] in ("pgd", "fgsm")
                  and a["budget"] is not None]
    if candidates:
        target = float(result["settings"].get("headline_eps") or 2 / 255)
        pick = min(candidates, key=lambda a: (abs(a["budget"] - target), a["attack"] != "pgd"))
        headline = pick
        flip = pick["overall"]["positive_flip_rate"]
        succ = pick["overall"]["attack_success_rate"]
        parts.append(
            f"Changes invisible to the eye ({pick['budget_label']} of the pixel range, "
            f"{100 * pick['budget']:.1f}%) flip {_pct(succ['value'])} of the correct answers "
            f"({pick['label']}, {succ.get('n', 0)} correctly classified images) and "
            f"{_pct(flip['value'])} of the correct {result['positive_class']} diagnoses "
            f"(n = {flip.get('n', 0)}); robust accuracy "
            f"{_pct(pick['overall']['robust_accuracy']['value'])} against clean "
            f"{_pct(result['clean']['overall']['accuracy']['value'])}."
        )
    by_group = (headline or {}).get("by_group", [])
    if small_cell_k > 0:  # never name a group that small-cell protection hides
        from ..suppression import suppress_group_rows

        shown = suppress_group_rows(by_group, k=small_cell_k, count_patients=True)
        by_group = [g for g, after in zip(by_group, shown) if not after.get("suppressed")]
    judged = [g for g in by_group if not g["too_few"]
              and g["robust_accuracy"]["value"] is not None]
    if len(judged) >= 2:
        worst = min(judged, key=lambda g: g["robust_accuracy"]["value"])
        best = max(judged, key=lambda g: g["robust_accuracy"]["value"])
        w_hi = worst["robust_accuracy"]["ci"][1]
        b_lo = best["robust_accuracy"]["ci"][0]
        overlap = w_hi is None or b_lo is None or w_hi >= b_lo
        parts.append(f"Easiest group to fool: {worst['attribute']} {worst['group']} "
                     f"({_pct(worst['robust_accuracy']['value'])} robust accuracy, n = "
                     f"{worst['n']}); hardest: {best['attribute']} {best['group']} "
                     f"({_pct(best['robust_accuracy']['value'])}, n = {best['n']})"
                     + ("; their intervals overlap, so the difference may be chance."
                        if overlap else "; their intervals do not overlap."))
    sev5 = [c for c in result["corruptions"] if c["severity"] == 5]
    if sev5:
        worst_c = max(sev5, key=lambda c: c["overall"]["flip_rate"]["value"] or 0)
        parts.append(f"Of the everyday image problems, {worst_c['label'].lower()} at its "
                     f"strongest level changes the most answers: "
                     f"{_pct(worst_c['overall']['flip_rate']['value'])} (n = "
                     f"{worst_c['overall']['n']}).")
    return " ".join(parts) or "No attack or corruption was run."


# --------------------------------------------------------------------------- gallery

def adversarial_examples(model: LoadedModel, dataset: Dataset, *, attack: str = "pgd",
                         eps: float | str | None = "2/255", n: int = 4,
                         group: tuple[str, str] | None = None, seed: int = 0,
                         amplify: float | None = None) -> list[dict[str, Any]]:
    """A small gallery: original, amplified perturbation and adversarial image.

    Parameters
    ----------
    model, dataset
    attack : str
        A key of :data:`~auditkit.robustness.ATTACKS`.
    eps : float or "k/255", optional
        Budget for budgeted attacks.
    n : int
        Images shown (seeded choice among the group's images).
    group : (attribute, group), optional
        Only images of this group.
    amplify : float, optional
        Factor the perturbation is multiplied by for display (default: so that the
        largest change fills half the range).

    Returns
    -------
    list of dict
        ``image``, ``group``, ``label``, ``original``/``perturbation``/``adversarial``
        as ``(H, W, C)`` float arrays in [0, 1], ``clean_prediction``,
        ``clean_confidence``, ``attacked_prediction``, ``attacked_confidence``,
        ``linf_255``, ``amplification``.
    """
    check_attackable(model)
    records = dataset.records
    mask = np.ones(len(records), dtype=bool)
    if group is not None:
        attr, value = group
        if attr not in dataset.attribute_names:
            raise ConfigError(f"group attribute must be one of {dataset.attribute_names}; got "
                              f"{attr!r} instead.")
        labels = records[attr].astype("string").fillna("unknown").to_numpy(dtype=object)
        mask = labels == value
        if not mask.any():
            raise ConfigError(f"Dataset {dataset.name!r} has no images of group {value!r}; "
                              f"expected one of {sorted(set(labels.tolist()))}.")
    pool = np.flatnonzero(mask)
    rng = np.random.default_rng([seed, 603])
    pick = np.sort(rng.choice(pool, size=min(n, len(pool)), replace=False)) if len(pool) else pool
    classes = model.card.class_names
    y = np.asarray([classes.index(c) for c in records["label"].iloc[pick]], dtype=int)
    images = _load_images(model, records["path"].iloc[pick].tolist())
    budget = None if eps is None or not ATTACKS[attack].budgeted else _parse_eps(eps, "eps")
    wrapped = AttackModel(model)
    clean_pred, clean_conf = predict_classes(wrapped, images)
    outcome = AdversarialAttack(attack, eps=budget, seed=seed).run(wrapped, images, y,
                                                                   clean_pred=clean_pred)
    out = []
    for i, row in enumerate(pick):
        delta = outcome.adversarial[i] - images[i]
        peak = float(delta.abs().max())
        factor = amplify or (0.5 / peak if peak > 0 else 1.0)
        out.append({
            "image": str(records["key"].iloc[row]),
            "group": {a: str(records[a].iloc[row]) for a in dataset.attribute_names},
            "label": classes[y[i]],
            "original": images[i].permute(1, 2, 0).numpy(),
            "perturbation": (0.5 + factor * delta).clamp(0, 1).permute(1, 2, 0).numpy(),
            "adversarial": outcome.adversarial[i].permute(1, 2, 0).numpy(),
            "clean_prediction": classes[clean_pred[i]],
            "clean_confidence": float(clean_conf[i]),
            "attacked_prediction": classes[outcome.attacked_pred[i]],
            "attacked_confidence": float(outcome.attacked_confidence[i]),
            "linf_255": float(outcome.linf[i] * 255.0),
            "amplification": float(factor),
        })
    return out
