"""The survey of one audit, and its stored evaluations."""

from __future__ import annotations

import hashlib
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .._version import __version__
from ..criteria import Criteria, default_criteria, parse_criteria, task_type_of
from ..exceptions import ConfigError
from ._performance import _accuracy, _evidence, _fairness
from ._training import training_mix
from ._trust import _change, _explain, _privacy, _robustness
from ._types import Survey

# --------------------------------------------------------------------------- survey


def criteria_for_audit(audit: dict[str, Any]) -> Criteria:
    """The criteria recorded in ``audit.json`` at run time, else the default for its task."""
    record = audit.get("criteria")
    if isinstance(record, dict):
        return Criteria.from_record(record)
    return default_criteria(task_type_of(audit.get("model", {})))


def survey(audit: dict[str, Any], *, criteria: Criteria | None = None,
           audit_dir: str | os.PathLike[str] | None = None,
           training: dict[str, list[dict[str, Any]]] | None = None) -> Survey:
    """Answer the committee's seven questions for one audit.

    Parameters
    ----------
    audit : dict
        A parsed ``audit.json``.
    criteria : Criteria, optional
        Default: the set recorded in the audit, else the shipped default for its task type.
    audit_dir : path, optional
        The audit's folder (used by the version-comparison hook).
    training : dict, optional
        Images per group in training and test (:func:`training_mix`); without it the
        evidence question says the training mix is not in this audit.
    """
    if not isinstance(audit, dict) or "model" not in audit or "results" not in audit:
        raise ConfigError("An audit must be a parsed audit.json with 'model' and 'results'; got "
                          f"{type(audit).__name__} with keys {sorted(audit)[:8] if isinstance(audit, dict) else []} instead.")
    recorded = isinstance(audit.get("criteria"), dict)
    crit = criteria or criteria_for_audit(audit)
    recorded = recorded and audit["criteria"].get("hash") == crit.hash
    perf = audit.get("results", {}).get("performance") or {}
    answers = [_accuracy(audit, crit), _fairness(audit, crit), _evidence(audit, crit, training),
               _explain(audit, crit), _robustness(audit, crit), _privacy(audit, crit),
               _change(audit, audit_dir)]
    return Survey(model=audit.get("model", {}), dataset=audit.get("dataset", {}),
                  audit_created_at=str(audit.get("created_at", "")),
                  n_images=perf.get("n"), n_patients=perf.get("n_patients"),
                  criteria=crit.to_record(), criteria_recorded_in_audit=recorded,
                  answers=answers)


# --------------------------------------------------------------------------- stored evaluations


def load_audit(audit_dir: str | os.PathLike[str]) -> tuple[dict[str, Any], str]:
    """``audit.json`` of a folder and the SHA-256 of its bytes."""
    path = Path(audit_dir) / "audit.json"
    if not path.is_file():
        raise ConfigError(f"An audit folder must hold audit.json; {str(path)!r} does not exist.")
    raw = path.read_bytes()
    try:
        audit = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path} must be JSON written by auditkit; it is not ({exc}).") from None
    return audit, hashlib.sha256(raw).hexdigest()


def evaluate_audit(audit_dir: str | os.PathLike[str], *, criteria: Criteria | None = None
                   ) -> tuple[Survey, Path]:
    """Survey a stored audit and keep the evaluation as ``evaluations/<criteria hash>.json``.

    ``audit.json`` is never touched. An evaluation under the same criteria hash that already
    exists is kept as first written (its ``evaluated_at`` says when the criteria were first
    applied); a new criteria set makes a new file beside it.
    """
    audit, audit_sha = load_audit(audit_dir)
    result = survey(audit, criteria=criteria, audit_dir=audit_dir,
                    training=training_mix(audit_dir, audit))
    folder = Path(audit_dir) / "evaluations"
    folder.mkdir(exist_ok=True)
    path = folder / f"{result.criteria['hash']}.json"
    if not path.exists():
        record = {"evaluated_at": datetime.now(UTC).isoformat(timespec="seconds"),
                  "auditkit_version": __version__, "audit_sha256": audit_sha,
                  "criteria": result.criteria,
                  "verdicts": {a.key: a.verdict for a in result.answers},
                  "survey": result.to_dict()}
        tmp = folder / f".{path.name}.tmp"
        tmp.write_text(json.dumps(record, indent=2, allow_nan=False) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    return result, path


def list_evaluations(audit_dir: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Stored evaluations of an audit (criteria name, hash, when, verdicts), oldest first."""
    out = []
    for p in sorted((Path(audit_dir) / "evaluations").glob("*.json")):
        try:
            rec = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            continue
        out.append({"file": str(p), "criteria_name": rec["criteria"]["name"],
                    "criteria_hash": rec["criteria"]["hash"],
                    "evaluated_at": rec["evaluated_at"], "verdicts": rec["verdicts"]})
    out.sort(key=lambda r: r["evaluated_at"])
    return out


def criteria_from_text(text: str, *, source: str = "uploaded file") -> Criteria:
    """Validate criteria given as TOML text (e.g. an upload on the Overview page)."""
    import tomllib

    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"Criteria {source} must be valid TOML; it is not ({exc}).") from None
    return parse_criteria(data, source=source)
