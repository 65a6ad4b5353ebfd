"""The ``privacy`` check: does the model leak who it was trained on, do the inputs hold identifiers?

Two questions for an ethics board:

1. **Membership inference.** Could someone holding the model's outputs tell whether
   a given patient's image was used in training? Training members come from the
   model folder's ``split.csv`` (``train``; ``test``, ``val`` and ``unused`` images
   were never trained on) or from a table column the user names. Members and
   non-members are balanced (equal numbers) and matched on label and patient
   attributes, so an attack cannot succeed by recognising *who* tends to be in
   training rather than *whether* this image was. See :mod:`._membership` for the
   attacks and :mod:`._reference` for the calibrated one ("thorough" mode).
2. **Direct identifiers in the inputs**: names, record numbers, dates, addresses,
   phone numbers, e-mails in the dataset table or DICOM headers, and DICOM
   de-identification markers. Kinds and places are reported, never values.

Options (``AuditConfig.options["privacy"]``)
-------------------------------------------
``mode``            ``"fast"`` (default: metric attacks from the stored predictions,
                    seconds) or ``"thorough"`` (adds the calibrated attack; trains
                    ``n_reference`` models, minutes to hours, estimate reported).
``split_csv``       path of a ``image,split`` table (default ``<model folder>/split.csv``).
``member_column``   a column of the dataset table marking training members
                    (``train``/``member``/``1``/``true``/``yes`` vs
                    ``test``/``val``/``unused``/``non-member``/``0``/``false``/``no``).
``match_on``        attributes members and non-members are matched on (default all).
``max_per_side``    cap on images per side (default 2000).
``n_reference``, ``epochs``  for thorough mode (default 4, recipe's epochs).
``scan_identifiers`` ``True`` (default) / ``False``; ``max_dicom_files`` (default 500).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ..exceptions import ConfigError, DataError
from ._identifiers import (
    DICOM_IDENTIFYING_TAGS,
    IDENTIFIER_KINDS,
    dicom_paths,
    scan_dicom_headers,
    scan_table,
)
from ._membership import (
    ATTACKS,
    LOW_FPRS,
    AttackEvaluation,
    balanced_membership_sample,
    describe_exposure,
    evaluate_attack,
    metric_attack_scores,
    roc_curve_points,
    task_loss_scores,
)
from ._reference import estimate_thorough_seconds

if TYPE_CHECKING:
    from .._context import CheckContext

__all__ = [
    "ATTACKS",
    "AttackEvaluation",
    "DICOM_IDENTIFYING_TAGS",
    "IDENTIFIER_KINDS",
    "LOW_FPRS",
    "balanced_membership_sample",
    "describe_exposure",
    "estimate_thorough_seconds",
    "evaluate_attack",
    "identifier_findings_table",
    "membership_groups_table",
    "membership_labels",
    "metric_attack_scores",
    "roc_curve_points",
    "run_check",
    "scan_dicom_headers",
    "scan_inputs",
    "scan_table",
]

MODES = ("fast", "thorough")
_MEMBER_VALUES = {"train", "training", "member", "in", "1", "true", "yes", "y"}
_NONMEMBER_VALUES = {"test", "val", "valid", "validation", "unused", "non-member", "nonmember",
                     "holdout", "held-out", "out", "0", "false", "no", "n"}
#: Validation images chose the checkpoint (early stopping, model selection): the model
#: was fitted to do well on them, so they are neither members nor clean non-members.
_VALIDATION_VALUES = {"val", "valid", "validation"}
_KNOWN_OPTIONS = {"mode", "split_csv", "member_column", "match_on", "max_per_side",
                  "n_reference", "epochs", "scan_identifiers", "max_dicom_files"}


def membership_labels(values: pd.Series) -> pd.Series:
    """Split / membership values -> True (member), False (never trained on) or NA."""
    text = values.astype("string").str.strip().str.lower()
    out = pd.Series(pd.NA, index=values.index, dtype="boolean")
    out[text.isin(_MEMBER_VALUES).fillna(False).to_numpy(dtype=bool)] = True
    out[text.isin(_NONMEMBER_VALUES).fillna(False).to_numpy(dtype=bool)] = False
    return out


def _read_table(ctx: CheckContext) -> pd.DataFrame:
    path = Path(ctx.dataset.root) / ctx.dataset.spec.table
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def _validation_rows(ctx: CheckContext, opts: dict[str, Any]) -> np.ndarray:
    """Records marked as validation in the split (they selected the checkpoint)."""
    images = ctx.dataset.records["image"]
    if opts.get("member_column"):
        table = _read_table(ctx)
        values = images.map(dict(zip(table[ctx.dataset.spec.image_column],
                                     table[str(opts["member_column"])])))
    else:
        path = Path(opts["split_csv"]) if opts.get("split_csv") else (
            Path(ctx.model.folder) / "split.csv" if ctx.model.folder is not None else None)
        if path is None or not path.is_file():
            return np.zeros(len(images), dtype=bool)
        split = pd.read_csv(path, dtype=str, keep_default_na=False)
        values = images.map(dict(zip(split["image"], split["split"])))
    text = values.astype("string").str.strip().str.lower()
    return text.isin(_VALIDATION_VALUES).fillna(False).to_numpy(dtype=bool)


def _membership_source(ctx: CheckContext, opts: dict[str, Any]) -> tuple[pd.Series | None, str]:
    """Per-record membership (boolean, NA unknown) and where it came from."""
    images = ctx.dataset.records["image"]
    if opts.get("member_column"):
        column = str(opts["member_column"])
        table = _read_table(ctx)
        if column not in table.columns:
            raise ConfigError(
                f"privacy member_column: expected a column of {ctx.dataset.spec.table} "
                f"({list(table.columns)}); got {column!r} instead.")
        by_image = dict(zip(table[ctx.dataset.spec.image_column], table[column]))
        return membership_labels(images.map(by_image)), f"column {column!r} of the dataset table"
    path = Path(opts["split_csv"]) if opts.get("split_csv") else (
        Path(ctx.model.folder) / "split.csv" if ctx.model.folder is not None else None)
    if path is None or not path.is_file():
        return None, str(path) if path is not None else "no model folder"
    split = pd.read_csv(path, dtype=str, keep_default_na=False)
    if not {"image", "split"} <= set(split.columns):
        raise DataError(f"{path}: expected columns 'image' and 'split'; got "
                        f"{list(split.columns)} instead.")
    return membership_labels(images.map(dict(zip(split["image"], split["split"])))), str(path)


def _match_columns(records: pd.DataFrame, member: np.ndarray, attrs: list[str],
                   rng: np.random.Generator, max_per_side: int) -> tuple[np.ndarray, list[str]]:
    """Balanced sample matched on label + as many attributes as keep >= 60% of the pairs.

    When matching on every attribute leaves fewer than 60% of the possible pairs
    (strata too fine, or an attribute almost splits members from non-members), the
    attribute whose removal recovers the most pairs is dropped, and so on.
    """
    possible = min(int(member.sum()), int((~member).sum()))

    def pairs(cols: list[str]) -> int:
        keys = records[cols].astype(str).agg("|".join, axis=1)
        table = pd.crosstab(keys, member)
        return int(table.min(axis=1).sum()) if table.shape[1] == 2 else 0

    attrs = list(attrs)
    while attrs and pairs(["label", *attrs]) < 0.6 * possible:
        attrs.remove(max(attrs, key=lambda a: pairs(["label", *[b for b in attrs if b != a]])))
    cols = ["label", *attrs]
    return balanced_membership_sample(member, records[cols], rng, max_per_side), cols


def _group_entries(ctx: CheckContext, sub: pd.DataFrame, scores: dict[str, np.ndarray],
                   member: np.ndarray, clusters: np.ndarray | None) -> list[dict[str, Any]]:
    entries = []
    cfg = ctx.config
    rng = ctx.rng(702)
    for attr in ctx.dataset.spec.attributes:
        values = sub[attr.name].astype(str).to_numpy()
        order = [g for g in attr.group_order if g in set(values)]
        order += sorted(set(values) - set(order))
        for group in order:
            mask = values == group
            cl = clusters[mask] if clusters is not None else None
            n = int(mask.sum())
            n_patients = int(len(np.unique(cl.astype(str)))) if cl is not None else None
            per_attack = {}
            for name, s in scores.items():
                ev = evaluate_attack(s[mask], member[mask], clusters=cl, n_boot=cfg.n_boot,
                                     rng=rng, level=cfg.confidence)
                per_attack[name] = ev.to_dict()
            units = n_patients if n_patients is not None else n
            entries.append({
                "attribute": attr.name, "group": group, "n": n, "n_patients": n_patients,
                "n_members": int(member[mask].sum()),
                "n_nonmembers": int((~member[mask]).sum()),
                "too_few": bool(units < cfg.min_group_size),
                "attacks": per_attack,
            })
    return entries


def _dense_truth(ctx: CheckContext, idx: np.ndarray) -> np.ndarray:
    """Finding labels ``(n, K)``, or reference masks at the model's output size ``(n, H, W)``."""
    card = ctx.model.card
    rec = ctx.dataset.records.iloc[idx]
    if card.output == "multilabel_sigmoid":
        from ..multilabel import finding_labels

        return finding_labels(rec, list(card.class_names))
    from ..segmentation import load_mask_tensor

    size = card.output_size
    return np.stack([load_mask_tensor(ctx.dataset.root / m, size) if m
                     else np.zeros(size, dtype=bool) for m in rec["mask"]])


def _membership(ctx: CheckContext, opts: dict[str, Any]) -> tuple[dict[str, Any], pd.DataFrame | None]:
    from .._context import label_indices

    card = ctx.model.card
    dense = card.output in ("multilabel_sigmoid", "segmentation")
    if dense and opts.get("mode", "fast") == "thorough":
        return {"status": "not_assessed",
                "reason": ("the thorough (reference-model) attack trains classifiers; for "
                           f"{card.output} models only the fast attacks on the model's own "
                           "loss are available (mode 'fast')")}, None
    labels, source = _membership_source(ctx, opts)
    if labels is None:
        return {"status": "not_assessed",
                "reason": (f"training membership is unknown: no split.csv at {source} and no "
                           "'member_column' option naming a table column that marks training "
                           "images")}, None
    validation = _validation_rows(ctx, opts)
    # validation images are left out of the non-members: they chose the checkpoint
    known = labels.notna().to_numpy() & ~validation
    member_all = labels.fillna(False).to_numpy(dtype=bool)
    n_mem, n_non = int((known & member_all).sum()), int((known & ~member_all).sum())
    if n_mem == 0 or n_non == 0:
        return {"status": "not_assessed", "source": source,
                "reason": (f"need both training images and images never trained on among this "
                           f"dataset's images; found {n_mem} and {n_non}")}, None
    rec = ctx.dataset.records
    attrs = list(opts.get("match_on", ctx.dataset.attribute_names))
    unknown_attrs = sorted(set(attrs) - set(ctx.dataset.attribute_names))
    if unknown_attrs:
        raise ConfigError(f"privacy match_on: expected attributes among "
                          f"{ctx.dataset.attribute_names}; got {unknown_attrs} instead.")
    known_idx = np.flatnonzero(known)
    sub_idx, matched_on = _match_columns(rec.iloc[known_idx].reset_index(drop=True),
                                         member_all[known_idx], attrs, ctx.rng(701),
                                         int(opts.get("max_per_side", 2000)))
    idx = known_idx[sub_idx]
    member = member_all[idx]
    proba = ctx.predictions.probabilities
    if dense:  # the task's own per-image loss
        scores = task_loss_scores(output_kind=card.output, proba=proba[idx],
                                  truth=_dense_truth(ctx, idx))
        y_all = np.zeros(len(rec), dtype=int)  # only the thorough mode reads it (refused above)
    else:
        y_all = label_indices(ctx)
        scores = metric_attack_scores(proba[idx], y_all[idx])
    clusters_all = None
    if ctx.dataset.has_patients:  # an image without patient id is its own unit
        pid = rec["patient_id"].astype(object)
        clusters_all = np.where(pid.notna(), "patient:" + pid.astype(str),
                                "image:" + rec["image"].astype(str)).astype(str)
    clusters = clusters_all[idx] if clusters_all is not None else None
    mode = opts.get("mode", "fast")
    thorough: dict[str, Any] | None = None
    if mode == "thorough":
        from ._reference import ReferenceSettings, calibrated_scores

        settings = ReferenceSettings(model=ctx.model, n_reference=int(opts.get("n_reference", 4)),
                                     epochs=opts.get("epochs"))
        units = clusters_all if clusters_all is not None else rec["image"].astype(str).to_numpy()
        scores["calibrated"], thorough = calibrated_scores(
            model=ctx.model, paths=rec["path"].tolist(), y=y_all, eval_idx=idx, units=units,
            target_proba=proba, settings=settings, rng=ctx.rng(703), progress=ctx.progress)
    overall = {}
    for name, s in scores.items():
        overall[name] = evaluate_attack(s, member, clusters=clusters, n_boot=ctx.config.n_boot,
                                        rng=ctx.rng(704), level=ctx.config.confidence).to_dict()
    strongest = max(overall, key=lambda a: (overall[a]["auc"]["value"]
                                            if overall[a]["auc"]["value"] is not None else -1))
    head = overall[strongest]
    # the strongest of k attacks is picked after looking: its interval is widened to the
    # Bonferroni level 1 - (1 - confidence) / k (same seeded resamples)
    level_adj = 1.0 - (1.0 - ctx.config.confidence) / max(len(scores), 1)
    adjusted = evaluate_attack(scores[strongest], member, clusters=clusters,
                               n_boot=ctx.config.n_boot, rng=ctx.rng(704),
                               level=level_adj).auc_ci
    tpr1 = head["tpr_at_1pct_fpr"]["value"]
    sub = rec.iloc[idx].reset_index(drop=True)
    groups = _group_entries(ctx, sub, scores, member, clusters)
    # "image" holds the pseudonymous key, never the file name
    evidence = pd.DataFrame({"image": sub["key"].to_numpy(), "member": member.astype(int),
                             **{name: s for name, s in scores.items()}})
    result = {
        "status": "assessed",
        "mode": mode,
        "source": source,
        "n": int(len(idx)),
        "n_patients": int(len(np.unique(clusters))) if clusters is not None else None,
        "n_members": int(member.sum()),
        "n_nonmembers": int((~member).sum()),
        "resampling_unit": "patient" if clusters is not None else "image",
        "balance": {
            "members_available": n_mem, "nonmembers_available": n_non,
            "validation_excluded": int(validation.sum()),
            "matched_on": matched_on,
            "method": ("members (split 'train') and non-members (never trained on: 'test', "
                       "'unused'; validation images, which chose the checkpoint, are left "
                       "out) are matched within every combination of "
                       f"{', '.join(matched_on)}: in each, the larger side is randomly "
                       "subsampled (seeded) to the size of the smaller, so both sides have "
                       "the same size and the same mix of labels and groups"),
        },
        "attacks": {name: ATTACKS[name] for name in scores},
        "overall": overall,
        "strongest_attack": strongest,
        "strongest_attack_auc_ci_adjusted": adjusted,
        "strongest_attack_adjusted_level": level_adj,
        "n_validation_excluded": int(validation.sum()),
        "finding": describe_exposure(head["auc"]["value"], adjusted, tpr1,
                                     resolvable=head["tpr_at_1pct_fpr"]["resolvable"],
                                     n_attacks=len(scores)),
        "roc": {name: roc_curve_points(s, member) for name, s in scores.items()},
        "groups": groups,
    }
    if thorough is not None:
        result["thorough"] = thorough
    return result, evidence


def scan_inputs(ctx: CheckContext, *, max_dicom_files: int = 500) -> dict[str, Any]:
    """Identifier scan of the dataset table and (a seeded sample of) its DICOM headers."""
    spec = ctx.dataset.spec
    try:
        table = _read_table(ctx)
    except (OSError, pd.errors.ParserError) as exc:
        table_findings: list[dict[str, Any]] | None = None
        table_note = f"the table could not be read ({exc})"
    else:
        table_findings = scan_table(table, patient_column=spec.patient_column)
        table_note = f"{len(table)} rows, {len(table.columns)} columns checked"
    dicoms = dicom_paths(ctx.dataset.records["path"].tolist())
    if len(dicoms) > max_dicom_files:
        pick = np.sort(ctx.rng(705).choice(len(dicoms), size=max_dicom_files, replace=False))
        dicoms = [dicoms[i] for i in pick]
    dicom = scan_dicom_headers(dicoms) if dicoms else None
    direct = [f for f in (table_findings or []) if f["kind"] != "patient_id"]
    n_tags = len(dicom["tags"]) if dicom else 0
    burned = dicom["markers"]["BurnedInAnnotation"]["YES"] if dicom else 0
    parts = []
    if direct:
        kinds = sorted({IDENTIFIER_KINDS[f["kind"]] for f in direct})
        parts.append(f"The dataset table has {len(direct)} column finding(s) that look like "
                     f"direct identifiers ({'; '.join(kinds)}). Remove or coarsen them before "
                     "sharing the data.")
    if n_tags:
        parts.append(f"DICOM headers hold {n_tags} identifying tag(s) with values.")
    if burned:
        parts.append(f"{burned} DICOM file(s) say text is burned into the pixels "
                     "(BurnedInAnnotation = YES): names may be visible in the image itself.")
    if not parts:
        parts.append("No direct identifiers were found in the table"
                     + (" or the DICOM headers." if dicom else " (no DICOM files)."))
    return {
        "table": {"file": spec.table, "note": table_note, "findings": table_findings},
        "dicom": dicom,
        "n_direct_identifier_findings": len(direct) + n_tags,
        "finding": " ".join(parts),
        "values_shown": False,
    }


def run_check(ctx: CheckContext) -> dict[str, Any]:
    """Membership inference and identifier scan (see the module docstring)."""
    opts = ctx.options("privacy")
    unknown = sorted(set(opts) - _KNOWN_OPTIONS)
    if unknown:
        raise ConfigError(f"Unknown privacy option(s) {unknown}; expected among "
                          f"{sorted(_KNOWN_OPTIONS)}.")
    mode = opts.get("mode", "fast")
    if mode not in MODES:
        raise ConfigError(f"privacy mode must be one of {list(MODES)}; got {mode!r} instead.")
    membership, evidence = _membership(ctx, opts)
    if evidence is not None and ctx.out_dir is not None:
        from .._export import write_frame_csv

        # per image, not covered by the small-cell rule: for the institution only
        write_frame_csv(evidence, Path(ctx.out_dir) / "membership_scores.csv",
                        audience="in-house")
        membership["evidence_file"] = "membership_scores.csv"
    out: dict[str, Any] = {"status": "assessed", "membership": membership}
    if opts.get("scan_identifiers", True):
        out["identifiers"] = scan_inputs(ctx, max_dicom_files=int(opts.get("max_dicom_files",
                                                                           500)))
    out["patient_ids_shown"] = False
    return out


def membership_groups_table(membership: dict[str, Any], *, attack: str | None = None,
                            attribute: str | None = None, k: int = 10) -> pd.DataFrame:
    """Per-group exposure as a table (for pages): one row per group.

    Columns: ``attribute``, ``group``, ``n``, ``n_patients``, ``n_members``,
    ``n_nonmembers``, ``too_few``, ``suppressed``, ``auc``, ``auc_low``,
    ``auc_high``, ``tpr_at_1pct_fpr``. ``attack`` defaults to the strongest attack;
    ``k`` re-applies small-cell protection (:func:`auditkit.suppression.suppress_group_table`);
    it must be at least 1 (:class:`~auditkit.exceptions.ConfigError` otherwise): exposure per
    group is never shown unprotected.
    """
    from ..suppression import suppress_group_table
    from ..wording import SMALL_CELL_FLOOR, small_cell_k_refused

    if int(k) < SMALL_CELL_FLOOR:
        raise ConfigError(small_cell_k_refused(int(k)))

    attack = attack or membership.get("strongest_attack", "loss")
    rows = []
    for g in membership.get("groups", []):
        if attribute is not None and g["attribute"] != attribute:
            continue
        ev = (g.get("attacks") or {}).get(attack) or {}
        auc = ev.get("auc") or {}
        ci = auc.get("ci") or [None, None]
        rows.append({
            "attribute": g["attribute"], "group": g["group"], "n": g.get("n"),
            "n_patients": g.get("n_patients"), "n_members": g.get("n_members"),
            "n_nonmembers": g.get("n_nonmembers"), "too_few": bool(g.get("too_few")),
            "suppressed": bool(g.get("suppressed")), "auc": auc.get("value"),
            "auc_low": ci[0], "auc_high": ci[1],
            "tpr_at_1pct_fpr": (ev.get("tpr_at_1pct_fpr") or {}).get("value"),
        })
    table = pd.DataFrame(rows, columns=["attribute", "group", "n", "n_patients", "n_members",
                                        "n_nonmembers", "too_few", "suppressed", "auc",
                                        "auc_low", "auc_high", "tpr_at_1pct_fpr"])
    if k > 0 and not table.empty:
        already = table["suppressed"].to_numpy()
        table = suppress_group_table(table.drop(columns="suppressed"), k=k)
        table["suppressed"] = table["suppressed"].to_numpy() | already
    return table


def identifier_findings_table(identifiers: dict[str, Any]) -> pd.DataFrame:
    """Table and DICOM findings in one table: ``where``, ``kind``, ``found_by``, ``count``."""
    rows = []
    for f in (identifiers.get("table") or {}).get("findings") or []:
        rows.append({"where": f"table column '{f['column']}'", "kind": f["description"],
                     "found_by": f["found_by"],
                     "count": f["n_values"] if f["n_values"] is not None else f["n_checked"]})
    for t in (identifiers.get("dicom") or {}).get("tags") or []:
        rows.append({"where": f"DICOM tag {t['tag']}", "kind": t["description"],
                     "found_by": "header present and non-empty", "count": t["n_files"]})
    return pd.DataFrame(rows, columns=["where", "kind", "found_by", "count"])
