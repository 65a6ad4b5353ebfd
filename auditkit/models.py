"""Model cards, the model registry and safe model loading.

A model is a weights file plus a model card: ``card.json`` (machine-readable) and
``MODEL_CARD.md`` (for people) in the same folder. Formats, by how much trust they need:

``state_dict``   no trust needed: plain tensors in ``.safetensors`` (no pickle at all)
                 or ``.pt``/``.pth``, run through an architecture auditkit defines
                 (:mod:`auditkit.architectures`). A ``.pt`` is a pickle: every pickle
                 in it is scanned first (:func:`scan_pickle`) and it is then read with
                 ``torch.load(weights_only=True)``.
``torchscript``  ``torch.jit.save`` archive, and
``export``       ``torch.export.save`` archive (``.pt2``): both carry their own code.
                 They load only when the model is trusted (``trust_model_code=True``,
                 ``--trust-model-code``, the dashboard's switch, or a demo model whose
                 weights auditkit ships) *and* after a static check
                 (:mod:`auditkit._model_security`) finds no refused pickle and no
                 operation outside an allowlist of tensor operations.

The weights path in a card must stay inside the card's folder, and the sha256 written
in the card is checked before anything else is read. See ``docs/security.md``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import zipfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from torch import nn

from .data import PixelScaling
from .exceptions import (
    ConfigError,
    IntegrityError,
    ModelError,
    ModelNotFoundError,
    UnsafeModelError,
    UntrustedModelError,
)

__all__ = [
    "FORMATS",
    "OUTPUT_KINDS",
    "CODE_FORMATS",
    "LoadedModel",
    "ModelCard",
    "card_problems",
    "bundled_registry",
    "default_registry",
    "registry_paths",
    "list_models",
    "load_model",
    "resolve_model",
    "scan_pickle",
    "segmentation_masks",
    "segmentation_probabilities",
    "select_device",
    "sha256_file",
]

OUTPUT_KINDS = ("softmax", "binary_logit", "multilabel_sigmoid", "segmentation")
FORMATS = ("torchscript", "export", "state_dict")
#: Formats that carry their own code and so need the user's trust to load.
CODE_FORMATS = ("torchscript", "export")
TRUST_ENV = "AUDITKIT_TRUST_MODEL_CODE"
CARD_FILE = "card.json"


@dataclass
class ModelCard:
    """The machine-readable model card (``card.json``).

    Parameters
    ----------
    name, version : str
        ``name@version`` identifies the model in the registry.
    task : str
        What the model does, in one plain sentence.
    class_names : list of str
        Classes in output order. For ``binary_logit`` exactly two: negative, positive.
    positive_class : str
        The clinically positive class (disease present); sensitivity is about it.
    output : str
        ``softmax`` (multiclass logits), ``binary_logit`` (one logit, sigmoid is the
        probability of ``class_names[1]``), ``multilabel_sigmoid`` (one logit per
        finding, ``class_names`` are the findings) or ``segmentation`` (per-pixel logits
        ``(C, H, W)`` per image). See ``docs/models.md``.
    input_size : [int, int]
        Height and width the image is resized to.
    channels : int
        1 (grayscale) or 3 (RGB).
    normalization : dict
        ``{"mean": [...], "std": [...]}`` per channel, applied to pixels in [0, 1].
    format : str
        One of :data:`FORMATS`.
    weights : str
        Weights file name, relative to the card.
    sha256 : str
        sha256 of the weights file.
    architecture, architecture_kwargs
        For ``state_dict`` weights: name in :data:`auditkit.architectures.ARCHITECTURES`.
    dataset : str
        Name of the dataset description it was trained and evaluated on.
    training_data, intended_use, out_of_scope_use, limitations : str
    metrics : dict
        Headline test metrics (with sample sizes), as measured when it was trained.
    input_scaling : dict, optional
        How stored pixels were scaled to [0, 1] for training, e.g.
        ``{"method": "range", "range": [0, 4095]}``; default ``{"method": "bit_depth"}``.
        See :class:`auditkit.data.PixelScaling` and ``docs/models.md``.

    findings : list of dict, optional
        For ``multilabel_sigmoid``: one entry per finding, in ``class_names`` order:
        ``{"name": ..., "positive_class": "what a positive call means", "threshold": t}``
        with ``t`` in (0, 1); a finding is called present when its sigmoid is ``>= t``.
        Without it every finding's threshold is 0.5 (said so in the audit).
    segmentation : dict, optional
        Required for ``segmentation``: ``{"activation": "sigmoid" | "softmax",
        "threshold": t, "output_size": [H, W] or null}``. ``sigmoid``: one output channel,
        the logit of ``positive_class`` per pixel (``class_names`` = background and
        foreground); ``softmax``: one channel per class, the pixel's class is the argmax.
        ``output_size`` defaults to ``input_size``.

    Every field is validated by a pydantic schema (:func:`card_problems`); a problem
    raises :class:`ModelError` with one line per problem naming the field, the
    expected and the found value.
    """

    name: str
    version: str
    task: str
    class_names: list[str]
    positive_class: str
    output: str
    input_size: list[int]
    channels: int
    normalization: dict[str, list[float]]
    format: str
    weights: str
    sha256: str
    architecture: str | None = None
    architecture_kwargs: dict[str, Any] = field(default_factory=dict)
    dataset: str | None = None
    training_data: str = ""
    intended_use: str = ""
    out_of_scope_use: str = ""
    limitations: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)
    subgroups_evaluated: list[str] = field(default_factory=list)
    family_note: str = ""
    license: str = ""
    input_scaling: dict[str, Any] | None = None
    findings: list[dict[str, Any]] = field(default_factory=list)
    segmentation: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        problems = card_problems(asdict(self))
        if problems:
            raise ModelError(_card_error(f"Model card {self.name}@{self.version}", problems))

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"

    @property
    def positive_index(self) -> int:
        return self.class_names.index(self.positive_class)

    @property
    def thresholds(self) -> np.ndarray:
        """Decision threshold per class ``(K,)``: the card's findings, else 0.5 each."""
        if self.findings:
            return np.asarray([float(f["threshold"]) for f in self.findings])
        return np.full(len(self.class_names), 0.5)

    @property
    def output_size(self) -> list[int]:
        """``[H, W]`` of a segmentation model's masks (its ``output_size``, else input size)."""
        size = (self.segmentation or {}).get("output_size")
        return [int(v) for v in (size or self.input_size)]

    @property
    def output_shape(self) -> tuple[int, ...]:
        """The raw output shape per image the card promises (without the batch axis)."""
        if self.output == "binary_logit":
            return (1,)
        if self.output == "segmentation":
            seg = self.segmentation or {}
            channels = 1 if seg.get("activation") == "sigmoid" else len(self.class_names)
            return (channels, *self.output_size)
        return (len(self.class_names),)

    @property
    def scaling(self) -> PixelScaling:
        """The declared pixel scaling (default ``bit_depth``)."""
        return PixelScaling.from_dict(self.input_scaling)

    @property
    def preprocessing(self) -> dict[str, Any]:
        """Everything that decides the tensor the model sees (part of the cache key)."""
        return {
            "input_size": list(self.input_size),
            "channels": self.channels,
            "normalization": self.normalization,
            "resize": "bilinear",
            "scaling": self.scaling.to_dict(),
        }

    def pixel_pipeline(self) -> dict[str, Any]:
        """The pixel pipeline in full, for ``audit.json``: declaration and plain description."""
        return {**self.preprocessing, "description": self.scaling.describe(),
                "dicom": "pydicom apply_modality_lut, then apply_voi_lut/apply_windowing when "
                         "declared; MONOCHROME1 inverted"}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelCard:
        """Validate ``data`` against the card schema and build the card.

        Raises
        ------
        ModelError
            Listing every problem, one line each: ``field 'output': expected ...; found ...``.
        """
        problems = card_problems(data)
        if problems:
            ref = f"{data.get('name', '?')}@{data.get('version', '?')}" if isinstance(
                data, dict) else "?"
            raise ModelError(_card_error(f"Model card {ref}", problems))
        return cls(**data)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> ModelCard:
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise ModelNotFoundError(f"Model card {path} does not exist.") from exc
        except json.JSONDecodeError as exc:
            raise ModelError(f"Model card {path} is not valid JSON: {exc}.") from exc
        if not isinstance(data, dict):
            raise ModelError(f"Model card {path} must hold a JSON object; got {type(data).__name__}.")
        problems = card_problems(data)
        if problems:
            raise ModelError(_card_error(f"Model card {path}", problems))
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        if out["input_scaling"] is None:
            del out["input_scaling"]  # the default; older cards stay byte-identical
        if not out["findings"]:
            del out["findings"]
        if out["segmentation"] is None:
            del out["segmentation"]
        return out

    def save(self, folder: str | os.PathLike[str]) -> Path:
        path = Path(folder) / CARD_FILE
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")
        return path


# --------------------------------------------------------------------------- card schema
# The schema is pydantic's (a maintained validator); the few rules that tie two fields
# together (positive_class among class_names, one mean/std per channel, ...) follow it,
# in the same one-line form.


class _Normalization(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    mean: list[float]
    std: list[Annotated[float, Field(gt=0)]]


class _Scaling(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    method: Literal["bit_depth", "range", "window", "dicom_window", "minmax"]
    range: Annotated[list[float], Field(min_length=2, max_length=2)] | None = None
    window: Annotated[list[float], Field(min_length=2, max_length=2)] | None = None
    frame: Literal["middle"] | Annotated[int, Field(ge=0)] = "middle"


_Text = Annotated[str, Field(min_length=1)]


class _Finding(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    name: _Text
    positive_class: _Text
    threshold: Annotated[float, Field(gt=0, lt=1)]


class _Segmentation(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    activation: Literal["sigmoid", "softmax"]
    threshold: Annotated[float, Field(gt=0, lt=1)] = 0.5
    output_size: Annotated[list[Annotated[int, Field(ge=8)]],
                           Field(min_length=2, max_length=2)] | None = None


class _CardSchema(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")]
    version: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")]
    task: _Text
    class_names: Annotated[list[_Text], Field(min_length=1)]
    positive_class: _Text
    output: Literal["softmax", "binary_logit", "multilabel_sigmoid", "segmentation"]
    input_size: Annotated[list[Annotated[int, Field(ge=8)]], Field(min_length=2, max_length=2)]
    channels: Literal[1, 3]
    normalization: _Normalization
    format: Literal["torchscript", "export", "state_dict"]
    weights: _Text
    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    architecture: str | None = None
    architecture_kwargs: dict[str, Any] = {}
    dataset: str | None = None
    training_data: str = ""
    intended_use: str = ""
    out_of_scope_use: str = ""
    limitations: str = ""
    metrics: dict[str, Any] = {}
    subgroups_evaluated: list[str] = []
    family_note: str = ""
    license: str = ""
    input_scaling: _Scaling | None = None
    findings: list[_Finding] = []
    segmentation: _Segmentation | None = None


def _field_name(loc: tuple[Any, ...]) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else (f".{p}" if i else str(p))
                   for i, p in enumerate(loc)) or "(card)"


def _expected(error: dict[str, Any]) -> str:
    kind, msg = error["type"], str(error["msg"])
    if kind == "missing":
        return "a value (required field)"
    if kind == "extra_forbidden":
        return f"one of the card fields ({', '.join(_CardSchema.model_fields)})"
    if kind == "literal_error":
        return "one of " + msg.removeprefix("Input should be ")
    if kind == "string_pattern_mismatch" and error["loc"][:1] == ("sha256",):
        return "64 lowercase hex digits (sha256sum of the weights file)"
    for prefix in ("Input should be ", "Value should be ", "String should ", "List should "):
        if msg.startswith(prefix):
            return msg.removeprefix(prefix).removeprefix("have ").removeprefix("be ")
    return msg[0].lower() + msg[1:]


def card_problems(data: Any) -> list[str]:
    """Every problem of a card mapping, one line each: ``field 'x': expected ...; found ...``.

    Empty when the card is valid. The field-level rules are a pydantic schema; the
    rules tying fields together are checked once the fields themselves are valid.
    """
    if not isinstance(data, dict):
        return [f"(card): expected a JSON object; found {type(data).__name__}"]
    lines: list[str] = []
    failed: set[str] = set()
    try:
        _CardSchema.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors():
            found = "nothing" if err["type"] == "missing" else repr(err.get("input"))
            if err["type"] == "extra_forbidden":
                found = f"an unknown field set to {found}"
            if len(found) > 80:
                found = found[:77] + "..."
            failed.add(str(err["loc"][0]) if err["loc"] else "")
            lines.append(f"field '{_field_name(tuple(err['loc']))}': expected "
                         f"{_expected(dict(err))}; found {found}")

    def ok(*names: str) -> bool:  # a rule tying fields together needs them valid first
        return all(n in data and n not in failed for n in names)

    classes: list[str] = list(data.get("class_names") or [])
    output = data.get("output")
    if ok("output", "class_names"):
        if output == "binary_logit" and len(classes) != 2:
            lines.append("field 'class_names': expected exactly two (negative, positive) for a "
                         "binary_logit model, whose one logit scores the second; found "
                         f"{classes!r}")
        elif output == "softmax" and len(classes) < 2:
            lines.append(f"field 'class_names': expected at least two; found {classes!r}")
    if ok("output", "findings", "class_names") and data.get("findings"):
        names = [f["name"] for f in data["findings"]]
        if output != "multilabel_sigmoid":
            lines.append(f"field 'findings': expected only for a multilabel_sigmoid model; "
                         f"found findings for output {output!r}")
        elif names != classes:
            lines.append("field 'findings': expected one entry per class, named as "
                         f"class_names in the same order {classes!r}; found {names!r}")
    if ok("output", "segmentation", "class_names"):
        seg = data.get("segmentation")
        if output == "segmentation" and seg is None:
            lines.append("field 'segmentation': expected {\"activation\": \"sigmoid\" or "
                         "\"softmax\", \"threshold\": t, \"output_size\": [H, W] or null} for a "
                         "segmentation model; found nothing")
        elif output != "segmentation" and seg is not None:
            lines.append(f"field 'segmentation': expected only for a segmentation model; "
                         f"found it for output {output!r}")
        elif seg is not None and seg["activation"] == "sigmoid" and len(classes) != 2:
            lines.append("field 'class_names': expected exactly two (background, foreground) "
                         "for a sigmoid segmentation model, whose one channel scores the "
                         f"foreground; found {classes!r}")
        elif seg is not None and seg["activation"] == "softmax" and len(classes) < 2:
            lines.append(f"field 'class_names': expected at least two pixel classes; found "
                         f"{classes!r}")
    if ok("class_names") and len(set(classes)) != len(classes):
        lines.append(f"field 'class_names': expected distinct names; found {classes!r}")
    if ok("class_names", "positive_class") and data["positive_class"] not in classes:
        lines.append(f"field 'positive_class': expected one of class_names {classes}; found "
                     f"{data['positive_class']!r}")
    if ok("normalization", "channels"):
        for key in ("mean", "std"):
            vals = data["normalization"][key]
            if len(vals) != data["channels"]:
                lines.append(f"field 'normalization.{key}': expected {data['channels']} "
                             f"value(s), one per channel; found {vals!r}")
    if ok("format") and "architecture" not in failed and data["format"] == "state_dict" \
            and not data.get("architecture"):
        lines.append("field 'architecture': expected an architecture name for a state_dict "
                     f"card; found {data.get('architecture')!r}")
    if ok("weights"):
        weights = str(data["weights"])
        if Path(weights).is_absolute() or ".." in Path(weights).parts:
            lines.append("field 'weights': expected a file name beside card.json; found "
                         f"{weights!r}")
    if ok("input_scaling") and data["input_scaling"] is not None:
        try:
            PixelScaling.from_dict(data["input_scaling"])
        except ConfigError as exc:
            match = re.match(r"^(input_scaling\.\w+) must be (.*); got (.*) instead\.$", str(exc))
            lines.append(f"field '{match[1]}': expected {match[2]}; found {match[3]}" if match
                         else f"field 'input_scaling': {exc}")
    return lines


def _card_error(what: str, problems: list[str]) -> str:
    return f"{what} is not valid ({len(problems)} problem(s)):\n  " + "\n  ".join(problems)


@dataclass
class RegisteredModel:
    """A card found in a registry folder, with where it lives."""

    card: ModelCard
    folder: Path

    @property
    def weights_path(self) -> Path:
        """The weights file, resolved; raises when it is missing or outside the folder."""
        return confined_weights_path(self.folder, self.card)

    def verify(self) -> bool:
        """True when the weights file is inside the folder and has the card's sha256."""
        try:
            path = self.weights_path
        except ModelNotFoundError:
            return False
        return sha256_file(path) == self.card.sha256

    @property
    def trust(self) -> str:
        """How this model may load: see :func:`trust_requirement`."""
        return trust_requirement(self.card)


def confined_weights_path(folder: str | os.PathLike[str], card: ModelCard) -> Path:
    """The card's weights file, resolved, if it is a file inside ``folder``.

    ``../``, absolute paths and symlinks that lead out of the model folder are refused
    with the same message as a missing file, so the error says nothing about files
    elsewhere on the machine.

    Raises
    ------
    ModelNotFoundError
    """
    root = Path(folder).resolve()
    try:
        path = (root / card.weights).resolve(strict=True)
        ok = path.is_relative_to(root) and path.is_file()
    except (OSError, RuntimeError, ValueError):
        ok = False
    if not ok:
        raise ModelNotFoundError(
            f"Weights file {card.weights!r} named in {card.ref}'s card is missing or not "
            f"allowed: expected a file inside the model folder {Path(folder)}."
        )
    return path


def trust_requirement(card: ModelCard) -> str:
    """``"none"`` (safe format), ``"bundled"`` (a demo model auditkit vouches for) or
    ``"required"`` (code-carrying weights that load only with ``trust_model_code``)."""
    from ._model_security import BUNDLED_TRUSTED_SHA256

    if card.format not in CODE_FORMATS:
        return "none"
    return "bundled" if card.sha256 in BUNDLED_TRUSTED_SHA256 else "required"


def sha256_file(path: str | os.PathLike[str]) -> str:
    """sha256 hex digest of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


#: In ``AUDITKIT_MODELS`` (or ``--registry``), this entry stands for the bundled demo registry.
BUNDLED_TOKEN = "@bundled"


def bundled_registry() -> Path:
    """The project's own ``models/`` folder (the demo models)."""
    return Path(__file__).resolve().parents[1] / "models"


def registry_paths(registry: str | os.PathLike[str] | None = None) -> list[Path]:
    """The registry folders searched, in order.

    ``registry`` (or, without it, ``$AUDITKIT_MODELS``) is one folder or several
    separated by ``os.pathsep`` (``:`` on Linux); the entry ``@bundled`` stands for
    the bundled demo registry. Without either, the bundled registry alone. Setting
    ``AUDITKIT_MODELS=/srv/models`` therefore *replaces* the demo models;
    ``AUDITKIT_MODELS=/srv/models:@bundled`` lists both.
    """
    text = str(registry) if registry is not None else os.environ.get("AUDITKIT_MODELS", "")
    entries = [e for e in text.split(os.pathsep) if e] if text else []
    if not entries:
        return [bundled_registry()]
    return [bundled_registry() if e == BUNDLED_TOKEN else Path(e) for e in entries]


def default_registry() -> Path:
    """The first registry folder of :func:`registry_paths` (where new models are written)."""
    return registry_paths()[0]


def _iter_cards(root: Path) -> Iterator[Path]:
    if root.is_file() and root.name == CARD_FILE:
        yield root
        return
    if (root / CARD_FILE).is_file():
        yield root / CARD_FILE
        return
    for depth in ("*", "*/*", "*/*/*"):
        yield from sorted(root.glob(f"{depth}/{CARD_FILE}"))


def list_models(registry: str | os.PathLike[str] | None = None) -> list[RegisteredModel]:
    """Every model card under the registries of :func:`registry_paths`.

    Cards that do not parse raise :class:`ModelError` naming the file, so a broken
    card is never silently skipped.
    """
    found: list[RegisteredModel] = []
    seen: dict[str, Path] = {}
    for root in registry_paths(registry):
        if not root.exists():
            raise ModelNotFoundError(
                f"Model registry {root} does not exist; expected a folder of model folders "
                "each holding <name>/<version>/card.json (docs/models.md).")
        for card_path in _iter_cards(root):
            try:
                card = ModelCard.from_file(card_path)
            except ModelError as exc:
                raise ModelError(f"{card_path}: {exc}") from exc
            if card.ref in seen:
                raise ModelError(
                    f"{card.ref} is registered twice: {seen[card.ref]} and {card_path.parent}; "
                    "expected each name@version once across the registries.")
            seen[card.ref] = card_path.parent
            found.append(RegisteredModel(card=card, folder=card_path.parent))
    found.sort(key=lambda m: (m.card.name, _version_key(m.card.version)))
    return found


def _version_key(version: str) -> tuple:
    digits = "".join(ch if ch.isdigit() else " " for ch in version).split()
    return tuple(int(d) for d in digits) or (0,)


def resolve_model(ref: str | os.PathLike[str], registry: str | os.PathLike[str] | None = None
                  ) -> RegisteredModel:
    """Find ``NAME[@VERSION]`` in the registry, or load a card from a path.

    Without ``@VERSION`` the highest version is taken.
    """
    path = Path(ref)
    if path.exists():
        cards = list(_iter_cards(path))
        if len(cards) != 1:
            raise ModelNotFoundError(
                f"{path} should hold exactly one card.json; found {len(cards)}."
            )
        return RegisteredModel(card=ModelCard.from_file(cards[0]), folder=cards[0].parent)
    text = str(ref)
    name, _, version = text.partition("@")
    models = list_models(registry)
    matches = [m for m in models if m.card.name == name and (not version or m.card.version == version)]
    if not matches:
        available = ", ".join(m.card.ref for m in models) or "none"
        raise ModelNotFoundError(
            f"No model {text!r} in registry "
            f"{os.pathsep.join(str(r) for r in registry_paths(registry))}; "
            f"expected NAME[@VERSION] of one of: {available}, or a path to a model folder."
        )
    return matches[-1]


def select_device(device: str | torch.device | None = "auto") -> torch.device:
    """``auto`` (CUDA when available, else CPU), ``cpu``, ``cuda`` or ``cuda:N``."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            f"Device {str(device)!r} was asked for, but this machine has no CUDA GPU visible "
            "to torch; use --device cpu or auto."
        )
    if dev.type not in ("cpu", "cuda"):
        raise ConfigError(f"Device must be auto, cpu or cuda[:N]; got {str(device)!r} instead.")
    return dev


# --------------------------------------------------------------------------- safe pickle


def scan_pickle(path: str | os.PathLike[str]) -> None:
    """Refuse a ``.pt`` file if any pickle in it imports anything but tensor rebuilders.

    Walks the opcodes of every pickle (nothing is executed): all pickles of a legacy
    file, every member of a zip archive, zips nested in it; ``STACK_GLOBAL`` through
    the memo; files that are both a zip and a pickle are refused outright.

    Raises
    ------
    UnsafeModelError
        Naming the offending ``module.name`` globals.
    """
    from ._model_security import scan_file

    scan_file(Path(path))


# --------------------------------------------------------------------------- loading


@dataclass
class LoadedModel:
    """A model ready to run, with its card.

    ``module`` maps a normalized ``(N, C, H, W)`` float tensor to raw outputs
    ``(N, K)``; :meth:`probabilities` turns those into class probabilities.
    ``trust`` records how the weights were allowed to load (written to audit.json):
    ``format``, ``carries_code``, ``trusted_by`` (``"not needed"``, ``"user"`` or
    ``"bundled"``) and ``checks`` (the static checks it passed).
    """

    card: ModelCard
    module: nn.Module
    device: torch.device
    folder: Path | None = None
    trust: dict[str, Any] = field(default_factory=dict)
    _norm_cache: dict[tuple[str, torch.dtype], tuple[torch.Tensor, torch.Tensor]] = field(
        default_factory=dict, repr=False, compare=False)

    @property
    def sha256(self) -> str:
        return self.card.sha256

    @property
    def n_classes(self) -> int:
        return len(self.card.class_names)

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """Apply the card's normalization to images in [0, 1], ``(N, C, H, W)``."""
        key = (str(images.device), images.dtype)
        if key not in self._norm_cache:  # built once per device and dtype, not per batch
            # normal (not inference-mode) tensors, usable under autograd and inference alike
            with torch.inference_mode(False):
                self._norm_cache[key] = self._norm_tensors(images)
        mean, std = self._norm_cache[key]
        return (images - mean) / std

    def _norm_tensors(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        norm = self.card.normalization
        shape = (1, -1, 1, 1)
        return (torch.tensor(norm["mean"], device=images.device, dtype=images.dtype).view(shape),
                torch.tensor(norm["std"], device=images.device, dtype=images.dtype).view(shape))

    def logits(self, images01: torch.Tensor) -> torch.Tensor:
        """Class logits ``(N, n_classes)`` for images in [0, 1], differentiable.

        A single-logit binary model is presented as two logits ``[0, z]`` so that a
        softmax over them equals ``[1 - sigmoid(z), sigmoid(z)]``.
        """
        out = self.module(self.normalize(images01))
        if self.card.output == "binary_logit":
            out = out.reshape(-1, 1)
            out = torch.cat([torch.zeros_like(out), out], dim=1)
        return out

    @staticmethod
    def outputs_to_probabilities(outputs: np.ndarray, output_kind: str) -> np.ndarray:
        """Raw outputs ``(N, K)`` -> probabilities ``(N, n_classes)``, float64."""
        out = np.asarray(outputs, dtype=np.float64)
        if output_kind == "softmax":
            out = out - out.max(axis=1, keepdims=True)
            e = np.exp(out)
            return e / e.sum(axis=1, keepdims=True)
        if output_kind == "binary_logit":
            p = 1.0 / (1.0 + np.exp(-out.reshape(-1)))
            return np.stack([1.0 - p, p], axis=1)
        return 1.0 / (1.0 + np.exp(-out))

    def probabilities(self, outputs: np.ndarray) -> np.ndarray:
        """Class probabilities ``(N, n_classes)``; for a segmentation model, each pixel's
        probability of ``positive_class``, ``(N, H, W)`` float32."""
        if self.card.output == "segmentation":
            return segmentation_probabilities(outputs, self.card)
        return self.outputs_to_probabilities(outputs, self.card.output)


def segmentation_probabilities(outputs: np.ndarray, card: ModelCard) -> np.ndarray:
    """Raw segmentation outputs ``(N, C, H, W)`` -> foreground probability ``(N, H, W)``.

    ``sigmoid`` cards: the sigmoid of the one channel; ``softmax`` cards: the softmax
    over channels at ``positive_index``. float32 (a dataset of masks is large).
    """
    out = np.asarray(outputs, dtype=np.float32)
    if (card.segmentation or {}).get("activation") == "sigmoid":
        return (1.0 / (1.0 + np.exp(-out[:, 0]))).astype(np.float32)
    out = out - out.max(axis=1, keepdims=True)
    e = np.exp(out)
    return (e[:, card.positive_index] / e.sum(axis=1)).astype(np.float32)


def segmentation_masks(probabilities: np.ndarray, card: ModelCard,
                       outputs: np.ndarray | None = None) -> np.ndarray:
    """Predicted foreground masks ``(N, H, W)`` bool.

    ``sigmoid``: foreground probability ``>= threshold``; ``softmax``: the argmax over
    the raw ``outputs`` is ``positive_class`` (probabilities alone suffice with two classes).
    """
    seg = card.segmentation or {}
    if seg.get("activation") == "softmax" and outputs is not None and outputs.shape[1] > 2:
        return np.asarray(outputs).argmax(axis=1) == card.positive_index
    if seg.get("activation") == "softmax":
        return probabilities > 0.5
    return probabilities >= float(seg.get("threshold", 0.5))


def load_model(
    model: str | os.PathLike[str] | RegisteredModel,
    *,
    registry: str | os.PathLike[str] | None = None,
    device: str | torch.device | None = "auto",
    trust_model_code: bool | None = None,
) -> LoadedModel:
    """Load a model safely: confine and verify the weights, check them, eval mode.

    Parameters
    ----------
    model : str, path or RegisteredModel
        ``NAME[@VERSION]`` in the registry, or a folder / ``card.json`` path.
    registry : path, optional
        Registry folder (default :func:`default_registry`).
    device : {"auto", "cpu", "cuda", "cuda:N"}
        ``auto`` uses CUDA when present, else the CPU.
    trust_model_code : bool, optional
        Say that you trust this model's code: needed for TorchScript and
        ``torch.export`` weights (they carry code), except the demo models auditkit
        ships. Like ``trust_remote_code`` elsewhere. Default: ``$AUDITKIT_TRUST_MODEL_CODE``
        (``1`` trusts), else False. Trusted code must still pass the static checks.

    Raises
    ------
    ModelNotFoundError, IntegrityError, UntrustedModelError, UnsafeModelError, ModelError
    """
    entry = model if isinstance(model, RegisteredModel) else resolve_model(model, registry)
    card = entry.card
    path = entry.weights_path  # confined to the model folder, or ModelNotFoundError
    dev = select_device(device)
    actual = sha256_file(path)
    if actual != card.sha256:
        raise IntegrityError(
            f"Weights {path} do not match the model card: expected sha256 {card.sha256}, "
            f"found {actual}. The file was changed or replaced; it was not loaded."
        )
    if trust_model_code is None:
        trust_model_code = os.environ.get(TRUST_ENV, "").strip().lower() in ("1", "true", "yes")
    trust: dict[str, Any] = {"format": card.format, "carries_code": card.format in CODE_FORMATS,
                             "trusted_by": "not needed", "checks": []}
    if card.format in CODE_FORMATS:
        requirement = trust_requirement(card)
        if requirement == "bundled":
            trust["trusted_by"] = "bundled"
        elif trust_model_code:
            trust["trusted_by"] = "user"
        else:
            kind = "TorchScript" if card.format == "torchscript" else "torch.export (.pt2)"
            raise UntrustedModelError(
                f"{card.ref} is a {kind} model: its file carries code, and auditkit runs "
                "such code only when you say you trust it. Pass trust_model_code=True "
                "(CLI: --trust-model-code; dashboard: 'I trust this model's code'), or ask "
                "for the weights as safetensors with an architecture auditkit defines."
            )
    module: Any
    if card.format == "torchscript":
        from ._model_security import check_torchscript_archive, check_torchscript_graph

        if not zipfile.is_zipfile(path):
            raise ModelError(f"{path} is not a TorchScript archive (expected a zip file).")
        check_torchscript_archive(path)
        try:
            module = torch.jit.load(str(path), map_location=dev)
        except RuntimeError as exc:
            raise ModelError(f"{path} could not be loaded as TorchScript: {exc}") from exc
        check_torchscript_graph(module, card.ref)
        trust["checks"] = ["pickle scan", "code allowlist", "graph allowlist"]
    elif card.format == "export":
        from ._model_security import check_export_archive, load_export_program

        if not zipfile.is_zipfile(path):
            raise ModelError(f"{path} is not a torch.export archive (expected a .pt2 zip file).")
        check_export_archive(path)
        try:
            module = load_export_program(path).module().to(dev)
        except UnsafeModelError:
            raise
        except Exception as exc:  # torch raises many types for a broken archive
            raise ModelError(f"{path} could not be loaded as a torch.export archive: {exc}") from exc
        trust["checks"] = ["pickle scan", "program allowlist"]
    else:
        state = _load_state_dict(path)
        trust["checks"] = (["weights-only load"] if path.suffix == ".safetensors"
                           else ["pickle scan", "weights-only load"])
        from .architectures import build_architecture

        module = build_architecture(str(card.architecture), **card.architecture_kwargs)
        try:
            module.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise ModelError(
                f"Weights {path} do not fit architecture {card.architecture!r} with "
                f"{card.architecture_kwargs}: {exc}"
            ) from exc
        module = module.to(dev)
    if hasattr(module, "eval"):
        try:
            module.eval()
        except NotImplementedError:  # exported programs' modules have no train/eval switch
            pass
    return LoadedModel(card=card, module=module, device=dev, folder=entry.folder, trust=trust)


def _load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError) as exc:
            raise ModelError(f"{path} is not a readable safetensors file: {exc}") from exc
    if path.suffix not in (".pt", ".pth"):
        raise ModelError(
            f"State dict {path} must end in .safetensors, .pt or .pth; got {path.suffix!r}."
        )
    scan_pickle(path)
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise UnsafeModelError(
            f"torch refused {path} in weights-only mode ({exc}); it was not loaded."
        ) from exc
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelError(f"{path} must hold a dict of tensors (a state dict); it does not.")
    return state
