"""Fairness: does the model work equally well for every patient group?"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

import auditkit
from auditkit import wording
from auditkit.fairness import gaps_table, groups_table, operating_points_from_audit
from auditkit.wording import Column
from ui.common import (
    attribute_names_of,
    chart_text,
    md_text,
    new_run_dir,
    pick_model_and_dataset,
    require_stored_result,
    run_with_progress,
    show_table,
    show_unreadable_audits,
)
from ui.dense import fairness_view, is_dense, performance_view

st.set_page_config(page_title="Fairness — auditkit", layout="wide")
st.title("Is it equally accurate for every patient group?")
show_unreadable_audits()
st.caption("Per-group results with 95% intervals. A metric is marked *too few to judge* when "
           "what it divides by is below the minimum: images for accuracy, positives for "
           "sensitivity, negatives for specificity, both for AUROC. Shown, never hidden, never "
           "over-read.")

ref, dataset_name = pick_model_and_dataset("fairness")
n_boot = st.sidebar.select_slider("Bootstrap resamples", [200, 500, 1000, 2000], value=1000,
                                  key="fairness_n_boot")
min_group = st.sidebar.number_input("Minimum group size", 2, 100, 10, key="fairness_min_group")
attribute_names = attribute_names_of(dataset_name)
pairs = [f"{a}×{b}" for i, a in enumerate(attribute_names) for b in attribute_names[i + 1:]]
chosen = st.sidebar.multiselect("Intersections to audit", pairs, key="fairness_intersections",
                                help="Audit two attributes jointly, e.g. sex × age band.")
out_dir = new_run_dir(ref, dataset_name, "fairness")

if st.sidebar.button("Run fairness audit", key="fairness_run", type="primary"):
    config = auditkit.AuditConfig(checks=["performance", "fairness"], n_boot=int(n_boot),
                                  min_group_size=int(min_group),
                                  intersections=[c.split("×") for c in chosen])
    run_with_progress(ref=ref, dataset_name=dataset_name, config=config, out_dir=out_dir)

audit, result, folder = require_stored_result(
    "fairness", ref, dataset_name,
    missing=f"No fairness audit of **{md_text(ref)}** on **{md_text(dataset_name)}** yet. Press **Run fairness "
            "audit** in the sidebar.")
if is_dense(result):  # a multi-label or segmentation model: its own view
    fairness_view(audit, result)
    if audit["results"].get("performance"):
        performance_view(audit["results"]["performance"])
    st.stop()

st.markdown(f"**{md_text(ref)}** on **{md_text(dataset_name)}**, measured on "
            f"{md_text(result['evaluated_on'])}; intervals resample "
            f"{md_text(result['resampling_unit'])}s ({md_text(result['n_boot'])} resamples). "
            f"Binary metrics are {md_text(result['binary_metrics_are'])}. Audit of "
            f"{md_text(audit['created_at'])}.")

st.subheader("What the audit finds")
for line in result["summary"] or ["No group comparison could be made."]:
    st.markdown(f"- {md_text(line)}")
st.caption(md_text(result["correction"]))

attributes = list(dict.fromkeys(e["attribute"] for e in result["groups"]))
metrics = [m for m in ("sensitivity", "specificity", "accuracy", "balanced_accuracy", "ppv", "npv",
                       "auroc", "ece", "selection_rate", "prevalence")
           if m in result["groups"][0]]
described = {a.name: a.description for a in auditkit.dataset_spec(dataset_name).attributes}


def attribute_words(name: str) -> str:
    """An attribute (or an intersection of two) in a reader's words, with its description."""
    return " × ".join(wording.attribute_label(a, described.get(a)) for a in name.split("×"))


c1, c2 = st.columns(2)
attribute = c1.selectbox("Patient attribute", attributes, key="fairness_attribute",
                         format_func=attribute_words)
metric = c2.selectbox("Metric", metrics, key="fairness_metric", format_func=wording.metric_name,
                      help="; ".join(f"{wording.metric_name(m)}: {wording.metric_meaning(m)}"
                                     for m in metrics))
st.caption(f"**{wording.metric_name(metric)}**: {md_text(wording.metric_meaning(metric))}.")
table = groups_table(result, attribute=attribute, metric=metric)
labels = [f"{chart_text(g)} — suppressed (small-cell protection)" if sup else
          f"{chart_text(g)} ({wording.fmt_evidence(den, what, pats)})" + (" — too few to judge" if tf else "")
          for g, den, pats, what, tf, sup in zip(
              table["group"], table["denominator"], table["denominator_patients"],
              table["denominator_of"], table["too_few"], table["suppressed"])]
fig = go.Figure(go.Scatter(
    x=table["value"], y=labels, mode="markers",
    marker={"size": 11, "color": ["#bbbbbb" if tf else "#1f77b4" for tf in table["too_few"]],
            "symbol": ["circle-open" if tf else "circle" for tf in table["too_few"]]},
    error_x={"type": "data", "symmetric": False,
             "array": (table["high"] - table["value"]).tolist(),
             "arrayminus": (table["value"] - table["low"]).tolist()},
))
fig.update_layout(xaxis_title=f"{wording.metric_name(metric)} (95% interval)",
                  height=120 + 40 * len(table), margin={"l": 10, "r": 10, "t": 10, "b": 40})
st.plotly_chart(fig, key="fairness_groups_chart")
is_share = metric != "overconfidence"
table["value_shown"] = table["value"].where(~table["suppressed"])
show_table(table, [
    Column("group", "group"),
    Column("value_shown", f"{wording.metric_name(metric)} (95% interval)",
           "interval_pct" if is_share else "interval_number", low="low", high="high"),
    Column("n", "images", "count"), Column("n_patients", "patients", "count"),
    Column("denominator", "counted in the denominator", "count"),
    Column("denominator_of", "the denominator counts"),
    Column("too_few", "too few to judge"),
], key="fairness_groups_table", file_name=f"{ref}__{dataset_name}__{attribute}__{metric}.csv")
if table["suppressed"].any():
    st.caption("Suppressed groups have fewer than 10 images or patients (or are the "
               "complementary cell that would reveal one): their numbers are hidden in every "
               "view and export so no patient can be singled out.")

st.subheader("Gaps between groups")
gaps = gaps_table(result, attribute=attribute)
if gaps.empty:
    st.info(f"No gap was tested for {md_text(attribute)}.")
else:
    show_table(gaps, [
        Column("metric", "metric"), Column("worst", "worst group"),
        Column("n_worst", "images (worst)", "count"), Column("best", "best group"),
        Column("n_best", "images (best)", "count"),
        Column("gap", "gap, worst − best (simultaneous 95% interval)", "interval_pct",
               low="low", high="high"),
        Column("p_adjusted", "adjusted p", "p"), Column("verdict", "verdict"),
        Column("minimum_detectable_gap", "smallest gap detectable (80% power)", "pct"),
        Column("note", "why not assessed"),
    ], key="fairness_gaps_table", file_name=f"{ref}__{dataset_name}__{attribute}__gaps.csv")
    st.caption("A gap is called real (▲ concern) only when it is larger than the largest gap "
               "chance produces across all attributes and metrics; its interval then excludes "
               "0. *Cannot tell* is not *no gap*: the last column says how large a gap would "
               "have had to be to be seen.")

inter = [a for a in attributes if "×" in a]
if inter:
    st.subheader("Intersections")
    pick = st.selectbox("Intersection", inter, key="fairness_intersection")
    t = groups_table(result, attribute=pick, metric=metric)
    parts = t["group"].str.split(" × ", expand=True)
    heat = pd.DataFrame({"a": parts[0], "b": parts[1], "v": t["value"]}).pivot(
        index="a", columns="b", values="v")
    if heat.isna().all().all():
        st.info("Every cell of this intersection is too small to show (small-cell protection).")
    else:
        st.plotly_chart(go.Figure(go.Heatmap(z=heat.values,
                                             x=[chart_text(c) for c in heat.columns],
                                             y=[chart_text(i) for i in heat.index],
                                             colorscale="RdYlGn")),
                        key="fairness_heatmap")
        st.caption("Empty cells are hidden by small-cell protection.")

st.subheader("Calibration: does 80% confidence mean right 80% of the time?")
curves = result["calibration"].get(attribute, [])
cal = go.Figure(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="perfect",
                           line={"dash": "dash", "color": "gray"}))
hidden = [c["group"] for c in curves if not c.get("bins")]
n_hidden_bins = 0
for c in (c for c in curves if c.get("bins")):
    shown = [b for b in c["bins"] if not b.get("suppressed")]
    n_hidden_bins += len(c["bins"]) - len(shown)
    cal.add_trace(go.Scatter(x=[b["confidence"] for b in shown],
                             y=[b["accuracy"] for b in shown], mode="lines+markers",
                             name=chart_text(wording.legend_label(str(c["group"]),
                                                                  n=c["n"]))))
cal.update_layout(xaxis_title="confidence", yaxis_title="share correct", height=380)
st.plotly_chart(cal, key="fairness_calibration")
if hidden:
    st.caption(f"Not drawn (small-cell protection): {', '.join(map(md_text, hidden))}.")
if n_hidden_bins:
    st.caption(f"{n_hidden_bins} confidence bin(s) with fewer than 10 images or patients (or "
               "needed to protect one) are not drawn (small-cell protection).")

st.subheader("What if the operating point moves?")
threshold = st.slider(f"Call {result['positive_class']} when its probability is at least",
                      0.05, 0.95, 0.5, 0.05, key="fairness_threshold")
shown_groups = table.loc[~table["suppressed"], "group"].astype(str).tolist()
points = operating_points_from_audit(folder, attribute=attribute,
                                     positive_class=result["positive_class"],
                                     threshold=threshold, groups=shown_groups)
if points is None:
    st.caption("The threshold view needs predictions.csv (or predictions.parquet) beside "
               "audit.json, with this attribute. " + wording.whatif_no_scope())
else:
    perf = audit["results"].get("performance") or {}
    n_evaluated = perf.get("n") if isinstance(perf.get("n"), int) else int(points["n"].sum())
    show_table(points, [
        Column("group", "group"), Column("n", "images", "count"),
        Column("sensitivity", "sensitivity (95% interval)", "interval_pct",
               low="sensitivity_low", high="sensitivity_high"),
        Column("n_positive", f"with {result['positive_class']}", "count"),
        Column("specificity", "specificity (95% interval)", "interval_pct",
               low="specificity_low", high="specificity_high"),
        Column("n_negative", f"without {result['positive_class']}", "count"),
    ], key="fairness_threshold_table",
        file_name=f"{ref}__{dataset_name}__{attribute}__threshold_{threshold:.2f}.csv",
        caption=wording.whatif_scope(n_evaluated, int(audit["dataset"].get("n_images") or 0),
                                     str(result["evaluated_on"]),
                                     n_patients=perf.get("n_patients")
                                     if isinstance(perf.get("n_patients"), int) else None,
                                     several_per_patient=bool(
                                         (table["n_patients"] < table["n"]).any())))
mit = result["threshold_mitigation"].get(attribute)
if mit and "groups" in mit:
    st.markdown(f"**Possible mitigation (fairlearn ThresholdOptimizer, {md_text(mit['constraint'])}):** "
                f"accuracy ({md_text(mit.get('accuracy_is', 'positive class against the rest'))}) "
                f"{wording.fmt_pct(mit['accuracy_before'])} with "
                f"{md_text(mit.get('before_is', 'the model decisions'))} → "
                f"{wording.fmt_pct(mit['accuracy_after'])}.")
    show_table(pd.DataFrame(mit["groups"]), [
        Column("group", "group"), Column("n", "images", "count"),
        Column("sensitivity_before", "sensitivity before", "pct"),
        Column("sensitivity_after", "sensitivity after", "pct"),
        Column("specificity_before", "specificity before", "pct"),
        Column("specificity_after", "specificity after", "pct"),
    ], key="fairness_mitigation", file_name=f"{ref}__{dataset_name}__{attribute}__mitigation.csv")
    st.info(md_text(mit["note"]))

skin = result.get("skin_tone")
if skin:
    st.subheader("How reliable is the skin-tone label itself?")
    if "annotator_agreement" in skin:
        a = skin["annotator_agreement"]
        first, second = (a.get("between") or ["first annotation", "second annotation"])[:2]
        st.markdown(md_text(wording.skin_tone_agreement_sentence(
            a, first=attribute_words(first), second=attribute_words(second))))
    if "estimated" in skin:
        st.markdown(f"Estimated from pixels ({md_text(skin['estimated']['method'])}):")
        for name, a in skin["estimated"]["agreement_with"].items():
            st.markdown("- " + md_text(wording.skin_tone_agreement_sentence(
                a, first="the estimate", second=attribute_words(name))))
