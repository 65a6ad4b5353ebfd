"""Robustness: how much does it take to fool the model, and are some groups easier to fool?"""

from __future__ import annotations

import math

import plotly.graph_objects as go
import streamlit as st
from plotly.subplots import make_subplots

import auditkit
from auditkit import wording
from auditkit.robustness import (
    ATTACKS,
    DEFAULT_ATTACKS,
    DEFAULT_OPTIONS,
    adversarial_examples,
    attack_table,
    corruption_table,
    min_perturbation_table,
)
from auditkit.wording import Column
from ui.common import (
    chart_text,
    loaded_model,
    md_text,
    new_run_dir,
    patient_images_allowed,
    pick_model_and_dataset,
    registry_models,
    require_dataset,
    require_stored_result,
    run_with_progress,
    show_table,
    show_unreadable_audits,
)
from ui.dense import is_dense, robustness_view

st.set_page_config(page_title="Robustness — auditkit", layout="wide")
st.title("Can the model be fooled, and are some patients easier to fool?")
show_unreadable_audits()
st.caption("Two kinds of test. *Adversarial attacks* change pixels on purpose, by amounts too "
           "small to see, to find out how little it takes to change the diagnosis. *Everyday "
           "image problems* (blur, noise, JPEG, exposure, rotation, colour) show how answers "
           "change with imperfect images. Every rate carries its number of images and a 95% "
           "interval; groups too small to judge are marked, never hidden.")

ref, dataset_name = pick_model_and_dataset("robustness")
n_images = st.sidebar.number_input("Images to attack", 4, 2000, DEFAULT_OPTIONS["n_images"],
                                   step=16, key="robustness_n_images",
                                   help="Chosen at random, an equal share from every group.")
n_corrupt = st.sidebar.number_input("Images for the image-problem tests", 0, 5000,
                                    DEFAULT_OPTIONS["n_images_corruptions"], step=64,
                                    key="robustness_n_corruptions")
attacks = st.sidebar.multiselect(
    "Attacks", list(ATTACKS), default=list(DEFAULT_ATTACKS), key="robustness_attacks",
    format_func=lambda a: ATTACKS[a].label + (" — slow" if ATTACKS[a].cost == "costly" else ""))
n_boot = st.sidebar.select_slider("Bootstrap resamples", [200, 500, 1000], value=1000,
                                  key="robustness_n_boot")
min_group = st.sidebar.number_input("Minimum group size", 2, 100, 10, key="robustness_min_group")

if st.sidebar.button("Run robustness audit", key="robustness_run", type="primary"):
    config = auditkit.AuditConfig(
        checks=["performance", "robustness"], n_boot=int(n_boot), min_group_size=int(min_group),
        options={"robustness": {"n_images": int(n_images), "attacks": attacks,
                                "n_images_corruptions": int(n_corrupt)}})
    run_with_progress(ref=ref, dataset_name=dataset_name, config=config,
                      out_dir=new_run_dir(ref, dataset_name, "robustness"))

audit, result, _folder = require_stored_result(
    "robustness", ref, dataset_name,
    missing=f"No robustness audit of **{md_text(ref)}** on **{md_text(dataset_name)}** yet. Set how many images "
            "to attack and press **Run robustness audit** in the sidebar (a GPU is used when "
            "present).")
if is_dense(result):  # a multi-label or segmentation model: its own view
    robustness_view(result)
    st.stop()

st.markdown(f"**In plain words.** {md_text(result['summary'])}")
clean = result["clean"]["overall"]["accuracy"]
c1, c2, c3 = st.columns(3)
c1.metric("Accuracy on the untouched images", wording.fmt_interval(clean["value"], clean["ci"]),
          help=wording.fmt_n(result["n_images"]))
c2.metric("Images attacked", f"{wording.fmt_count(result['n_images'])} of "
          f"{wording.fmt_count(result['n_available'])}")
c3.metric("Computed on", result["device"])
card = next((m for m in registry_models() if f"{m['name']}@{m['version']}" == ref), {})
card_overall = (card.get("metrics") or {}).get("overall") or {}
card_line = (f" The model card says {wording.fmt_interval(card_overall.get('accuracy'), card_overall.get('accuracy_ci'))}, "
             f"{wording.fmt_n(card_overall.get('n'))}." if card_overall.get("accuracy") is not None
             else "")
st.caption(md_text(wording.robustness_sample_note(
    n_sample=int(result["n_images"]), n_available=int(result["n_available"]),
    n_card=card_overall.get("n"), stratified_by=result["sampling"]["stratified_by"]))
    + f" Here: {wording.fmt_interval(clean['value'], clean['ci'])}, "
    f"{wording.fmt_n(result['n_images'])}." + md_text(card_line))
st.caption(f"Sample: {md_text(result['sampling']['method'])}, stratified by "
           f"{md_text(result['sampling']['stratified_by'] or 'nothing')} (seed "
           f"{md_text(result['sampling']['seed'])}). Intervals resample "
           f"{md_text(result['resampling_unit'])}s. Audit of {md_text(audit['created_at'])}.")

def known(value: object) -> bool:
    """A number to draw: withheld (small-cell protection) and undefined values are not."""
    return isinstance(value, (int, float)) and math.isfinite(value)



# --------------------------------------------------------------------------- ε curves
table = attack_table(result)
st.header("1. How much change does it take?")
budgeted = [a for a in dict.fromkeys(table["attack"]) if ATTACKS[a].budgeted] if len(table) \
    else []
if budgeted:
    attributes = ["overall"] + [a for a in dict.fromkeys(table["attribute"]) if a != "overall"]
    c1, c2 = st.columns(2)
    attack = c1.selectbox("Attack", budgeted, key="robustness_curve_attack",
                          format_func=lambda a: ATTACKS[a].label)
    attribute = c2.selectbox("Patient groups by", attributes, key="robustness_curve_attribute")
    rows = table[(table["attack"] == attack)
                 & table["attribute"].isin(["overall", attribute])].to_dict("records")
    fig = go.Figure()
    for group in dict.fromkeys(r["group"] for r in rows):
        pts = [r for r in rows if r["group"] == group and known(r["robust_accuracy"])]
        if not pts:
            continue
        too_few = pts[0]["too_few"]
        fig.add_trace(go.Scatter(
            x=[r["budget_255"] if r["budget_255"] is not None else r["budget"] for r in pts],
            y=[r["robust_accuracy"] for r in pts], mode="lines+markers",
            name=chart_text(wording.legend_label(str(group), n=pts[0]["n"]))
                 + (" — too few to judge" if too_few else ""),
            line={"dash": "dot" if too_few else "solid",
                  "width": 4 if group == "all images" else 2},
            error_y={"type": "data", "symmetric": False,
                     "array": [(r["robust_accuracy_high"] or r["robust_accuracy"])
                               - r["robust_accuracy"] for r in pts],
                     "arrayminus": [r["robust_accuracy"] - (r["robust_accuracy_low"]
                                                            or r["robust_accuracy"])
                                    for r in pts]}))
    unit = "ε (× 1/255 of the pixel range)" if ATTACKS[attack].norm == "Linf" else "ε (L2)"
    budgets = sorted({float(r["budget_255"] if r["budget_255"] is not None else r["budget"])
                      for r in rows if known(r["robust_accuracy"])})
    # a log axis (the budgets double) ticked at the budgets themselves, never at bare
    # mantissas ("5 6 7 8 9 1 2")
    fig.update_layout(xaxis={"title": unit, "type": "log", "tickvals": budgets,
                             "ticktext": [wording.fmt_number(b, 2).rstrip("0").rstrip(".")
                                          for b in budgets]},
                      yaxis={"title": "accuracy under attack (95% interval)", "range": [0, 1]},
                      height=420, margin={"l": 10, "r": 10, "t": 30, "b": 40},
                      title="Accuracy under attack vs size of the change")
    st.plotly_chart(fig, key="robustness_eps_chart")
    withheld = sorted({str(r["group"]) for r in rows if r["suppressed"]})
    if withheld:
        k = (audit.get("small_cell_protection") or {}).get("k") or 10
        st.caption(f"Not drawn: {', '.join(md_text(g) for g in withheld)}. "
                   + wording.withheld_note(int(k)))
    hidden = sorted({r["group"] for r in rows if r["suppressed"]})
    if hidden:
        st.caption("Hidden to protect small groups: " + ", ".join(map(md_text, hidden)) + ".")
    variants = {v for v in table["variant"].dropna()}
    if variants:
        st.caption("AutoAttack ran as the documented variant for models with fewer than four "
                   "classes (APGD-CE, APGD-DLR where possible, FAB-T, Square): "
                   + ", ".join(md_text(v) for v in sorted(variants)) + ".")
    show_table(table[(table["attack"] == attack)
                     & table["attribute"].isin(["overall", attribute])].reset_index(drop=True), [
        Column("group", "group"),
        Column("budget_255" if ATTACKS[attack].norm == "Linf" else "budget", unit, "number"),
        Column("robust_accuracy", "accuracy under attack (95% interval)", "interval_pct",
               low="robust_accuracy_low", high="robust_accuracy_high"),
        Column("attack_success_rate", "answers flipped (95% interval)", "interval_pct",
               low="attack_success_rate_low", high="attack_success_rate_high"),
        Column("n", "images", "count"),
    ], key="robustness_attack_table", file_name=f"{ref}__{dataset_name}__attacks.csv",
        caption="This attack and grouping only; the download holds every attack and group.")

smallest = min_perturbation_table(result)
if len(smallest):
    st.subheader("The smallest change that flips each diagnosis")
    st.caption("DeepFool / Carlini-Wagner search for the smallest change that flips each correct "
               "answer. Median L∞ size, in 1/255 steps of the pixel range (1/255 ≈ 0.4%).")
    show_table(smallest, [
        Column("label", "method"), Column("attribute", "groups by"), Column("group", "group"),
        Column("median_linf_255", "median L∞ change (× 1/255, 95% interval)",
               "interval_number", low="median_linf_255_low", high="median_linf_255_high"),
        Column("median_l2", "median L2 change (95% interval)", "interval_number",
               low="median_l2_low", high="median_l2_high"),
        Column("n", "images", "count"),
    ], key="robustness_min_table", file_name=f"{ref}__{dataset_name}__smallest_change.csv")

# --------------------------------------------------------------------------- corruptions
ctable = corruption_table(result)
st.header("2. Everyday image problems")
if not len(ctable):
    st.info("No image-problem test was run in this audit.")
else:
    c1, c2 = st.columns(2)
    corruption = c1.selectbox("Image problem", list(dict.fromkeys(ctable["corruption"])),
                              key="robustness_corruption",
                              format_func=lambda c: ctable[ctable["corruption"] == c][
                                  "label"].iloc[0])
    cattrs = ["overall"] + [a for a in dict.fromkeys(ctable["attribute"]) if a != "overall"]
    cattribute = c2.selectbox("Patient groups by", cattrs, key="robustness_corruption_attribute")
    cframe = ctable[(ctable["corruption"] == corruption)
                    & ctable["attribute"].isin(["overall", cattribute])].reset_index(drop=True)
    crow = cframe.to_dict("records")
    cfig = make_subplots(rows=1, cols=2, subplot_titles=("answers changed", "accuracy"))
    for group in dict.fromkeys(r["group"] for r in crow):
        pts = [r for r in crow if r["group"] == group and known(r["flip_rate"])]
        if not pts:
            continue
        name = chart_text(wording.legend_label(str(group), n=pts[0]["n"])) + (
            " — too few" if pts[0]["too_few"] else "")
        for col, metric in ((1, "flip_rate"), (2, "accuracy")):
            cfig.add_trace(go.Scatter(
                x=[r["severity"] for r in pts], y=[r[metric] for r in pts], mode="lines+markers",
                name=name, legendgroup=name, showlegend=col == 1,
                line={"dash": "dot" if pts[0]["too_few"] else "solid"},
                error_y={"type": "data", "symmetric": False,
                         "array": [(r[f"{metric}_high"] or r[metric]) - r[metric] for r in pts],
                         "arrayminus": [r[metric] - (r[f"{metric}_low"] or r[metric])
                                        for r in pts]}), row=1, col=col)
    cfig.update_xaxes(title_text="severity (1 mild – 5 strong)")
    cfig.update_yaxes(range=[0, 1])
    cfig.update_layout(height=420, margin={"l": 10, "r": 10, "t": 40, "b": 40})
    st.plotly_chart(cfig, key="robustness_corruption_chart")
    first = crow[0]
    st.caption(f"Severity is the {md_text(first['unit'])}. For skin photographs the colour "
               "shifts ask: "
               "does the answer change with apparent skin colour?")
    show_table(cframe, [
        Column("group", "group"), Column("severity", "severity", "count"),
        Column("flip_rate", "answers changed (95% interval)", "interval_pct",
               low="flip_rate_low", high="flip_rate_high"),
        Column("accuracy", "accuracy (95% interval)", "interval_pct", low="accuracy_low",
               high="accuracy_high"),
        Column("n", "images", "count"),
    ], key="robustness_corruption_table", file_name=f"{ref}__{dataset_name}__{corruption}.csv")

# --------------------------------------------------------------------------- gallery
st.header("3. See it for yourself")
if not patient_images_allowed(dataset_name, key="robustness_show_images"):
    st.stop()
group_choices = ["any group"] + [f"{g['attribute']} = {g['group']}"
                                 for g in result["attacks"][0]["by_group"]
                                 if not g.get("suppressed")] if result["attacks"] else []
c1, c2, c3 = st.columns(3)
g_attack = c1.selectbox("Attack", [a for a in ATTACKS if ATTACKS[a].cost == "cheap"],
                        key="robustness_gallery_attack", format_func=lambda a: ATTACKS[a].label)
g_group = c2.selectbox("Group", group_choices or ["any group"], key="robustness_gallery_group")
g_eps = c3.select_slider("Size of change (× 1/255)", [0.5, 1, 2, 4, 8], value=2,
                         key="robustness_gallery_eps")
g_n = st.number_input("Examples", 1, 12, 3, key="robustness_gallery_n")
if st.button("Show examples", key="robustness_gallery_run"):
    group = None if g_group == "any group" else tuple(g_group.split(" = ", 1))
    eps = g_eps / 255 if ATTACKS[g_attack].norm == "Linf" else g_eps / 8
    with st.spinner("Attacking…"):
        items = adversarial_examples(loaded_model(ref, audit["config"]["device"]),
                                     require_dataset(dataset_name), attack=g_attack, eps=eps,
                                     n=int(g_n), group=group, seed=audit["config"]["seed"])
    for item in items:
        fig = make_subplots(rows=1, cols=3, subplot_titles=(
            f"original: {item['clean_prediction']} ({item['clean_confidence']:.0%})",
            f"change × {item['amplification']:.0f} (max {item['linf_255']:.1f}/255)",
            f"attacked: {item['attacked_prediction']} ({item['attacked_confidence']:.0%})"))
        for col, key in enumerate(("original", "perturbation", "adversarial"), start=1):
            img = item[key]
            img = img.repeat(3, axis=2) if img.shape[2] == 1 else img
            fig.add_trace(go.Image(z=(img * 255).astype("uint8")), row=1, col=col)
        fig.update_xaxes(visible=False)
        fig.update_yaxes(visible=False)
        fig.update_layout(height=300, margin={"l": 0, "r": 0, "t": 40, "b": 0},
                          title=f"true class: {item['label']}")
        st.plotly_chart(fig, key=f"robustness_gallery_{item['image']}")
