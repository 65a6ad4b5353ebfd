"""Segmentation models: per-image overlap and boundary error, per group by patient.

A ``segmentation`` model outputs per-pixel logits; its masks are compared with the
dataset's reference masks (the description's ``mask_column``) **at the reference
mask's resolution**: the model's foreground probability is upsampled bilinearly (torch
``interpolate``) to the mask size and thresholded there, so the expert's outline is
never resampled. Per image:

``dice``, ``iou``    on slices where the reference holds a lesion (undefined on empty
                     reference slices, which are judged by ``false_lesion`` instead);
``missed``           a lesion slice where the model outlines nothing;
``false_lesion``     an empty slice where the model outlines something;
``hd95_px``          95th-percentile symmetric Hausdorff distance between the two
                     borders, in reference-mask pixels, where both masks are non-empty.

Boundary distances use ``scipy.ndimage`` (a maintained library: Euclidean distance
transform and binary erosion) with MONAI's definition (border = mask minus its
erosion; HD95 = the larger of the two directed 95th percentiles). MONAI itself was not
installed: its wheels pin a different torch than this project's build.

Per group, Dice, IoU and HD95 are **patient-level means** (each patient's mean over their
slices, then the mean over patients) with percentile-bootstrap intervals over patients;
the two rates use the clustered Wilson interval of :func:`auditkit.stats.proportion_interval`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import wording
from ._gaps import cannot_reach
from ._metrics import bootstrap_weights, percentile_interval
from .exceptions import ConfigError, DataError
from .stats import holm_adjust, proportion_interval

__all__ = ["SEGMENTATION_METRICS", "MASKS_FILE", "boundary_hd95", "evaluate_masks",
           "group_table", "groups_frame", "load_mask_tensor", "metrics_frame", "per_image_metrics", "read_masks_file", "reference_masks",
           "upsample_masks", "write_masks_file"]

SEGMENTATION_METRICS = ("dice", "iou", "hd95_px", "missed_lesion_rate", "false_lesion_rate")
MASKS_FILE = "segmentation_masks.npz"


def load_mask_tensor(path: str | os.PathLike[str], size: tuple[int, int] | list[int]
                     ) -> np.ndarray:
    """A reference mask (any non-zero pixel is foreground) as bool ``(H, W)`` at ``size``.

    Resized with nearest-neighbour sampling (PIL), which keeps it binary; ``size`` equal
    to the file's size returns it unchanged.
    """
    from PIL import Image

    with Image.open(path) as opened:
        img = opened.convert("L")
    height, width = int(size[0]), int(size[1])
    if img.size != (width, height):
        img = img.resize((width, height), Image.Resampling.NEAREST)
    return np.asarray(img) > 0


def reference_masks(dataset: Any) -> np.ndarray:
    """The dataset's reference masks ``(N, H, W)`` bool (non-zero pixels are foreground).

    Every mask must have one size (the size metrics are measured at); a row without a
    mask path counts as an empty mask only if the description says so by leaving the
    cell empty.

    Raises
    ------
    ConfigError
        The dataset describes no ``mask_column``.
    DataError
        Masks of different sizes, or one that cannot be read.
    """
    from PIL import Image

    if not dataset.spec.mask_column:
        raise ConfigError(
            f"A segmentation model needs reference masks, but dataset {dataset.name!r} names "
            "no mask_column; expected a description with mask_column (docs/datasets.md).")
    paths = dataset.records["mask"].tolist()
    first = next((p for p in paths if p), None)
    if first is None:
        raise DataError(f"Dataset {dataset.name!r} lists no mask file in column "
                        f"{dataset.spec.mask_column!r}; expected one per image.")
    with Image.open(dataset.root / first) as img:
        width, height = img.size
    out = np.zeros((len(paths), height, width), dtype=bool)
    for i, rel in enumerate(paths):
        if not rel:
            continue
        try:
            with Image.open(dataset.root / rel) as img:
                if img.size != (width, height):
                    raise DataError(
                        f"Mask {Path(rel).name} is {img.size[0]}x{img.size[1]} pixels; expected "
                        f"every mask of {dataset.name!r} at {width}x{height} like the first.")
                out[i] = np.asarray(img.convert("L")) > 0
        except OSError as exc:
            raise DataError(f"Mask {Path(rel).name} cannot be read as an image: {exc}.") from exc
    return out


def upsample_masks(probabilities: np.ndarray, size: tuple[int, int], threshold: float,
                   *, chunk: int = 256) -> np.ndarray:
    """Foreground probabilities ``(N, h, w)`` -> masks ``(N, H, W)`` bool at ``size``.

    Bilinear (``align_corners=False``) upsampling of the probability, then ``>= threshold``;
    the identity when the sizes already agree.
    """
    import torch

    n = len(probabilities)
    if tuple(probabilities.shape[1:]) == tuple(size):
        return np.asarray(probabilities) >= threshold
    out = np.empty((n, *size), dtype=bool)
    for i in range(0, n, chunk):
        part = torch.from_numpy(np.ascontiguousarray(probabilities[i:i + chunk],
                                                     dtype=np.float32))[:, None]
        up = torch.nn.functional.interpolate(part, size=tuple(size), mode="bilinear",
                                             align_corners=False)
        out[i:i + chunk] = (up[:, 0] >= threshold).numpy()
    return out


def boundary_hd95(pred: np.ndarray, ref: np.ndarray) -> float:
    """Symmetric 95th-percentile Hausdorff distance between two masks' borders (pixels).

    NaN when either mask is empty. Border = mask minus its binary erosion (MONAI's
    ``get_mask_edges``); distances from ``scipy.ndimage.distance_transform_edt``.
    """
    from scipy import ndimage

    if not pred.any() or not ref.any():
        return float("nan")
    edge_p = pred & ~ndimage.binary_erosion(pred)
    edge_r = ref & ~ndimage.binary_erosion(ref)
    to_r = ndimage.distance_transform_edt(~edge_r)
    to_p = ndimage.distance_transform_edt(~edge_p)
    return float(max(np.percentile(to_r[edge_p], 95), np.percentile(to_p[edge_r], 95)))


def per_image_metrics(pred: np.ndarray, ref: np.ndarray, *, progress: Any = None
                      ) -> pd.DataFrame:
    """One row per image: areas, Dice, IoU, HD95 and the two detection outcomes.

    Parameters
    ----------
    pred, ref : numpy.ndarray
        ``(N, H, W)`` bool predicted and reference masks, same size.

    Returns
    -------
    pandas.DataFrame
        ``ref_area_px``, ``pred_area_px``, ``lesion`` (reference non-empty), ``dice``,
        ``iou`` (NaN on empty reference slices), ``hd95_px`` (NaN unless both non-empty),
        ``missed`` (lesion slice, empty prediction), ``false_lesion`` (empty slice,
        non-empty prediction).
    """
    if pred.shape != ref.shape:
        raise ConfigError(f"Predicted masks {pred.shape} and reference masks {ref.shape} "
                          "must have the same shape.")
    n = len(pred)
    p2, r2 = pred.reshape(n, -1), ref.reshape(n, -1)
    inter = (p2 & r2).sum(axis=1)
    area_p, area_r = p2.sum(axis=1), r2.sum(axis=1)
    lesion = area_r > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        dice = np.where(lesion, 2.0 * inter / (area_p + area_r), np.nan)
        iou = np.where(lesion, inter / (area_p + area_r - inter), np.nan)
    hd95 = np.full(n, np.nan)
    both = np.flatnonzero(lesion & (area_p > 0))
    for j, i in enumerate(both):
        hd95[i] = boundary_hd95(pred[i], ref[i])
        if progress and (j % 256 == 0 or j == len(both) - 1):
            progress(j + 1, len(both), "segmentation: boundary distances")
    return pd.DataFrame({"ref_area_px": area_r.astype(int), "pred_area_px": area_p.astype(int),
                         "lesion": lesion, "dice": dice, "iou": iou, "hd95_px": hd95,
                         "missed": lesion & (area_p == 0),
                         "false_lesion": ~lesion & (area_p > 0)})


def _patient_mean(values: np.ndarray, patients: np.ndarray | None, *, n_boot: int,
                  rng: np.random.Generator, level: float
                  ) -> tuple[float, list[float | None], int, int]:
    """Patient-level mean of ``values`` (NaN ignored) and its patient-bootstrap interval."""
    keep = ~np.isnan(values)
    v = values[keep]
    if not len(v):
        return float("nan"), [None, None], 0, 0
    clusters = None if patients is None else patients[keep]
    weights, inverse = bootstrap_weights(clusters, len(v), n_boot, rng)
    m = int(inverse.max()) + 1
    unit_mean = np.bincount(inverse, weights=v, minlength=m) / np.bincount(inverse, minlength=m)
    value = float(unit_mean.mean())
    if n_boot and m >= 2:
        with np.errstate(invalid="ignore", divide="ignore"):
            reps = (weights @ unit_mean) / weights.sum(axis=1)
        ci = percentile_interval(reps, level)
    else:
        ci = [None, None]
    return value, ci, int(len(v)), m


def group_table(per_image: pd.DataFrame, *, patients: np.ndarray | None, n_boot: int,
                rng: np.random.Generator, level: float = 0.95, min_count: int = 10
                ) -> dict[str, dict[str, Any]]:
    """Every segmentation metric for one set of images, with interval and sample size.

    Returns
    -------
    dict
        metric -> ``{"value", "ci", "denominator", "denominator_patients",
        "denominator_of", "too_few", "method"}`` (the shape of
        :func:`auditkit._metrics.metric_table` entries).
    """
    out: dict[str, dict[str, Any]] = {}
    lesion = per_image["lesion"].to_numpy(bool)
    pat = None if patients is None else np.asarray(patients).astype(str)

    def put(name: str, value: float, ci: list[float | None], den: int, units: int,
            of: str, method: str) -> None:
        judged = units if pat is not None else den
        out[name] = {"value": value, "ci": ci, "denominator": int(den),
                     "denominator_patients": int(units) if pat is not None else None,
                     "denominator_of": of, "method": method,
                     "too_few": bool(den < min_count or judged < min_count)}

    boot = "patient-level mean, percentile bootstrap over patients"
    for name, of in (("dice", "slices with a tumour"), ("iou", "slices with a tumour"),
                     ("hd95_px", "slices where both outline a tumour")):
        value, ci, den, units = _patient_mean(per_image[name].to_numpy(float), pat,
                                              n_boot=n_boot, rng=rng, level=level)
        put(name, value, ci, den, units, of, boot)
    for name, column, den_mask, of in (
            ("missed_lesion_rate", "missed", lesion, "slices with a tumour"),
            ("false_lesion_rate", "false_lesion", ~lesion, "slices without a tumour")):
        hits = per_image[column].to_numpy(bool)[den_mask].astype(float)
        value, ci, _ = proportion_interval(hits, None if pat is None else pat[den_mask],
                                           level=level)
        units = len(set(pat[den_mask].tolist())) if pat is not None else int(den_mask.sum())
        put(name, value, ci, int(den_mask.sum()), units, of,
            "Wilson at the design-effect-adjusted n")
    return out


def _dice_gap_test(per_image: pd.DataFrame, groups: np.ndarray, patients: np.ndarray | None,
                   eligible: list[str], *, n_permutations: int, rng: np.random.Generator
                   ) -> dict[str, Any] | None:
    """Permutation test of the largest gap in patient-level mean Dice between groups.

    Patients (each with their slices) are dealt new group labels, keeping group sizes.
    """
    keep = per_image["lesion"].to_numpy(bool) & np.isin(groups, eligible)
    if len(eligible) < 2 or not keep.any():
        return None
    dice = per_image["dice"].to_numpy(float)[keep]
    unit = (np.asarray(patients).astype(str)[keep] if patients is not None
            else np.arange(int(keep.sum())).astype(str))
    frame = pd.DataFrame({"unit": unit, "group": groups[keep], "dice": dice})
    per_unit = frame.groupby("unit").agg(dice=("dice", "mean"),
                                         group=("group", lambda s: s.value_counts().index[0]))
    labels = per_unit["group"].to_numpy()
    values = per_unit["dice"].to_numpy()
    names = sorted(set(labels.tolist()))
    if len(names) < 2:
        return None

    def gap(lab: np.ndarray) -> float:
        means = [values[lab == g].mean() for g in names]
        return float(max(means) - min(means))

    observed = gap(labels)
    null = np.array([gap(rng.permutation(labels)) for _ in range(n_permutations)])
    p = float((1 + (null >= observed - 1e-12).sum()) / (n_permutations + 1))
    means = {g: float(values[labels == g].mean()) for g in names}
    worst, best = min(means, key=lambda g: means[g]), max(means, key=lambda g: means[g])
    return {"gap": observed, "p_value": p, "worst_group": worst, "best_group": best,
            "worst": means[worst], "best": means[best], "n_permutations": n_permutations,
            "groups": names}


def fairness_table(per_image: pd.DataFrame, records: pd.DataFrame, *, attributes: list[str],
                   group_order: dict[str, list[str]], patients: np.ndarray | None,
                   n_boot: int, n_permutations: int, alpha: float, level: float,
                   min_count: int, small_cell_k: int, rng: np.random.Generator
                   ) -> dict[str, Any]:
    """Per-group segmentation metrics and a Dice gap test per attribute (Holm across them)."""
    entries: list[dict[str, Any]] = []
    for attr in attributes:
        values = records[attr].astype(str).to_numpy()
        present = list(dict.fromkeys(values.tolist()))
        order = [g for g in group_order.get(attr, []) if g in present]
        order += sorted(g for g in present if g not in order)
        for group in order:
            mask = values == group
            pat = None if patients is None else patients[mask]
            n_pat = len(set(pat.tolist())) if pat is not None else None
            table = group_table(per_image[mask].reset_index(drop=True), patients=pat,
                                n_boot=n_boot, rng=rng, level=level, min_count=min_count)
            n = int(mask.sum())
            entries.append({"attribute": attr, "group": group, "n": n, "n_patients": n_pat,
                            "n_lesion": int(per_image["lesion"].to_numpy(bool)[mask].sum()),
                            "too_few": bool(n < min_count or (n_pat is not None
                                                              and n_pat < min_count)),
                            "is_unknown": group == "unknown", **table})
    if small_cell_k > 0:
        from .suppression import suppress_group_rows

        shown = suppress_group_rows(entries, k=small_cell_k, count_patients=True)
        for entry, after in zip(entries, shown):
            entry["hidden_by_small_cell_rule"] = bool(after.get("suppressed"))
    tests: list[dict[str, Any]] = []
    for attr in attributes:
        eligible = [e["group"] for e in entries if e["attribute"] == attr and not e["too_few"]
                    and not e["is_unknown"] and not e.get("hidden_by_small_cell_rule")
                    and not e["dice"]["too_few"]]
        t = _dice_gap_test(per_image, records[attr].astype(str).to_numpy(), patients, eligible,
                           n_permutations=n_permutations, rng=rng)
        if t is None:
            tests.append({"attribute": attr, "metric": "dice", "status": "not_assessed",
                          "reason": "fewer than two groups with enough patients to compare"})
        elif cannot_reach(n_permutations, alpha):  # no p-value could reach alpha
            tests.append({"attribute": attr, "metric": "dice", "status": "not_assessed",
                          "gap": t.get("gap"), "n_permutations": n_permutations,
                          "reason": wording.gap_permutations_too_few(n_permutations, alpha)})
        else:
            tests.append({"attribute": attr, "metric": "dice", "status": "assessed", **t})
    assessed = [t for t in tests if t["status"] == "assessed"]
    for t, p_adj in zip(assessed, holm_adjust([t["p_value"] for t in assessed])):
        t["p_adjusted"] = float(p_adj)
        t["real"] = bool(p_adj <= alpha)
        t["verdict"] = "concern" if t["real"] else "cannot tell"
    return {"groups": entries, "disparities": tests,
            "correction": (f"Holm over {len(assessed)} attribute(s): the chance of any false "
                           f"alarm is at most {wording.fmt_pct(alpha)}.")}


def evaluate_masks(ctx: Any) -> dict[str, Any]:
    """The segmentation evaluation of one audit, computed once and shared by the checks.

    Returns ``{"pred": (N, H, W) bool at reference size, "ref": ..., "per_image":
    DataFrame, "size": (H, W)}``.
    """
    if "segmentation" in ctx.shared:
        return dict(ctx.shared["segmentation"])
    card = ctx.model.card
    ref = reference_masks(ctx.dataset)
    size = (int(ref.shape[1]), int(ref.shape[2]))
    from .models import segmentation_masks

    if (card.segmentation or {}).get("activation") == "softmax" and \
            ctx.predictions.outputs.shape[1] > 2:
        model_masks = segmentation_masks(ctx.predictions.probabilities, card,
                                         ctx.predictions.outputs).astype(np.float32)
        pred = upsample_masks(model_masks, size, 0.5)
    else:
        threshold = float((card.segmentation or {}).get("threshold", 0.5))
        if (card.segmentation or {}).get("activation") == "softmax":
            threshold = 0.5
        pred = upsample_masks(ctx.predictions.probabilities, size, threshold)
    per_image = per_image_metrics(pred, ref, progress=ctx.progress)
    result = {"pred": pred, "ref": ref, "per_image": per_image, "size": size}
    ctx.shared["segmentation"] = result
    return dict(result)


def write_masks_file(path: Path, *, keys: list[str], masks: np.ndarray) -> None:
    """Predicted masks as a compressed NPZ: bit-packed rows, image keys, the mask shape."""
    n = len(masks)
    np.savez_compressed(path, keys=np.asarray(keys, dtype=str),
                        shape=np.asarray(masks.shape, dtype=np.int64),
                        packed=np.packbits(masks.reshape(n, -1), axis=1))


def read_masks_file(path: str | Path) -> tuple[list[str], np.ndarray]:
    """Inverse of :func:`write_masks_file`: image keys and masks ``(N, H, W)`` bool."""
    with np.load(path, allow_pickle=False) as npz:
        shape = tuple(int(v) for v in npz["shape"])
        flat = np.unpackbits(npz["packed"], axis=1, count=int(np.prod(shape[1:])))
        return npz["keys"].tolist(), flat.reshape(shape).astype(bool)


# --------------------------------------------------------------------------- the checks


def performance_check(ctx: Any) -> dict[str, Any]:
    """The ``performance`` check of a ``segmentation`` model; writes the masks evidence."""
    scope = ctx.evaluation_scope()
    rows = scope.mask
    ev = evaluate_masks(ctx)
    per_image: pd.DataFrame = ev["per_image"]
    for column in per_image.columns:  # the per-image summary row in predictions.csv
        ctx.frame[column] = per_image[column].to_numpy()
    if ctx.out_dir is not None:
        write_masks_file(ctx.out_dir / MASKS_FILE,
                         keys=ctx.dataset.records["key"].astype(str).tolist(), masks=ev["pred"])
    patients = (ctx.dataset.records["patient_id"].to_numpy()[rows].astype(str)
                if ctx.dataset.has_patients else None)
    table = group_table(per_image[rows].reset_index(drop=True), patients=patients,
                        n_boot=ctx.config.n_boot, rng=ctx.rng(1), level=ctx.config.confidence,
                        min_count=ctx.config.min_group_size)
    n_patients = int(len(set(patients.tolist()))) if patients is not None else None
    summary = [wording.scope_sentence(
        evaluated_on=scope.description, may_include_training=scope.may_include_training,
        n_images=int(rows.sum()), n_patients=n_patients)]
    for metric in SEGMENTATION_METRICS:
        m = table[metric]
        summary.append(wording.segmentation_summary(
            metric=metric.removesuffix("_px"), value=m["value"], ci=m["ci"],
            n_images=m["denominator"], n_patients=m["denominator_patients"],
            evaluated_on=m["denominator_of"]))
    card = ctx.model.card
    return {
        "status": "assessed",
        "output_kind": "segmentation",
        "evaluated_on": scope.description,
        "evaluation_source": scope.source,
        "may_include_training": scope.may_include_training,
        "n": int(rows.sum()),
        "n_patients": n_patients,
        "n_lesion_slices": int(per_image["lesion"].to_numpy(bool)[rows].sum()),
        "resampling_unit": "patient" if patients is not None else "image",
        "positive_class": card.positive_class,
        "measured_at": {"height": ev["size"][0], "width": ev["size"][1],
                        "model_output": list(card.output_size),
                        "how": ("model foreground probability upsampled bilinearly to the "
                                "reference mask size, then thresholded")},
        "threshold": float((card.segmentation or {}).get("threshold", 0.5)),
        "metrics": table,
        "meanings": dict(wording.SEGMENTATION_METRIC_MEANINGS),
        "evidence": {"masks": MASKS_FILE, "per_image": "predictions.csv"},
        "surface_distance_library": "scipy.ndimage (distance_transform_edt, binary_erosion)",
        "summary": summary,
    }


def fairness_check(ctx: Any) -> dict[str, Any]:
    """The ``fairness`` check of a ``segmentation`` model: per group, by patient."""
    opts = ctx.options("fairness")
    rows, described = ctx.evaluation_rows()
    attrs = [a.name for a in ctx.dataset.spec.attributes]
    if not attrs:
        return {"status": "not_assessed", "reason": "the dataset describes no patient attributes"}
    ev = evaluate_masks(ctx)
    records = ctx.dataset.records[rows].reset_index(drop=True)
    patients = records["patient_id"].to_numpy().astype(str) if ctx.dataset.has_patients else None
    alpha = float(opts.get("alpha", 0.05))
    result = fairness_table(
        ev["per_image"][rows].reset_index(drop=True), records, attributes=attrs,
        group_order={a.name: a.group_order for a in ctx.dataset.spec.attributes},
        patients=patients, n_boot=ctx.config.n_boot,
        n_permutations=int(opts.get("n_permutations", ctx.config.n_boot)), alpha=alpha,
        level=ctx.config.confidence, min_count=ctx.config.min_group_size,
        small_cell_k=ctx.config.small_cell_k, rng=ctx.rng(2))
    summary = []
    for t in result["disparities"]:
        if t["status"] == "assessed":
            summary.append(
                f"{t['attribute'].replace('_', ' ').capitalize()}: mean Dice is "
                f"{wording.fmt_pct(t['worst'])} for {t['worst_group']} and "
                f"{wording.fmt_pct(t['best'])} for {t['best_group']} (patient-level means); "
                f"{wording.verdict_label(t['verdict'])} (adjusted p = "
                f"{wording.fmt_number(t['p_adjusted'], 3)}).")
        else:
            summary.append(wording.attribute_not_assessed(t["attribute"], t["reason"]))
    return {
        "status": "assessed",
        "output_kind": "segmentation",
        "evaluated_on": described,
        "resampling_unit": "patient" if patients is not None else "image",
        "n_boot": ctx.config.n_boot,
        "confidence": ctx.config.confidence,
        "min_group_size": ctx.config.min_group_size,
        "positive_class": ctx.model.card.positive_class,
        **result,
        "summary": summary,
    }


def groups_frame(result: dict[str, Any], *, attribute: str) -> pd.DataFrame:
    """The fairness result's groups of ``attribute`` as a table (one row per group).

    Columns: ``group``, ``n``, ``n_patients``, ``n_lesion``, then for each of
    :data:`SEGMENTATION_METRICS` its value, ``<metric>_low`` and ``<metric>_high``, and
    ``too_few`` and ``suppressed``.
    """
    rows = []
    for e in result.get("groups", []):
        if e.get("attribute") != attribute:
            continue
        row: dict[str, Any] = {"group": e["group"], "n": e.get("n"),
                               "n_patients": e.get("n_patients"), "n_lesion": e.get("n_lesion")}
        for metric in SEGMENTATION_METRICS:
            m = e.get(metric) or {}
            ci = m.get("ci") or [None, None]
            row[metric], row[f"{metric}_low"], row[f"{metric}_high"] = m.get("value"), ci[0], ci[1]
        row["too_few"] = bool(e.get("too_few"))
        row["suppressed"] = bool(e.get("suppressed"))
        rows.append(row)
    return pd.DataFrame(rows)


def metrics_frame(result: dict[str, Any], *, distances: bool = False) -> pd.DataFrame:
    """The performance result's metrics as a table: metric, value, low, high, n, patients.

    ``distances=False``: the shares (Dice, IoU, the two rates); ``True``: the boundary
    distance (HD95, pixels), which is not a share and is formatted apart.
    """
    rows = []
    for metric, m in (result.get("metrics") or {}).items():
        if (metric == "hd95_px") != distances:
            continue
        ci = m.get("ci") or [None, None]
        rows.append({"metric": wording.metric_name(metric), "value": m.get("value"),
                     "low": ci[0], "high": ci[1], "n": m.get("denominator"),
                     "n_patients": m.get("denominator_patients"),
                     "counted": m.get("denominator_of"),
                     "meaning": wording.SEGMENTATION_METRIC_MEANINGS.get(metric, "")})
    return pd.DataFrame(rows)
