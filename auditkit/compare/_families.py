"""A model family over time: "what changed since the previous version" and the trend."""

from __future__ import annotations

import os
from typing import Any

from .. import wording
from ..exceptions import AuditKitError
from ._inputs import CompareSettings, compare_audits, find_audits

__all__ = ["previous_version_comparison", "version_trend"]


def _audits_of(name: str, dataset_name: str, audits_dir: str | os.PathLike[str]
               ) -> dict[str, dict[str, Any]]:
    """Newest stored audit per version of ``name`` on ``dataset_name``."""
    newest: dict[str, dict[str, Any]] = {}
    for entry in find_audits(audits_dir):
        m, d = entry["audit"]["model"], entry["audit"]["dataset"]
        if m.get("name") == name and d.get("name") == dataset_name:
            newest.setdefault(m["version"], entry)
    return newest


def previous_version_comparison(
    name: str,
    version: str,
    dataset_name: str,
    *,
    audits_dir: str | os.PathLike[str],
    registry: str | os.PathLike[str] | None = None,
    settings: CompareSettings | None = None,
    data_root: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """"What changed since the previous version": for an Overview page.

    Finds the version of ``name`` just before ``version`` in the registry, the newest
    stored audit of each on ``dataset_name``, and compares them.

    Returns
    -------
    dict
        ``{"status": "assessed", "previous": "v1", "sentence": str, "summary": [str],
        "comparison": <comparison.json document>}``, or ``{"status": "not_assessed",
        "reason": str}`` (no previous version, or no stored audit of one of the two).
    """
    from ..models import _version_key, list_models

    versions = sorted({m.card.version for m in list_models(registry) if m.card.name == name},
                      key=_version_key)
    if version not in versions:
        return {"status": "not_assessed",
                "reason": wording.not_assessed(f"{name}@{version} is not in the registry")}
    pos = versions.index(version)
    if pos == 0:
        return {"status": "not_assessed",
                "reason": wording.not_assessed(f"{name}@{version} is the first version")}
    previous = versions[pos - 1]
    audits = _audits_of(name, dataset_name, audits_dir)
    missing = [v for v in (previous, version) if v not in audits]
    if missing:
        return {"status": "not_assessed", "previous": previous, "reason": wording.not_assessed(
            f"no stored audit of {', '.join(f'{name}@{v}' for v in missing)} on {dataset_name}",
            f"auditkit compare --models {name}@{previous},{name}@{version} --dataset "
            f"{dataset_name}")}
    try:
        doc, _ = compare_audits(audits[previous]["path"], audits[version]["path"],
                                settings=settings, registry=registry, data_root=data_root)
    except AuditKitError as exc:
        return {"status": "not_assessed", "previous": previous,
                "reason": wording.not_assessed(str(exc))}
    summary = doc["results"].get("summary", [])
    return {"status": "assessed", "previous": previous,
            "sentence": summary[0] if summary else "", "summary": summary, "comparison": doc}


def version_trend(name: str, dataset_name: str, *, audits_dir: str | os.PathLike[str],
                  metric: str = "accuracy",
                  registry: str | os.PathLike[str] | None = None) -> list[dict[str, Any]]:
    """Headline and worst-group ``metric`` of every version of a family, with intervals.

    One row per registry version of ``name``, oldest first: ``version``, ``status``,
    ``headline`` ``{value, ci, n}`` (the audit's performance section), ``worst_group``
    ``{attribute, group, value, ci, n}`` (lowest judgeable group of the fairness section:
    not too few, not unknown, not withheld) and ``audit`` (folder). Each version is
    measured on its own held-out split, so the rows are not paired: compare two of them
    with :func:`compare_audits` for a paired difference.
    """
    from .._metrics import LOWER_IS_BETTER
    from ..models import _version_key, list_models

    versions = sorted({m.card.version for m in list_models(registry) if m.card.name == name},
                      key=_version_key)
    audits = _audits_of(name, dataset_name, audits_dir)
    rows = []
    for v in versions:
        entry = audits.get(v)
        if entry is None:
            rows.append({"version": v, "status": "not_assessed",
                         "reason": wording.not_assessed(f"no stored audit on {dataset_name}")})
            continue
        res = entry["audit"]["results"]
        perf = res["performance"]
        head = perf.get("metrics", {}).get(metric, {})
        row: dict[str, Any] = {"version": v, "status": "assessed", "audit": str(entry["path"]),
                               "created_at": entry["audit"].get("created_at"),
                               "headline": {"value": head.get("value"), "ci": head.get("ci"),
                                            "n": perf.get("n"),
                                            "n_patients": perf.get("n_patients")},
                               "worst_group": None}
        groups = [g for g in (res.get("fairness") or {}).get("groups", [])
                  if not g.get("too_few") and not g.get("is_unknown") and not g.get("suppressed")
                  and not g.get("intersection")
                  and (g.get(metric) or {}).get("value") is not None]
        if groups:
            key = (lambda g: -g[metric]["value"]) if metric in LOWER_IS_BETTER else (
                lambda g: g[metric]["value"])
            w = min(groups, key=key)
            row["worst_group"] = {"attribute": w["attribute"], "group": w["group"],
                                  "value": w[metric]["value"], "ci": w[metric]["ci"],
                                  "n": w["n"], "n_patients": w.get("n_patients")}
        else:
            row["worst_group_reason"] = wording.not_assessed(
                "the audit has no fairness results with a judgeable group",
                "run the audit with --checks fairness")
        rows.append(row)
    return rows
