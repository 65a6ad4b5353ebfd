"""Fairness: does the model work equally well for every patient group?"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

import auditkit
from auditkit.fairness import groups_table, operating_points_from_predictions
from ui.common import (
    attribute_names_of,
    new_run_dir,
    pick_model_and_dataset,
    require_stored_result,
    run_with_progress,
)

st.set_page_config(page_title="Fairness — auditkit", layout="wide")
st.title("Is it equally accurate for every patient group?")
st.caption("Per-group results with 95% intervals. Groups with fewer than the minimum number of "
           "images (or patients) are marked *too few to judge*: shown, never hidden, never "
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
    missing=f"No fairness audit of **{ref}** on **{dataset_name}** yet. Press **Run fairness "
            "audit** in the sidebar.")

st.markdown(f"**{ref}** on **{dataset_name}**, measured on {result['evaluated_on']}; intervals "
            f"resample {result['resampling_unit']}s ({result['n_boot']} resamples). Binary "
            f"metrics are {result['binary_metrics_are']}. Audit of {audit['created_at']}.")

st.subheader("What the audit finds")
for line in result["summary"] or ["No group comparison could be made."]:
    st.markdown(f"- {line}")
st.caption(result["correction"])

attributes = list(dict.fromkeys(e["attribute"] for e in result["groups"]))
metrics = [m for m in ("sensitivity", "specificity", "accuracy", "balanced_accuracy", "ppv", "npv",
                       "auroc", "ece", "selection_rate", "prevalence")
           if m in result["groups"][0]]
c1, c2 = st.columns(2)
attribute = c1.selectbox("Patient attribute", attributes, key="fairness_attribute")
metric = c2.selectbox("Metric", metrics, key="fairness_metric")
table = groups_table(result, attribute=attribute, metric=metric)
labels = [f"{g} — suppressed (small-cell protection)" if sup else
          f"{g} (n={int(n)})" + (" — too few to judge" if tf else "")
          for g, n, tf, sup in zip(table["group"], table["n"], table["too_few"],
                                   table["suppressed"])]
fig = go.Figure(go.Scatter(
    x=table["value"], y=labels, mode="markers",
    marker={"size": 11, "color": ["#bbbbbb" if tf else "#1f77b4" for tf in table["too_few"]]},
    error_x={"type": "data", "symmetric": False,
             "array": (table["high"] - table["value"]).tolist(),
             "arrayminus": (table["value"] - table["low"]).tolist()},
))
fig.update_layout(xaxis_title=f"{metric} (95% interval)", height=120 + 40 * len(table),
                  margin={"l": 10, "r": 10, "t": 10, "b": 40})
st.plotly_chart(fig, key="fairness_groups_chart")
st.dataframe(table, hide_index=True, key="fairness_groups_table")
if table["suppressed"].any():
    st.caption("Suppressed groups have fewer than 10 images or patients (or are the "
               "complementary cell that would reveal one): their numbers are hidden in every "
               "view and export so no patient can be singled out.")

gaps = [d for d in result["disparities"] if d["attribute"] == attribute]
if gaps and all(d["status"] != "assessed" for d in gaps):
    st.subheader("Gaps between groups")
    st.info(f"Not assessed for {attribute}: {gaps[0].get('reason')}.")
elif gaps:
    st.subheader("Gaps between groups")
    st.dataframe(pd.DataFrame([{
        "metric": d["metric"], "worst": d.get("worst_group"), "best": d.get("best_group"),
        "gap": d.get("gap", d.get("value")),
        "95% CI": d.get("gap_ci", d.get("ci")),
        "larger than chance": d.get("real"), "status": d["status"],
    } for d in gaps]), hide_index=True, key="fairness_gaps_table")

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
        st.plotly_chart(go.Figure(go.Heatmap(z=heat.values, x=list(heat.columns),
                                             y=list(heat.index), colorscale="RdYlGn")),
                        key="fairness_heatmap")
        st.caption("Empty cells are hidden by small-cell protection.")

st.subheader("Calibration: does 80% confidence mean right 80% of the time?")
curves = result["calibration"].get(attribute, [])
cal = go.Figure(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="perfect",
                           line={"dash": "dash", "color": "gray"}))
hidden = [c["group"] for c in curves if not c.get("bins")]
for c in (c for c in curves if c.get("bins")):
    cal.add_trace(go.Scatter(x=[b["confidence"] for b in c["bins"]],
                             y=[b["accuracy"] for b in c["bins"]], mode="lines+markers",
                             name=f"{c['group']} (n={c['n']})"))
cal.update_layout(xaxis_title="confidence", yaxis_title="share correct", height=380)
st.plotly_chart(cal, key="fairness_calibration")
if hidden:
    st.caption(f"Not drawn (small-cell protection): {', '.join(hidden)}.")

st.subheader("What if the operating point moves?")
threshold = st.slider(f"Call {result['positive_class']} when its probability is at least",
                      0.05, 0.95, 0.5, 0.05, key="fairness_threshold")
preds = folder / "predictions.csv"
if preds.is_file() and attribute in pd.read_csv(preds, nrows=0).columns:
    points = operating_points_from_predictions(
        pd.read_csv(preds, dtype={attribute: str}), attribute=attribute,
        positive_class=result["positive_class"], threshold=threshold)
    st.dataframe(points, hide_index=True, key="fairness_threshold_table")
else:
    st.caption("The threshold view needs predictions.csv beside audit.json, with this attribute.")
mit = result["threshold_mitigation"].get(attribute)
if mit and "groups" in mit:
    st.markdown(f"**Possible mitigation (fairlearn ThresholdOptimizer, {mit['constraint']}):** "
                f"overall accuracy {mit['accuracy_before']:.0%} → {mit['accuracy_after']:.0%}.")
    st.dataframe(pd.DataFrame(mit["groups"]), hide_index=True, key="fairness_mitigation")
    st.info(mit["note"])

skin = result.get("skin_tone")
if skin:
    st.subheader("How reliable is the skin-tone label itself?")
    if "annotator_agreement" in skin:
        a = skin["annotator_agreement"]
        st.markdown(f"The two annotator groups agree exactly on **{a['exact']:.0%}** of "
                    f"{a['n']} images and within one type on {a['within_one']:.0%} "
                    f"(weighted kappa {a['kappa_quadratic']:.2f}).")
    if "estimated" in skin:
        st.markdown(f"Estimated from pixels ({skin['estimated']['method']}):")
        st.json(skin["estimated"]["agreement_with"], expanded=False)
