"""Review: the committee answers the Overview's questions and the chair records a decision."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import streamlit as st

from auditkit import wording
from auditkit.exceptions import AuditKitError
from auditkit.export import in_house_groups
from auditkit.store import ANSWERS, DECISIONS, QUESTIONS, default_db_url
from ui.auth import current_store, require_user
from ui.common import pick_model_and_dataset, show_unreadable_audits
from ui.review import (
    answers_table,
    audit_label,
    decision_record_html,
    groups_table,
    report_with_decision_html,
    run_and_register,
    unregistered_audits,
)

st.set_page_config(page_title="Review — auditkit", layout="wide")
st.title("Committee review")
show_unreadable_audits()
st.caption("Model review by the ethics committee: each member answers the Overview's "
           "questions, the chair records the decision. Every write is signed by its author "
           "and chained into a tamper-evident trail (`auditkit trail verify`).")

store = current_store()
user = require_user(store)
people = {u.name: u for u in store.users()}

if user.has("engineer"):
    with st.expander("Register an audit for review", expanded=not store.audits()):
        waiting = unregistered_audits(store)
        if waiting:
            labels = [f"{w['audit']['model']['name']}@{w['audit']['model']['version']} on "
                      f"{w['audit']['dataset']['name']} ({w['audit'].get('created_at', '')})"
                      for w in waiting]
            pick = st.selectbox("Audit on file", range(len(waiting)), key="register_pick",
                                format_func=lambda i: labels[i])
            if st.button("Register this audit", key="register_existing"):
                try:
                    info = store.register_audit(waiting[pick]["path"], actor=user.name)
                    st.success(f"Registered as audit #{info.id} ({len(info.files)} files "
                               "hashed).")
                except AuditKitError as exc:
                    st.error(str(exc))
        ref, dataset_name = pick_model_and_dataset("review")
        st.markdown(f"Or run a new audit of **{ref}** on **{dataset_name}** (performance and "
                    "fairness; pick them in the sidebar) and register it.")
        if st.button("Run and register", key="register_run"):
            try:
                info = run_and_register(store, user, ref=ref, dataset_name=dataset_name)
                st.success(f"Registered as audit #{info.id} ({len(info.files)} files hashed).")
            except AuditKitError as exc:
                st.error(str(exc))

audits = store.audits()
if not audits:
    st.info("No audit is registered for review yet. An ML engineer registers one here.")
    st.stop()
by_id = {a.id: a for a in audits}
audit_id = st.selectbox("Audit under review", list(reversed(list(by_id))), key="review_audit",
                        format_func=lambda i: audit_label(by_id[i]))
audit = by_id[audit_id]

st.markdown(f"**{audit.model_ref}** on **{audit.dataset_name}**, weights sha256 "
            f"`{audit.model_sha256[:16]}…`, audit.json sha256 `{audit.audit_sha256[:16]}…`, "
            f"registered by {audit.registered_by} on {audit.registered_at[:10]}.")
changes = store.evidence_changes(audit.id)
if changes:
    st.error("The audit's files no longer match what was registered, so no decision can be "
             "recorded on it:\n\n" + "\n".join(f"- {c}" for c in changes))
else:
    st.caption(f"All {len(audit.files)} registered files still match their sha256.")

st.subheader("Patient groups (in-house view)")
st.caption(wording.audience_note("in-house"))
groups = in_house_groups(audit.folder)
if groups:
    st.dataframe(groups_table(groups), hide_index=True, width="stretch",
                 key="review_groups")
else:
    st.info(wording.not_assessed("this audit holds no in-house group table",
                                 "run the fairness check with this version of auditkit"))

st.subheader("The committee's questions")
reviews = store.reviews(audit.id)
can_review = user.has("reviewer") and user.name != audit.registered_by
mine = {r.question: r for r in reviews if r.reviewer == user.name}
for qid, text in QUESTIONS:
    st.markdown(f"**{text}**")
    table = answers_table(reviews, people, qid)
    if table.empty:
        st.caption("No answers yet.")
    else:
        st.dataframe(table, hide_index=True, width="stretch", key=f"answers_{qid}")
    if can_review:
        left, right = st.columns([1, 2])
        current = mine.get(qid)
        left.radio("Your answer", list(ANSWERS), key=f"answer_{qid}", horizontal=True,
                   index=ANSWERS.index(current.answer) if current else None,
                   format_func=wording.answer_label)
        right.text_input("Your comment", value=current.comment if current else "",
                         key=f"comment_{qid}")
if can_review:
    if st.button("Save my answers", key="save_review", type="primary"):
        saved = 0
        try:
            for qid, _ in QUESTIONS:
                answer = st.session_state.get(f"answer_{qid}")
                if answer is None:
                    continue
                store.record_review(audit.id, question=qid, answer=answer,
                                    comment=st.session_state.get(f"comment_{qid}", ""),
                                    actor=user.name)
                saved += 1
        except AuditKitError as exc:
            st.error(str(exc))
        else:
            st.success(f"Saved {saved} of {len(QUESTIONS)} answers.")
            st.rerun()
elif user.has("reviewer"):
    st.caption("You registered this audit, so you do not review it.")

st.subheader("Decision")
complete = store.complete_reviewers(audit.id)
st.caption(f"{len(complete)} of the {store.quorum} complete reviews a decision needs"
           + (f": {', '.join(complete)}." if complete else "."))
decisions = store.decisions(audit.id)
if decisions:
    d = decisions[-1]
    st.markdown(f"**{wording.decision_label(d.decision)}** by {d.chair} on {d.decided_at[:10]}: "
                f"{wording.decision_sentence(d.decision, d.conditions, d.reaudit_date)}")
    st.caption(f"Trail chain head at the decision: `{d.event_hash}` (event #{d.event_seq})"
               + (" · signed with the chair's Ed25519 key" if d.signature else ""))
if user.has("chair"):
    choice = st.radio("Decision", list(DECISIONS), key="decision_choice", horizontal=True,
                      format_func=wording.decision_label)
    conditions = st.text_area("Conditions (required for approve with conditions)",
                              key="decision_conditions")
    reaudit = st.date_input("Re-audit by", key="decision_reaudit",
                            value=datetime.now(UTC).date() + timedelta(days=365))
    key_file = (st.file_uploader("Your private signing key (PEM)", key="decision_key")
                if user.public_key else None)
    if st.button("Record the decision", key="decision_submit", type="primary"):
        try:
            store.record_decision(audit.id, decision=choice, actor=user.name,
                                  conditions=conditions, reaudit_date=reaudit,
                                  private_key_pem=key_file.getvalue() if key_file else None)
        except AuditKitError as exc:
            st.error(f"Not recorded: {exc}")
        else:
            st.rerun()

st.download_button(
    "Download the decision record (HTML)",
    data=decision_record_html(default_db_url(), audit.id, store.head()[1], tuple(changes)),
    file_name=f"decision-record-audit-{audit.id}.html", mime="text/html",
    key="download_record")
if not changes:  # the report reads the audit's files: only while they match their hashes
    st.download_button(
        "Download the report with this review (HTML)",
        data=report_with_decision_html(default_db_url(), audit.id, store.head()[1], ()),
        file_name=f"report-audit-{audit.id}.html", mime="text/html", key="download_report")
