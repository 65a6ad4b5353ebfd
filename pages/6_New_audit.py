"""New audit: your own model file and your own images — draft, correct, save, run."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

import auditkit
from ui.new_audit import (
    check_drafts,
    default_dataset_registry,
    default_model_registry,
    parse_card,
    registry_env_hint,
    run_new_audit,
    save_edited,
    stage_upload,
    start_drafts,
)

st.set_page_config(page_title="New audit — auditkit", layout="wide")
st.title("New audit: your model, your images")
st.caption("Point at a model file and a dataset folder or table. auditkit drafts the model card "
           "(card.json) and the dataset description from what it can read — the file's format "
           "and hash, the model's input shape by a dry run on one image, the table's columns, "
           "the DICOM header tags — and lists every problem at once. Correct, save, run. "
           "The fields are explained in docs/models.md and docs/datasets.md.")

# --------------------------------------------------------------------------- 1. files
st.header("1. Your files")
c1, c2 = st.columns(2)
model_path = c1.text_input("Model file on this computer (.pt, .pth, .pt2, .safetensors)",
                           key="new_model_path")
upload = c1.file_uploader("…or upload it", type=["pt", "pth", "pt2", "safetensors"],
                          key="new_model_upload")
dataset_path = c2.text_input("Dataset: a folder (with a CSV table, or images in one sub-folder "
                             "per class) or a CSV table", key="new_dataset_path")
table_upload = c2.file_uploader("…or upload the table (CSV); its image paths are relative to "
                                "the folder above, where it is saved", type=["csv"],
                                key="new_table_upload")
trusted = st.checkbox(
    "I trust this model file's code", key="new_trust",
    help="TorchScript and torch.export files carry code that runs when the model runs. Tick "
         "only for a file from a source you trust; without it auditkit does not run the file "
         "(no dry run, no audit).")

if st.button("Draft the card and the dataset description", key="new_draft", type="primary"):
    model_file = stage_upload(upload) if upload is not None else Path(model_path.strip())
    try:
        start_drafts(model_file, dataset_path.strip(), trusted, table_upload)
    except auditkit.AuditKitError as exc:
        st.error(str(exc))
        st.stop()

if "new_card_text" not in st.session_state:
    st.info("Give a model file and a dataset, then press **Draft**.")
    st.stop()

# --------------------------------------------------------------------------- 2. drafts
st.header("2. Check and correct the drafts")
for note in st.session_state.get("new_notes", []):
    st.caption(note)
d1, d2 = st.columns(2)
card_text = d1.text_area("Model card (card.json)", key="new_card_text", height=520)
dataset_text = d2.text_area("Dataset description (TOML)", key="new_dataset_text", height=520)
problems = check_drafts(card_text, dataset_text)
n_problems = len(problems["card"]) + len(problems["dataset"])
if n_problems:
    lines = [f"- **card.json** — {p}" for p in problems["card"]]
    lines += [f"- **dataset** — {p}" for p in problems["dataset"]]
    st.error(f"{n_problems} problem(s) to correct:\n\n" + "\n".join(lines))
else:
    st.success("Both files are valid.")

# --------------------------------------------------------------------------- 3. save
st.header("3. Save both files")
s1, s2 = st.columns(2)
model_registry = s1.text_input("Model registry folder", value=default_model_registry(),
                               key="new_model_registry")
dataset_registry = s2.text_input("Dataset registry folder", value=default_dataset_registry(),
                                 key="new_dataset_registry")
card, _ = parse_card(card_text)
if card is not None:
    target = Path(model_registry) / str(card.get("name")) / str(card.get("version"))
    st.caption(f"The card goes to `{target / 'card.json'}` with a copy of the weights; the "
               f"dataset description to `{dataset_registry}`.")
overwrite = st.checkbox("Overwrite files that exist already", key="new_overwrite", value=False)
if st.button("Save both files", key="new_save", disabled=bool(n_problems) or card is None):
    try:
        st.session_state["new_saved"] = save_edited(
            card_text=card_text, dataset_text=dataset_text, model_registry=model_registry,
            dataset_registry=dataset_registry, overwrite=overwrite)
    except auditkit.AuditKitError as exc:
        st.error(str(exc))
    else:
        st.cache_data.clear()  # every page's pickers list the new files

saved_info = st.session_state.get("new_saved")
if not saved_info:
    st.info("Save both files to run the audit.")
    st.stop()
st.success("Saved: " + ", ".join(f"`{f}`" for f in saved_info["files"]))
hint = registry_env_hint(model_registry, dataset_registry)
if hint:
    st.warning(hint)

# --------------------------------------------------------------------------- 4. run
st.header("4. Run the audit")
r1, r2, r3 = st.columns(3)
checks = r1.multiselect("Checks", auditkit.available_checks(), default=["performance",
                                                                         "fairness"],
                        key="new_checks")
evaluate_on = r2.radio(
    "Measure on", ["auto", "all"], key="new_evaluate_on",
    format_func=lambda v: {"auto": "the model's held-out test split (stops if it does not "
                                   "match)", "all": "all images (training images may be "
                                                    "included)"}[v])
n_boot = r3.select_slider("Bootstrap resamples", [200, 500, 1000], value=1000,
                          key="new_n_boot")
k = r3.number_input("Hide groups smaller than (k)", 0, 100, 10, key="new_k")
needs_trust = (card or {}).get("format") in ("torchscript", "export")
if needs_trust and not st.session_state.get("new_trusted"):
    st.warning("This model file carries code. Tick **I trust this model file's code** above and "
               "press **Draft** again to run it.")
if st.button("Run the audit", key="new_run", type="primary",
             disabled=needs_trust and not st.session_state.get("new_trusted")):
    config = auditkit.AuditConfig(checks=["performance", *[c for c in checks
                                                           if c != "performance"]],
                                  n_boot=int(n_boot), small_cell_k=int(k),
                                  evaluate_on=evaluate_on)
    try:
        audit, out = run_new_audit(saved=saved_info, config=config,
                                   trusted=bool(st.session_state["new_trusted"]))
    except auditkit.AuditKitError as exc:
        st.error(str(exc))
        st.stop()
    st.success(f"Audit written to `{out}`. Open the other pages to read it; "
               f"{saved_info['dataset']} is now in every page's dataset picker.")
    perf = audit["results"].get("performance", {})
    for line in perf.get("summary") or []:  # the first says when training images may be in
        st.markdown(line)
