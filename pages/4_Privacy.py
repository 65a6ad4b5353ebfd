"""Privacy: does the model leak who it was trained on, and do the inputs hold identifiers?"""

from __future__ import annotations

import plotly.graph_objects as go
import streamlit as st

import auditkit
from auditkit import wording
from auditkit.privacy import (
    ATTACKS,
    estimate_thorough_seconds,
    identifier_findings_table,
    membership_groups_table,
)
from auditkit.wording import Column
from ui.common import (
    chart_text,
    data_root,
    dataset_overview,
    loaded_model,
    md_text,
    new_run_dir,
    pick_model_and_dataset,
    require_stored_result,
    run_with_progress,
    show_table,
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
                           "thorough": wording.thorough_time_label(None)}[m])
if mode == "thorough":
    minutes = estimate_thorough_seconds(
        model=loaded_model(ref, "cpu"),
        n_images=dataset_overview(dataset_name, data_root())["n_images"]) / 60
    st.sidebar.caption(f"Thorough mode trains 4 reference models: about "
                       f"{wording.fmt_duration(minutes)} on a 2-core CPU (much less on a GPU). "
                       "The progress bar updates the estimate as it goes.")
n_boot = st.sidebar.select_slider("Bootstrap resamples", [200, 500, 1000], value=1000,
                                  key="privacy_n_boot")
k = st.sidebar.number_input(
    "Hide groups smaller than (k)", 0, 100, 10, key="privacy_k",
    help="Small-cell protection: groups with fewer than k images (or patients) are hidden in "
         "every view and export. It cannot be switched off for a privacy audit (k ≥ 1).")
if int(k) < wording.SMALL_CELL_FLOOR:
    st.error(wording.small_cell_k_refused(int(k)), icon="🔒")
    st.stop()

if st.sidebar.button("Run privacy audit", key="privacy_run", type="primary"):
    config = auditkit.AuditConfig(checks=["performance", "privacy"], n_boot=int(n_boot),
                                  small_cell_k=int(k), options={"privacy": {"mode": mode}})
    run_with_progress(ref=ref, dataset_name=dataset_name, config=config,
                      out_dir=new_run_dir(ref, dataset_name, "privacy"))

audit, result, _folder = require_stored_result(
    "privacy", ref, dataset_name, require_assessed=False,
    missing=f"No privacy audit of **{md_text(ref)}** on **{md_text(dataset_name)}** yet. Press **Run privacy "
            "audit** in the sidebar.")
k_used = max(int(audit.get("config", {}).get("small_cell_k", 0) or 0), wording.SMALL_CELL_FLOOR)
mia = result["membership"]
st.caption(f"Audit of {md_text(audit['created_at'])}; groups under {md_text(k_used)} images "
           "hidden.")

st.header("1. Membership inference")
if mia.get("status") != "assessed":
    st.warning(f"Not assessed: {md_text(mia.get('reason'))}")
else:
    st.markdown(f"**What the audit finds.** {md_text(mia['finding'])}")
    best = mia["overall"][mia["strongest_attack"]]
    units = wording.unit_word(mia.get("resampling_unit") == "patient")
    c1, c2, c3 = st.columns(3)
    c1.metric("Attack AUC (0.5 = coin toss)",
              wording.fmt_interval(best["auc"]["value"], best["auc"]["ci"], pct=False),
              help=f"{wording.fmt_n(mia['n'], mia.get('n_patients'))}; "
                   f"strongest attack: {mia['strongest_attack']}")
    c2.metric(f"Training {units} found at 1% false alarms",
              wording.fmt_interval(best["tpr_at_1pct_fpr"]["value"],
                                   best["tpr_at_1pct_fpr"]["ci"]),
              help=wording.fmt_n(mia["n_members"]) + " from training")
    c3.metric("Images compared", wording.fmt_count(mia["n_members"] + mia["n_nonmembers"]),
              help=f"{mia['n_members']} training + {mia['n_nonmembers']} never trained on")
    st.caption(f"Images compared: {wording.fmt_count(mia['n_members'])} from training and "
               f"{wording.fmt_count(mia['n_nonmembers'])} never trained on "
               f"({wording.fmt_n(mia['n'], mia.get('n_patients'))}).")
    if not best["tpr_at_1pct_fpr"].get("resolvable", True):
        st.caption("With this few non-training images, 1% false alarms cannot be resolved: the "
                   "figure is the share found with no false alarm at all.")
    with st.expander("How members and non-members were chosen"):
        st.markdown(f"{md_text(mia['balance']['method'])}. Source: {md_text(mia['source'])}. "
                    f"Intervals resample {md_text(mia['resampling_unit'])}s.")
        for name, text in mia["attacks"].items():
            st.markdown(f"- **{md_text(name)}**: {md_text(text)}")

    fig = go.Figure()
    positive_fpr = [x for curve in mia["roc"].values() for x in curve["fpr"] if x > 0]
    left = min([*positive_fpr, 0.01])  # the left edge of the log axis
    for name, curve in mia["roc"].items():
        ev = mia["overall"][name]["auc"]
        fig.add_trace(go.Scatter(x=curve["fpr"], y=curve["tpr"], mode="lines",
                                 name=chart_text(wording.legend_label(
                                     name, n=mia["n"], value=ev["value"], ci=ev["ci"],
                                     pct=False, what="AUC"))))
    # a coin toss finds as many training images as it flags others: y = x, drawn as a
    # dense line from the axis's left edge (two points would be a straight segment on a
    # log axis, i.e. the wrong curve)
    steps = 200
    chance = [left ** (1 - i / steps) for i in range(steps + 1)]
    fig.add_trace(go.Scatter(x=chance, y=chance, mode="lines", name="coin toss (AUC 0.5)",
                             line={"dash": "dash", "color": "grey"}))
    decades = [10.0 ** e for e in range(-4, 1) if 10.0 ** e >= left / 10]
    fig.update_layout(xaxis={"type": "log", "title": f"false alarms (share of non-training "
                                                    f"{units} flagged), log scale",
                             "tickvals": decades,
                             "ticktext": [wording.fmt_pct(d, 2 if d < 0.01 else 0)
                                          for d in decades]},
                      yaxis={"title": f"training {units} found", "tickformat": ".0%",
                             "range": [0, 1]}, height=420,
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
        labels = [f"{chart_text(g)} (n = {n})" + (" — too few to judge" if tf else "")
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
        absent = table[~table["suppressed"] & table["auc"].isna()]
        if len(absent):
            st.caption("Not drawn, no attack AUC: " + "; ".join(
                md_text(wording.membership_group_absent(str(g), m, o)) for g, m, o in zip(
                    absent["group"], absent["n_members"], absent["n_nonmembers"])) + ".")
        show_table(table, [
            Column("group", "group"),
            Column("auc", "attack AUC (95% interval)", "interval_number", low="auc_low",
                   high="auc_high"),
            Column("n", "images", "count"), Column("n_members", "from training", "count"),
            Column("n_nonmembers", "never trained on", "count"),
            Column("tpr_at_1pct_fpr", "found at 1% false alarms", "pct"),
            Column("too_few", "too few to judge"),
        ], key="privacy_groups_table",
            file_name=f"{ref}__{dataset_name}__{attribute}__membership.csv")

st.header("2. Patient identifiers in the inputs")
ids = result.get("identifiers")
if ids is None:
    st.info("The identifier scan was switched off for this audit.")
else:
    st.markdown(f"**What the scan finds.** {md_text(ids['finding'])}")
    st.caption("Only the kind of identifier and where it is are shown, never a value.")
    findings = identifier_findings_table(ids)
    show_table(findings, [Column(c, c.replace("_", " ")) for c in findings.columns],
               key="privacy_identifiers_table", file_name=f"{dataset_name}__identifiers.csv")
    if ids.get("dicom"):
        markers = ids["dicom"]["markers"]
        st.markdown(
            f"DICOM headers checked: {ids['dicom']['n_files']}. PatientIdentityRemoved = YES in "
            f"{markers['PatientIdentityRemoved']['YES']}; BurnedInAnnotation = YES in "
            f"{markers['BurnedInAnnotation']['YES']}.")
