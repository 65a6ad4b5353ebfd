"""Inputs and outputs of a comparison: audits or models in, ``comparison.json`` out."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .. import wording
from .._export import write_frame_csv
from .._local import KEY_PREFIX
from .._version import __version__
from ..evidence import find_table, read_table
from ..exceptions import ConfigError, DataError, DatasetNotFoundError
from ._core import COMPARED_METRICS, DEFAULT_MARGIN, DEFAULT_NI_METRICS, compare_predictions

__all__ = [
    "COMPARISON_SCHEMA_VERSION",
    "CompareSettings",
    "compare_audits",
    "compare_models",
    "find_audits",
    "write_comparison",
]

COMPARISON_SCHEMA_VERSION = "1.0"
ProgressFn = Callable[[int, int, str], None]


@dataclass
class CompareSettings:
    """Everything that decides a comparison's numbers (stored in ``comparison.json``).

    Parameters
    ----------
    n_boot : int
        Paired bootstrap resamples.
    confidence : float
        Level of per-comparison intervals.
    alpha : float
        Family-wise error rate (Westfall–Young step-down,
        :func:`auditkit.stats.bootstrap_stepdown`).
    margin : float
        Non-inferiority margin δ as a proportion (default 0.05 = 5 percentage points).
        A committee's criteria file may supply it.
    ni_metrics : list of str
        Metrics judged for non-inferiority (default accuracy and sensitivity).
    metrics : list of str
        Metrics compared (:data:`~auditkit.compare.COMPARED_METRICS`).
    min_group_size : int
    small_cell_k : int
        Small-cell protection applied to both exports (0 turns it off).
    intersections : list of [str, str]
    seed : int
    held_out_only : bool
        Compare only images in the test split of both versions' ``split.csv``. Off
        compares every shared image, training images included (flattering: avoid).
    """

    n_boot: int = 1000
    confidence: float = 0.95
    alpha: float = 0.05
    margin: float = DEFAULT_MARGIN
    ni_metrics: list[str] = field(default_factory=lambda: list(DEFAULT_NI_METRICS))
    metrics: list[str] = field(default_factory=lambda: list(COMPARED_METRICS))
    min_group_size: int = 10
    small_cell_k: int = 10
    intersections: list[list[str]] = field(default_factory=list)
    seed: int = 0
    held_out_only: bool = True

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)


# --------------------------------------------------------------------------- stored audits


def find_audits(audits_dir: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Audits under ``audits_dir`` (``*/audit.json`` with ``predictions.csv`` or
    ``predictions.parquet``), newest first."""
    from ..audit import AuditReadError, read_audit

    found: list[dict[str, Any]] = []
    for path in sorted(Path(audits_dir).glob("*/audit.json")):
        if find_table(path.parent, "predictions") is None:
            continue
        try:
            audit = read_audit(path)
        except AuditReadError:
            continue  # a damaged audit is skipped, never trusted (the pages name it)
        if "performance" not in audit["results"]:
            continue
        found.append({"path": path.parent, "audit": audit})
    found.sort(key=lambda a: str(a["audit"]["created_at"]), reverse=True)
    return found


def _read_audit(folder: str | os.PathLike[str]) -> tuple[dict[str, Any], pd.DataFrame]:
    folder = Path(folder)
    audit_path = folder / "audit.json"
    pred_path = find_table(folder, "predictions") or folder / "predictions.csv"
    for p in (audit_path, pred_path):
        if not p.is_file():
            raise ConfigError(f"Expected an audit folder with audit.json and predictions.csv "
                              f"(or predictions.parquet); {p} was not found.")
    try:
        audit = json.loads(audit_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{audit_path} is not valid JSON ({exc}).") from exc
    if not isinstance(audit, dict):
        raise ConfigError(f"{audit_path} is not an auditkit audit: expected a JSON object; "
                          f"found a JSON {type(audit).__name__}.")
    for key in ("model", "dataset", "results"):
        if key not in audit:
            raise ConfigError(f"{audit_path} is not an auditkit audit: expected a {key!r} "
                              f"section; found keys {sorted(audit)}.")
    if pred_path.suffix == ".csv":
        frame = pd.read_csv(pred_path, dtype={"image": str, "label": str, "pred": str},
                            keep_default_na=False)
    else:  # Parquet keeps the types it was written with (auditkit.evidence)
        frame = read_table(pred_path)
    return audit, frame


def _test_images(folder: Path | None, ref: str) -> set[str]:
    split_path = folder / "split.csv" if folder is not None else None
    if split_path is None or not split_path.is_file():
        raise ConfigError(
            f"Expected {ref}'s split.csv (its held-out test images) beside the model"
            f"{f' in {folder}' if folder else ''}; found none. Without it the images held out "
            "from both versions cannot be known (use held_out_only=False / --all-images to "
            "compare every shared image, training images included).")
    split = pd.read_csv(split_path, dtype=str, keep_default_na=False)
    return set(split.loc[split["split"] == "test", "image"])


def _recorded_split(frame: pd.DataFrame) -> bool:
    """Whether an audit's predictions table carries its model's split (``train``/``test``
    per image, written by audits since the ``split`` column exists)."""
    return "split" in frame.columns and bool(
        frame["split"].astype(str).str.lower().isin(["train", "test", "val", "validation"])
        .any())


def _with_keys(names: set[str], dataset: str) -> set[str]:
    """split.csv names its images by file; exports by key: both, so either matches."""
    from .._local import image_keys, installation_secret

    return names | set(image_keys(installation_secret(), dataset, sorted(names)))


def _model_folder(model: dict[str, Any], registry: str | os.PathLike[str] | None) -> Path:
    from ..models import resolve_model

    ref = f"{model['name']}@{model['version']}"
    found = resolve_model(ref, registry)
    if model.get("sha256") and found.card.sha256 != model["sha256"]:
        raise ConfigError(
            f"The audit of {ref} was made with weights sha256 {model['sha256'][:12]}…; the "
            f"registry's {ref} has {found.card.sha256[:12]}…. Expected the same weights.")
    return found.folder


# --------------------------------------------------------------------------- the comparison


def _label(model: dict[str, Any], other: dict[str, Any]) -> str:
    return model["version"] if model["name"] == other["name"] else f"{model['name']}@{model['version']}"


def _compare_frames(
    *, frame_a: pd.DataFrame, frame_b: pd.DataFrame, model_a: dict[str, Any],
    model_b: dict[str, Any], dataset_info: dict[str, Any], folders: tuple[Path | None, Path | None],
    records: pd.DataFrame | None, attributes: dict[str, str], group_order: dict[str, list[str]],
    settings: CompareSettings, progress: ProgressFn | None,
) -> tuple[dict[str, Any], pd.DataFrame, np.ndarray | None]:
    if list(model_a["class_names"]) != list(model_b["class_names"]):
        raise ConfigError(
            f"Expected two versions with the same classes; found {model_a['class_names']} and "
            f"{model_b['class_names']}.")
    if model_a.get("positive_class") != model_b.get("positive_class"):
        raise ConfigError(
            f"Expected the same positive class; found {model_a.get('positive_class')!r} and "
            f"{model_b.get('positive_class')!r}.")
    classes = list(model_a["class_names"])
    images = frame_a["image"].astype(str)
    n_total = len(images)
    in_b = images.isin(set(frame_b["image"].astype(str)))
    reasons: dict[str, int] = {"missing_from_predictions_of_b": int((~in_b).sum())}
    keep = in_b.to_numpy().copy()
    labels = (_label(model_a, model_b), _label(model_b, model_a))
    if settings.held_out_only:
        if folders == (None, None) and _recorded_split(frame_a) and _recorded_split(frame_b):
            # each audit recorded its model's split per image (predictions.csv "split"):
            # no keys to recompute, so audits made with another --cache-dir (another
            # secret, other keys) still meet on the same images
            test_a = set(images[frame_a["split"].astype(str).str.lower() == "test"])
            b_images = frame_b["image"].astype(str)
            test_b = set(b_images[frame_b["split"].astype(str).str.lower() == "test"])
        else:
            test_a = _with_keys(_test_images(folders[0],
                                             f"{model_a['name']}@{model_a['version']}"),
                                dataset_info["name"])
            test_b = _with_keys(_test_images(folders[1],
                                             f"{model_b['name']}@{model_b['version']}"),
                                dataset_info["name"])
        not_a = keep & ~images.isin(test_a).to_numpy()
        reasons["not_held_out_from_a"] = int(not_a.sum())
        keep &= ~not_a
        not_b = keep & ~images.isin(test_b).to_numpy()
        reasons["not_held_out_from_b"] = int(not_b.sum())
        keep &= ~not_b
    if not keep.any():
        raise DataError(
            f"Expected images held out from both {labels[0]} and {labels[1]} (the intersection "
            f"of their split.csv test sets) among the {n_total} images of "
            f"{dataset_info['name']}; found none ("
            + ", ".join(f"{k.replace('_', ' ')}: {v}" for k, v in reasons.items()) + ").")
    fa = frame_a[keep].reset_index(drop=True)
    fb = frame_b.set_index(frame_b["image"].astype(str)).loc[fa["image"].astype(str)]
    fb = fb.reset_index(drop=True)
    if not (fa["label"].astype(str).to_numpy() == fb["label"].astype(str).to_numpy()).all():
        raise DataError("Expected both predictions.csv files to give every shared image the "
                        "same true label; found disagreements (different datasets?).")

    def idx(values: pd.Series) -> np.ndarray:
        lookup = {c: i for i, c in enumerate(classes)}
        unknown = sorted(set(values.astype(str)) - set(lookup))
        if unknown:
            raise DataError(f"Expected class names among {classes}; found {unknown[:5]}.")
        return values.astype(str).map(lookup).to_numpy(dtype=int)

    prob_cols = [f"prob_{c}" for c in classes]
    for f, which in ((fa, "A"), (fb, "B")):
        missing = [c for c in prob_cols if c not in f.columns]
        if missing:
            raise DataError(f"predictions.csv of {which}: expected columns {prob_cols}; "
                            f"{missing} are missing.")
    patients = None
    if records is not None:
        # exports name images by key (audits before keys: by file name)
        by = "key" if "key" in records.columns and fa["image"].astype(str).str.startswith(
            KEY_PREFIX).all() else "image"
        indexed = records.set_index(records[by].astype(str))
        unknown = ~fa["image"].astype(str).isin(indexed.index)
        if unknown.any():
            raise DataError(
                f"Expected every compared image among the dataset's records (by {by}); "
                f"{int(unknown.sum())} of {len(fa)} are not, e.g. "
                f"{fa['image'].astype(str)[unknown].iloc[0]!r}. Image keys depend on the "
                "installation secret of the cache folder the audits were made with: pass "
                "the same --cache-dir to `auditkit compare` as to `auditkit audit`.")
        rec = indexed.loc[fa["image"].astype(str)]
        groups = pd.DataFrame({a: rec[a].astype(str).to_numpy() for a in attributes})
        if rec["patient_id"].notna().any():
            patients = rec["patient_id"].astype(str).to_numpy()
    else:
        groups = pd.DataFrame({a: fa[a].astype(str).to_numpy() for a in attributes
                               if a in fa.columns})
    positive = classes.index(model_a["positive_class"])
    y = idx(fa["label"])
    pred_a, pred_b = idx(fa["pred"]), idx(fb["pred"])
    proba_a = fa[prob_cols].to_numpy(dtype=float)
    proba_b = fb[prob_cols].to_numpy(dtype=float)
    results = compare_predictions(
        y=y, pred_a=pred_a, pred_b=pred_b, proba_a=proba_a, proba_b=proba_b, positive=positive,
        class_names=classes, groups=groups, patients=patients,
        intersections=settings.intersections, group_order=group_order,
        metrics=settings.metrics, n_boot=settings.n_boot, confidence=settings.confidence,
        alpha=settings.alpha, margin=settings.margin, ni_metrics=settings.ni_metrics,
        min_group_size=settings.min_group_size, small_cell_k=settings.small_cell_k,
        labels=labels, random_state=settings.seed, progress=progress)
    flips = np.where(pred_a == y, np.where(pred_b == y, "both right", "right to wrong"),
                     np.where(pred_b == y, "wrong to right", "both wrong"))
    paired = pd.DataFrame({"image": fa["image"].to_numpy(), "label": fa["label"].to_numpy(),
                           "pred_a": fa["pred"].to_numpy(), "pred_b": fb["pred"].to_numpy(),
                           "correct_a": (pred_a == y).astype(int),
                           "correct_b": (pred_b == y).astype(int), "flip": flips})
    for c in classes:
        paired[f"prob_{c}_a"] = fa[f"prob_{c}"].to_numpy()
        paired[f"prob_{c}_b"] = fb[f"prob_{c}"].to_numpy()
    for a in groups.columns:
        paired[a] = groups[a].to_numpy()
    doc = {
        "schema_version": COMPARISON_SCHEMA_VERSION,
        "kind": "comparison",
        "auditkit_version": __version__,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "labels": {"a": labels[0], "b": labels[1]},
        "a": model_a, "b": model_b,
        "dataset": {**dataset_info, "attributes": attributes},
        "images": {
            "dataset": n_total, "shared": int(keep.sum()), "dropped": reasons,
            "description": wording.shared_images_sentence(
                n_total=n_total, n_shared=int(keep.sum()), reasons=reasons, labels=labels,
                held_out_only=settings.held_out_only),
            "groups_from": ("the dataset's records (true groups, patient ids for resampling)"
                            if records is not None else
                            "predictions.csv (the dataset was not found: groups as exported, "
                            "small groups already relabelled, images resampled)"),
        },
        "config": settings.to_dict(),
        "results": results,
    }
    return doc, paired, patients


def _finish(doc: dict[str, Any], paired: pd.DataFrame, patients: np.ndarray | None,
            settings: CompareSettings, audits: tuple[dict[str, Any], dict[str, Any]] | None
            ) -> tuple[dict[str, Any], pd.DataFrame]:
    from ..audit import _json_safe
    from ..suppression import apply_small_cell_policy

    if audits is not None:
        from ._from_audits import from_audits

        doc["results"]["from_audits"] = from_audits(audits[0], audits[1])
    doc, paired = apply_small_cell_policy(doc, paired, k=settings.small_cell_k,
                                          patient_ids=patients, count_patients=True)
    if paired is None:  # pragma: no cover (a frame was passed in)
        raise RuntimeError("small-cell policy returned no paired table")
    return _json_safe(doc), paired


def compare_audits(
    audit_a: str | os.PathLike[str],
    audit_b: str | os.PathLike[str],
    *,
    settings: CompareSettings | None = None,
    dataset: Any = None,
    registry: str | os.PathLike[str] | None = None,
    data_root: str | os.PathLike[str] | None = None,
    model_folders: tuple[str | os.PathLike[str], str | os.PathLike[str]] | None = None,
    progress: ProgressFn | None = None,
    key_secret: bytes | None = None,
) -> tuple[dict[str, Any], pd.DataFrame]:
    """Compare two stored audits (folders with ``audit.json`` and ``predictions.csv``).

    Parameters
    ----------
    audit_a, audit_b : path
        Version A (the reference, usually the older) and version B.
    settings : CompareSettings, optional
    dataset : Dataset, optional
        The audited dataset (default: loaded by the audits' dataset name). Its content
        hash must equal both audits'; it supplies true groups and patient ids. When it
        cannot be found, groups come from ``predictions.csv`` and images are resampled.
    registry : path, optional
        Where the models' folders (and their ``split.csv``) are looked up.
    data_root : path, optional
    model_folders : (path, path), optional
        The two model folders, instead of looking them up in the registry.
    key_secret : bytes, optional
        The installation secret the audits' image keys were made with (default: this
        installation's, :func:`auditkit._local.installation_secret`; the CLI passes the one
        of ``--cache-dir``), used to find each image's record when the dataset is loaded
        by name.

    Returns
    -------
    comparison : dict
        The ``comparison.json`` document (small-cell protection applied).
    paired : DataFrame
        The ``paired_predictions.csv`` table.

    Raises
    ------
    DataError
        The audits are of different dataset contents, or no image is held out from both.
    """
    settings = settings or CompareSettings()
    a, frame_a = _read_audit(audit_a)
    b, frame_b = _read_audit(audit_b)
    ha, hb = a["dataset"].get("hash"), b["dataset"].get("hash")
    if ha != hb:
        raise DataError(
            f"Expected two audits of the same dataset content; found {a['dataset']['name']!r} "
            f"(content hash {str(ha)[:12]}…) in {audit_a} and {b['dataset']['name']!r} "
            f"(content hash {str(hb)[:12]}…) in {audit_b}.")
    if model_folders is not None:
        folders: tuple[Path | None, Path | None] = (Path(model_folders[0]), Path(model_folders[1]))
    elif settings.held_out_only and not (_recorded_split(frame_a) and _recorded_split(frame_b)):
        folders = (_model_folder(a["model"], registry), _model_folder(b["model"], registry))
    else:
        folders = (None, None)
    if dataset is None:
        dataset = _try_dataset(a["dataset"]["name"], data_root, key_secret)
    records = None
    group_order: dict[str, list[str]] = {}
    if dataset is not None:
        if dataset.content_hash != ha:
            raise DataError(
                f"Expected dataset {dataset.name!r} with the audits' content hash "
                f"{str(ha)[:12]}…; found {dataset.content_hash[:12]}… (the data changed since "
                "the audits).")
        records = dataset.records
        group_order = {at.name: at.group_order for at in dataset.spec.attributes}
    attributes = dict(a["dataset"].get("attributes") or {})
    info = {"name": a["dataset"]["name"], "hash": ha, "n_images": a["dataset"].get("n_images")}
    model_a = {**a["model"], "audit": str(audit_a), "audit_created_at": a.get("created_at")}
    model_b = {**b["model"], "audit": str(audit_b), "audit_created_at": b.get("created_at")}
    doc, paired, patients = _compare_frames(
        frame_a=frame_a, frame_b=frame_b, model_a=model_a, model_b=model_b, dataset_info=info,
        folders=folders, records=records, attributes=attributes, group_order=group_order,
        settings=settings, progress=progress)
    return _finish(doc, paired, patients, settings, (a, b))


def _try_dataset(name: str, data_root: str | os.PathLike[str] | None,
                 key_secret: bytes | None = None) -> Any:
    from ..data import load_dataset

    try:
        return load_dataset(name, data_root=data_root, check_images=False, on_invalid="drop",
                            key_secret=key_secret)
    except DatasetNotFoundError:
        return None


def compare_models(
    model_a: Any,
    model_b: Any,
    dataset: Any,
    *,
    settings: CompareSettings | None = None,
    executor: Any = None,
    cache_dir: str | os.PathLike[str] | None = None,
    progress: ProgressFn | None = None,
) -> tuple[dict[str, Any], pd.DataFrame]:
    """Compare two loaded models on one dataset (predictions from the cache when possible).

    ``model_a`` / ``model_b`` are :class:`~auditkit.LoadedModel`; their folders'
    ``split.csv`` decide the held-out images. Returns like :func:`compare_audits`
    (without the ``from_audits`` section: no audit holds robustness or privacy results).
    """
    from ..audit import check_compatible
    from ..predict import predict

    settings = settings or CompareSettings()
    frames, cards = [], []
    for model in (model_a, model_b):
        check_compatible(model, dataset)
        preds = predict(model, dataset, executor=executor, cache_dir=cache_dir, progress=progress)
        frames.append(preds.to_frame(model, dataset))
        c = model.card
        cards.append({"name": c.name, "version": c.version, "sha256": c.sha256, "task": c.task,
                      "class_names": c.class_names, "positive_class": c.positive_class,
                      "output": c.output, "audit": None, "audit_created_at": None})
    info = {"name": dataset.name, "hash": dataset.content_hash, "n_images": len(dataset)}
    attributes = {at.name: at.kind for at in dataset.spec.attributes}
    doc, paired, patients = _compare_frames(
        frame_a=frames[0], frame_b=frames[1], model_a=cards[0], model_b=cards[1],
        dataset_info=info, folders=(model_a.folder, model_b.folder), records=dataset.records,
        attributes=attributes, group_order={at.name: at.group_order for at in dataset.spec.attributes},
        settings=settings, progress=progress)
    return _finish(doc, paired, patients, settings, None)


def write_comparison(doc: dict[str, Any], paired: pd.DataFrame,
                     out_dir: str | os.PathLike[str]) -> Path:
    """Write ``comparison.json`` (atomically, strict JSON) and ``paired_predictions.csv``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_frame_csv(paired, out / "paired_predictions.csv")  # formulas neutralised
    tmp = out / ".comparison.json.tmp"
    tmp.write_text(json.dumps(doc, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    os.replace(tmp, out / "comparison.json")
    return out / "comparison.json"
