"""Images per group in the model's training and test splits."""

from __future__ import annotations

import csv
import functools
import json
import os
from pathlib import Path
from typing import Any

# --------------------------------------------------------------------------- training mix


def _registry() -> Path:
    env = os.environ.get("AUDITKIT_MODELS")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "models"


def find_model_folder(name: str, version: str,
                      registry: str | os.PathLike[str] | None = None) -> Path | None:
    """The registry folder whose ``card.json`` names ``name`` and ``version`` (read as JSON)."""
    root = Path(registry) if registry else _registry()
    for depth in ("*", "*/*", "*/*/*"):
        for path in sorted(root.glob(f"{depth}/card.json")):
            try:
                card = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError):
                continue
            if card.get("name") == name and card.get("version") == version:
                return path.parent
    return None


def training_mix(audit_dir: str | os.PathLike[str], audit: dict[str, Any], *,
                 registry: str | os.PathLike[str] | None = None
                 ) -> dict[str, list[dict[str, Any]]] | None:
    """Images per group in the model's training split and in its test split.

    Joins the audit's ``predictions.csv`` (groups already relabelled by small-cell
    protection) with the model folder's ``split.csv``; counts below the audit's k are
    withheld (``None``) with complementary suppression. ``None`` when either file is missing
    or the registry's card names other weights than the audited ones.
    """
    from ..evidence import file_stamp, find_table
    from ..suppression import suppress_counts

    model = audit.get("model", {})
    folder = find_model_folder(model.get("name", ""), model.get("version", ""), registry)
    preds = find_table(audit_dir, "predictions")
    if folder is None or not (folder / "split.csv").is_file() or preds is None:
        return None
    try:
        card = json.loads((folder / "card.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    if card.get("sha256") != model.get("sha256"):
        return None
    attributes = tuple(audit.get("dataset", {}).get("attributes") or {})
    counted = _split_counts(file_stamp(preds), file_stamp(folder / "split.csv"), attributes)
    present = [a for a in attributes if a in counted]
    counts = {a: {name: dict(c) for name, c in counted[a].items()} for a in present}
    k = int((audit.get("small_cell_protection") or {}).get("k")
            or audit.get("config", {}).get("small_cell_k") or 0)
    out: dict[str, list[dict[str, Any]]] = {}
    for a in present:
        groups = sorted(set(counts[a]["train"]) | set(counts[a]["test"]))
        train = suppress_counts({g: counts[a]["train"].get(g, 0) for g in groups}, k=k)
        test = suppress_counts({g: counts[a]["test"].get(g, 0) for g in groups}, k=k)
        # a zero is not a small cell: "absent from training" is the finding itself
        for g in groups:
            if counts[a]["train"].get(g, 0) == 0:
                train[g] = 0
        out[a] = [{"group": g, "n_train": train[g], "n_test": test[g]} for g in groups]
    return out


@functools.lru_cache(maxsize=8)
def _split_counts(preds: tuple[str, int, int], split_csv: tuple[str, int, int],
                  attributes: tuple[str, ...]) -> dict[str, dict[str, dict[str, int]]]:
    """Images per group and split, for each attribute the predictions table holds.

    Keyed by the two files' stamps (:func:`auditkit.evidence.file_stamp`): the Overview
    page and the report each ask on every redraw, and counting a million-row table takes
    about a quarter of a second, so it is counted once per file version. Callers copy the
    result before changing it.
    """
    import pandas as pd

    from ..evidence import open_table

    with open(split_csv[0], newline="", encoding="utf-8") as fh:
        split = {row["image"]: row["split"] for row in csv.DictReader(fh)
                 if "image" in row and "split" in row}
    table = open_table(preds[0])  # read a few columns a batch at a time (Parquet when large)
    present = [a for a in attributes if a in table.columns]
    counts: dict[str, dict[str, dict[str, int]]] = {a: {"train": {}, "test": {}}
                                                     for a in present}
    wanted = [c for c in ("image", "split") if c in table.columns] + present
    for batch in table.iter_batches(wanted, batch_size=262_144, as_text=True):
        # predictions.csv names images by pseudonymous key and carries their split
        part = (batch["split"] if "split" in batch
                else pd.Series("", index=batch.index, dtype="string"))
        missing = (part == "").to_numpy(dtype=bool)
        if "image" in batch and missing.any():  # older audits: the split from split.csv
            part = part.copy()
            part[missing] = batch["image"][missing].map(split).fillna("")
        for a in present:
            group = batch[a].where(batch[a] != "", "unknown")
            for name in ("train", "test"):
                for g, c in group[part == name].value_counts().items():
                    counts[a][name][str(g)] = counts[a][name].get(str(g), 0) + int(c)
    return counts
