"""The ``explain`` check of an audit: which images, their attributions, the trust checks.

Options (``--options '{"explain": {...}}'``), defaults in :data:`DEFAULTS`: ``method``,
``n_images`` (default ``n_per_group`` x groups of the stratifying attribute, at most 120),
``n_per_group``, ``n_samples``, ``background_size``, ``batch_size``, ``images`` (image ids
to explain instead of a stratified sample), ``attribute`` (stratify by; default the first
skin-tone attribute, else the first attribute), ``sanity_images``, ``sanity_steps``,
``sanity_threshold``, ``faithfulness_steps``, ``random_orders``, ``completeness_tolerance``,
``border``, ``corner``, ``center`` (region sizes as fractions of the side), ``top_images``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from .._context import CheckContext, label_indices
from .._metrics import bootstrap_weights, percentile_interval
from ..exceptions import ConfigError
from ..predict import load_model_input
from ._base import Explanations, ImageExplainer
from ._shortcuts import area_shares, describe_regions, region_masks, region_shares
from ._trust import completeness, deletion_insertion, sanity_similarity

__all__ = ["DEFAULTS", "load_attributions", "run_check", "select_images", "save_attributions"]

DEFAULTS: dict[str, Any] = {
    "method": "gradient", "n_images": None, "n_per_group": 12, "n_samples": 32, "background_size": 16,
    "batch_size": "auto", "images": None, "attribute": None, "sanity_images": 8,
    "sanity_steps": 3, "sanity_threshold": 0.5, "faithfulness_steps": 10, "random_orders": 1,
    "completeness_tolerance": 0.1, "border": 0.1, "corner": 0.2, "center": 0.5,
    "top_images": 5,
}
OUTCOMES = ("true_positive", "false_positive", "true_negative", "false_negative")
ATTRIBUTIONS_FILE = "attributions.npz"
MAX_DEFAULT_IMAGES = 120


def _options(ctx: CheckContext) -> dict[str, Any]:
    opts = ctx.options("explain")
    unknown = sorted(set(opts) - set(DEFAULTS))
    if unknown:
        raise ConfigError(f"explain options must be among {sorted(DEFAULTS)}; got unknown "
                          f"{unknown} instead.")
    merged = {**DEFAULTS, **opts}
    for key in ("n_per_group", "n_samples", "background_size", "sanity_images", "sanity_steps",
                "faithfulness_steps", "random_orders", "top_images"):
        if not isinstance(merged[key], int) or merged[key] < (0 if key == "sanity_images" else 1):
            raise ConfigError(f"explain option {key} must be a positive integer; got "
                              f"{merged[key]!r} instead.")
    if merged["n_images"] is not None and (not isinstance(merged["n_images"], int)
                                           or merged["n_images"] < 1):
        raise ConfigError(f"explain option n_images must be a positive integer or null; got "
                          f"{merged['n_images']!r} instead.")
    return merged


def outcomes(y: np.ndarray, pred: np.ndarray, positive: int) -> np.ndarray:
    """``true_positive`` / ``false_positive`` / ... per image, about the positive class."""
    pos_t, pos_p = y == positive, pred == positive
    return np.where(pos_t & pos_p, "true_positive", np.where(
        ~pos_t & pos_p, "false_positive", np.where(~pos_t & ~pos_p, "true_negative",
                                                    "false_negative")))


def select_images(records: pd.DataFrame, outcome: np.ndarray, *, attribute: str | None,
                  n_images: int, rng: np.random.Generator) -> np.ndarray:
    """A stratified sample of row indices across the groups of ``attribute`` and outcomes.

    Groups get equal shares (round robin), and within a group the four outcomes do;
    a stratum with too few images gives its turn to the next. Returns sorted indices.
    """
    n = len(records)
    groups = (records[attribute].astype(str).to_numpy() if attribute else np.full(n, "all"))
    pools: dict[str, dict[str, list[int]]] = {}
    for g in sorted(set(groups)):
        pools[g] = {}
        for o in OUTCOMES:
            idx = np.flatnonzero((groups == g) & (outcome == o))
            pools[g][o] = list(rng.permutation(idx))
    chosen: list[int] = []
    turn = {g: 0 for g in pools}
    while len(chosen) < min(n_images, n):
        progressed = False
        for g in pools:
            if len(chosen) >= n_images:
                break
            for k in range(len(OUTCOMES)):
                o = OUTCOMES[(turn[g] + k) % len(OUTCOMES)]
                if pools[g][o]:
                    chosen.append(int(pools[g][o].pop()))
                    turn[g] = (turn[g] + k + 1) % len(OUTCOMES)
                    progressed = True
                    break
        if not progressed:
            break
    return np.asarray(sorted(chosen), dtype=int)


def _default_attribute(ctx: CheckContext) -> str | None:
    attrs = ctx.dataset.spec.attributes
    for a in attrs:
        if a.kind == "skin_tone":
            return a.name
    return attrs[0].name if attrs else None


def _load_images(paths: list[str], card: Any) -> torch.Tensor:
    if not paths:
        return torch.zeros((0, card.channels, *card.input_size))
    # the very tensor the model receives in predict(): the card's declared pixel scaling
    return torch.stack([load_model_input(p, input_size=card.input_size, channels=card.channels,
                                         scaling=card.scaling) for p in paths])


def _mean_ci(values: np.ndarray, clusters: np.ndarray | None, *, n_boot: int,
             rng: np.random.Generator, level: float) -> dict[str, Any]:
    """Mean with a cluster (patient) bootstrap percentile interval; nan-safe."""
    values = np.asarray(values, dtype=np.float64)
    ok = ~np.isnan(values)
    values = values[ok]
    cl = None if clusters is None else np.asarray(clusters)[ok]
    if not len(values):
        return {"value": None, "ci": [None, None]}
    w, inverse = bootstrap_weights(cl, len(values), n_boot, rng)
    m = int(inverse.max()) + 1
    sums = np.bincount(inverse, weights=values, minlength=m)
    counts = np.bincount(inverse, minlength=m).astype(np.float64)
    if n_boot:
        with np.errstate(invalid="ignore", divide="ignore"):
            reps = (w @ sums) / (w @ counts)
        ci = percentile_interval(reps, level)
    else:
        ci = [None, None]
    return {"value": float(values.mean()), "ci": ci}


def _share_ci(k: int, n: int, level: float) -> list[float | None]:
    """Wilson score interval for a proportion."""
    if n == 0:
        return [None, None]
    from statistics import NormalDist

    z = NormalDist().inv_cdf(0.5 + level / 2)
    p = k / n
    den = 1 + z * z / n
    mid = (p + z * z / (2 * n)) / den
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return [float(max(0.0, mid - half)), float(min(1.0, mid + half))]


def save_attributions(path: str | os.PathLike[str], expl: Explanations, images: list[str]) -> Path:
    """Write ``attributions.npz``: key = image id, value ``(K, C, H, W)`` float32.

    Rows are in the order of the image's ``explained_classes`` in ``audit.json``. The file
    states its audience in an ``audience`` entry: ``"in-house"`` (per-image maps are not
    covered by the small-cell rule, so a release export withholds them).
    """
    from .._export import save_npz

    arrays = {}
    for i, image in enumerate(images):
        rows = np.flatnonzero(expl.image_index == i)
        arrays[str(image)] = expl.attributions[rows].astype(np.float32)
    return save_npz(path, arrays, audience="in-house")


def load_attributions(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Read ``attributions.npz`` back: image id -> ``(K, C, H, W)`` float32."""
    from .._export import AUDIENCE_COLUMN

    with np.load(Path(path), allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files if k != AUDIENCE_COLUMN}


def run_check(ctx: CheckContext) -> dict[str, Any]:  # noqa: C901 - one readable sequence
    """Explain a stratified sample of images and check whether the explanations hold up."""
    opts = _options(ctx)
    card, model, records = ctx.model.card, ctx.model, ctx.dataset.records
    if card.output in ("multilabel_sigmoid", "segmentation"):
        from ._dense import dense_explain

        return dense_explain(ctx)
    level, n_boot = ctx.config.confidence, ctx.config.n_boot
    y = label_indices(ctx)
    pred = ctx.predictions.predicted_index(card.output)
    proba = ctx.predictions.probabilities
    outcome = outcomes(y, pred, card.positive_index)
    attribute = opts["attribute"] or _default_attribute(ctx)
    if attribute is not None and attribute not in ctx.dataset.attribute_names:
        raise ConfigError(f"explain option attribute must be one of "
                          f"{ctx.dataset.attribute_names}; got {attribute!r} instead.")
    # pseudonymous keys, never file names (they may carry patient ids and scan dates)
    ids = records["key"].astype(str).tolist()
    if opts["images"]:
        # the user may name images by key or by their entry in the table
        lookup = {**{str(im): i for i, im in enumerate(records["image"])},
                  **{im: i for i, im in enumerate(ids)}}
        missing = [im for im in opts["images"] if im not in lookup]
        if missing:
            raise ConfigError(f"explain option images must name images of the dataset; got "
                              f"unknown {missing[:5]} instead.")
        chosen = np.asarray([lookup[im] for im in opts["images"]], dtype=int)
        selection = "chosen by the user"
    else:
        n_groups = records[attribute].nunique() if attribute else 1
        n_images = opts["n_images"] or min(MAX_DEFAULT_IMAGES, opts["n_per_group"] * n_groups)
        # explain images the model did not learn from (its held-out split when known)
        eval_mask, evaluated_on = ctx.evaluation_rows()
        eligible = np.flatnonzero(eval_mask)
        chosen = eligible[select_images(records.iloc[eligible].reset_index(drop=True),
                                        outcome[eligible], attribute=attribute,
                                        n_images=n_images, rng=ctx.rng(51))]
        selection = (f"stratified by {attribute} and outcome" if attribute
                     else "stratified by outcome") + f", from {evaluated_on}"
    rest = np.setdiff1d(np.arange(len(records)), chosen)
    bg_pool = rest if len(rest) else np.arange(len(records))
    bg_idx = np.sort(ctx.rng(52).choice(bg_pool, size=min(opts["background_size"], len(bg_pool)),
                                        replace=False))
    paths = records["path"].astype(str).tolist()
    images = _load_images([paths[i] for i in chosen], card).to(model.device)
    background = _load_images([paths[i] for i in bg_idx], card).to(model.device)
    targets = [[int(pred[i])] + ([int(y[i])] if y[i] != pred[i] else []) for i in chosen]
    explainer = ImageExplainer(method=opts["method"], n_samples=opts["n_samples"],
                               background_size=opts["background_size"],
                               batch_size=opts["batch_size"], random_state=ctx.config.seed)
    expl = explainer.explain(model, images, background=background, targets=targets,
                             progress=ctx.progress)
    prim = expl.rows("predicted")
    prim_attr = expl.attributions[prim]
    clusters_all = (records["patient_id"].astype(str).to_numpy() if ctx.dataset.has_patients
                    else None)
    clusters = None if clusters_all is None else clusters_all[chosen]

    # ---- completeness
    tol = float(opts["completeness_tolerance"])
    rel = completeness(expl)
    k_ok, n_rows = int((rel <= tol).sum()), len(rel)
    base_name = ("E[f(background)]" if opts["method"] == "gradient"
                 else "f(image with every pixel masked)")
    comp = {
        "tolerance": tol, "n": n_rows, "base": base_name,
        "share_within_tolerance": {"value": k_ok / n_rows if n_rows else None,
                                   "ci": _share_ci(k_ok, n_rows, level)},
        "median_relative_error": float(np.median(rel)) if n_rows else None,
        "passed": bool(n_rows and k_ok / n_rows >= 0.9),
    }
    comp["text"] = (
        f"In {k_ok} of {n_rows} explanations the attributions add up to the model's score "
        f"minus {base_name} within {tol:.0%} (median error {comp['median_relative_error']:.1%})."
        + ("" if comp["passed"] else " Fewer than 90% do: more samples (n_samples) are needed "
           "before the maps can be read as exact accountings of the score.")
    ) if n_rows else "No explanations."

    # ---- faithfulness
    frng = ctx.rng(53)
    faith_rows = []
    for r, row in enumerate(prim):
        i = expl.image_index[row]
        faith_rows.append(deletion_insertion(
            model, images[i], prim_attr[r], int(expl.target[row]),
            steps=opts["faithfulness_steps"], n_random=opts["random_orders"],
            baseline=background.mean(dim=(0, 2, 3), keepdim=True)[0].expand_as(images[i]),
            rng=frng))
        if ctx.progress:
            ctx.progress(r + 1, len(prim), "faithfulness curves")
    del_a = np.asarray([f["deletion_auc"] for f in faith_rows])
    del_r = np.asarray([f["deletion_auc_random"] for f in faith_rows])
    ins_a = np.asarray([f["insertion_auc"] for f in faith_rows])
    ins_r = np.asarray([f["insertion_auc_random"] for f in faith_rows])
    brng = ctx.rng(54)
    stat = {name: _mean_ci(v, clusters, n_boot=n_boot, rng=brng, level=level) for name, v in {
        "deletion_auc": del_a, "deletion_auc_random": del_r, "insertion_auc": ins_a,
        "insertion_auc_random": ins_r, "deletion_gain": del_r - del_a,
        "insertion_gain": ins_a - ins_r}.items()}

    def verdict(g: dict[str, Any]) -> str:
        lo, hi = g["ci"]
        if lo is None:
            return "undetermined"
        return "better" if lo > 0 else "worse" if hi < 0 else "indistinguishable"

    v_del, v_ins = verdict(stat["deletion_gain"]), verdict(stat["insertion_gain"])
    beats = v_del == "better" and v_ins == "better"
    faith = {"n": len(faith_rows), "steps": opts["faithfulness_steps"],
             "random_orders": opts["random_orders"],
             "baseline": "the background images' mean colour",
             "score": "softmax probability of the explained (predicted) class",
             **stat, "deletion_verdict": v_del, "insertion_verdict": v_ins,
             "beats_random": beats,
             "mean_curves": {
                 "fraction": faith_rows[0]["fraction"] if faith_rows else [],
                 **{k: np.mean([f[k] for f in faith_rows], axis=0).tolist() if faith_rows
                    else [] for k in ("deletion_curve", "insertion_curve",
                                      "deletion_curve_random", "insertion_curve_random")}}}
    words = {"better": "beat", "worse": "are worse than", "indistinguishable":
             "cannot be told apart from", "undetermined": "could not be compared with"}
    faith["text"] = (
        f"Deletion: removing pixels in the explanation's order drops the predicted class's "
        f"probability with area {stat['deletion_auc']['value']:.3f} against "
        f"{stat['deletion_auc_random']['value']:.3f} for random orders (lower is better); "
        f"insertion: {stat['insertion_auc']['value']:.3f} against "
        f"{stat['insertion_auc_random']['value']:.3f} (higher is better), n = {len(faith_rows)} "
        f"images. The explanations {words[v_del]} random on deletion and {words[v_ins]} random "
        f"on insertion." + (" They beat random on both." if beats else "")
    ) if faith_rows else "No images."

    # ---- sanity (model-parameter randomization)
    n_san = min(opts["sanity_images"], len(prim))
    if n_san == 0:
        sanity: dict[str, Any] = {"status": "not_assessed", "reason": "sanity_images is 0"}
    else:
        san_img = expl.image_index[prim[:n_san]]
        try:
            res = sanity_similarity(model, explainer, images[san_img], background,
                                    [int(t) for t in expl.target[prim[:n_san]]],
                                    prim_attr[:n_san], n_steps=opts["sanity_steps"],
                                    seed=ctx.config.seed, progress=ctx.progress)
        except Exception as exc:  # a format whose weights cannot be copied or changed
            sanity = {"status": "not_assessed",
                      "reason": f"the model's weights could not be randomized on a copy "
                                f"({card.format}): {type(exc).__name__}: {exc}"}
        else:
            srng = ctx.rng(55)
            san_cl = None if clusters is None else clusters[san_img]
            thr = float(opts["sanity_threshold"])
            steps_out = [{"n_layers_randomized": s["n_layers_randomized"],
                          "fraction_of_layers": s["fraction_of_layers"],
                          "layers_randomized": s["layers_randomized"],
                          "similarity": _mean_ci(s["similarity"], san_cl, n_boot=n_boot,
                                                 rng=srng, level=level),
                          "similarity_abs": _mean_ci(s["similarity_abs"], san_cl, n_boot=n_boot,
                                                     rng=srng, level=level)}
                         for s in res["steps"]]
            final = steps_out[-1]["similarity"]
            zero = bool(np.all(np.abs(prim_attr[:n_san]) <= 1e-12))
            flagged = bool(final["value"] is not None and final["value"] >= thr)
            sanity = {"status": "assessed", "n": n_san, "n_layers": len(res["layers"]),
                      "threshold": thr,
                      "similarity_measure": "Spearman rank correlation of the signed maps "
                                            "(similarity_abs: of their absolute values)",
                      "steps": steps_out, "similarity_all_layers_randomized": final,
                      "flagged": flagged, "all_attributions_zero": zero}
            sanity["text"] = (
                f"With every layer's weights re-drawn at random, the explanations keep a rank "
                f"similarity of {final['value']:.2f} to the trained model's (n = {n_san} "
                f"images; 1 = unchanged, 0 = unrelated; flagged at {thr:.2f} or more). "
                + ("FLAGGED: the maps barely change, so they do not show what the model "
                   "learned (they may reflect the image itself)." if flagged else
                   "They change, as explanations of a trained model should.")
                + (" Every attribution is zero: the model's output does not respond to the "
                   "image." if zero else ""))

    # ---- shortcut finder
    c, h, w = images.shape[1:]
    masks = region_masks(h, w, border=opts["border"], corner=opts["corner"],
                         center=opts["center"])
    shares = region_shares(prim_attr, masks)
    areas = area_shares(masks)
    img_rows = expl.image_index[prim]
    # per-image group labels follow the small-cell rule of predictions.csv; no patient ids
    from ..suppression import suppress_frame

    shown_groups, _hidden = suppress_frame(
        records[ctx.dataset.attribute_names], k=ctx.config.small_cell_k,
        attributes=ctx.dataset.attribute_names, patient_ids=clusters_all)
    rec_chosen = records.iloc[chosen].reset_index(drop=True)
    srng2 = ctx.rng(56)
    by_group = []
    for attr in ctx.dataset.spec.attributes:
        col = rec_chosen[attr.name].astype(str).to_numpy()[img_rows]
        present = set(col)
        order = [g for g in attr.group_order if g in present] + sorted(
            g for g in present if g not in attr.group_order)
        for g in order:
            sel = col == g
            n_pat = (int(len(set(clusters[img_rows][sel]))) if clusters is not None else None)
            entry: dict[str, Any] = {"attribute": attr.name, "group": g, "n": int(sel.sum()),
                                     "n_patients": n_pat}
            unit = n_pat if n_pat is not None else int(sel.sum())
            entry["too_few"] = bool(unit < ctx.config.min_group_size)
            for region, vals in shares.items():
                entry[region] = _mean_ci(vals[sel], None if clusters is None
                                         else clusters[img_rows][sel],
                                         n_boot=n_boot, rng=srng2, level=level)
            by_group.append(entry)
    overall = {region: _mean_ci(v, None if clusters is None else clusters[img_rows],
                                n_boot=n_boot, rng=srng2, level=level)
               for region, v in shares.items()}
    top = {}
    for region, vals in shares.items():
        order_idx = np.argsort(-np.nan_to_num(vals, nan=-1.0), kind="stable")
        top[region] = [{"image": ids[chosen[img_rows[r]]], "share": float(vals[r]),
                        "groups": {a: str(shown_groups[a].iloc[chosen[img_rows[r]]])
                                   for a in ctx.dataset.attribute_names}}
                       for r in order_idx[: opts["top_images"]] if not np.isnan(vals[r])]
    texts = []
    for region in shares:
        o = overall[region]
        if o["value"] is None:
            continue
        ratio = o["value"] / areas[region] if areas[region] else float("nan")
        texts.append(f"{region.replace('_', ' ')}: {o['value']:.0%} of the attribution on "
                     f"{areas[region]:.0%} of the area ({ratio:.1f}x an even spread)")
    shortcuts = {
        "regions": {r: {"definition": d, "area_share": areas[r]}
                    for r, d in describe_regions(border=opts["border"], corner=opts["corner"],
                                                 center=opts["center"]).items()},
        "n": len(prim), "overall": overall, "by_group": by_group, "top_images": top,
        "text": ("Share of the explanation (absolute attribution) falling on " + "; ".join(texts)
                 + f"; n = {len(prim)} images.") if texts else "No attributions.",
    }

    # ---- per-image records and the evidence file
    per_image = []
    for r_i, i in enumerate(chosen):
        rows = np.flatnonzero(expl.image_index == r_i)
        p_row = rows[0]
        p_r = int(np.flatnonzero(prim == p_row)[0])
        per_image.append({
            "image": ids[i], "label": str(records["label"].iloc[i]),
            "predicted": card.class_names[int(pred[i])],
            "confidence": float(proba[i, int(pred[i])]), "outcome": str(outcome[i]),
            "groups": {a: str(shown_groups[a].iloc[i]) for a in ctx.dataset.attribute_names},
            "explained_classes": [card.class_names[int(expl.target[r])] for r in rows],
            "roles": [expl.role[r] for r in rows],
            "score": [float(expl.score[r]) for r in rows],
            "base_value": [float(expl.base_value[r]) for r in rows],
            "completeness_error": [float(rel[r]) for r in rows],
            "deletion_auc": faith_rows[p_r]["deletion_auc"],
            "insertion_auc": faith_rows[p_r]["insertion_auc"],
            "deletion_auc_random": faith_rows[p_r]["deletion_auc_random"],
            "insertion_auc_random": faith_rows[p_r]["insertion_auc_random"],
            "shares": {reg: float(v[p_r]) for reg, v in shares.items()},
        })
    attr_file = None
    if ctx.out_dir is not None:
        save_attributions(ctx.out_dir / ATTRIBUTIONS_FILE, expl, [ids[i] for i in chosen])
        attr_file = ATTRIBUTIONS_FILE
    texts_all = [str(comp.get("text") or ""), str(faith.get("text") or ""),
                 str(sanity.get("text") or f"Sanity check not assessed: {sanity.get('reason')}.")]
    trust_text = " ".join(t for t in texts_all if t)
    return {
        "status": "assessed", "method": opts["method"],
        "settings": {**expl.settings, **{k: opts[k] for k in DEFAULTS if k != "images"},
                     "seed": ctx.config.seed, "background_images": [ids[i] for i in bg_idx]},
        "selection": selection, "stratified_by": attribute, "n_images": int(len(chosen)),
        "n_explanations": int(len(expl.attributions)),
        "images": per_image,
        "trust": {"completeness": comp, "faithfulness": faith, "sanity": sanity},
        "shortcuts": shortcuts,
        "attributions_file": attr_file,
        "text": f"{trust_text} {shortcuts['text']}",
    }
