"""Streamlit glue of the Review page: running and registering an audit, tables to show."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

import auditkit
from auditkit import wording
from auditkit.store import QUESTIONS, AuditInfo, ReviewInfo, ReviewStore, UserInfo
from ui.common import new_run_dir, run_with_progress, stored_audits

#: What the page runs when an engineer runs and registers an audit from it.
PAGE_AUDIT_CHECKS = ["performance", "fairness"]


def unregistered_audits(store: ReviewStore) -> list[dict[str, Any]]:
    """Audit folders on file that are not registered yet (newest first)."""
    known = {Path(a.folder).resolve() for a in store.audits()}
    return [a for a in stored_audits() if Path(a["path"]).resolve() not in known]


def run_and_register(store: ReviewStore, user: UserInfo, *, ref: str,
                     dataset_name: str) -> AuditInfo:
    """Run performance and fairness (with a progress bar) and register the new folder."""
    out = new_run_dir(ref, dataset_name, "review")
    config = auditkit.AuditConfig(checks=PAGE_AUDIT_CHECKS, n_boot=200)
    run_with_progress(ref=ref, dataset_name=dataset_name, config=config, out_dir=out)
    return store.register_audit(out, actor=user.name)


def audit_label(a: AuditInfo) -> str:
    return (f"#{a.id} {a.model_ref} on {a.dataset_name} (registered by {a.registered_by}, "
            f"{a.registered_at[:10]})")


def answers_table(reviews: list[ReviewInfo], people: dict[str, UserInfo],
                  question: str) -> pd.DataFrame:
    rows = [{"reviewer": people[r.reviewer].full_name if r.reviewer in people else r.reviewer,
             "answer": wording.answer_label(r.answer), "comment": r.comment,
             "when (UTC)": r.updated_at[:16].replace("T", " ")}
            for r in reviews if r.question == question]
    return pd.DataFrame(rows, columns=["reviewer", "answer", "comment", "when (UTC)"])


def groups_table(groups: list[dict[str, Any]]) -> pd.DataFrame:
    """In-house: every group, exact n, its own "too few to judge", accuracy with interval."""
    rows = []
    for g in groups:
        lo, hi = (g.get("accuracy_ci") or [None, None])[:2]
        rows.append({"attribute": g["attribute"], "group": g["group"],
                     "images (patients)": wording.fmt_n(g["n"], g["n_patients"]),
                     "judgeable": ("too few to judge" if g["too_few"] else "yes"),
                     "accuracy (95% interval)": wording.fmt_interval(g["accuracy"], [lo, hi])})
    return pd.DataFrame(rows)


def question_text() -> dict[str, str]:
    return dict(QUESTIONS)


@st.cache_data(show_spinner=False)
def decision_record_html(url: str, audit_id: int, head: str,
                         evidence_changes: tuple[str, ...]) -> str:
    """The downloadable record (cached per trail head and evidence state)."""
    from auditkit.store import decision_record, render_decision_record_html
    from ui.auth import review_store

    return render_decision_record_html(decision_record(review_store(url), audit_id))


@st.cache_data(show_spinner="Writing the report…")
def report_with_decision_html(url: str, audit_id: int, head: str,
                              evidence_changes: tuple[str, ...]) -> str:
    """The committee's report of the audit, its signature block filled from the store."""
    from auditkit.report import build_report_html
    from auditkit.store import signature_block
    from ui.auth import review_store

    store = review_store(url)
    return build_report_html(store.audit(audit_id).folder,
                             signature=signature_block(store, audit_id))
