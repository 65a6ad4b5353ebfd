"""Explanations: why did the model decide, and can those pictures be trusted?"""

from __future__ import annotations

import streamlit as st

import auditkit
from auditkit import wording
from auditkit.explain import (
    curves_figure,
    gallery_figure,
    image_views,
    page_colour_limit,
    sanity_figure,
    shares_figure,
)
from ui.common import (
    data_root,
    loaded_dataset,
    md_text,
    new_run_dir,
    patient_images_allowed,
    pick_model_and_dataset,
    registry_models,
    require_stored_result,
    run_with_progress,
    show_unreadable_audits,
)
from ui.dense import explain_view, is_dense

st.set_page_config(page_title="Explanations — auditkit", layout="wide")
st.title("Why did the model decide — and can the explanation be trusted?")
show_unreadable_audits()
st.caption("Each map shows which pixels pushed the model towards its answer (red) or away from "
           "it (blue), on one colour scale for the whole page. Below the maps, three checks "
           "computed from the model say whether the maps add up, whether they point at what "
           "the model really uses, and whether they depend on what it learned at all.")

ref, dataset_name = pick_model_and_dataset("explain")
method = st.sidebar.selectbox("Method", ["gradient", "partition"], key="explain_method",
                              format_func=lambda m: {"gradient": "Expected gradients (fast)",
                                                     "partition": "Partition (model-agnostic)"}[m])
n_per_group = st.sidebar.number_input("Images per patient group", 1, 50, 12,
                                      key="explain_n_per_group")
n_samples = st.sidebar.number_input("Samples per explanation", 2, 512, 32, key="explain_n_samples")
sanity_images = st.sidebar.number_input("Images for the sanity check", 0, 32, 8,
                                        key="explain_sanity_images")
min_group = st.sidebar.number_input("Minimum group size", 2, 100, 10, key="explain_min_group")
out_dir = new_run_dir(ref, dataset_name, "explain")

if st.sidebar.button("Run explanations", key="explain_run", type="primary"):
    config = auditkit.AuditConfig(
        checks=["performance", "explain"], n_boot=500, min_group_size=int(min_group),
        options={"explain": {"method": method, "n_per_group": int(n_per_group),
                             "n_samples": int(n_samples), "sanity_images": int(sanity_images)}})
    run_with_progress(ref=ref, dataset_name=dataset_name, config=config, out_dir=out_dir)

audit, result, folder = require_stored_result(
    "explain", ref, dataset_name,
    missing=f"No explanations of **{md_text(ref)}** on **{md_text(dataset_name)}** yet. Press **Run "
            "explanations** in the sidebar.")
if is_dense(result):  # a multi-label or segmentation model: its own view
    explain_view(audit, result, folder)
    st.stop()

settings = result["settings"]
st.markdown(f"**{md_text(ref)}** on **{md_text(dataset_name)}**: {md_text(result['n_images'])} "
            f"images ({md_text(result['selection'])}), explained with "
            f"{md_text(settings['method_name'])}, {md_text(settings['n_samples'])} samples each. "
            f"Audit of {md_text(audit['created_at'])}.")

trust = result["trust"]
comp, faith, sanity = trust["completeness"], trust["faithfulness"], trust["sanity"]
st.subheader("Can these explanations be trusted?")
c1, c2, c3 = st.columns(3)
verdict, reading = wording.explanations_overall_reading(
    completeness=comp["share_within_tolerance"]["value"], faithful=faith.get("beats_random"),
    sanity_flagged=sanity.get("flagged") if sanity.get("status") == "assessed" else None)
st.markdown(f"**Overall: {wording.verdict_label(verdict)}.** {md_text(reading)}")
c1.metric("Add up to the score (completeness)",
          wording.fmt_interval(comp["share_within_tolerance"]["value"],
                               comp["share_within_tolerance"]["ci"]),
          help=f"Share of {comp['n']} explanations within {wording.fmt_pct(comp['tolerance'])}.")
c2.metric("Beat random order (faithfulness)", "yes" if faith["beats_random"] else "no",
          help=f"Deletion and insertion curves on {faith['n']} images.")
if sanity.get("status") == "assessed":
    final = sanity["similarity_all_layers_randomized"]
    c3.metric("Depend on the model (sanity)", "FLAGGED" if sanity["flagged"] else "yes",
              help=f"Similarity after randomizing every layer: "
                   f"{wording.fmt_interval(final['value'], final['ci'], pct=False)}, "
                   f"{wording.fmt_n(sanity['n'])}.")
else:
    c3.metric("Depend on the model (sanity)", "not assessed")
for text in (comp["text"], faith["text"], sanity.get("text") or
             f"Sanity check not assessed: {sanity.get('reason')}."):
    st.markdown(f"- {md_text(text)}")
st.caption(md_text(wording.explanations_counts_note(
    n_images=int(result["n_images"]), n_explanations=int(comp["n"]),
    n_complete=round((comp["share_within_tolerance"]["value"] or 0) * comp["n"]))))
if sanity.get("flagged"):
    st.warning("The sanity check is flagged: these maps barely change when the model's weights "
               "are replaced by random ones, so they should not be read as the model's reasons.")

st.subheader("The images, side by side across groups")
attributes = list(dict.fromkeys(g["attribute"] for g in result["shortcuts"]["by_group"]))
attribute = st.selectbox("Compare groups of", attributes, key="explain_attribute")
card = next(m for m in registry_models() if f"{m['name']}@{m['version']}" == ref)
paths = None
show_images = patient_images_allowed(dataset_name, key="explain_show_images")
try:
    if show_images:  # else the maps are drawn alone
        paths = dict(zip(loaded_dataset(dataset_name, data_root()).records["key"],
                         loaded_dataset(dataset_name, data_root()).records["path"]))
except auditkit.AuditKitError:
    st.caption("The dataset's image files are not on this computer: maps are shown alone.")
views = image_views(result, folder, paths, input_size=card["input_size"],
                    channels=card["channels"])
if all(v["map"] is None for v in views):
    st.info("The attribution file (attributions.npz) of this audit is missing; only the "
            "numbers are shown.")
else:
    limit = page_colour_limit(views)
    per_group = st.slider("Images per group", 1, 6, 2, key="explain_per_group")
    st.plotly_chart(gallery_figure(views, attribute=attribute, limit=limit, per_group=per_group),
                    key="explain_gallery")
    st.caption(f"Colour scale ±{wording.fmt_number(limit, 3)} (model score units) on every "
               "image. Titles: the group, the prediction and its confidence, and the true class."
               + ("" if paths else " Maps are drawn without the image beneath."))

st.subheader("Does the model look at the border, the corners, or outside the centre?")
st.markdown(md_text(result["shortcuts"]["text"]))
st.plotly_chart(shares_figure(result, attribute), key="explain_shares")
top = result["shortcuts"]["top_images"]
st.markdown("Images that rely most on the corners: " + ", ".join(
    f"{md_text(t['image'])} ({wording.fmt_pct(t['share'])})" for t in top.get("corners", [])))

st.subheader("Faithfulness: deletion and insertion curves")
st.plotly_chart(curves_figure(result), key="explain_curves")
if sanity.get("status") == "assessed":
    st.subheader("Sanity check: randomizing the model's layers")
    st.plotly_chart(sanity_figure(result), key="explain_sanity")
