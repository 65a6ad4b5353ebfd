"""auditkit dashboard — the landing page (Home): the model zoo, the datasets and the audits on file."""

from __future__ import annotations

import pandas as pd
import streamlit as st

import auditkit
from auditkit import wording
from auditkit.controls import is_control
from auditkit.wording import withheld_count
from ui.common import (
    data_root,
    dataset_choices,
    dataset_overview,
    md_text,
    registry_models,
    show_control_warning,
    show_unreadable_audits,
    stored_audits,
)

st.set_page_config(page_title="auditkit — model audit", page_icon="🩺", layout="wide")

st.title("auditkit: is this model fit for our patients?")
st.markdown(
    "A survey-style review of a medical-imaging AI model: how well it works, whether it works "
    "**equally well for every patient group**, why it decides what it decides, whether it can "
    "be fooled, and whether it leaks who was in its training data. Every number comes with "
    "the number of images behind it and a 95% interval; groups too small to judge are labelled."
)

# --------------------------------------------------------------------------- models
st.header("Models")
try:
    models = registry_models()
except auditkit.AuditKitError as exc:
    st.error(f"The model registry could not be read: {exc}")
    st.stop()
if not models:
    st.info("No models registered yet: add a folder with card.json and weights under models/.")

def show_family(versions: list[dict]) -> None:
    """One bordered box per model family, one column per version."""
    name = versions[0]["name"]
    label = f"**{md_text(name)}** — {len(versions)} version(s)" + (
        " · versions to compare on the **Compare versions** page" if len(versions) > 1 else "")
    with st.container(border=True):
        st.markdown(label)
        st.caption(md_text(versions[0]["task"]))
        show_control_warning(versions[0])  # a control: the banner says what was planted
        cols = st.columns(len(versions))
        for col, card in zip(cols, versions):
            with col:
                overall = (card.get("metrics") or {}).get("overall", {})
                verified = "✅ weights match the card" if card["verified"] else \
                    "❌ weights do NOT match the card's sha256"
                st.markdown(f"##### {md_text(card['name'])} {md_text(card['version'])}")
                st.caption(f"{md_text(card['format'])} · {md_text(card['output'])} · "
                           f"sha256 {md_text(str(card['sha256'])[:12])}… · {verified}")
                if overall:
                    acc, ci = overall.get("accuracy"), overall.get("accuracy_ci") or [None, None]
                    n = overall.get("n")
                    if acc is not None:
                        st.metric("Test accuracy", wording.fmt_pct(acc),
                                  help=f"{wording.fmt_n(n)} of the test split")
                        st.caption(f"accuracy {wording.fmt_interval(acc, ci)}, "
                                   f"{wording.fmt_n(n)} (test split); sensitivity for "
                                   f"{md_text(card['positive_class'])}: "
                                   f"{wording.fmt_pct(overall.get('sensitivity'))}")
                # card text is shown as text: a card cannot add links, images or HTML
                if not is_control(card):
                    st.markdown(
                        f"**Intended use.** {md_text(card['intended_use'] or 'not stated')}")
                if card.get("family_note"):
                    st.caption(md_text(card["family_note"]))
                with st.expander("Training data and limitations"):
                    st.markdown(md_text(card["training_data"] or "not stated"))
                    st.markdown(f"**Limitations.** {md_text(card['limitations'] or 'not stated')}")
                    st.markdown(
                        f"**Out of scope.** {md_text(card['out_of_scope_use'] or 'not stated')}")


families: dict[str, list[dict]] = {}
for card in models:
    families.setdefault(card["name"], []).append(card)
demo = [v for v in families.values() if not is_control(v[0])]
controls = [v for v in families.values() if is_control(v[0])]

st.subheader("Demo models")
if not demo:
    st.info("No demo models registered.")
for versions in demo:
    show_family(versions)

if controls:
    st.subheader("Control models — deliberately flawed, for validating auditkit")
    st.caption(
        "Each control model had one defect planted on purpose (a group it fails, a shortcut, "
        "brittleness, memorised training images) so that the check built for that defect "
        "can be shown to find it; the reference model has none and, audited with shuffled "
        "group labels, must show no gap. Never use them on patients. The detection table "
        "and how to reproduce it: docs/validation.md.")
    for versions in controls:
        show_family(versions)

# --------------------------------------------------------------------------- datasets
st.header("Datasets")
st.caption("Built-in datasets, then your own: a folder of dataset descriptions (TOML) named by "
           "AUDITKIT_DATASET_REGISTRY, or written by the **New audit** page (docs/datasets.md).")
builtin_names = set(auditkit.builtin_dataset_names())
for name in dataset_choices():
    origin = "built-in" if name in builtin_names else "registered"
    try:
        info = dataset_overview(name, data_root())
    except auditkit.DatasetNotFoundError as exc:
        st.warning(f"**{md_text(name)}** ({origin}) is not on this computer.")
        st.code(str(exc), language=None)
        continue
    except auditkit.AuditKitError as exc:  # a broken dataset never hides the others
        st.warning(f"**{md_text(name)}** ({origin}) cannot be used.")
        st.code(str(exc), language=None)
        continue
    with st.expander(f"**{md_text(name)}** ({origin}) — {info['n_images']} images"
                     + (f", {info['n_patients']} patients" if info["n_patients"] else ""),
                     expanded=False):
        st.markdown(md_text(info["description"]))
        st.caption(f"License: {md_text(info['license'])}")
        if info.get("n_rows_left_out"):
            st.caption(f"{info['n_rows_left_out']} row(s) with problems (e.g. unreadable "
                       "files) are left out of these counts.")
        st.markdown("Classes: " + ", ".join(
            f"{md_text(k)} ({withheld_count(10) if v is None else v})"
            for k, v in info["class_counts"].items()))
        rows = [{"attribute": attr, "group": g,
                 "images": withheld_count(10) if c is None else str(c)}
                for attr, counts in info["group_counts"].items() for g, c in counts.items()]
        st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")

# --------------------------------------------------------------------------- audits
#: The page that shows each check's results.
CHECK_PAGES = {"fairness": "Fairness", "explain": "Explanations", "robustness": "Robustness",
               "privacy": "Privacy", "performance": "Overview"}
st.header("Audits on file")
show_unreadable_audits()
audits = stored_audits()
if not audits:
    st.info("No audits written yet. Open a page on the left (e.g. **Fairness**) and press Run, "
            "or run `auditkit audit --model derm-lesion@v1 --dataset fitzpatrick17k "
            "--checks fairness` in a terminal.")
else:
    def measured(audit: dict) -> str:
        """The images the numbers rest on (the evaluated rows), not the dataset's size."""
        perf = audit["results"].get("performance")
        n = perf.get("n") if isinstance(perf, dict) else None
        total = audit["dataset"].get("n_images")
        if not isinstance(n, int):
            return "–"
        return wording.fmt_count(n) + (f" of {wording.fmt_count(total)}"
                                       if isinstance(total, int) and total != n else "")

    st.caption("Images: those the numbers are measured on (the test split when the model's "
               "training split is known) of the dataset's images. Select a row to open it.")
    selected = st.dataframe(pd.DataFrame([{
        "model": f"{a['audit']['model']['name']}@{a['audit']['model']['version']}",
        "dataset": a["audit"]["dataset"]["name"],
        "images measured": measured(a["audit"]),
        "checks": ", ".join(map(str, a["audit"]["results"])),
        "created": a["audit"]["created_at"],
        "folder": a["path"],
    } for a in audits]), hide_index=True, width="stretch", key="home_audits",
        on_select="rerun", selection_mode="single-row")
    rows = selected.selection.rows if selected is not None else []
    if rows:
        picked = audits[rows[0]]["audit"]
        ref = f"{picked['model']['name']}@{picked['model']['version']}"
        with st.container(border=True):
            st.markdown(f"**{md_text(ref)}** on **{md_text(picked['dataset']['name'])}**, "
                        f"audit of {md_text(picked['created_at'])}")
            perf = picked["results"].get("performance")
            if isinstance(perf, dict) and perf.get("status") == "assessed":
                st.markdown(md_text(wording.performance_headline(perf)))
            st.markdown("Open its pages in the sidebar, with this model and dataset picked: "
                        + ", ".join(f"**{CHECK_PAGES[c]}**" for c in picked["results"]
                                    if c in CHECK_PAGES)
                        + "; the **Overview** answers the committee's questions from it.")
