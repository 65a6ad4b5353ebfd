"""What the pages draw for multi-label finding models and segmentation models.

Each function draws one page's view of a stored result (widgets keyed, tables formatted
with ``column_config``); the numbers and sentences come from auditkit.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import plotly.graph_objects as go
import streamlit as st

from auditkit import wording
from auditkit.explain._dense import dense_map
from auditkit.multilabel import finding_groups_frame, findings_frame, worst_pairs_frame
from auditkit.robustness.dense import effects_frame
from auditkit.segmentation import groups_frame, metrics_frame
from ui.common import md_text

DENSE_KINDS = ("multilabel_sigmoid", "segmentation")
_SHARE = st.column_config.NumberColumn
_KIND_WORDS = {"multilabel_sigmoid": "multi-label finding model",
               "segmentation": "segmentation model"}


def is_dense(result: dict[str, Any]) -> bool:
    """True for a stored result of a multi-label or segmentation model."""
    return result.get("output_kind") in DENSE_KINDS


def _summary(result: dict[str, Any]) -> None:
    st.subheader("What the audit finds")
    for line in result.get("summary") or ["Nothing could be measured."]:
        st.markdown(f"- {md_text(line)}")
    if result.get("correction"):
        st.caption(md_text(result["correction"]))


def _interval_columns(label: str, pct: bool = True) -> dict[str, Any]:
    fmt = "percent" if pct else "%.1f"
    return {"value": _SHARE(label, format=fmt), "low": _SHARE("95% interval from", format=fmt),
            "high": _SHARE("to", format=fmt), "n": _SHARE("images counted", format="%d"),
            "n_patients": _SHARE("from patients", format="%d")}


def fairness_view(audit: dict[str, Any], result: dict[str, Any]) -> None:
    """The Fairness page for a multi-label or segmentation model."""
    kind = result["output_kind"]
    st.markdown(f"**{md_text(audit['model']['name'])}@{md_text(audit['model']['version'])}** is "
                f"a {_KIND_WORDS[kind]}; measured on {md_text(result['evaluated_on'])}; "
                f"intervals resample {md_text(result['resampling_unit'])}s.")
    _summary(result)
    groups = result.get("groups") or []
    attributes = list(dict.fromkeys(g["attribute"] for g in groups))
    if kind == "segmentation":
        attribute = st.selectbox("Patient attribute", attributes, key="fairness_dense_attribute")
        table = groups_frame(result, attribute=attribute)
        config: dict[str, Any] = {"n": _SHARE("images", format="%d"),
                                  "n_patients": _SHARE("patients", format="%d"),
                                  "n_lesion": _SHARE("slices with a tumour", format="%d")}
        for metric in ("dice", "iou", "missed_lesion_rate", "false_lesion_rate", "hd95_px"):
            pct = metric != "hd95_px"
            fmt = "percent" if pct else "%.1f"
            config[metric] = _SHARE(wording.metric_name(metric), format=fmt,
                                    help=wording.SEGMENTATION_METRIC_MEANINGS.get(metric))
            config[f"{metric}_low"] = _SHARE("from", format=fmt)
            config[f"{metric}_high"] = _SHARE("to", format=fmt)
        config["suppressed"] = st.column_config.CheckboxColumn("withheld")
        st.dataframe(table, hide_index=True, key="fairness_dense_groups", column_config=config)
        if table["suppressed"].any():
            st.caption(wording.withheld_note(int(audit["config"].get("small_cell_k") or 10)))
        st.caption("Dice, IoU and HD95 are patient-level means (each patient's slices "
                   "averaged first) with intervals that resample patients.")
        for d in result.get("disparities", []):
            if d.get("status") == "assessed":
                st.markdown(f"- {wording.verdict_label(d['verdict'])}: "
                            f"{md_text(d['attribute'])} — Dice gap "
                            f"{wording.fmt_points(d['gap'])} between {md_text(d['worst_group'])}"
                            f" and {md_text(d['best_group'])} (adjusted p = "
                            f"{wording.fmt_number(d['p_adjusted'], 3)})")
            else:
                st.markdown(f"- {wording.verdict_label('not assessed')}: "
                            f"{md_text(d['attribute'])} — {md_text(d.get('reason'))}")
        return
    findings = list(result.get("findings") or {})
    c1, c2, c3 = st.columns(3)
    finding = c1.selectbox("Finding", findings, key="fairness_finding")
    entry = result["findings"][finding]
    if entry.get("status") != "assessed":
        st.info(f"{wording.verdict_label('not assessed')}: {md_text(entry.get('reason'))}")
        return
    attrs = list(dict.fromkeys(g["attribute"] for g in entry["groups"]))
    attribute = c2.selectbox("Patient attribute", attrs, key="fairness_finding_attribute")
    metric = c3.selectbox("Metric", ["sensitivity", "specificity", "auroc", "ppv", "npv"],
                          key="fairness_finding_metric", format_func=wording.metric_name)
    table = finding_groups_frame(result, finding=finding, attribute=attribute, metric=metric)
    st.dataframe(table, hide_index=True, key="fairness_finding_groups",
                 column_config={**_interval_columns(wording.metric_name(metric)),
                                "suppressed": st.column_config.CheckboxColumn("withheld")})
    if not table.empty and table["suppressed"].any():
        st.caption(wording.withheld_note(int(audit["config"].get("small_cell_k") or 10)))
    st.caption(f"{md_text(finding)}: {wording.fmt_count(entry.get('n'))} images with a known "
               f"label, {wording.fmt_count(entry.get('n_unknown'))} unknown (not counted); "
               f"called present at probability ≥ {wording.fmt_number(entry.get('threshold'))}.")
    for d in entry.get("disparities", []):
        if d.get("status") == "assessed" and d.get("metric") == metric:
            verdict = "concern" if d.get("real") else "cannot tell"
            st.markdown(f"- {wording.verdict_label(verdict)}: "
                        + md_text(wording.gap_sentence(d, finding.replace("_", " "))))
    st.subheader("Worst finding and group pairs")
    st.dataframe(worst_pairs_frame(result), hide_index=True, key="fairness_worst_pairs",
                 column_config=_interval_columns("value"))


def performance_view(perf: dict[str, Any]) -> None:
    """Overall numbers of a multi-label or segmentation model (under the Fairness page)."""
    st.subheader("Overall")
    if perf.get("output_kind") == "segmentation":
        st.dataframe(metrics_frame(perf), hide_index=True, key="dense_overall",
                     column_config=_interval_columns("value"))
        st.dataframe(metrics_frame(perf, distances=True), hide_index=True,
                     key="dense_overall_distance",
                     column_config=_interval_columns("pixels", pct=False))
        st.caption("Boundary error (HD95) is in pixels of the reference mask.")
    else:
        st.dataframe(findings_frame(perf), hide_index=True, key="dense_overall",
                     column_config=_interval_columns("value"))


def explain_view(audit: dict[str, Any], result: dict[str, Any], folder: Path) -> None:
    """The Explanations page for a multi-label or segmentation model."""
    st.markdown(f"**What is explained.** {md_text(result['target'])}")
    _summary(result)
    images = [i["image"] for i in result.get("images", [])]
    if not images:
        return
    maps = result["images"][0]["maps"]
    c1, c2 = st.columns(2)
    index = 0
    if len(maps) > 1:
        chosen = c1.selectbox("Finding", maps, key="explain_finding")
        index = maps.index(chosen)
    image = c2.selectbox("Image (pseudonymous key)", images, key="explain_dense_image")
    heat = dense_map(folder, image, index)
    bound = float(abs(heat).max()) or 1.0
    fig = go.Figure(go.Heatmap(z=heat[::-1], zmin=-bound, zmax=bound, colorscale="RdBu_r",
                               colorbar={"title": "evidence"}))
    fig.update_layout(height=380, margin={"l": 10, "r": 10, "t": 10, "b": 10})
    st.plotly_chart(fig, key="explain_dense_map")
    st.caption("Red: evidence for (raises the explained number); blue: against.")


def robustness_view(result: dict[str, Any]) -> None:
    """The Robustness page for a multi-label or segmentation model."""
    seg = result["output_kind"] == "segmentation"
    st.markdown(f"**Measured:** {md_text(result['measure'])}; the attack ascends the model's "
                f"own loss ({md_text(result['loss'])}); {wording.fmt_count(result['n_images'])} "
                "images.")
    _summary(result)
    table = effects_frame(result)
    label = "change in Dice" if seg else "finding calls flipped"
    st.dataframe(table, hide_index=True, key="robustness_dense_table",
                 column_config=_interval_columns(label))
