"""Privacy: does the model leak who it was trained on, and do the inputs hold identifiers?"""

from __future__ import annotations

import plotly.graph_objects as go
import streamlit as st

import auditkit
from auditkit.privacy import (
    ATTACKS,
    estimate_thorough_seconds,
    identifier_findings_table,
    membership_groups_table,
)
from ui.common import (
    chart_text,
    data_root,
    dataset_overview,
    fmt_ci,
    loaded_model,
    md_text,
    new_run_dir,
    pick_model_and_dataset,
    require_stored_result,
    run_with_progress,
    show_unreadable_audits,
)

st.set_page_config(page_title="Privacy — auditkit", layout="wide")
st.title("Does the model give away who it was trained on?")
show_unreadable_audits()
st.caption("A *membership inference attack* tries to tell, from the model's answers alone, "
           "whether a patient's image was used in training. AUC 0.5 means a coin toss: no leak "
           "detected. Patient ids are never shown; groups with fewer than k images are hidden "
           "(small-cell protection).")

ref, dataset_name = pick_model_and_dataset("privacy")
mode = st.sidebar.radio(
    "Attack strength", ["fast", "thorough"], key="privacy_mode",
    format_func=lambda m: {"fast": "Fast (seconds): loss, confidence, entropy",
                           "thorough": "Thorough (trains 4 reference models: minutes to an "
                                       "hour on a CPU)"}[m])
if mode == "thorough":
    minutes = estimate_thorough_seconds(
        model=loaded_model(ref, "cpu"),
        n_images=dataset_overview(dataset_name, data_root())["n_images"]) / 60
    st.sidebar.caption(f"Thorough mode trains 4 reference models: roughly {minutes:.0f} minutes "
                       "on a 2-core CPU (much less on a GPU). The progress bar updates the "
                       "estimate as it goes.")
n_boot = st.sidebar.select_slider("Bootstrap resamples", [200, 500, 1000], value=1000,
                                  key="privacy_n_boot")
k = st.sidebar.number_input("Hide groups smaller than (k)", 0, 100, 10, key="privacy_k")

if st.sidebar.button("Run privacy audit", key="privacy_run", type="primary"):
    config = auditkit.AuditConfig(checks=["performance", "privacy"], n_boot=int(n_boot),
                                  small_cell_k=int(k), options={"privacy": {"mode": mode}})
    run_with_progress(ref=ref, dataset_name=dataset_name, config=config,
                      out_dir=new_run_dir(ref, dataset_name, "privacy"))

audit, result, _folder = require_stored_result(
    "privacy", ref, dataset_name, require_assessed=False,
    missing=f"No privacy audit of **{md_text(ref)}** on **{md_text(dataset_name)}** yet. Press **Run privacy "
            "audit** in the sidebar.")
k_used = int(audit.get("config", {}).get("small_cell_k", 0) or 0)
mia = result["membership"]
st.caption(f"Audit of {md_text(audit['created_at'])}; groups under {md_text(k_used)} images "
           "hidden.")

st.header("1. Membership inference")
if mia.get("status") != "assessed":
    st.warning(f"Not assessed: {md_text(mia.get('reason'))}")
else:
    st.markdown(f"**What the audit finds.** {md_text(mia['finding'])}")
    best = mia["overall"][mia["strongest_attack"]]
    c1, c2, c3 = st.columns(3)
    c1.metric("Attack AUC (0.5 = coin toss)", fmt_ci(best["auc"]["value"], best["auc"]["ci"],
                                                     pct=False))
    c2.metric("Training patients found at 1% false alarms",
              fmt_ci(best["tpr_at_1pct_fpr"]["value"], best["tpr_at_1pct_fpr"]["ci"]))
    c3.metric("Images compared", f"{mia['n_members']} training + {mia['n_nonmembers']} never "
              "trained on")
    if not best["tpr_at_1pct_fpr"].get("resolvable", True):
        st.caption("With this few non-training images, 1% false alarms cannot be resolved: the "
                   "figure is the share found with no false alarm at all.")
    with st.expander("How members and non-members were chosen"):
        st.markdown(f"{md_text(mia['balance']['method'])}. Source: {md_text(mia['source'])}. "
                    f"Intervals resample {md_text(mia['resampling_unit'])}s.")
        for name, text in mia["attacks"].items():
            st.markdown(f"- **{md_text(name)}**: {md_text(text)}")

    fig = go.Figure()
    for name, curve in mia["roc"].items():
        ev = mia["overall"][name]["auc"]
        fig.add_trace(go.Scatter(x=curve["fpr"], y=curve["tpr"], mode="lines",
                                 name=f"{name} (AUC {fmt_ci(ev['value'], ev['ci'], pct=False)})"))
    fig.add_trace(go.Scatter(x=[0.001, 1], y=[0.001, 1], mode="lines", name="coin toss",
                             line={"dash": "dash", "color": "grey"}))
    fig.update_layout(xaxis={"type": "log", "title": "false alarms (non-training patients "
                                                    "flagged), log scale"},
                      yaxis={"title": "training patients found"}, height=420,
                      margin={"l": 10, "r": 10, "t": 30, "b": 40}, title="Attack ROC curve")
    st.plotly_chart(fig, key="privacy_roc_chart")

    st.subheader("Exposure per patient group")
    attributes = list(dict.fromkeys(g["attribute"] for g in mia["groups"]))
    if attributes:
        c1, c2 = st.columns(2)
        attribute = c1.selectbox("Patient attribute", attributes, key="privacy_attribute")
        attack = c2.selectbox("Attack", list(mia["overall"]), key="privacy_attack",
                              index=list(mia["overall"]).index(mia["strongest_attack"]),
                              help="; ".join(f"{a}: {ATTACKS[a]}" for a in mia["overall"]))
        table = membership_groups_table(mia, attack=attack, attribute=attribute, k=k_used)
        shown = table[~table["suppressed"] & table["auc"].notna()]
        labels = [f"{chart_text(g)} (n={n})" + (" — too few to judge" if tf else "")
                  for g, n, tf in zip(shown["group"], shown["n"], shown["too_few"])]
        groups_fig = go.Figure(go.Scatter(
            x=shown["auc"], y=labels, mode="markers",
            marker={"size": 11, "color": ["#bbbbbb" if tf else "#d62728"
                                          for tf in shown["too_few"]]},
            error_x={"type": "data", "symmetric": False,
                     "array": (shown["auc_high"] - shown["auc"]).fillna(0).tolist(),
                     "arrayminus": (shown["auc"] - shown["auc_low"]).fillna(0).tolist()},
        ))
        groups_fig.add_vline(x=0.5, line_dash="dash", line_color="grey")
        groups_fig.update_layout(xaxis_title="attack AUC (95% interval); 0.5 = coin toss",
                                 height=120 + 40 * max(len(shown), 1),
                                 margin={"l": 10, "r": 10, "t": 10, "b": 40})
        st.plotly_chart(groups_fig, key="privacy_groups_chart")
        hidden = table[table["suppressed"]]["group"].tolist()
        if hidden:
            st.caption(f"Hidden to protect small groups (fewer than {k_used} images, or needed "
                       f"to keep one hidden): {', '.join(map(md_text, hidden))}.")
        st.dataframe(table, hide_index=True, key="privacy_groups_table")

st.header("2. Patient identifiers in the inputs")
ids = result.get("identifiers")
if ids is None:
    st.info("The identifier scan was switched off for this audit.")
else:
    st.markdown(f"**What the scan finds.** {md_text(ids['finding'])}")
    st.caption("Only the kind of identifier and where it is are shown, never a value.")
    st.dataframe(identifier_findings_table(ids), hide_index=True, key="privacy_identifiers_table")
    if ids.get("dicom"):
        markers = ids["dicom"]["markers"]
        st.markdown(
            f"DICOM headers checked: {ids['dicom']['n_files']}. PatientIdentityRemoved = YES in "
            f"{markers['PatientIdentityRemoved']['YES']}; BurnedInAnnotation = YES in "
            f"{markers['BurnedInAnnotation']['YES']}.")
