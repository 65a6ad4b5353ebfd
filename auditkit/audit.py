"""An audit: one model, one dataset, one configuration -> ``audit.json`` + evidence files.

Each check is a pure function ``run_check(context) -> dict`` of the model, the
dataset, the predictions and the configuration; it may write evidence files into
``context.out_dir`` and returns the JSON-ready entry stored under
``results[<check>]``. Checks are looked up by name in :data:`CHECKS` and imported
lazily, so ``import auditkit`` stays light. The schema is documented in
``docs/audit-schema.md`` and versioned by :data:`SCHEMA_VERSION`.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from ._context import CHECKS, AuditConfig, CheckContext, ProgressFn
from ._local import write_key_map
from ._version import __version__
from .data import Dataset
from .evidence import describe, open_table, write_table
from .exceptions import ConfigError, DataError
from .export import IN_HOUSE_FILE, audit_file
from .models import LoadedModel
from .predict import Executor, LocalExecutor, predict

__all__ = [
    "CHECKS",
    "EVIDENCE_FILES",
    "IN_HOUSE_FILE",
    "SCHEMA_VERSION",
    "AuditConfig",
    "CheckContext",
    "available_checks",
    "list_audits",
    "read_audit",
    "run_audit",
]

SCHEMA_VERSION = "1.0"
#: Files an audit folder may hold; ``overwrite=True`` clears them all before writing.
EVIDENCE_FILES = ("audit.json", IN_HOUSE_FILE, "predictions.csv", "predictions.parquet",
                  "membership_scores.csv",
                  "robustness.csv", "attributions.npz", "segmentation_masks.npz")
#: What is derived from an audit after it ran (criteria evaluations, reports): stale once
#: the audit is replaced, so ``overwrite`` removes it too.
DERIVED_FILES = ("report.html", "report.pdf", "report.card.json")
DERIVED_FOLDERS = ("evaluations",)


def available_checks() -> list[str]:
    """Checks whose implementation is installed in this version."""
    found = []
    for name, target in CHECKS.items():
        module = target.split(":")[0]
        if importlib.util.find_spec(module) is not None:
            found.append(name)
    return found


def _load_check(name: str) -> Callable[[CheckContext], dict[str, Any]]:
    module_name, _, func = CHECKS[name].partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            raise ConfigError(
                f"Check {name!r} is not available in auditkit {__version__}; available: "
                f"{available_checks()}."
            ) from exc
        raise
    return getattr(module, func)


def _json_safe(value: Any) -> Any:
    """nan/inf -> None and numpy scalars -> Python, recursively (strict JSON)."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def check_compatible(model: LoadedModel, dataset: Dataset) -> None:
    """The dataset's classes must be among the model's classes.

    A multi-label model needs the dataset to describe each of its findings; a
    segmentation model needs reference masks (``mask_column``).
    """
    card = model.card
    if card.output == "multilabel_sigmoid":
        described = [f.name for f in dataset.spec.findings]
        lacking = [c for c in card.class_names if c not in described]
        if lacking:
            raise ConfigError(
                f"Model {card.ref} scores findings {card.class_names}, but dataset "
                f"{dataset.name!r} describes findings {described or 'none'}; {lacking} are "
                "missing. Pick a dataset description with a [[findings]] table for each "
                "(docs/datasets.md), e.g. covid_cxr_findings.")
        return
    if card.output == "segmentation":
        if not dataset.spec.mask_column:
            raise ConfigError(
                f"Model {card.ref} is a segmentation model, but dataset {dataset.name!r} has "
                "no reference masks (mask_column); expected a description naming the mask "
                "column, e.g. lgg_mri.")
        return
    missing = sorted(set(dataset.spec.classes) - set(model.card.class_names))
    if missing:
        raise ConfigError(
            f"Dataset {dataset.name!r} has classes {list(dataset.spec.classes)} but model "
            f"{model.card.ref} predicts {model.card.class_names}; classes {missing} are unknown "
            "to the model. Pick a dataset description for this model's task."
        )


def _unwritable(folder: Path, exc: OSError) -> ConfigError:
    return ConfigError(
        f"The audit folder {folder} cannot be written ({exc.strerror or exc}); expected a "
        "folder this user may write. Pass another --out (or set AUDITKIT_AUDITS).")


def _prepare_out(out: Path, overwrite: bool) -> Path:
    """Refuse a used ``out`` folder (unless ``overwrite``) and make a staging folder beside it.

    Checks write their evidence into the staging folder; only a finished audit replaces
    what ``out`` held, so a failed run loses nothing stored earlier.
    """
    try:
        used = out.is_dir() and any(out.iterdir())
    except OSError as exc:
        raise _unwritable(out, exc) from exc
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file; expected a folder for the audit.")
    if used and not overwrite:
        raise ConfigError(
            f"The audit folder {out} is not empty; expected a new or empty folder, so that no "
            "earlier audit is overwritten and no stale evidence mixes with the new one. Pass "
            "--overwrite (overwrite=True) to replace it: its audit files are then cleared.")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial",
                                        dir=out.parent))
    except OSError as exc:
        raise _unwritable(out.parent, exc) from exc
    return staging


def _publish(staging: Path, out: Path) -> None:
    """Move a finished audit from ``staging`` into ``out``; stale evidence is removed first."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        for name in (*EVIDENCE_FILES, *DERIVED_FILES):
            (out / name).unlink(missing_ok=True)
        for name in DERIVED_FOLDERS:
            if (out / name).is_dir():
                shutil.rmtree(out / name)
        files = sorted(p for p in staging.iterdir() if p.name != "audit.json")
        for path in [*files, staging / "audit.json"]:  # audit.json last
            os.replace(path, out / path.name)
        staging.rmdir()
    except OSError as exc:
        raise _unwritable(out, exc) from exc


def run_audit(
    *,
    model: LoadedModel,
    dataset: Dataset,
    config: AuditConfig | None = None,
    out_dir: str | os.PathLike[str] | None = None,
    executor: Executor | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    progress: ProgressFn | None = None,
    overwrite: bool = False,
    criteria: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run the configured checks and return (and, with ``out_dir``, write) the audit.

    Writes ``out_dir/audit.json`` and ``out_dir/predictions.csv`` (``predictions.parquet``
    from :data:`auditkit.evidence.PARQUET_MIN_ROWS` images on; ``audit["evidence_files"]``
    says which) plus each check's evidence files. Everything is written to a staging folder first and moved in when
    the audit is complete (``audit.json`` last), so a failed check never leaves a
    half-written audit behind nor destroys an earlier one.

    Images are named by their pseudonymous key in every file (``records["key"]``); the
    key-to-file map is written to the local cache (``<cache>/keys/``), never here.
    Text cells a spreadsheet would run as formulas are neutralised.

    ``criteria`` (a :meth:`auditkit.criteria.Criteria.to_record`) is stored as
    ``audit["criteria"]``: the acceptance criteria fixed before the results were seen.

    Parameters
    ----------
    overwrite : bool
        ``out_dir`` must be new or empty unless this is true; it then replaces the
        folder's audit files (:data:`EVIDENCE_FILES`), removing stale evidence.

    Raises
    ------
    ConfigError
        ``out_dir`` is not empty (without ``overwrite``) or cannot be written.
    """
    config = config or AuditConfig()
    check_compatible(model, dataset)
    executor = executor or LocalExecutor(batch_size=config.batch_size, precision=config.precision)
    out = Path(out_dir) if out_dir is not None else None
    staging = _prepare_out(out, overwrite) if out is not None else None
    try:
        audit, frame, in_house = _run(model=model, dataset=dataset, config=config,
                                      staging=staging, executor=executor, cache_dir=cache_dir,
                                      progress=progress, criteria=criteria)
        if out is not None and staging is not None:
            # per-image evidence: CSV, or Parquet from PARQUET_MIN_ROWS rows
            # (auditkit.evidence); the release rule was applied to it (see _run): it says
            # so in every row
            written = describe(open_table(write_table(
                frame, staging, "predictions",
                audience="release" if in_house is not None else "in-house")))
            audit["evidence_files"] = {"predictions": written}
            if in_house is not None:  # for the committee inside the institution
                in_house["evidence_files"] = {"predictions": written}
                (staging / IN_HOUSE_FILE).write_text(
                    json.dumps(in_house, indent=2, allow_nan=False) + "\n", encoding="utf-8")
            (staging / "audit.json").write_text(
                json.dumps(audit, indent=2, allow_nan=False) + "\n", encoding="utf-8")
            _publish(staging, out)
    except OSError as exc:
        raise _unwritable(out or Path("."), exc) from exc
    finally:
        if staging is not None and staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return audit


def _run(*, model: LoadedModel, dataset: Dataset, config: AuditConfig, staging: Path | None,
         executor: Executor, cache_dir: str | os.PathLike[str] | None,
         progress: ProgressFn | None, criteria: dict[str, Any] | None = None
         ) -> tuple[dict[str, Any], Any, dict[str, Any] | None]:
    out = staging
    preds = predict(model, dataset, executor=executor, cache_dir=cache_dir, progress=progress)
    write_key_map(dataset.name, dataset.records["key"], dataset.records["image"],
                  cache_dir=cache_dir)
    frame = preds.to_frame(model, dataset)
    # the model's classes may be a superset of the dataset's: index labels by the model
    ctx = CheckContext(model=model, dataset=dataset, predictions=preds, frame=frame,
                       config=config, out_dir=out, executor=executor, progress=progress)
    results: dict[str, Any] = {}
    for name in config.checks:
        results[name] = _load_check(name)(ctx)
    # which rows were measured, and each row's split: an outside reviewer can then
    # recompute every number from predictions.csv alone
    scope = ctx.evaluation_scope()
    frame["evaluated"] = scope.mask
    if scope.split is not None:
        frame["split"] = scope.split
    audit = {
        "schema_version": SCHEMA_VERSION,
        "auditkit_version": __version__,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "model": {
            "name": model.card.name,
            "version": model.card.version,
            "sha256": model.card.sha256,
            "task": model.card.task,
            "class_names": model.card.class_names,
            "positive_class": model.card.positive_class,
            "output": model.card.output,
            "pixel_pipeline": model.card.pixel_pipeline(),
            "trust": dict(model.trust),
        },
        "dataset": {
            "name": dataset.name,
            "hash": dataset.content_hash,
            "n_images": len(dataset),
            "n_rows_total": dataset.n_rows_total,
            "n_invalid_rows_dropped": dataset.n_rows_total - len(dataset),
            "n_patients": (int(dataset.records["patient_id"].nunique())
                           if dataset.has_patients else None),
            "attributes": {a.name: a.kind for a in dataset.spec.attributes},
        },
        "config": _config_with_keys(config, dataset),
        "execution": {**preds.settings, "device": str(model.device),
                      "predictions_from_cache": preds.from_cache,
                      "prediction_cache_key": preds.cache_key},
        "results": results,
    }
    if criteria is not None:
        audit["criteria"] = criteria
    if importlib.util.find_spec("auditkit.suppression") is not None:
        from .suppression import apply_small_cell_policy

        patient_ids = dataset.records["patient_id"].to_numpy() if dataset.has_patients else None
        # the committee inside the institution sees every group with its exact n
        # (audit.in-house.json); audit.json and predictions.csv are for release: a group
        # is small with fewer than k images or, where patients are known, fewer than k
        # patients (see auditkit.suppression, "Audiences")
        in_house, _ = apply_small_cell_policy(audit, None, k=config.small_cell_k,
                                              count_patients=True, audience="in-house")
        audit, frame = apply_small_cell_policy(audit, frame, k=config.small_cell_k,
                                               patient_ids=patient_ids, count_patients=True,
                                               audience="release")
    else:
        in_house = None
    return (_json_safe(audit), frame,
            _json_safe(in_house) if in_house is not None else None)


def _config_with_keys(config: AuditConfig, dataset: Dataset) -> dict[str, Any]:
    """The configuration for ``audit.json``, with images the user named replaced by keys."""
    out = config.to_dict()
    chosen = (out.get("options") or {}).get("explain", {}).get("images")
    if chosen:
        lookup = dict(zip(dataset.records["image"].astype(str), dataset.records["key"]))
        out["options"]["explain"]["images"] = [lookup.get(str(i), str(i)) for i in chosen]
    return out


class AuditReadError(DataError):
    """An ``audit.json`` that cannot be read; the message says why."""


def read_audit(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and check one ``audit.json``; :class:`AuditReadError` says why it is unusable.

    Checked: UTF-8, JSON, an object with ``model`` (``name``, ``version`` as text),
    ``dataset`` (``name`` as text), ``results`` (an object) and ``created_at`` (text).
    """
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise AuditReadError(f"cannot be read ({exc.strerror or exc})") from exc
    except UnicodeDecodeError as exc:
        raise AuditReadError(f"is not UTF-8 text (byte {exc.start})") from exc
    if not text.strip():
        raise AuditReadError("is empty")
    try:
        audit = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise AuditReadError(f"is not valid JSON ({exc})") from exc
    if not isinstance(audit, dict):
        raise AuditReadError(f"holds a JSON {type(audit).__name__}; expected an object")
    problems = []
    model, dataset = audit.get("model"), audit.get("dataset")
    if not (isinstance(model, dict) and isinstance(model.get("name"), str)
            and isinstance(model.get("version"), str)):
        problems.append("model name and version")
    if not (isinstance(dataset, dict) and isinstance(dataset.get("name"), str)):
        problems.append("dataset name")
    if not isinstance(audit.get("results"), dict):
        problems.append("results (an object)")
    if not isinstance(audit.get("created_at"), str):
        problems.append(f"created_at as text (found {type(audit.get('created_at')).__name__})")
    if problems:
        raise AuditReadError("lacks " + ", ".join(problems))
    return audit


def list_audits(root: str | os.PathLike[str], *, audience: str = "release"
                ) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """Every ``<root>/*/audit.json``: the readable ones (newest first) and the others.

    Parameters
    ----------
    audience : {"release", "in-house"}
        Whose copy to read (:func:`auditkit.export.audit_file`): ``in-house`` reads each
        folder's ``audit.in-house.json`` where it has one (every group with its exact n).
        Resolve it from the viewer with :func:`auditkit.export.audience_for`.

    Returns
    -------
    readable : list of dict
        ``{"path": folder, "audit": audit, "audience": the audience of the copy read}``.
    unreadable : list of dict
        ``{"path": folder, "why": reason}`` for each file :func:`read_audit` refuses.
    """
    readable: list[dict[str, Any]] = []
    unreadable: list[dict[str, str]] = []
    try:
        files = sorted(Path(root).glob("*/audit.json"))
    except OSError:
        files = []
    for path in files:
        source = audit_file(path.parent, audience)
        try:
            audit = read_audit(source)
            readable.append({"path": str(path.parent), "audit": audit,
                             "audience": audit.get("audience", "release")})
        except AuditReadError as exc:
            unreadable.append({"path": str(path.parent), "why": f"{source.name} {exc}"})
    readable.sort(key=lambda a: str(a["audit"]["created_at"]), reverse=True)
    return readable, unreadable
