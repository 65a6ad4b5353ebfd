"""Datasets: images, labels, patient ids and patient attributes.

A dataset is described once, in a small TOML file (see ``docs/datasets.md``): where
the images are, which table column holds the image path, the label, the patient id
and the mask, and which columns are patient attributes of which kind. Loading
validates everything up front and reports *all* problems at once, with the line
number in the table, and can then go on with the valid rows if the user chooses.

Attribute kinds
---------------
``ethnicity``   race or ethnic group, free text (DICOM tag EthnicGroup).
``sex``         female / male / other (DICOM tag PatientSex).
``age``         years, continuous; shown in bands (DICOM tag PatientAge, e.g. ``045Y``).
``skin_tone``   Fitzpatrick I-VI (``scale = "fitzpatrick"``) or Monk 1-10 (``"monk"``).
``categorical`` anything else: site, view, scanner, hospital.

Missing values become the group ``"unknown"``: it is kept and reported, never dropped.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import threading
import tomllib
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ._local import image_keys, installation_secret
from .exceptions import ConfigError, DataError, DatasetNotFoundError

__all__ = [
    "ATTRIBUTE_KINDS",
    "UNKNOWN",
    "SCALING_METHODS",
    "AttributeSpec",
    "Dataset",
    "DatasetProblem",
    "DatasetSpec",
    "FindingSpec",
    "ImageTooLargeError",
    "PixelScaling",
    "builtin_dataset_names",
    "builtin_spec",
    "check_pixel_limit",
    "dataset_names",
    "dataset_registry_paths",
    "dataset_search_paths",
    "dataset_spec",
    "find_dataset",
    "load_dataset",
    "max_image_pixels",
    "read_image",
    "resolve_confined",
    "read_pixels",
    "registered_datasets",
]

ATTRIBUTE_KINDS = ("ethnicity", "sex", "age", "skin_tone", "categorical")
UNKNOWN = "unknown"
RESERVED_COLUMNS = frozenset({"image", "label", "pred", "patient_id", "mask", "split"})
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".dcm", ".dicom", ""})

_DICOM_TAGS = {"sex": "PatientSex", "age": "PatientAge", "ethnicity": "EthnicGroup"}
_SEX_VALUES = {
    "f": "female", "female": "female", "woman": "female", "w": "female",
    "m": "male", "male": "male", "man": "male",
    "o": "other", "other": "other", "x": "other",
}
_ROMAN = ["I", "II", "III", "IV", "V", "VI"]
_SCALES = {"fitzpatrick": 6, "monk": 10}
_BUILTIN_DIR = Path(__file__).parent / "datasets"
_SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I")

ProgressFn = Callable[[int, int, str], None]


@dataclass(frozen=True)
class AttributeSpec:
    """One patient attribute of a dataset.

    Parameters
    ----------
    name : str
        Name used everywhere (CLI, JSON, pages), e.g. ``"skin_type"``.
    column : str
        Column of the table holding the raw values. For DICOM images the
        ``ethnicity``, ``sex`` and ``age`` kinds fall back to the standard tags when
        the column is absent or empty; for these kinds ``column`` may be left out
        (``""``) to read the DICOM header only.
    kind : str
        One of :data:`ATTRIBUTE_KINDS`.
    scale : str, optional
        ``"fitzpatrick"`` (1-6) or ``"monk"`` (1-10), for ``skin_tone`` only.
    bands : sequence of float, optional
        For ``age``: band edges in years, default ``(40, 60)`` giving ``<40``,
        ``40-59``, ``60+``. For ``skin_tone``: edges on the scale, e.g. ``(3, 5)``
        giving ``I-II``, ``III-IV``, ``V-VI`` on the Fitzpatrick scale.
    estimated : bool
        True when the values were estimated (e.g. skin tone from pixels), not recorded.
    description : str
        A short plain-language description shown to reviewers.
    """

    name: str
    column: str
    kind: str
    scale: str | None = None
    bands: tuple[float, ...] | None = None
    estimated: bool = False
    description: str = ""

    def __post_init__(self) -> None:
        if not self.column and self.kind not in _DICOM_TAGS:
            raise ConfigError(
                f"Attribute {self.name!r} of kind {self.kind!r} needs a table column; only "
                f"{sorted(_DICOM_TAGS)} can be read from DICOM headers alone; got column "
                f"{self.column!r}."
            )
        if self.kind not in ATTRIBUTE_KINDS:
            raise ConfigError(
                f"Attribute {self.name!r} has kind {self.kind!r}; expected one of "
                f"{list(ATTRIBUTE_KINDS)}."
            )
        if not self.name.isidentifier() or self.name in RESERVED_COLUMNS or self.name.startswith(
            "prob_"
        ):
            raise ConfigError(
                f"Attribute name must be an identifier other than {sorted(RESERVED_COLUMNS)} "
                f"and not start with 'prob_'; got {self.name!r} instead."
            )
        if self.kind == "skin_tone" and self.scale not in _SCALES:
            raise ConfigError(
                f"Skin-tone attribute {self.name!r} needs scale 'fitzpatrick' or 'monk'; "
                f"got {self.scale!r} instead."
            )
        if self.bands is not None:
            if self.kind not in ("age", "skin_tone"):
                raise ConfigError(
                    f"Attribute {self.name!r}: bands apply to 'age' and 'skin_tone' only; "
                    f"got kind {self.kind!r}."
                )
            edges = tuple(float(b) for b in self.bands)
            if list(edges) != sorted(set(edges)):
                raise ConfigError(
                    f"Attribute {self.name!r}: bands must be strictly increasing; got "
                    f"{list(self.bands)} instead."
                )
            object.__setattr__(self, "bands", edges)

    @property
    def group_order(self) -> list[str]:
        """The groups of this attribute in their natural order (``unknown`` last)."""
        if self.kind == "age":
            return [*_age_band_labels(self.bands or (40.0, 60.0)), UNKNOWN]
        if self.kind == "skin_tone":
            top = _SCALES[str(self.scale)]
            names = _ROMAN if self.scale == "fitzpatrick" else [str(i) for i in range(1, 11)]
            if not self.bands:
                return [*names[:top], UNKNOWN]
            return [*_scale_band_labels(self.bands, names[:top]), UNKNOWN]
        if self.kind == "sex":
            return ["female", "male", "other", UNKNOWN]
        return []


def _age_band_labels(edges: Sequence[float]) -> list[str]:
    labels = [f"<{edges[0]:g}"]
    for lo, hi in zip(edges[:-1], edges[1:]):
        labels.append(f"{lo:g}-{hi - 1:g}")
    labels.append(f"{edges[-1]:g}+")
    return labels


def _scale_band_labels(edges: Sequence[float], names: Sequence[str]) -> list[str]:
    cuts = [1, *[int(e) for e in edges], len(names) + 1]
    labels = []
    for lo, hi in zip(cuts[:-1], cuts[1:]):
        labels.append(names[lo - 1] if hi - lo == 1 else f"{names[lo - 1]}-{names[hi - 2]}")
    return labels


@dataclass(frozen=True)
class FindingSpec:
    """One finding of a multi-label dataset: which raw values of a column mean present.

    Parameters
    ----------
    name : str
        The finding's name; a ``multilabel_sigmoid`` model's ``class_names`` are finding
        names. Each image gets ``finding_<name>`` in ``records``: 1 (present), 0 (absent)
        or missing (the table does not say), and metrics of the finding use only the
        images where it is known.
    column : str
        Column of the table holding the raw values.
    positive, negative : sequence of str
        Raw values meaning present / absent. Any other value (blank included) is unknown.
    description : str
        How the finding was derived, shown to reviewers (say so when it is derived from
        another label rather than read off the image by an expert).
    """

    name: str
    column: str
    positive: tuple[str, ...]
    negative: tuple[str, ...]
    description: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "positive", tuple(str(v) for v in self.positive))
        object.__setattr__(self, "negative", tuple(str(v) for v in self.negative))
        if not self.positive or not self.negative:
            raise ConfigError(
                f"Finding {self.name!r} must list raw values for both positive and negative; "
                f"got positive={list(self.positive)}, negative={list(self.negative)} instead.")
        both = sorted(set(self.positive) & set(self.negative))
        if both:
            raise ConfigError(f"Finding {self.name!r}: values {both} are listed as both "
                              "positive and negative.")

    def value(self, raw: str) -> float:
        """1.0 (present), 0.0 (absent) or NaN (unknown) for one raw table value."""
        if raw in self.positive:
            return 1.0
        if raw in self.negative:
            return 0.0
        return float("nan")


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset description: where things are and what the columns mean.

    Parameters
    ----------
    name : str
        Short name, e.g. ``"fitzpatrick17k"``.
    table : str
        CSV file, relative to the dataset root, one row per image.
    image_column : str
        Column with the image path, relative to the dataset root (or absolute).
    label_column : str
        Column with the ground-truth label.
    classes : list of str
        The class names in model-output order. Raw labels are mapped with
        ``label_map`` first, when given.
    label_map : dict, optional
        Raw label value -> class name, e.g. several diagnoses -> ``"not_covid"``.
    patient_column : str, optional
        Column with the patient id; splits and bootstrap intervals resample patients.
    group_column : str, optional
        Column with a grouping used for splits when there is no patient id (e.g.
        near-duplicate clusters).
    mask_column : str, optional
        Column with a segmentation mask path (for segmentation audits).
    split_column : str, optional
        Column saying which images the model was trained on: ``train``, ``val`` or
        ``test`` per row. Performance is then measured on the ``test`` rows
        (instead of a ``split.csv`` beside the model).
    root : str, optional
        Folder holding the table and images, absolute or relative to the TOML file
        (default: the TOML file's own folder). Needed for descriptions kept in the
        dataset registry (``AUDITKIT_DATASET_REGISTRY``) away from their data.
    attributes : list of AttributeSpec
        The patient attributes.
    description, citation, license : str
        Shown to reviewers.
    findings : list of FindingSpec, optional
        For multi-label models: the findings per image (``[[findings]]`` tables).
    image_roots : list of str, optional
        Folders outside the dataset folder that image and mask paths may point into
        (e.g. a hospital's image store). Relative entries are relative to the dataset
        folder. Every other path that resolves outside the dataset folder (``../``,
        absolute paths, symbolic links) is refused.
    image_kind : str, optional
        What the images are: ``"photograph"``, ``"radiograph"``, ``"mri"``, ``"ct"``,
        ``"microscopy"``, ... Photographs (and images of an unstated kind) can show a
        face, a tattoo or a birthmark, so pages show them only when the viewer asks
        (:func:`auditkit.suppression.images_identifiable`).
    """

    name: str
    table: str
    image_column: str
    label_column: str
    classes: tuple[str, ...]
    label_map: Mapping[str, str] | None = None
    patient_column: str | None = None
    group_column: str | None = None
    mask_column: str | None = None
    split_column: str | None = None
    root: str | None = None
    attributes: tuple[AttributeSpec, ...] = ()
    description: str = ""
    citation: str = ""
    license: str = ""
    image_roots: tuple[str, ...] = ()
    image_kind: str | None = None
    findings: tuple[FindingSpec, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "findings", tuple(self.findings))
        object.__setattr__(self, "classes", tuple(self.classes))
        object.__setattr__(self, "image_roots", tuple(str(r) for r in self.image_roots))
        object.__setattr__(self, "attributes", tuple(self.attributes))
        if len(self.classes) < 2:
            raise ConfigError(
                f"Dataset {self.name!r} must list at least two classes; got "
                f"{list(self.classes)} instead."
            )
        if self.label_map:
            unknown = sorted(set(self.label_map.values()) - set(self.classes))
            if unknown:
                raise ConfigError(
                    f"Dataset {self.name!r}: label_map maps to {unknown}, which are not in "
                    f"classes {list(self.classes)}."
                )
        names = [a.name for a in self.attributes]
        if len(names) != len(set(names)):
            raise ConfigError(f"Dataset {self.name!r}: attribute names repeat: {names}.")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DatasetSpec:
        """Build a spec from a parsed TOML/JSON mapping (``[[attributes]]`` tables)."""
        data = dict(data)
        known = {f for f in cls.__dataclass_fields__}
        extra = sorted(set(data) - known)
        if extra:
            raise ConfigError(
                f"Unknown keys in dataset description: {extra}; expected keys among "
                f"{sorted(known)}."
            )
        missing = [k for k in ("name", "table", "image_column", "label_column", "classes")
                   if k not in data]
        if missing:
            raise ConfigError(f"Dataset description lacks required keys {missing}.")
        if "image_roots" in data:
            roots = data["image_roots"]
            if not isinstance(roots, (list, tuple)) or not all(isinstance(r, str) for r in roots):
                raise ConfigError(f"image_roots must be a list of folder paths; got {roots!r} "
                                  "instead.")
            data["image_roots"] = tuple(roots)
        attrs = []
        attr_keys = set(AttributeSpec.__dataclass_fields__)
        for number, raw in enumerate(data.pop("attributes", []), start=1):
            raw = dict(raw)
            where = f"[[attributes]] number {number} ({raw.get('name', 'no name')!r})"
            unknown = sorted(set(raw) - attr_keys)
            lacking = [k for k in ("name", "kind") if k not in raw]
            if unknown or lacking:
                raise ConfigError(
                    f"Dataset description: {where} "
                    + (f"has unknown keys {unknown}" if unknown else f"lacks keys {lacking}")
                    + f"; expected keys among {sorted(attr_keys)} (name and kind required; "
                    "column required except for DICOM-header sex, age and ethnicity).")
            if "bands" in raw:
                raw["bands"] = tuple(raw["bands"])
            raw.setdefault("column", "")
            attrs.append(AttributeSpec(**raw))
        findings = []
        finding_keys = set(FindingSpec.__dataclass_fields__)
        for number, raw in enumerate(data.pop("findings", []), start=1):
            raw = dict(raw)
            unknown = sorted(set(raw) - finding_keys)
            lacking = [k for k in ("name", "column", "positive", "negative") if k not in raw]
            if unknown or lacking:
                raise ConfigError(
                    f"Dataset description: [[findings]] number {number} "
                    f"({raw.get('name', 'no name')!r}) "
                    + (f"has unknown keys {unknown}" if unknown else f"lacks keys {lacking}")
                    + f"; expected keys among {sorted(finding_keys)} (name, column, positive "
                    "and negative required).")
            findings.append(FindingSpec(**raw))
        return cls(**data, attributes=tuple(attrs), findings=tuple(findings))

    @classmethod
    def from_toml(cls, path: str | os.PathLike[str]) -> DatasetSpec:
        """Read a dataset description from a TOML file."""
        path = Path(path)
        try:
            with path.open("rb") as fh:
                data = tomllib.load(fh)
        except FileNotFoundError as exc:
            raise DatasetNotFoundError(f"Dataset description {path} does not exist.") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"Dataset description {path} is not valid TOML: {exc}.") from exc
        return cls.from_dict(data)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready mapping (inverse of :meth:`from_dict`)."""
        out = asdict(self)
        out["classes"] = list(self.classes)
        out["label_map"] = dict(self.label_map) if self.label_map else None
        out["attributes"] = [
            {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(a).items()}
            for a in self.attributes
        ]
        if self.image_roots:
            out["image_roots"] = list(self.image_roots)
        else:  # absent when unused, so the content hash of existing datasets is unchanged
            out.pop("image_roots")
        if self.findings:
            out["findings"] = [{k: (list(v) if isinstance(v, tuple) else v)
                                for k, v in asdict(f).items()} for f in self.findings]
        else:  # absent when unused, so the content hash of existing datasets is unchanged
            out.pop("findings")
        for key in ("split_column", "root", "image_kind"):  # optional; absent when unset
            if out[key] is None:
                del out[key]
        return out

    def allowed_roots(self, base: str | os.PathLike[str]) -> list[Path]:
        """The dataset folder and the declared image roots, resolved."""
        base = Path(base)
        return [base.resolve(), *((base / r).resolve() for r in self.image_roots)]

    def attribute(self, name: str) -> AttributeSpec:
        """The attribute called ``name``."""
        for attr in self.attributes:
            if attr.name == name:
                return attr
        raise ConfigError(
            f"Dataset {self.name!r} has no attribute {name!r}; it has "
            f"{[a.name for a in self.attributes]}."
        )


@dataclass(frozen=True)
class DatasetProblem:
    """One problem found while validating a dataset.

    ``line`` is the line of the table file (the header is line 1), or None for
    problems of the whole table such as a missing column.
    """

    kind: str
    message: str
    line: int | None = None
    column: str | None = None

    def __str__(self) -> str:
        where = f"line {self.line}: " if self.line is not None else ""
        return f"{where}{self.message}"


@dataclass
class Dataset:
    """A validated dataset, ready to audit.

    Attributes
    ----------
    spec : DatasetSpec
    root : Path
        Folder the relative paths are resolved against.
    records : pandas.DataFrame
        One row per valid image: ``image`` (as written in the table), ``key`` (its
        pseudonymous key, the only image name exports carry), ``path``
        (absolute), ``label`` (class name), ``label_index``, ``patient_id`` (or None),
        ``mask`` (or None), ``line`` (line in the table) and one column per attribute
        holding its group (plus ``<name>_years`` for age attributes).
    problems : list of DatasetProblem
        Everything wrong with the rows that were left out (empty if none).
    n_rows_total : int
        Rows in the table before invalid ones were left out.
    content_hash : str
        sha256 over the description, the cleaned table and every image's bytes.
    table_images : frozenset of str, optional
        Every image key of the table, invalid rows included; kept by :meth:`subset`.
        A model's split is checked against it, so a slice of a dataset (or one with
        invalid rows left out) is not mistaken for a dataset the split does not fit.
    """

    spec: DatasetSpec
    root: Path
    records: pd.DataFrame
    problems: list[DatasetProblem] = field(default_factory=list)
    n_rows_total: int = 0
    content_hash: str = ""
    table_images: frozenset[str] | None = None

    def __len__(self) -> int:
        return len(self.records)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def attribute_names(self) -> list[str]:
        return [a.name for a in self.spec.attributes]

    @property
    def has_patients(self) -> bool:
        return bool(self.records["patient_id"].notna().any())

    def group_counts(self) -> dict[str, dict[str, int]]:
        """Images per group for every attribute, groups in their natural order."""
        out: dict[str, dict[str, int]] = {}
        for attr in self.spec.attributes:
            counts = self.records[attr.name].value_counts()
            order = [g for g in attr.group_order if g in counts.index]
            order += sorted(g for g in counts.index if g not in order)
            out[attr.name] = {g: int(counts[g]) for g in order}
        return out

    def patient_counts(self) -> dict[str, dict[str, int]] | None:
        """Patients per group for every attribute (and per class under ``"label"``).

        None when the dataset has no patient ids.
        """
        if not self.has_patients:
            return None
        rec = self.records[self.records["patient_id"].notna()]
        out = {a.name: {str(g): int(v) for g, v in rec.groupby(a.name)["patient_id"]
                        .nunique().items()} for a in self.spec.attributes}
        out["label"] = {str(g): int(v)
                        for g, v in rec.groupby("label")["patient_id"].nunique().items()}
        return out

    def summary(self) -> dict[str, Any]:
        """Size, classes, attributes and group counts, for pages and ``audit.json``."""
        return {
            "name": self.name,
            "root": str(self.root),
            "hash": self.content_hash,
            "n_images": len(self),
            "n_rows_total": self.n_rows_total,
            "n_invalid_rows": self.n_rows_total - len(self),
            "n_patients": int(self.records["patient_id"].nunique()) if self.has_patients else None,
            "classes": list(self.spec.classes),
            "class_counts": {c: int((self.records["label"] == c).sum()) for c in self.spec.classes},
            "attributes": {a.name: a.kind for a in self.spec.attributes},
            "group_counts": self.group_counts(),
        }

    def subset(self, mask: np.ndarray | pd.Series) -> Dataset:
        """A dataset holding the rows where ``mask`` is true (same hash lineage)."""
        records = self.records[np.asarray(mask, dtype=bool)].reset_index(drop=True)
        digest = hashlib.sha256(self.content_hash.encode())
        digest.update(pd.util.hash_pandas_object(records["image"], index=False).values.tobytes())
        return Dataset(
            spec=self.spec,
            root=self.root,
            records=records,
            problems=list(self.problems),
            n_rows_total=self.n_rows_total,
            content_hash=digest.hexdigest(),
            table_images=self.table_images,
        )


# --------------------------------------------------------------------------- images


def _is_dicom(path: Path, head: bytes | None = None) -> bool:
    if path.suffix.lower() in (".dcm", ".dicom"):
        return True
    if head is None:
        with path.open("rb") as fh:
            head = fh.read(132)
    return len(head) >= 132 and head[128:132] == b"DICM"


#: How a model's inputs were scaled to [0, 1]; declared in the model card (docs/models.md).
SCALING_METHODS = ("bit_depth", "range", "window", "dicom_window", "minmax")


@dataclass(frozen=True)
class PixelScaling:
    """How stored pixel values become the model's [0, 1] inputs (declared in the card).

    DICOM pixels first go through the modality LUT (Rescale Slope/Intercept or a
    Modality LUT Sequence) with pydicom's :func:`~pydicom.pixels.apply_modality_lut`;
    then, by ``method``:

    ``bit_depth`` (default)
        The full range the stored bits can hold, through the modality LUT:
        ``0..2^BitsStored-1`` for unsigned DICOM, ``-2^(BitsStored-1)..2^(BitsStored-1)-1``
        for signed, times slope plus intercept; ``0..255`` for 8-bit PNG/JPEG and
        ``0..65535`` for 16-bit PNG. For 8-bit PNG/JPEG this is ``value / 255``.
    ``range``
        A fixed range ``[low, high]`` in modality units (e.g. Hounsfield units),
        clipped: ``(v - low) / (high - low)``.
    ``window``
        A stated window ``[center, width]``, applied with pydicom's
        :func:`~pydicom.pixels.apply_windowing` (DICOM PS3.3 C.11.2.1.2, linear),
        its output range mapped to [0, 1].
    ``dicom_window``
        The file's own VOI LUT or first Window Center/Width, applied with
        :func:`~pydicom.pixels.apply_voi_lut`, its output range mapped to [0, 1].
        DICOM only; a file without one is an error.
    ``minmax``
        Each image stretched from its own minimum to its own maximum. Only when the
        model was trained that way: it hides absolute intensity from the model.

    MONOCHROME1 images (bright = low values) are inverted after scaling, so every
    image reaches the model as MONOCHROME2. From a multi-frame file one frame is
    used: ``frame`` is ``"middle"`` (default) or a 0-based index.
    """

    method: str = "bit_depth"
    range: tuple[float, float] | None = None
    window: tuple[float, float] | None = None
    frame: str | int = "middle"

    def __post_init__(self) -> None:
        if self.method not in SCALING_METHODS:
            raise ConfigError(f"input_scaling.method must be one of {list(SCALING_METHODS)}; "
                              f"got {self.method!r} instead.")
        if self.method == "range":
            if self.range is None or len(self.range) != 2 or not self.range[0] < self.range[1]:
                found = list(self.range) if self.range is not None else None
                raise ConfigError("input_scaling.range must be [low, high] with low < high; "
                                  f"got {found!r} instead.")
            object.__setattr__(self, "range", (float(self.range[0]), float(self.range[1])))
        elif self.range is not None:
            raise ConfigError("input_scaling.range must be absent unless method is 'range'; got "
                              f"{list(self.range)} with method {self.method!r} instead.")
        if self.method == "window":
            if self.window is None or len(self.window) != 2 or not self.window[1] >= 1:
                found = list(self.window) if self.window is not None else None
                raise ConfigError("input_scaling.window must be [center, width] with width >= 1;"
                                  f" got {found!r} instead.")
            object.__setattr__(self, "window", (float(self.window[0]), float(self.window[1])))
        elif self.window is not None:
            raise ConfigError("input_scaling.window must be absent unless method is 'window'; "
                              f"got {list(self.window)} with method {self.method!r} instead.")
        if not (self.frame == "middle" or (isinstance(self.frame, int) and self.frame >= 0)):
            raise ConfigError(f"input_scaling.frame must be 'middle' or an index >= 0; got "
                              f"{self.frame!r} instead.")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> PixelScaling:
        """From the card's ``input_scaling`` object (None gives the default)."""
        if not data:
            return cls()
        data = dict(data)
        for key in ("range", "window"):
            if data.get(key) is not None:
                data[key] = tuple(data[key])
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"method": self.method}
        if self.range is not None:
            out["range"] = list(self.range)
        if self.window is not None:
            out["window"] = list(self.window)
        if self.frame != "middle":
            out["frame"] = self.frame
        return out

    def describe(self) -> str:
        """One plain sentence, stored in ``audit.json`` beside the declaration."""
        how = {
            "bit_depth": "scaled by the full range of the stored bits (e.g. 0 to 4095 for "
                         "12-bit, 0 to 255 for 8-bit)",
            "range": f"scaled from the fixed range {self.range} and clipped",
            "window": f"windowed at center/width {self.window}",
            "dicom_window": "windowed with each DICOM file's own VOI LUT or window",
            "minmax": "stretched from each image's own minimum to its maximum",
        }[self.method]
        return (f"Pixels (after the DICOM modality LUT) {how}, to [0, 1]; MONOCHROME1 "
                f"inverted; the {self.frame} frame of multi-frame files.")


def _modality_range(ds: Any) -> tuple[float, float]:
    """Range of values the stored bits can hold, after the modality LUT.

    Computed as pydicom's :func:`~pydicom.pixels.apply_windowing` computes its output
    range (DICOM PS3.3 C.11.2.1.2), so a window's output maps onto [0, 1] exactly.
    """
    if ds.get("ModalityLUTSequence"):
        return 0.0, float(2 ** int(ds.ModalityLUTSequence[0].LUTDescriptor[2]) - 1)
    bits = int(ds.BitsStored)
    if int(ds.get("PixelRepresentation", 0)) == 0:
        lo, hi = 0.0, float(2**bits - 1)
    else:
        lo, hi = float(-(2 ** (bits - 1))), float(2 ** (bits - 1) - 1)
    slope, intercept = ds.get("RescaleSlope"), ds.get("RescaleIntercept")
    if slope is not None and intercept is not None:
        lo, hi = lo * float(slope) + float(intercept), hi * float(slope) + float(intercept)
    return (lo, hi) if lo <= hi else (hi, lo)


def _to_unit(arr: np.ndarray, lo: float, hi: float) -> np.ndarray:
    if hi <= lo:
        return np.zeros(arr.shape, dtype=np.float64)
    return np.clip((np.asarray(arr, dtype=np.float64) - lo) / (hi - lo), 0.0, 1.0)


def _minmax(arr: np.ndarray) -> np.ndarray:
    arr = np.asarray(arr, dtype=np.float64)
    return _to_unit(arr, float(arr.min()), float(arr.max()))


def _stated_window(arr: np.ndarray, ds: Any, window: tuple[float, float]) -> np.ndarray:
    """A stated window through pydicom's own windowing, output range mapped to [0, 1]."""
    from pydicom.dataset import Dataset as DicomDataset
    from pydicom.pixels import apply_windowing

    w = DicomDataset()
    for keyword in ("BitsStored", "PixelRepresentation", "RescaleSlope", "RescaleIntercept",
                    "ModalityLUTSequence"):
        if keyword in ds:
            w[keyword] = ds[keyword]
    w.WindowCenter, w.WindowWidth = window
    w.VOILUTFunction = "LINEAR"
    w.PhotometricInterpretation = "MONOCHROME2"  # MONOCHROME1 is inverted by the caller
    return _to_unit(apply_windowing(np.asarray(arr, dtype=np.float64), w), *_modality_range(w))


def _select_frame(arr: np.ndarray, ds: Any, frame: str | int) -> np.ndarray:
    n_frames = int(ds.get("NumberOfFrames", 1) or 1)
    if n_frames <= 1:
        return arr
    index = n_frames // 2 if frame == "middle" else int(frame)
    if index >= n_frames:
        raise ValueError(f"the card asks for frame {index} but the file has {n_frames} frames")
    return arr[index]


def _dicom_pixels(ds: Any, scaling: PixelScaling) -> np.ndarray:
    """A DICOM dataset's pixels as float64 in [0, 1], ``(H, W)`` or ``(H, W, 3)``."""
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    arr = _select_frame(ds.pixel_array, ds, scaling.frame)  # signed/bit depth by pydicom
    colour = int(ds.get("SamplesPerPixel", 1)) > 1
    if not colour:
        arr = apply_modality_lut(arr, ds)
    if scaling.method == "minmax":
        out = _minmax(arr)
    elif scaling.method == "range":
        out = _to_unit(arr, *scaling.range)  # type: ignore[misc]
    elif scaling.method == "window":
        out = _stated_window(arr, ds, scaling.window)  # type: ignore[arg-type]
    elif scaling.method == "dicom_window":
        if not (ds.get("VOILUTSequence") or "WindowCenter" in ds):
            raise ValueError("the card declares input_scaling 'dicom_window' but the file has "
                             "no VOI LUT Sequence and no Window Center/Width")
        voi = apply_voi_lut(np.asarray(arr, dtype=np.float64), ds, index=0)
        if ds.get("VOILUTSequence"):
            lo, hi = 0.0, float(2 ** int(ds.VOILUTSequence[0].LUTDescriptor[2]) - 1)
        else:
            lo, hi = _modality_range(ds)
        out = _to_unit(voi, lo, hi)
    else:  # bit_depth
        out = _to_unit(arr, *_modality_range(ds))
    if getattr(ds, "PhotometricInterpretation", "") == "MONOCHROME1":
        out = 1.0 - out
    return out


#: Default largest image accepted, in pixels (width × height × frames): 8192 × 8192.
DEFAULT_MAX_PIXELS = 8192 * 8192
#: Largest image file read, in bytes (a file larger than this is refused unread).
MAX_FILE_BYTES = 1 << 30
#: Memory the image checks of :func:`load_dataset` may hold at once (decoded pixels).
VALIDATION_MEMORY_BYTES = 768 << 20


class ImageTooLargeError(DataError):
    """An image is larger than the pixel limit; it was refused before decoding."""


def max_image_pixels() -> int:
    """``$AUDITKIT_MAX_PIXELS`` or :data:`DEFAULT_MAX_PIXELS` (8192 × 8192)."""
    raw = os.environ.get("AUDITKIT_MAX_PIXELS", "").strip()
    if not raw:
        return DEFAULT_MAX_PIXELS
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise ConfigError(f"AUDITKIT_MAX_PIXELS must be a positive whole number of pixels; got "
                          f"{raw!r} instead.")
    return value


def resolve_confined(entry: str, base: str | os.PathLike[str],
                     allowed: Sequence[Path] | None = None) -> Path | None:
    """The file a table entry names, or None when it is missing or not allowed.

    The entry is resolved first (``..``, symbolic links) and then checked: it must lie
    inside one of ``allowed`` (default: ``base`` resolved) and be a regular file. The
    two failures are deliberately not told apart, so an error message cannot be used to
    probe which files exist elsewhere on the computer.
    """
    if not entry or "\0" in entry:
        return None
    base = Path(base)
    roots = list(allowed) if allowed is not None else [base.resolve()]
    raw = Path(entry)
    try:
        resolved = (raw if raw.is_absolute() else base / raw).resolve()
    except (OSError, RuntimeError, ValueError):  # symlink loops, odd names
        return None
    if not any(resolved.is_relative_to(r) for r in roots):
        return None
    try:
        return resolved if resolved.is_file() else None
    except OSError:
        return None


def _pixel_error(name: str, width: int, height: int, frames: int, limit: int) -> ImageTooLargeError:
    size = f"{width} × {height}" + (f" × {frames} frames" if frames > 1 else "")
    return ImageTooLargeError(
        f"image file {name} is {size} = {width * height * frames:,} pixels; expected at most "
        f"{limit:,} pixels (set AUDITKIT_MAX_PIXELS to allow larger images). It was not "
        "decoded.")


def _dicom_geometry(ds: Any) -> tuple[int, int, int, int]:
    """``(width, height, frames, bytes per pixel)`` from a DICOM header (no pixel data read)."""
    def number(tag: str, default: int) -> int:
        try:
            value = int(ds.get(tag, default) or default)
        except (TypeError, ValueError):
            return default
        return max(value, 0)

    width, height = number("Columns", 0), number("Rows", 0)
    frames = max(number("NumberOfFrames", 1), 1)
    per_pixel = max(number("BitsAllocated", 8), 8) // 8 * max(number("SamplesPerPixel", 1), 1)
    return width, height, frames, per_pixel


def _png_jpeg_size(data: bytes) -> tuple[int, int] | None:
    """``(width, height)`` from a PNG IHDR or a JPEG SOF marker; None for other formats.

    Hand-written on purpose: PIL's own header reader runs its decompression-bomb guard
    (another limit, and a warning rather than an error below twice that limit) before a
    caller can check the size, so our limit and our message would never be reached.
    """
    if data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR" and len(data) >= 24:
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if data[:2] != b"\xff\xd8":
        return None
    i = 2
    while i + 9 < len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # no length field
            i += 2
            continue
        length = int.from_bytes(data[i + 2:i + 4], "big")
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # start of frame
            return (int.from_bytes(data[i + 7:i + 9], "big"),
                    int.from_bytes(data[i + 5:i + 7], "big"))
        if length < 2:
            return None
        i += 2 + length
    return None


def image_geometry(path: str | os.PathLike[str], data: bytes) -> tuple[int, int, int, int]:
    """``(width, height, frames, bytes per decoded pixel)`` read from the header only."""
    path = Path(path)
    if _is_dicom(path, data[:132]):
        import pydicom

        ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
        return _dicom_geometry(ds)
    size = _png_jpeg_size(data)
    if size is not None:
        return size[0], size[1], 1, 4  # at most RGBA 8-bit, or one 32-bit channel

    with _open_pil(path, data, None) as img:
        return img.width, img.height, 1, max(len(img.getbands()), 1) * (
            1 if img.mode in ("L", "P", "RGB", "RGBA", "1", "LA", "CMYK") else 4)


def check_pixel_limit(path: str | os.PathLike[str], data: bytes, *,
                      max_pixels: int | None = None) -> None:
    """Raise :class:`ImageTooLargeError` when the header claims more than the pixel limit.

    For callers that decode an image themselves; reads the header only.
    """
    limit = int(max_pixels or max_image_pixels())
    width, height, frames, _ = image_geometry(path, data)
    if width * height * frames > limit:
        raise _pixel_error(Path(path).name, width, height, frames, limit)


def _open_pil(path: Path, data: bytes, limit: int | None) -> Any:
    """``PIL.Image.open`` with its decompression-bomb guard turned into our error."""
    from PIL import Image

    try:
        img = Image.open(io.BytesIO(data))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooLargeError(
            f"image file {path.name} is larger than {limit or max_image_pixels():,} pixels "
            f"({exc}); it was not decoded (set AUDITKIT_MAX_PIXELS to allow larger images)."
        ) from exc
    return img


def _read_limited(path: Path, data: bytes | None) -> bytes:
    """The file's bytes (``data`` when given); files over :data:`MAX_FILE_BYTES` are refused."""
    if data is not None:
        return data
    if path.stat().st_size > MAX_FILE_BYTES:
        raise ImageTooLargeError(f"image file {path.name} is {path.stat().st_size:,} bytes; "
                                 f"expected at most {MAX_FILE_BYTES:,}. It was not read.")
    return path.read_bytes()


def _raster_pixels(img: Any, scaling: PixelScaling, name: str) -> np.ndarray:
    """A PNG/JPEG image's pixels as float64 in [0, 1] under the same declaration."""
    if img.mode in _SIXTEEN_BIT_MODES:
        arr, bits = np.asarray(img, dtype=np.float64), 16
    elif img.mode in ("L", "RGB"):
        arr, bits = np.asarray(img, dtype=np.float64), 8
    else:
        arr, bits = np.asarray(img.convert("RGB"), dtype=np.float64), 8
    top = float(2**bits - 1)
    if scaling.method == "minmax":
        return _minmax(arr)
    if scaling.method == "range":
        return _to_unit(arr, *scaling.range)  # type: ignore[misc]
    if scaling.method == "window":
        from pydicom.dataset import Dataset as DicomDataset

        header = DicomDataset()
        header.BitsStored, header.PixelRepresentation = bits, 0
        return _stated_window(arr, header, scaling.window)  # type: ignore[arg-type]
    if scaling.method == "dicom_window":
        raise ValueError(f"the card declares input_scaling 'dicom_window' but {name} is not "
                         "a DICOM file (it has no window to apply)")
    return _to_unit(arr, 0.0, top)


def read_pixels(path: str | os.PathLike[str], scaling: PixelScaling | None = None,
                data: bytes | None = None, *, max_pixels: int | None = None) -> np.ndarray:
    """Decode an image and scale it to [0, 1] as the model card declares.

    Parameters
    ----------
    path : path
        PNG, JPEG (8-bit; 16-bit PNG) or DICOM (up to 16 bits, signed or unsigned,
        MONOCHROME1/2 or RGB, single or multi-frame).
    scaling : PixelScaling, optional
        Default ``PixelScaling()`` (``bit_depth``).
    data : bytes, optional
        The file's bytes, when already read.
    max_pixels : int, optional
        Largest image accepted (default :func:`max_image_pixels`); the size is read from
        the header and checked before any pixel is decoded, so a small file that claims a
        huge image (a decompression bomb) costs no memory.

    Returns
    -------
    numpy.ndarray
        float64 in [0, 1], ``(H, W)`` for grayscale or ``(H, W, 3)`` for colour.

    Raises
    ------
    ImageTooLargeError
        When the header claims more than ``max_pixels`` pixels (or the file is over
        :data:`MAX_FILE_BYTES`).
    """
    scaling = scaling or PixelScaling()
    path = Path(path)
    limit = int(max_pixels or max_image_pixels())
    data = _read_limited(path, data)
    if _is_dicom(path, data[:132]):
        import pydicom

        ds = pydicom.dcmread(io.BytesIO(data))
        width, height, frames, _ = _dicom_geometry(ds)
        if width * height * frames > limit:
            raise _pixel_error(path.name, width, height, frames, limit)
        return _dicom_pixels(ds, scaling)
    size = _png_jpeg_size(data)
    if size is not None and size[0] * size[1] > limit:
        raise _pixel_error(path.name, size[0], size[1], 1, limit)
    with _open_pil(path, data, limit) as img:
        if img.width * img.height > limit:
            raise _pixel_error(path.name, img.width, img.height, 1, limit)
        img.load()
        return _raster_pixels(img, scaling, path.name)


def read_image(path: str | os.PathLike[str], data: bytes | None = None, *,
               max_pixels: int | None = None) -> np.ndarray:
    """Decode a PNG, JPEG or DICOM image for display (the default ``bit_depth`` scaling).

    Images over the pixel limit are refused unread (see :func:`read_pixels`).

    Returns
    -------
    numpy.ndarray
        ``uint8`` array, ``(H, W)`` for grayscale or ``(H, W, 3)`` for colour. 8-bit
        PNG/JPEG pixels are returned as stored; DICOM and 16-bit PNG pixels are
        scaled by :func:`read_pixels` with the default declaration, then to 0-255.
    """

    path = Path(path)
    data = _read_limited(path, data)
    if not _is_dicom(path, data[:132]):
        limit = int(max_pixels or max_image_pixels())
        size = _png_jpeg_size(data)
        if size is not None and size[0] * size[1] > limit:
            raise _pixel_error(path.name, size[0], size[1], 1, limit)
        with _open_pil(path, data, limit) as img:
            if img.width * img.height > limit:
                raise _pixel_error(path.name, img.width, img.height, 1, limit)
            img.load()
            if img.mode in ("L", "RGB"):
                return np.asarray(img)
            if img.mode not in _SIXTEEN_BIT_MODES:
                return np.asarray(img.convert("RGB"))
    return (read_pixels(path, None, data, max_pixels=max_pixels) * 255.0).round().astype(np.uint8)


class _MemoryBudget:
    """Bytes of decoded pixels the validation threads may hold together.

    A thread asks for its image's estimated size before decoding and waits while the
    others hold too much; an image larger than the whole budget runs alone. So memory
    stays near ``max(budget, one image)`` whatever the number of threads.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self.cond = threading.Condition()

    def acquire(self, amount: int) -> int:
        with self.cond:
            while self.used > 0 and self.used + amount > self.limit:
                self.cond.wait()
            self.used += amount
        return amount

    def release(self, amount: int) -> None:
        with self.cond:
            self.used -= amount
            self.cond.notify_all()


def _read_dicom_header(path: Path, data: bytes | None = None) -> dict[str, str]:
    import pydicom

    source: Any = io.BytesIO(data) if data is not None else str(path)
    ds = pydicom.dcmread(source, stop_before_pixels=True)
    return {kind: str(ds.get(tag, "") or "") for kind, tag in _DICOM_TAGS.items()}


# --------------------------------------------------------------------------- attributes


def _parse_age(raw: str) -> float | None:
    """Years from ``"54"``, ``"54.5"`` or a DICOM age string ``"054Y"``/``"006M"``."""
    text = raw.strip().upper()
    if len(text) == 4 and text[:3].isdigit() and text[3] in "DWMY":
        return int(text[:3]) / {"D": 365.25, "W": 52.18, "M": 12.0, "Y": 1.0}[text[3]]
    value = float(text)  # ValueError for anything else
    return value


def _band(value: float, edges: Sequence[float], labels: Sequence[str]) -> str:
    idx = int(np.searchsorted(np.asarray(edges), value, side="right"))
    return labels[idx]


def _attribute_group(attr: AttributeSpec, raw: str) -> tuple[str, float | None]:
    """(group label, numeric value) for one raw value; raises ValueError if invalid."""
    if raw == "":
        return UNKNOWN, None
    if attr.kind == "sex":
        key = raw.strip().lower()
        if key not in _SEX_VALUES:
            raise ValueError(f"expected F, M or O (or female/male/other); got {raw!r}")
        return _SEX_VALUES[key], None
    if attr.kind == "age":
        try:
            years = _parse_age(raw)
        except ValueError:
            raise ValueError(
                f"expected an age in years or a DICOM age like 045Y; got {raw!r}") from None
        if years is None or not 0 <= years <= 130:
            raise ValueError(f"expected an age between 0 and 130 years; got {raw!r}")
        edges = attr.bands or (40.0, 60.0)
        return _band(years, edges, _age_band_labels(edges)), years
    if attr.kind == "skin_tone":
        top = _SCALES[str(attr.scale)]
        text = raw.strip().upper()
        names = _ROMAN if attr.scale == "fitzpatrick" else [str(i) for i in range(1, 11)]
        if text in names:
            level = names.index(text) + 1
        else:
            try:
                as_float = float(text)
            except ValueError:
                as_float = float("nan")
            if not as_float.is_integer() or not 1 <= as_float <= top:
                raise ValueError(
                    f"expected a {attr.scale} skin type 1-{top}"
                    + (" or I-VI" if attr.scale == "fitzpatrick" else "")
                    + f"; got {raw!r}"
                )
            level = int(as_float)
        if not attr.bands:
            return names[level - 1], float(level)
        return _band(level, attr.bands, _scale_band_labels(attr.bands, names[:top])), float(level)
    return raw.strip(), None


# --------------------------------------------------------------------------- loading


def dataset_search_paths() -> list[Path]:
    """Folders searched, in order, for the built-in datasets' data.

    1. ``$AUDITKIT_DATA_ROOT`` then ``$AUDITKIT_DATASETS`` (each ``os.pathsep``-separated;
       the two names mean the same, the first is the dashboard's older name),
    2. ``shared/datasets`` beside the project checkout,
    3. ``shared/datasets`` beside the current directory.
    """
    paths = [Path(p) for var in ("AUDITKIT_DATA_ROOT", "AUDITKIT_DATASETS")
             for p in os.environ.get(var, "").split(os.pathsep) if p]
    project = Path(__file__).resolve().parents[1]
    paths += [project.parent / "shared" / "datasets", Path.cwd().parent / "shared" / "datasets"]
    seen: list[Path] = []
    for p in paths:
        if p not in seen:
            seen.append(p)
    return seen


def builtin_dataset_names() -> list[str]:
    """Datasets that ship with a ready-made description."""
    return sorted(p.stem for p in _BUILTIN_DIR.glob("*.toml"))


def builtin_spec(name: str) -> DatasetSpec:
    """The ready-made description of a built-in dataset (no data needed)."""
    if name not in builtin_dataset_names():
        raise DatasetNotFoundError(
            f"Unknown dataset {name!r}: expected a built-in name "
            f"({', '.join(builtin_dataset_names())})."
        )
    return DatasetSpec.from_toml(_BUILTIN_DIR / f"{name}.toml")


# --------------------------------------------------------------------------- dataset registry


def dataset_registry_paths() -> list[Path]:
    """Folders of the user's dataset descriptions.

    ``$AUDITKIT_DATASET_REGISTRY``, ``os.pathsep``-separated (``:`` on Linux); when it
    is not set, ``./auditkit-datasets`` (beside ``./audits``), used only if it exists. Every
    ``*.toml`` in them is a dataset description (docs/datasets.md) whose ``root`` says
    where its table and images are.
    """
    env = os.environ.get("AUDITKIT_DATASET_REGISTRY")
    if env is None:
        default = Path("auditkit-datasets")
        return [default] if default.is_dir() else []
    return [Path(p) for p in env.split(os.pathsep) if p]


def registered_datasets() -> dict[str, Path]:
    """``name -> description file`` for every dataset in the dataset registry.

    Raises
    ------
    DatasetNotFoundError
        When a registry folder does not exist.
    ConfigError
        When a description does not parse (naming the file), or two descriptions, or a
        description and a built-in dataset, share a name. Nothing is skipped silently.
    """
    found: dict[str, Path] = {}
    builtins = set(builtin_dataset_names())
    for folder in dataset_registry_paths():
        if not folder.is_dir():
            raise DatasetNotFoundError(
                f"Dataset registry {folder} (AUDITKIT_DATASET_REGISTRY) does not exist; expected "
                "a folder of dataset descriptions (*.toml).")
        for path in sorted(folder.glob("*.toml")):
            try:
                spec = DatasetSpec.from_toml(path)
            except ConfigError as exc:
                raise ConfigError(f"{path}: {exc}") from exc
            clash = found.get(spec.name) or (spec.name if spec.name in builtins else None)
            if clash:
                raise ConfigError(
                    f"{path}: dataset name {spec.name!r} is already taken by "
                    f"{'the built-in dataset' if spec.name in builtins else clash}; expected a "
                    "unique name.")
            found[spec.name] = path
    return found


def dataset_names() -> list[str]:
    """Every dataset that can be picked by name: the built-in ones, then the registry's."""
    return builtin_dataset_names() + sorted(registered_datasets())


def dataset_spec(name: str) -> DatasetSpec:
    """The description of a built-in or registered dataset, by name (no data needed)."""
    if name in builtin_dataset_names():
        return builtin_spec(name)
    registered = registered_datasets()
    if name in registered:
        return DatasetSpec.from_toml(registered[name])
    raise DatasetNotFoundError(
        f"Unknown dataset {name!r}: expected one of {dataset_names()} (built-in, or "
        "registered in AUDITKIT_DATASET_REGISTRY; see docs/datasets.md).")


def _described(toml: Path) -> tuple[DatasetSpec, Path]:
    spec = DatasetSpec.from_toml(toml)
    root = toml.parent
    if spec.root:
        root = Path(spec.root) if os.path.isabs(spec.root) else toml.parent / spec.root
    return spec, root


def find_dataset(name_or_path: str | os.PathLike[str], *, data_root: str | os.PathLike[str] | None
                 = None) -> tuple[DatasetSpec, Path]:
    """Resolve a dataset name or path to its description and root folder.

    Parameters
    ----------
    name_or_path : str or path
        A built-in name (``fitzpatrick17k``, ``covid_cxr``, ``lgg_mri``), the name of
        a dataset in the registry (:func:`registered_datasets`), a TOML description
        file, or a folder holding ``auditkit.toml`` or named like a built-in dataset.
    data_root : path, optional
        Folder holding the built-in datasets, searched before the defaults.

    Raises
    ------
    DatasetNotFoundError
        With the places looked in and what to do.
    """
    text = str(name_or_path)
    path = Path(text)
    if path.suffix == ".toml":
        return _described(path)
    if path.is_dir() and (path / "auditkit.toml").is_file():
        return _described(path / "auditkit.toml")
    name = path.name if path.is_dir() else text
    # a built-in name never depends on the registry (a broken registry file cannot hide it)
    registered = ({} if path.is_dir() or name in builtin_dataset_names()
                  else registered_datasets())
    if name in registered:
        return _described(registered[name])
    if name not in builtin_dataset_names():
        raise DatasetNotFoundError(
            f"Unknown dataset {text!r}: expected a built-in name ({', '.join(builtin_dataset_names())}), "
            "a dataset registered in AUDITKIT_DATASET_REGISTRY"
            + (f" ({', '.join(sorted(registered))})" if registered else "")
            + ", a .toml dataset description, or a folder holding auditkit.toml "
            "(see docs/datasets.md)."
        )
    spec = DatasetSpec.from_toml(_BUILTIN_DIR / f"{name}.toml")
    # a built-in description may read another built-in's folder (``root = "covid_cxr"``:
    # the same images described differently, e.g. as findings)
    folder = spec.root or name
    if path.is_dir():
        candidates = [path]
    else:
        roots = ([Path(data_root)] if data_root else []) + dataset_search_paths()
        candidates = [r / folder for r in roots]
    for cand in candidates:
        if (cand / spec.table).is_file():
            return spec, cand
    looked = "\n  ".join(str(c) for c in candidates)
    raise DatasetNotFoundError(
        f"Dataset {name!r} was not found. Looked for {spec.table} in:\n  {looked}\n"
        f"To fix: put the {name} folder (with {spec.table} and its images) in one of those "
        f"places, or pass --data-root DIR (the folder that holds {name}/), or set "
        f"AUDITKIT_DATASETS=DIR. The folder's SOURCE.md says where the data comes from."
    )


def _as_text(value: Any) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    text = str(value).strip()
    return "" if text.lower() in ("nan", "none") else text


def load_dataset(
    dataset: str | os.PathLike[str] | DatasetSpec,
    *,
    root: str | os.PathLike[str] | None = None,
    data_root: str | os.PathLike[str] | None = None,
    on_invalid: str = "raise",
    check_images: bool = True,
    progress: ProgressFn | None = None,
    key_secret: bytes | None = None,
) -> Dataset:
    """Load and validate a dataset.

    Every row is checked: the image exists and decodes, the label is known, the
    patient attributes have valid values. All problems are collected before anything
    is decided, so the user sees them at once.

    Parameters
    ----------
    dataset : str, path or DatasetSpec
        A name or path for :func:`find_dataset`, or a spec (then ``root`` is needed).
    root : path, optional
        Folder the spec's relative paths are resolved against.
    data_root : path, optional
        Where to look for built-in datasets first.
    on_invalid : {"raise", "drop"}
        ``"raise"``: any problem raises :class:`DataError` listing all of them.
        ``"drop"``: go on with the valid rows; the problems stay in ``.problems``.
        Missing columns and an empty result always raise.
    check_images : bool
        Decode every image (and hash its bytes). Turn off only for a quick look at
        the table; the content hash then covers the table alone.
    progress : callable, optional
        ``progress(done, total, message)``.
    key_secret : bytes, optional
        Secret of the pseudonymous image keys (``records["key"]``); default this
        installation's (:func:`auditkit._local.installation_secret`).

    Image and mask paths are resolved (``..``, symbolic links) and must lie inside the
    dataset folder or an ``image_roots`` folder of the description; others are reported
    as "missing or not allowed", the same words as a missing file. Images over the pixel
    limit (:func:`max_image_pixels`) are refused from their header, before decoding.

    Returns
    -------
    Dataset
    """
    if on_invalid not in ("raise", "drop"):
        raise ConfigError(f"on_invalid must be 'raise' or 'drop'; got {on_invalid!r} instead.")
    if isinstance(dataset, DatasetSpec):
        if root is None:
            raise ConfigError("load_dataset needs root= when given a DatasetSpec.")
        spec, base = dataset, Path(root)
    else:
        spec, base = find_dataset(dataset, data_root=data_root)
        if root is not None:
            base = Path(root)
    table_path = base / spec.table
    if resolve_confined(spec.table, base) is None:
        raise DatasetNotFoundError(
            f"Dataset table {spec.table!r} is missing or not allowed: expected a file inside "
            f"the dataset folder {base}.")
    try:
        table = pd.read_csv(table_path, dtype=str, keep_default_na=False)
    except FileNotFoundError as exc:
        raise DatasetNotFoundError(f"Dataset table {table_path} does not exist.") from exc
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise DataError(f"Dataset table {table_path} is not a readable CSV file: {exc}.") from exc

    problems: list[DatasetProblem] = []
    required = [spec.image_column, spec.label_column]
    required += [c for c in (spec.patient_column, spec.group_column, spec.mask_column,
                             spec.split_column) if c]
    required += [f.column for f in spec.findings if f.column not in required]
    for col in required:
        if col not in table.columns:
            problems.append(DatasetProblem(
                "missing_column",
                f"column {col!r} named in the description is not in {spec.table}; "
                f"found columns {list(table.columns)}",
                column=col,
            ))
    dicom_only = [a for a in spec.attributes if a.column not in table.columns]
    for attr in dicom_only:
        if attr.kind not in _DICOM_TAGS:
            problems.append(DatasetProblem(
                "missing_column",
                f"attribute {attr.name!r} reads column {attr.column!r}, which is not in "
                f"{spec.table}; found columns {list(table.columns)}",
                column=attr.column,
            ))
    if problems:
        raise DataError(_problem_message(spec, problems, len(table)), problems)

    n = len(table)
    if n == 0:
        raise DataError(f"Dataset table {table_path} has no rows; expected one row per image.")
    lines = np.arange(n) + 2
    bad = np.zeros(n, dtype=bool)

    def flag(i: int, kind: str, message: str, column: str | None) -> None:
        bad[i] = True
        problems.append(DatasetProblem(kind, message, line=int(lines[i]), column=column))

    # images: confined to the allowed folders, existence, size, decoding, content hash
    allowed = spec.allowed_roots(base)
    where = "the dataset folder" + (" or its image_roots" if spec.image_roots else "")
    paths: list[Path] = []
    for i, rel in enumerate(table[spec.image_column]):
        rel = _as_text(rel)
        resolved = resolve_confined(rel, base, allowed)
        paths.append(resolved if resolved is not None else base / rel)
        if not rel:
            flag(i, "missing_image", "the image path is empty", spec.image_column)
        elif resolved is None:
            # one message for "does not exist" and "not allowed": no existence oracle
            flag(i, "missing_image", f"image file {rel!r} is missing or not allowed (images "
                 f"must be files inside {where})", spec.image_column)
    file_digests = [""] * n
    dicom_headers: dict[int, dict[str, str]] = {}
    wants_header = bool(dicom_only) or any(a.kind in _DICOM_TAGS for a in spec.attributes)
    limit = max_image_pixels()
    budget = _MemoryBudget(VALIDATION_MEMORY_BYTES)

    def check(i: int) -> tuple[int, str, str | None, str, dict[str, str] | None]:
        p = paths[i]
        name = _as_text(table[spec.image_column].iloc[i])
        try:
            if p.stat().st_size > MAX_FILE_BYTES:
                return i, "", (f"image file {name!r} is {p.stat().st_size:,} bytes; expected at "
                               f"most {MAX_FILE_BYTES:,}"), "image_too_large", None
            data = p.read_bytes()
        except OSError:
            return i, "", (f"image file {name!r} is missing or not allowed (images must be "
                           f"files inside {where})"), "missing_image", None
        digest = hashlib.sha256(data).hexdigest()
        header = None
        if check_images:
            try:
                width, height, frames, per_pixel = image_geometry(p, data)
                if width * height * frames > limit:
                    raise _pixel_error(repr(name), width, height, frames, limit)
                # decoded pixels plus the float64 copies of the scaling steps
                held = budget.acquire(width * height * frames * (per_pixel + 16))
                try:
                    arr = read_image(p, data, max_pixels=limit)
                finally:
                    budget.release(held)
                if arr.ndim not in (2, 3) or arr.size == 0:
                    raise ValueError(f"unexpected pixel array shape {arr.shape}")
            except ImageTooLargeError as exc:
                return i, digest, str(exc), "image_too_large", None
            except Exception as exc:  # any decoder failure is a data problem, reported
                return i, digest, (f"image file {name!r} cannot be decoded as PNG, JPEG or "
                                   f"DICOM ({exc})"), "unreadable_image", None
        if wants_header and _is_dicom(p, data[:132]):
            try:
                header = _read_dicom_header(p, data)
            except Exception as exc:  # a corrupt header is a data problem, reported
                return i, digest, (f"image file {name!r} has no readable DICOM header "
                                   f"({exc})"), "unreadable_image", None
        return i, digest, None, "", header

    todo = [i for i in range(n) if not bad[i]]
    done = 0
    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        for i, digest, err, kind, header in pool.map(check, todo, chunksize=32):
            file_digests[i] = digest
            if header is not None:
                dicom_headers[i] = header
            if err is not None:
                flag(i, kind, err, spec.image_column)
            done += 1
            if progress and (done % 256 == 0 or done == len(todo)):
                progress(done, len(todo), "checking images")

    # labels
    labels = [_as_text(v) for v in table[spec.label_column]]
    classes: list[str | None] = []
    for i, raw in enumerate(labels):
        mapped = spec.label_map.get(raw) if spec.label_map else raw
        if not raw:
            flag(i, "missing_label", "the label is empty", spec.label_column)
            classes.append(None)
        elif mapped not in spec.classes:
            known = sorted(spec.label_map) if spec.label_map else list(spec.classes)
            flag(i, "unknown_label", f"label {raw!r} is not one of {known}", spec.label_column)
            classes.append(None)
        else:
            classes.append(mapped)

    # masks
    masks: list[str | None] = [None] * n
    if spec.mask_column:
        for i, rel in enumerate(table[spec.mask_column]):
            rel = _as_text(rel)
            if not rel:
                continue
            if resolve_confined(rel, base, allowed) is None:
                flag(i, "missing_mask", f"mask file {rel!r} is missing or not allowed (masks "
                     f"must be files inside {where})", spec.mask_column)
            masks[i] = rel

    # attributes
    groups: dict[str, list[str]] = {}
    numeric: dict[str, list[float | None]] = {}
    for attr in spec.attributes:
        col_values = (
            [_as_text(v) for v in table[attr.column]] if attr.column in table.columns else [""] * n
        )
        g_list, v_list = [], []
        for i, raw in enumerate(col_values):
            if not raw and i in dicom_headers and attr.kind in _DICOM_TAGS:
                raw = dicom_headers[i].get(attr.kind, "")
            try:
                group, value = _attribute_group(attr, raw)
            except ValueError as exc:
                source = attr.column or f"DICOM tag {_DICOM_TAGS[attr.kind]}"
                flag(i, "bad_attribute", f"attribute {attr.name!r} ({source}): {exc}",
                     attr.column or None)
                group, value = UNKNOWN, None
            g_list.append(group)
            v_list.append(value)
        groups[attr.name] = g_list
        numeric[attr.name] = v_list

    records = pd.DataFrame({
        "image": [_as_text(v) for v in table[spec.image_column]],
        "path": [str(p) for p in paths],
        "label": classes,
        "patient_id": (
            [(_as_text(v) or None) for v in table[spec.patient_column]]
            if spec.patient_column else [None] * n
        ),
        "split_group": (
            [(_as_text(v) or None) for v in table[spec.group_column]]
            if spec.group_column else [None] * n
        ),
        "mask": masks,
        "line": lines,
    })
    secret = key_secret if key_secret is not None else installation_secret()
    records.insert(1, "key", image_keys(secret, spec.name, records["image"]))
    if spec.split_column:
        records["split"] = [_as_text(v).lower() for v in table[spec.split_column]]
    for finding in spec.findings:
        records[f"finding_{finding.name}"] = [finding.value(_as_text(v))
                                              for v in table[finding.column]]
    for attr in spec.attributes:
        records[attr.name] = groups[attr.name]
        if attr.kind == "age":
            records[f"{attr.name}_years"] = pd.array(numeric[attr.name], dtype="Float64")

    dup = records["image"].duplicated(keep="first") & (records["image"] != "")
    for row in np.flatnonzero(dup.to_numpy()):
        flag(int(row), "duplicate_image",
             f"image {records['image'][row]!r} is listed more than once", spec.image_column)

    problems.sort(key=lambda p: (p.line or 0, p.kind))
    if problems and on_invalid == "raise":
        raise DataError(_problem_message(spec, problems, n), problems)
    keep = ~bad
    if not keep.any():
        raise DataError(
            f"No valid rows are left in dataset {spec.name!r}: all {n} rows have problems.\n"
            + _problem_message(spec, problems, n), problems)
    records = records[keep].reset_index(drop=True)
    records["label_index"] = [spec.classes.index(c) for c in records["label"]]

    hasher = hashlib.sha256()
    # where the data are (root) and how pages show them (image_kind) are not what they are
    described = {k: v for k, v in spec.to_dict().items() if k not in ("root", "image_kind")}
    hasher.update(json.dumps(described, sort_keys=True).encode())
    # the key depends on this installation's secret: left out so the hash is portable
    hasher.update(records.drop(columns=["path", "line", "key"]).to_csv(index=False).encode())
    for row in np.flatnonzero(keep):
        hasher.update(file_digests[row].encode())
    return Dataset(
        spec=spec, root=base, records=records, problems=problems, n_rows_total=n,
        content_hash=hasher.hexdigest(),
        table_images=frozenset(_as_text(v) for v in table[spec.image_column]),
    )


def _problem_message(spec: DatasetSpec, problems: Iterable[DatasetProblem], n_rows: int,
                     limit: int = 25) -> str:
    problems = list(problems)
    by_kind: dict[str, int] = {}
    for p in problems:
        by_kind[p.kind] = by_kind.get(p.kind, 0) + 1
    rows = {p.line for p in problems if p.line is not None}
    head = (
        f"Dataset {spec.name!r} has {len(problems)} problem(s) in {len(rows)} of {n_rows} rows "
        f"({', '.join(f'{k}: {v}' for k, v in sorted(by_kind.items()))}):"
    )
    lines = [f"  {p}" for p in problems[:limit]]
    if len(problems) > limit:
        lines.append(f"  ... and {len(problems) - limit} more.")
    if rows and len(rows) < n_rows:
        lines.append("To go on with the valid rows only, pass on_invalid='drop' "
                     "(CLI: --drop-invalid).")
    return "\n".join([head, *lines])
