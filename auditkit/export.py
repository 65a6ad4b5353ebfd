"""Audit bundles that leave the institution: ``auditkit export --release``.

An audit folder holds files for two audiences (see :mod:`auditkit.suppression`,
"Audiences"): ``audit.in-house.json`` shows every group with its exact n and stays inside;
``audit.json`` and ``predictions.csv`` (``predictions.parquet`` for large audits, see
:mod:`auditkit.evidence`) follow the small-cell disclosure rule. A release bundle
re-applies the rule (with the threshold asked for, at least the audit's own) to
``audit.json`` and the predictions table (in the format it was written in), copies
nothing else the rule does not cover, and writes ``MANIFEST.json`` naming each file with its sha256 and audience, and each file it
withheld with the reason. An in-house bundle holds the in-house ``audit.json`` and every
evidence file of the audit. Every file of a bundle states its audience itself (JSON: an
``audience`` key; CSV: an ``audience`` column; NPZ: an ``audience`` entry; see
:func:`auditkit._export.file_audience`). This module never imports torch.
"""

from __future__ import annotations

import hashlib
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ._export import file_audience, save_npz, write_frame_csv
from ._version import __version__
from .exceptions import ConfigError

__all__ = ["AUDIENCE_ENV", "EVIDENCE_FILES", "IN_HOUSE_FILE", "RELEASE_FILES", "audience_for",
           "audit_file", "export_audit", "file_audience", "in_house_groups"]

#: The deployment's audience for a viewer who is not signed in (default ``release``).
AUDIENCE_ENV = "AUDITKIT_AUDIENCE"

#: The in-house copy of audit.json (every group with its exact n), beside it in the folder.
IN_HOUSE_FILE = "audit.in-house.json"
#: Files of an audit folder the disclosure rule covers (everything else is withheld).
RELEASE_FILES = ("audit.json", "predictions.csv", "predictions.parquet")
#: Evidence files an audit folder may hold beside its JSON (an in-house bundle copies them).
EVIDENCE_FILES = ("predictions.csv", "predictions.parquet", "membership_scores.csv",
                  "robustness.csv", "attributions.npz")


def audience_for(user: Any | None, *, default: str | None = None) -> str:
    """The audience a dashboard viewer belongs to: what the pages may show them.

    A signed-in, active account of the institution's review store (any role: the
    committee, its chair, the engineers who ran the audit) is inside the institution, so
    ``"in-house"``: every group with its exact n. Anyone else gets the deployment's
    default: ``default``, else ``$AUDITKIT_AUDIENCE``, else ``"release"`` (the small-cell
    rule). A dashboard reachable only by the committee may set ``AUDITKIT_AUDIENCE=in-house``;
    one reachable by anyone else must not.

    Parameters
    ----------
    user : auditkit.store.UserInfo or None
        The signed-in account (anything with a true ``active`` attribute), or None.
    default : {"release", "in-house"}, optional
        The audience of a viewer who is not signed in.

    Examples
    --------
    >>> audience_for(None, default="release")
    'release'
    """
    from .suppression import AUDIENCES

    if user is not None and bool(getattr(user, "active", False)):
        return "in-house"
    where = "default" if default is not None else f"${AUDIENCE_ENV}"
    chosen = default if default is not None else (os.environ.get(AUDIENCE_ENV) or "release")
    if chosen not in AUDIENCES:
        raise ConfigError(f"{where} must be one of {sorted(AUDIENCES)}; got {chosen!r} "
                          "instead.")
    return chosen


def audit_file(audit_dir: str | os.PathLike[str], audience: str) -> Path:
    """The ``audit.json`` of a folder written for ``audience``.

    ``in-house``: ``audit.in-house.json`` (every group with its exact n) where the audit
    has one, else ``audit.json`` (older audits; stricter, never looser). ``release``:
    ``audit.json``.
    """
    from .suppression import check_audience

    check_audience(audience)
    folder = Path(audit_dir)
    if audience == "in-house" and (folder / IN_HOUSE_FILE).is_file():
        return folder / IN_HOUSE_FILE
    return folder / "audit.json"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def export_audit(audit_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str], *,
                 audience: str = "release", k: int | None = None) -> dict[str, Any]:
    """Write a bundle of one audit for ``audience`` into ``out_dir``; returns the manifest.

    Parameters
    ----------
    audit_dir : path
        A folder written by ``auditkit audit``.
    out_dir : path
        A new or empty folder.
    audience : {"release", "in-house"}
        ``release`` applies the small-cell rule; ``in-house`` copies the in-house
        ``audit.in-house.json`` (every group with its n) as ``audit.json`` and every
        evidence file (:data:`EVIDENCE_FILES`); a file that states no audience (an audit
        written before files stated it) is written stating ``in-house``.
    k : int, optional
        Small-cell threshold for release; default (and minimum) the audit's own.
    """
    from .evidence import find_table, read_table, write_table
    from .suppression import AUDIENCES, apply_small_cell_policy

    if audience not in AUDIENCES:
        raise ConfigError(f"audience must be one of {list(AUDIENCES)}; got {audience!r} "
                          "instead.")
    src, out = Path(audit_dir), Path(out_dir)
    if not (src / "audit.json").is_file():
        raise ConfigError(f"expected an audit folder holding audit.json; found no audit.json "
                          f"in {src}.")
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"the export folder must be new or empty; {out} holds files.")
    try:
        release = json.loads((src / "audit.json").read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{src / 'audit.json'} is not valid JSON ({exc}).") from exc
    own_k = int((release.get("small_cell_protection") or {}).get("k") or 10)
    k = own_k if k is None else int(k)
    if audience == "release" and k < own_k:
        raise ConfigError(f"a release export needs k >= the audit's own threshold {own_k}; "
                          f"got {k} instead.")
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Any] = {}
    if audience == "in-house":
        if not (src / IN_HOUSE_FILE).is_file():
            raise ConfigError(f"{src} has no {IN_HOUSE_FILE} (audits written before auditkit "
                              "recorded audiences); re-run the audit.")
        doc = json.loads((src / IN_HOUSE_FILE).read_text(encoding="utf-8"))
        frame = None
        for name in EVIDENCE_FILES:
            if (src / name).is_file():
                _copy_stating_audience(src / name, out / name)
                written[name] = {"sha256": _sha256(out / name),
                                 "audience": file_audience(out / name)}
    else:
        source = find_table(src, "predictions")  # CSV, or Parquet for large audits
        frame = (read_table(source, as_text=source.suffix == ".csv")
                 if source is not None else None)
        doc, frame = apply_small_cell_policy(release, frame, k=k, count_patients=True,
                                             audience="release")
    (out / "audit.json").write_text(json.dumps(doc, indent=2, allow_nan=False) + "\n",
                                    encoding="utf-8")
    written["audit.json"] = {"sha256": _sha256(out / "audit.json"), "audience": audience}
    if frame is not None and source is not None:
        path = write_table(frame, out, "predictions", fmt=source.suffix.lstrip("."),
                           audience=audience)
        written[path.name] = {"sha256": _sha256(path), "audience": audience}
    withheld = {}
    for path in sorted(p for p in src.rglob("*") if p.is_file()):
        rel = path.relative_to(src).as_posix()
        if rel in written or rel.startswith(".") or "/." in rel:
            continue
        withheld[rel] = ("in-house only: every group with its exact n"
                         if rel.endswith("in-house.json")
                         else "not covered by the disclosure rule for this audience")
    manifest = {
        "kind": "auditkit audit bundle",
        "audience": audience,
        "small_cell_k": k if audience == "release" else None,
        "source": {"folder": str(src.resolve()), "audit_sha256": _sha256(src / "audit.json")},
        "exported_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "auditkit_version": __version__,
        "files": written,
        "withheld": withheld,
    }
    (out / "MANIFEST.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest


def _copy_stating_audience(source: Path, dest: Path) -> None:
    """Copy an evidence file; one that states no audience is written stating in-house."""
    import shutil

    import numpy as np
    import pandas as pd

    if file_audience(source) is not None:
        shutil.copyfile(source, dest)
    elif source.suffix == ".parquet":
        from .evidence import read_table, write_table

        write_table(read_table(source), dest.parent, dest.stem, fmt="parquet",
                    audience="in-house")
    elif source.suffix == ".csv":
        write_frame_csv(pd.read_csv(source, dtype=str, keep_default_na=False), dest,
                        audience="in-house")
    else:
        with np.load(source, allow_pickle=False) as npz:
            save_npz(dest, {k: npz[k] for k in npz.files}, audience="in-house")


def in_house_groups(audit_dir: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Every patient group of an audit with its exact n, for the in-house review.

    Read from ``audit.in-house.json`` (fairness groups); one dict per group with
    ``attribute``, ``group``, ``n``, ``n_patients``, ``too_few`` and ``accuracy`` /
    ``accuracy_ci`` (value and interval, None where undefined). Empty when the audit did
    not run the fairness check or predates audiences.
    """
    path = Path(audit_dir) / IN_HOUSE_FILE
    if not path.is_file():
        return []
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path} is not valid JSON ({exc}).") from exc
    groups = ((doc.get("results") or {}).get("fairness") or {}).get("groups") or []
    out = []
    for g in groups:
        acc = g.get("accuracy") or {}
        out.append({"attribute": g.get("attribute"), "group": g.get("group"),
                    "n": g.get("n"), "n_patients": g.get("n_patients"),
                    "too_few": bool(g.get("too_few")), "accuracy": acc.get("value"),
                    "accuracy_ci": acc.get("ci")})
    return out
