"""Changes in robustness and privacy results between two stored audits (unpaired)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from .. import wording

__all__ = ["from_audits"]


def _unpaired(a: dict[str, Any] | None, b: dict[str, Any] | None,
              z: float = 1.959964) -> dict[str, Any] | None:
    """B − A of two stored ``{value, ci}`` with an approximate interval (independent samples)."""
    if not a or not b or a.get("value") is None or b.get("value") is None:
        return None
    out: dict[str, Any] = {"a": a["value"], "a_ci": a.get("ci"), "b": b["value"],
                           "b_ci": b.get("ci"), "difference": b["value"] - a["value"],
                           "ci": [None, None]}
    ca, cb = a.get("ci") or [None, None], b.get("ci") or [None, None]
    if None not in (*ca, *cb):
        se = math.sqrt(((ca[1] - ca[0]) / (2 * z)) ** 2 + ((cb[1] - cb[0]) / (2 * z)) ** 2)
        out["ci"] = [out["difference"] - z * se, out["difference"] + z * se]
    return out


def _group_changes(entries_a: Sequence[dict[str, Any]], entries_b: Sequence[dict[str, Any]],
                   pick: Callable[[dict[str, Any]], dict[str, Any] | None]) -> list[dict[str, Any]]:
    by_b = {(e.get("attribute"), e.get("group")): e for e in entries_b}
    rows = []
    for ea in entries_a:
        eb = by_b.get((ea.get("attribute"), ea.get("group")))
        if eb is None or ea.get("suppressed") or eb.get("suppressed"):
            continue
        change = _unpaired(pick(ea), pick(eb))
        if change is None:
            continue
        n_a, n_b = ea.get("n"), eb.get("n")
        rows.append({"attribute": ea.get("attribute"), "group": ea.get("group"),
                     "n": min(n_a, n_b) if n_a is not None and n_b is not None else None,
                     "n_a": n_a, "n_b": n_b, "too_few": bool(ea.get("too_few") or eb.get("too_few")),
                     **change})
    return rows


def from_audits(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Changes in robust accuracy per ε, corruption sensitivity and membership AUC.

    Only where both audits hold the check. These come from each audit's own samples
    (attacked images, membership sample), not from paired predictions, so the
    interval is approximate: ``(B − A) ± 1.96·√(se_A² + se_B²)`` with each se read
    off its stored 95% interval.
    """
    method = ("unpaired: each audit's own sample; interval (B − A) ± 1.96·√(se_A² + se_B²), "
              "se from each stored 95% interval")
    out: dict[str, Any] = {"method": method}
    ra, rb = a["results"].get("robustness"), b["results"].get("robustness")
    if ra and rb and ra.get("status") == rb.get("status") == "assessed":
        attacks = []
        by_b = {(x["attack"], x.get("budget_label")): x for x in rb.get("attacks", [])}
        for x in ra.get("attacks", []):
            y = by_b.get((x["attack"], x.get("budget_label")))
            if y is None:
                continue
            attacks.append({
                "attack": x["attack"], "budget_label": x.get("budget_label"),
                "overall": _unpaired(x["overall"].get("robust_accuracy"),
                                     y["overall"].get("robust_accuracy")),
                "by_group": _group_changes(x.get("by_group", []), y.get("by_group", []),
                                           lambda e: e.get("robust_accuracy"))})
        corr = []
        by_b = {(x["corruption"], x["severity"]): x for x in rb.get("corruptions", [])}
        for x in ra.get("corruptions", []):
            y = by_b.get((x["corruption"], x["severity"]))
            if y is None:
                continue
            corr.append({
                "corruption": x["corruption"], "severity": x["severity"],
                "overall": _unpaired(x["overall"].get("flip_rate"), y["overall"].get("flip_rate")),
                "by_group": _group_changes(x.get("by_group", []), y.get("by_group", []),
                                           lambda e: e.get("flip_rate"))})
        out["robust_accuracy"] = {"status": "assessed", "attacks": attacks}
        out["corruption_flip_rate"] = {"status": "assessed", "corruptions": corr}
    else:
        reason = wording.not_assessed("robustness was not run in both audits")
        out["robust_accuracy"] = {"status": "not_assessed", "reason": reason}
        out["corruption_flip_rate"] = {"status": "not_assessed", "reason": reason}
    ma = (a["results"].get("privacy") or {}).get("membership") or {}
    mb = (b["results"].get("privacy") or {}).get("membership") or {}
    if ma.get("status") == mb.get("status") == "assessed":
        attack = ma.get("strongest_attack", "loss")
        if attack not in (mb.get("overall") or {}):
            attack = "loss"
        out["membership_auc"] = {
            "status": "assessed", "attack": attack,
            "overall": _unpaired(ma["overall"].get(attack, {}).get("auc"),
                                 mb["overall"].get(attack, {}).get("auc")),
            "by_group": _group_changes(ma.get("groups", []), mb.get("groups", []),
                                       lambda e: (e.get("attacks") or {}).get(attack, {}).get("auc")),
        }
    else:
        out["membership_auc"] = {"status": "not_assessed", "reason": wording.not_assessed(
            "membership inference was not run in both audits")}
    return out


