"""Overview: the committee's seven questions, each answered with a verdict and its evidence."""

from __future__ import annotations

import tempfile
from pathlib import Path

import plotly.graph_objects as go
import streamlit as st

import auditkit
from auditkit import wording
from auditkit.overview import FigureData, criteria_from_text, evaluate_audit, list_evaluations
from auditkit.report import build_report_html, find_chromium, html_to_pdf
from ui.common import (
    chart_text,
    md_text,
    pick_model_and_dataset,
    show_unreadable_audits,
    stored_audits,
)

st.set_page_config(page_title="Overview — auditkit", layout="wide")
st.title("Overview: is this model fit for our patients?")
st.caption("Seven questions an ethics committee asks, each answered with one verdict — "
           + "; ".join(f"{v.icon} **{v.word}**: {v.meaning}" for v in wording.VERDICTS.values())
           + ". " + wording.INTERVAL_EXPLANATION)

show_unreadable_audits()
ref, dataset_name = pick_model_and_dataset("overview")
audits = [a for a in stored_audits()
          if f"{a['audit']['model']['name']}@{a['audit']['model']['version']}" == ref
          and a["audit"]["dataset"]["name"] == dataset_name]
if not audits:
    st.info(f"No stored audit of **{ref}** on **{dataset_name}** yet. Run one from the "
            "Fairness, Explanations, Robustness or Privacy page, or in a terminal: "
            f"`auditkit audit --model {ref} --dataset {dataset_name} "
            "--checks fairness,explain,robustness,privacy`.")
    st.stop()
labels = [f"{a['audit']['created_at']} · {', '.join(a['audit']['results'])}" for a in audits]
picked = st.sidebar.selectbox("Stored audit", range(len(audits)), key="overview_audit",
                              format_func=lambda i: labels[i])
folder = Path(audits[picked]["path"])

uploaded = st.sidebar.file_uploader(
    "Acceptance criteria (TOML)", type=["toml"], key="overview_criteria_file",
    help="Leave empty to use the criteria recorded in the audit, else the shipped default "
         "for this kind of model. A new criteria file makes a new evaluation; the audit "
         "itself is never changed.")
criteria = None
if uploaded is not None:
    try:
        criteria = criteria_from_text(uploaded.getvalue().decode("utf-8"),
                                      source=uploaded.name)
    except (auditkit.AuditKitError, UnicodeDecodeError) as exc:
        st.error(f"The criteria file cannot be used:\n\n```\n{exc}\n```")
        st.stop()

try:
    result, evaluation_path = evaluate_audit(folder, criteria=criteria)
except auditkit.AuditKitError as exc:  # e.g. criteria in audit.json edited after the run
    st.error(f"This audit cannot be evaluated:\n\n```\n{exc}\n```")
    st.stop()
evaluated_at = next((e["evaluated_at"] for e in list_evaluations(folder)
                     if e["criteria_hash"] == result.criteria["hash"]), None)

st.markdown(f"**{md_text(ref)}** on **{md_text(dataset_name)}** — measured on "
            f"{wording.fmt_n(result.n_images, result.n_patients)}; audit of "
            f"{result.audit_created_at}.")
st.caption(wording.overview_criteria_line(
    result.criteria, recorded_in_audit=result.criteria_recorded_in_audit,
    audit_created_at=result.audit_created_at, evaluated_at=evaluated_at)
    + f" Evaluation kept in `{evaluation_path.parent.name}/{evaluation_path.name}`.")


def figure(data: FigureData) -> go.Figure:
    shown = [r for r in data.rows if r["value"] is not None]
    fig = go.Figure(go.Scatter(
        x=[r["value"] for r in shown], y=[chart_text(r["label"]) for r in shown], mode="markers",
        marker={"size": 11, "symbol": "square"},
        error_x={"type": "data", "symmetric": False,
                 "array": [(r["high"] - r["value"]) if r["high"] is not None else 0
                           for r in shown],
                 "arrayminus": [(r["value"] - r["low"]) if r["low"] is not None else 0
                                for r in shown]}))
    if data.reference is not None:
        fig.add_vline(x=data.reference, line_dash="dash", line_color="#a00",
                      annotation_text=data.reference_label)
    fig.update_layout(title=data.title, xaxis_title=data.axis, height=140 + 34 * len(shown),
                      margin={"l": 10, "r": 10, "t": 40, "b": 40},
                      xaxis={"tickformat": ".0%"} if data.pct else {})
    return fig


for number, answer in enumerate(result.answers, start=1):
    with st.container(border=True):
        st.markdown(f"#### {number}. {answer.question}\n**{answer.label}** — "
                    f"{md_text(answer.headline)}")
        for f in answer.findings:  # evidence names groups, which come from the data: text only
            why = f" *({md_text(f.reason)})*" if f.reason else ""
            st.markdown(f"- **{f.label}** · {md_text(f.criterion)}: {md_text(f.evidence)}{why}")
        for note in (n for n in answer.notes if n):
            st.caption(md_text(note))
        for i, data in enumerate(d for d in answer.figures if d.rows):
            with st.expander(f"Figure: {data.title}"):
                st.plotly_chart(figure(data), key=f"overview_fig_{answer.key}_{i}")
        if answer.page:
            st.caption(f"Details: the {answer.page_label} (in the sidebar).")

with st.expander("What the metric names mean"):
    for key, meaning in wording.METRIC_MEANINGS.items():
        st.markdown(f"- **{wording.metric_name(key)}**: {meaning}")

st.subheader("The report for the committee's minutes")
stem = f"{ref}__{dataset_name}__report"
# the report is written when the button is clicked (a callable), not on every redraw
st.download_button("Download the report (HTML, one file)",
                   data=lambda: build_report_html(folder, criteria=criteria),
                   file_name=f"{stem}.html", mime="text/html", key="overview_download_html")
if find_chromium() is None:
    st.caption("PDF needs headless Chromium on this computer (Debian: apt-get install chromium); "
               "or run `auditkit report AUDIT_DIR --format pdf` where it is installed.")
elif st.button("Prepare the PDF", key="overview_pdf"):
    with st.spinner("Printing the PDF…"), tempfile.TemporaryDirectory() as tmp:
        html = build_report_html(folder, criteria=criteria)
        pdf = html_to_pdf(html, Path(tmp) / "report.pdf").read_bytes()
    st.download_button("Download the report (PDF)", data=pdf, file_name=f"{stem}.pdf",
                       mime="application/pdf", key="overview_download_pdf")
