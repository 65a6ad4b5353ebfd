"""Drafting a model card and a dataset description from the files a user points at.

Used by the dashboard's "New audit" page (and usable headless): read what can be read
(the weights file's format and sha256, the model's input shape and output size by a dry
run on one image, the table's columns, the DICOM header tags), write a draft the user
corrects, list *every* problem of both drafts at once (dataset problems with their
table line numbers), and save both files without overwriting anything unasked.

Nothing here runs a code-carrying model file (TorchScript, ``torch.export``) unless the
caller says the user trusts it (``trusted=True``).
"""

from __future__ import annotations

import json
import os
import shutil
import tomllib
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from .data import (
    IMAGE_SUFFIXES,
    DatasetSpec,
    _is_dicom,
    _read_dicom_header,
    dataset_registry_paths,
    load_dataset,
)
from .exceptions import AuditKitError, ConfigError
from .models import CARD_FILE, ModelCard, RegisteredModel, card_problems, registry_paths

__all__ = ["Draft", "dataset_toml", "draft_audit", "draft_card", "draft_dataset", "save_drafts",
           "trust_kwargs", "validate_drafts"]

#: Input sizes tried, in order, by the dry run (after the sample image's own size).
DRY_RUN_SIZES = (224, 256, 128, 64, 512, 299, 384, 32)
_ATTRIBUTE_WORDS = {
    "sex": "sex", "gender": "sex", "age": "age", "race": "ethnicity", "ethnicity": "ethnicity",
    "ethnic": "ethnicity", "fitzpatrick": "skin_tone", "skin": "skin_tone",
    "skin_type": "skin_tone", "monk": "skin_tone", "site": "categorical",
    "view": "categorical", "scanner": "categorical", "hospital": "categorical",
    "manufacturer": "categorical",
}
_LABEL_WORDS = ("label", "finding", "diagnosis", "class", "target", "outcome", "y")
_PATIENT_WORDS = ("patient", "subject", "patient_id", "pid")
_HEADER_ATTRS = {"PatientSex": "sex", "PatientAge": "age", "EthnicGroup": "ethnicity"}


@dataclass
class Draft:
    """What could be read, as editable drafts, and notes on how each guess was made."""

    card: dict[str, Any]
    dataset: dict[str, Any]
    notes: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- dataset


def _find_table(path: Path) -> tuple[Path, pd.DataFrame | None]:
    if path.is_file():
        return path, pd.read_csv(path, dtype=str, keep_default_na=False)
    tables = sorted(path.glob("*.csv"))
    if tables:
        return tables[0], pd.read_csv(tables[0], dtype=str, keep_default_na=False)
    return path / "table.csv", None


def _image_folder_table(root: Path) -> pd.DataFrame:
    """An ImageFolder layout (``root/<class>/<image>``) as a table: image, label."""
    rows = []
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES - {""}:
            rel = p.relative_to(root)
            rows.append({"image": rel.as_posix(),
                         "label": rel.parts[0] if len(rel.parts) > 1 else ""})
    return pd.DataFrame(rows, columns=["image", "label"])


def _pick(columns: list[str], words: tuple[str, ...]) -> str | None:
    lowered = {c.lower(): c for c in columns}
    for w in words:
        if w in lowered:
            return lowered[w]
    for c in columns:
        if any(w in c.lower() for w in words if len(w) > 2):
            return c
    return None


def draft_dataset(path: str | os.PathLike[str], *, name: str | None = None,
                  table: pd.DataFrame | None = None, table_name: str = "table.csv",
                  notes: list[str] | None = None) -> dict[str, Any]:
    """A dataset description drafted from a table (CSV) or a folder.

    A folder holding a CSV uses that table; a folder of images in class sub-folders
    becomes a table written beside them when saved (``table.csv``: image, label).
    Columns are matched by name (``label``/``finding``/... for the label,
    ``patient...`` for the patient id, ``sex``/``age``/``race``/... for attributes);
    DICOM images add header-only ``sex``, ``age`` and ``ethnicity`` attributes when
    their tags are filled.

    An uploaded ``table`` (with its file name ``table_name``) is described against
    the folder ``path`` (its image paths relative to it) and written there when saved.

    Returns
    -------
    dict
        TOML-ready mapping (``DatasetSpec.from_dict`` keys), with ``root`` set; a
        table to write is under the private key ``_table`` (a DataFrame).
    """
    notes = notes if notes is not None else []
    src = Path(path).expanduser()
    if not src.exists():
        raise ConfigError(f"Dataset path {src} does not exist; expected a folder or a CSV table.")
    found: pd.DataFrame | None
    if table is not None:
        if not src.is_dir():
            raise ConfigError(f"An uploaded table needs the folder its image paths are relative "
                              f"to; got {src}, which is not a folder.")
        table_path, found = src / Path(table_name).name, table
        notes.append(f"The uploaded table ({len(table)} rows) will be saved as {table_path}.")
    else:
        table_path, found = _find_table(src)
    root = table_path.parent
    draft: dict[str, Any] = {"name": name or root.name.replace("-", "_").replace(" ", "_"),
                             "root": str(root.resolve()), "table": table_path.name}
    if found is None:
        found = _image_folder_table(root)
        notes.append(f"No table found in {root}: drafted table.csv from {len(found)} image "
                     "files, the label taken from each image's sub-folder.")
    if table is not None or not table_path.is_file():  # uploaded, or drafted from a folder
        draft["_table"] = found
    table = found
    columns = list(table.columns)
    image_col = next((c for c in columns if table[c].astype(str).str.lower().str.endswith(
        (".png", ".jpg", ".jpeg", ".dcm", ".dicom")).mean() > 0.5), None)
    draft["image_column"] = image_col or ""
    label_col = _pick(columns, _LABEL_WORDS)
    draft["label_column"] = label_col or ""
    classes = sorted(v for v in set(table[label_col]) if v) if label_col else []
    draft["classes"] = classes
    patient = _pick(columns, _PATIENT_WORDS)
    if patient:
        draft["patient_column"] = patient
    split = _pick(columns, ("split", "fold", "partition"))
    if split:
        draft["split_column"] = split
    attributes: list[dict[str, Any]] = []
    taken = {image_col, label_col, patient, split}
    for c in columns:
        kind = _ATTRIBUTE_WORDS.get(c.lower())
        if c in taken or kind is None:
            continue
        attr: dict[str, Any] = {"name": c.lower() if c.isidentifier() else "attr_" + str(
            len(attributes)), "column": c, "kind": kind}
        if kind == "skin_tone":
            attr["scale"] = "monk" if "monk" in c.lower() else "fitzpatrick"
        attributes.append(attr)
    # DICOM header tags: header-only attributes (no column needed)
    if image_col:
        for rel in table[image_col].head(20):
            p = Path(rel) if os.path.isabs(rel) else root / rel
            if p.is_file() and _is_dicom(p):
                header = _read_dicom_header(p)
                for tag, kind in _HEADER_ATTRS.items():
                    if header.get(kind) and not any(a["kind"] == kind for a in attributes):
                        attributes.append({"name": kind, "kind": kind})
                        notes.append(f"{kind}: read from the DICOM tag {tag} (no column needed).")
    draft["attributes"] = attributes
    notes.append(f"Dataset: image column {image_col!r}, label column {label_col!r} "
                 f"(classes {classes}), patient column {patient!r}, "
                 f"{len(attributes)} patient attribute(s). Check each guess.")
    return draft


def dataset_toml(draft: dict[str, Any]) -> str:
    """The draft as TOML text (the format of docs/datasets.md)."""
    lines = []
    for key, value in draft.items():
        if key.startswith("_") or key in ("attributes", "label_map") or value in (None, ""):
            continue
        lines.append(f"{key} = {json.dumps(value)}")
    if draft.get("label_map"):
        lines += ["", "[label_map]"] + [f"{json.dumps(k)} = {json.dumps(v)}"
                                         for k, v in draft["label_map"].items()]
    for attr in draft.get("attributes", []):
        lines += ["", "[[attributes]]"] + [f"{k} = {json.dumps(v)}" for k, v in attr.items()]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- model card


def _weights_format(path: Path) -> str:
    if path.suffix == ".pt2":
        return "export"
    if path.suffix == ".safetensors":
        return "state_dict"
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            if any("/code/" in n or n.startswith("code/") for n in zf.namelist()):
                return "torchscript"
    return "state_dict"


def trust_kwargs(trusted: bool) -> dict[str, Any]:
    """Keyword arguments for :func:`auditkit.load_model` from the user's trust choice.

    ``True`` opts in to a code-carrying format (TorchScript, torch.export); ``False``
    leaves the safe default (``None``: the deployment's ``AUDITKIT_TRUST_MODEL_CODE``,
    else no trust), never a weaker one.
    """
    return {"trust_model_code": True if trusted else None}


def _dry_run(folder: Path, card: dict[str, Any], sample: Path | None, trusted: bool,
             notes: list[str]) -> None:
    """Find the input size, channels and output size by running the model on one image."""
    import torch

    from .data import read_pixels
    from .models import load_model

    if card["format"] in ("torchscript", "export") and not trusted:
        notes.append("Dry run skipped: this file format carries code; tick 'I trust this model "
                      "file's code' to let auditkit run it once and read its input shape.")
        return
    if card["format"] == "state_dict":
        notes.append("Dry run skipped: a state dict needs its architecture named first.")
        return
    probe = {**card, "name": card.get("name") or "draft", "version": card.get("version") or "v0",
             "task": card.get("task") or "draft", "class_names": ["a", "b"],
             "positive_class": "b", "output": "softmax", "input_size": [8, 8], "channels": 3,
             "normalization": {"mean": [0.0] * 3, "std": [1.0] * 3}}
    try:
        model = load_model(RegisteredModel(card=ModelCard(**{
            k: v for k, v in probe.items() if k in ModelCard.__dataclass_fields__}),
            folder=folder), device="cpu", **trust_kwargs(trusted))
    except AuditKitError as exc:
        notes.append(f"Dry run: the model could not be loaded: {exc}")
        return
    sizes: list[int] = []
    channel_order = (3, 1)
    if sample is not None:
        try:
            arr = read_pixels(sample)
            sizes.append(int(arr.shape[0]))
            channel_order = (1, 3) if arr.ndim == 2 else (3, 1)  # the images' own first
        except (OSError, ValueError) as exc:
            notes.append(f"Dry run: the sample image {sample.name} could not be read ({exc}).")
    sizes += [s for s in DRY_RUN_SIZES if s not in sizes]
    with torch.inference_mode():
        for channels in channel_order:
            for size in sizes:
                try:
                    out = model.module(torch.zeros(2, channels, size, size))
                except Exception:  # noqa: BLE001 - a shape the model refuses: try the next one
                    continue
                if not isinstance(out, torch.Tensor):
                    continue
                card["input_size"], card["channels"] = [size, size], channels
                card["normalization"] = {"mean": [0.5] * channels, "std": [0.25] * channels}
                if out.ndim == 4:  # per-pixel outputs: a segmentation model
                    c, h, w = (int(v) for v in out.shape[1:])
                    card["output"] = "segmentation"
                    card["segmentation"] = {
                        "activation": "sigmoid" if c == 1 else "softmax", "threshold": 0.5,
                        "output_size": None if [h, w] == [size, size] else [h, w]}
                    notes.append(
                        f"Dry run: the model accepts {channels}-channel {size}x{size} images and "
                        f"returns {c} channel(s) of {h}x{w} pixel logits, so output is "
                        "'segmentation' (" + ("one foreground logit: class_names are "
                                              "background, foreground" if c == 1 else
                                              "softmax over the channels") + "). Normalization "
                        "is a placeholder (mean 0.5, std 0.25): enter the values the model was "
                        "trained with.")
                    return
                k = int(out.reshape(2, -1).shape[1])
                card["output"] = "binary_logit" if k == 1 else "softmax"
                notes.append(
                    f"Dry run: the model accepts {channels}-channel {size}x{size} images and "
                    f"returns {k} output(s) per image, so output is {card['output']!r}"
                    + (" (one logit scoring class_names[1])." if k == 1 else ".")
                    + " Normalization is a placeholder (mean 0.5, std 0.25): enter the "
                      "values the model was trained with.")
                card["_n_outputs"] = k
                return
    notes.append("Dry run: no tried input shape worked; enter input_size and channels by hand.")


def draft_card(model_file: str | os.PathLike[str], *, classes: list[str] | None = None,
               sample_image: str | os.PathLike[str] | None = None, trusted: bool = False,
               notes: list[str] | None = None) -> dict[str, Any]:
    """A model card drafted from a weights file (and a dry run on one image when allowed).

    The card's ``weights`` and ``sha256`` come from the file; ``format`` from its
    kind; ``input_size``, ``channels`` and ``output`` from the dry run; ``class_names``
    from the dataset draft. Fields that cannot be read are left empty, so validation
    names them.
    """
    notes = notes if notes is not None else []
    path = Path(model_file).expanduser()
    if not path.is_file():
        raise ConfigError(f"Model file {path} does not exist; expected a .pt, .pth, .pt2 or "
                          ".safetensors file.")
    from .models import sha256_file

    card: dict[str, Any] = {
        "name": path.stem.split(".")[0].replace("_", "-").lower() or "my-model",
        "version": "v1", "task": "", "class_names": list(classes or []),
        "positive_class": (classes or [""])[-1], "output": "", "input_size": [],
        "channels": 0, "normalization": {"mean": [], "std": []},
        "input_scaling": {"method": "bit_depth"}, "format": _weights_format(path),
        "weights": path.name, "sha256": sha256_file(path),
    }
    if card["format"] == "state_dict":
        card["architecture"] = ""
    notes.append(f"Model file: {card['format']} format, sha256 {card['sha256'][:12]}…")
    _dry_run(path.parent, card, Path(sample_image) if sample_image else None, trusted, notes)
    k = card.pop("_n_outputs", None)
    if k and k > 1 and len(card["class_names"]) != k:
        notes.append(f"The model returns {k} outputs but the dataset has "
                     f"{len(card['class_names'])} classes: list the model's classes in output "
                     "order in class_names.")
    return card


# --------------------------------------------------------------------------- both


def draft_audit(model_file: str | os.PathLike[str], dataset_path: str | os.PathLike[str], *,
                trusted: bool = False, table: pd.DataFrame | None = None,
                table_name: str = "table.csv") -> Draft:
    """Draft both files: the dataset first (its classes and one sample image feed the card)."""
    notes: list[str] = []
    dataset = draft_dataset(dataset_path, table=table, table_name=table_name, notes=notes)
    sample = None
    table = dataset.get("_table")
    if table is None and dataset.get("image_column"):
        table = pd.read_csv(Path(dataset["root"]) / dataset["table"], dtype=str,
                            keep_default_na=False, nrows=1)
    if table is not None and len(table) and dataset.get("image_column"):
        rel = str(table[dataset["image_column"]].iloc[0])
        sample = Path(rel) if os.path.isabs(rel) else Path(dataset["root"]) / rel
    card = draft_card(model_file, classes=dataset.get("classes"), sample_image=sample,
                      trusted=trusted, notes=notes)
    card["dataset"] = dataset["name"]
    return Draft(card=card, dataset=dataset, notes=notes)


def validate_drafts(card: dict[str, Any], dataset: dict[str, Any] | str
                    ) -> dict[str, list[str]]:
    """Every problem of both drafts at once.

    Parameters
    ----------
    card : dict
        The card draft (``card.json`` content).
    dataset : dict or str
        The dataset draft, or its TOML text.

    Returns
    -------
    dict
        ``{"card": [...], "dataset": [...]}``, one line per problem; dataset rows
        carry their table line number (``line 7: ...``).
    """
    out: dict[str, list[str]] = {"card": card_problems(card), "dataset": []}
    try:
        data = tomllib.loads(dataset) if isinstance(dataset, str) else dict(dataset)
    except tomllib.TOMLDecodeError as exc:
        out["dataset"].append(f"the description is not valid TOML: {exc}")
        return out
    table = data.pop("_table", None)
    try:
        spec = DatasetSpec.from_dict(data)
    except AuditKitError as exc:
        out["dataset"].append(str(exc))
        return out
    root = Path(spec.root or ".")
    if table is not None and not (root / spec.table).is_file():
        out["dataset"].append(f"the table {spec.table} will be written when saved; its "
                              f"{len(table)} rows are checked then")
        return out
    from .exceptions import DataError

    try:
        load_dataset(spec, root=root, on_invalid="raise", check_images=True)
    except DataError as exc:
        problems = getattr(exc, "problems", None) or []
        out["dataset"] += [str(p) for p in problems] or [str(exc)]
    except AuditKitError as exc:
        out["dataset"].append(str(exc))
    if isinstance(card.get("class_names"), list) and spec.classes:
        unknown = sorted(set(spec.classes) - set(card["class_names"]))
        if unknown:
            out["card"].append(f"field 'class_names': expected every dataset class "
                               f"{list(spec.classes)}; found {card['class_names']!r} "
                               f"(missing {unknown})")
    return out


def save_drafts(*, card: dict[str, Any], weights: str | os.PathLike[str],
                dataset: dict[str, Any] | str, model_registry: str | os.PathLike[str] | None = None,
                dataset_registry: str | os.PathLike[str] | None = None,
                overwrite: bool = False) -> dict[str, Path]:
    """Write ``<registry>/<name>/<version>/card.json`` (+ the weights) and the dataset TOML.

    Nothing is overwritten unless ``overwrite=True``: when any target exists, a
    :class:`ConfigError` lists them all and nothing is written.

    Returns
    -------
    dict
        ``{"card": path, "weights": path, "dataset": path}`` (+ ``"table"`` when a
        drafted table was written).
    """
    data = tomllib.loads(dataset) if isinstance(dataset, str) else dict(dataset)
    table = data.pop("_table", None)
    problems = validate_drafts(card, data if table is None else {**data, "_table": table})
    if problems["card"]:
        raise ConfigError("The card is not valid:\n  " + "\n  ".join(problems["card"]))
    spec = DatasetSpec.from_dict(data)
    reg = Path(model_registry) if model_registry else registry_paths()[0]
    dreg_list = [Path(dataset_registry)] if dataset_registry else dataset_registry_paths()
    if not dreg_list:
        raise ConfigError("No dataset registry folder: set AUDITKIT_DATASET_REGISTRY or choose "
                          "a folder to save the dataset description in.")
    folder = reg / str(card["name"]) / str(card["version"])
    src = Path(weights)
    targets = {"card": folder / CARD_FILE, "weights": folder / str(card["weights"]),
               "dataset": dreg_list[0] / f"{spec.name}.toml"}
    if table is not None:
        targets["table"] = Path(spec.root or ".") / spec.table
    if targets["weights"].resolve() == src.resolve():
        targets.pop("weights")
    existing = [str(p) for p in targets.values() if p.exists()]
    if existing and not overwrite:
        raise ConfigError("These files exist already and were not overwritten: "
                          + ", ".join(existing) + ". Choose another name/version, or confirm "
                          "overwriting.")
    folder.mkdir(parents=True, exist_ok=True)
    if "weights" in targets:
        shutil.copyfile(src, targets["weights"])
    targets["card"].write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    targets["dataset"].parent.mkdir(parents=True, exist_ok=True)
    targets["dataset"].write_text(dataset_toml(data), encoding="utf-8")
    if table is not None:
        table.to_csv(targets["table"], index=False)
    return {**targets, "weights": folder / str(card["weights"])}
