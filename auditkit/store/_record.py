"""The signed decision record and the report's signature block.

:func:`signature_block` is what the report (``auditkit/report/``) prints in its
signature block: one line per person who signed off (reviewers and the chair) with
name, role, date and what they answered or decided, plus the chain head at the time of
the decision. :func:`decision_record` is the whole record as JSON (the reviews, the
decision, the trail head, the signature); :func:`render_decision_record_html` turns it
into one self-contained HTML file for the committee's minutes.
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any

from .. import wording
from ._accounts import QUESTIONS
from ._trail import canonical_json

if TYPE_CHECKING:
    from ._store import ReviewStore

__all__ = ["decision_record", "render_decision_record_html", "signature_block"]


def _date(iso: str) -> str:
    return iso[:10]


def signature_block(store: ReviewStore, audit_id: int) -> dict[str, Any]:
    """The data of the report's signature block for one audit.

    Returns
    -------
    dict
        ``signatories``: list of ``{name, full_name, role, date, text}`` (each reviewer
        who answered every question, then the chair); ``decision``: the standing
        decision's words, conditions and re-audit date (None when undecided);
        ``chain_head``: hash of the trail event that recorded the decision and its
        number; ``signed``: whether the decision carries an Ed25519 signature.
    """
    audit = store.audit(audit_id)
    people = {u.name: u for u in store.users()}
    reviews = store.reviews(audit_id)
    complete = set(store.complete_reviewers(audit_id))
    signatories: list[dict[str, Any]] = []
    for name in sorted(complete):
        mine = [r for r in reviews if r.reviewer == name]
        tally = {a: sum(r.answer == a for r in mine) for a in ("agree", "disagree",
                                                                 "needs_more_evidence")}
        signatories.append({
            "name": name, "full_name": people[name].full_name if name in people else name,
            "role": "reviewer", "date": _date(max(r.updated_at for r in mine)),
            "text": wording.review_tally(tally)})
    decisions = store.decisions(audit_id)
    decision = decisions[-1] if decisions else None
    block: dict[str, Any] = {"audit_id": audit_id, "model": audit.model_ref,
                             "audit_sha256": audit.audit_sha256, "signatories": signatories,
                             "decision": None, "chain_head": None, "signed": False}
    if decision is not None:
        chair = people.get(decision.chair)
        signatories.append({
            "name": decision.chair, "full_name": chair.full_name if chair else decision.chair,
            "role": "chair", "date": _date(decision.decided_at),
            "text": wording.decision_sentence(decision.decision, decision.conditions,
                                              decision.reaudit_date)})
        block["decision"] = {"decision": decision.decision,
                             "label": wording.decision_label(decision.decision),
                             "conditions": decision.conditions,
                             "reaudit_date": decision.reaudit_date,
                             "decided_at": decision.decided_at, "chair": decision.chair}
        block["chain_head"] = {"seq": decision.event_seq, "hash": decision.event_hash,
                               "before": decision.chain_head_before}
        block["signed"] = bool(decision.signature)
    return block


def decision_record(store: ReviewStore, audit_id: int) -> dict[str, Any]:
    """Everything the committee's minutes need about one audit's review, as JSON."""
    from ._store import _message_from_snapshot

    audit = store.audit(audit_id)
    people = {u.name: u for u in store.users()}
    reviews = store.reviews(audit_id)
    block = signature_block(store, audit_id)
    record: dict[str, Any] = {
        "kind": "auditkit decision record",
        "audience": "in-house",
        "audit": {"id": audit.id, "model": audit.model_ref, "model_sha256": audit.model_sha256,
                  "dataset": audit.dataset_name, "dataset_hash": audit.dataset_hash,
                  "criteria_hash": audit.criteria_hash, "audit_sha256": audit.audit_sha256,
                  "registered_by": audit.registered_by, "registered_at": audit.registered_at,
                  "files": [{"path": p, "sha256": h} for p, h in audit.files]},
        "questions": [{"id": q, "text": text} for q, text in QUESTIONS],
        "reviews": [{"reviewer": r.reviewer, "question": r.question, "answer": r.answer,
                     "comment": r.comment, "updated_at": r.updated_at} for r in reviews],
        "signature_block": block,
        "decision": block["decision"],
        "chain_head": block["chain_head"],
        "evidence_changes": store.evidence_changes(audit_id),
        "signature": None,
    }
    decisions = store.decisions(audit_id)
    if decisions and decisions[-1].signature:
        d = decisions[-1]
        chair = people.get(d.chair)
        message = _message_from_snapshot(
            {"audit_id": d.audit_id, "chair": d.chair, "decision": d.decision,
             "conditions": d.conditions, "reaudit_date": d.reaudit_date,
             "decided_at": d.decided_at, "chain_head": d.chain_head_before},
            {"audit_sha256": audit.audit_sha256, "model_name": audit.model_name,
             "model_version": audit.model_version, "model_sha256": audit.model_sha256})
        record["signature"] = {"algorithm": "Ed25519", "value": d.signature,
                               "signed_message": message.decode(),
                               "public_key": chair.public_key if chair else None}
    record["record_sha256"] = __import__("hashlib").sha256(
        canonical_json(record).encode()).hexdigest()
    return record


def render_decision_record_html(record: dict[str, Any]) -> str:
    """One self-contained HTML page (no network) of a :func:`decision_record`."""
    e = html.escape
    audit = record["audit"]
    block = record["signature_block"]
    q_text = {q["id"]: q["text"] for q in record["questions"]}
    rows = "".join(
        f"<tr><td>{e(q_text.get(r['question'], r['question']))}</td><td>{e(r['reviewer'])}</td>"
        f"<td>{e(wording.answer_label(r['answer']))}</td><td>{e(r['comment'])}</td>"
        f"<td>{e(r['updated_at'][:16].replace('T', ' '))}</td></tr>"
        for r in sorted(record["reviews"], key=lambda r: ([q["id"] for q in record["questions"]]
                                                          .index(r["question"]), r["reviewer"])))
    signers = "".join(
        f"<tr><td>{e(s['full_name'])} ({e(s['name'])})</td><td>{e(s['role'])}</td>"
        f"<td>{e(s['date'])}</td><td>{e(s['text'])}</td></tr>" for s in block["signatories"])
    head = block.get("chain_head")
    decision = block.get("decision")
    decided = (f"<p class='decision'><b>{e(decision['label'])}</b> — "
               f"{e(wording.decision_sentence(decision['decision'], decision['conditions'], decision['reaudit_date']))}"
               f"<br>Decided by {e(decision['chair'])} on {e(decision['decided_at'][:10])} "
               f"({e(decision['decided_at'][:19].replace('T', ' '))} UTC).</p>"
               if decision else "<p class='decision'>No decision recorded yet.</p>")
    chain = (f"<p>Trail chain head at the decision: <code>{e(head['hash'])}</code> "
             f"(event #{head['seq']}). Check it with <code>auditkit trail verify</code>.</p>"
             if head else "")
    sig = record.get("signature")
    signed = (f"<p>Signed with the chair's Ed25519 key. Signature: <code>{e(sig['value'])}"
              f"</code></p><details><summary>Signed message and public key</summary><pre>"
              f"{e(sig['signed_message'])}\n\n{e(sig['public_key'] or '')}</pre></details>"
              if sig else "<p>This decision is not signed with a personal key.</p>")
    changed = "".join(f"<li>{e(c)}</li>" for c in record["evidence_changes"])
    warning = (f"<p class='warn'>⚠ The audit's files no longer match what was registered:"
               f"<ul>{changed}</ul></p>" if changed else "")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>Decision record: {e(audit['model'])} (audit {audit['id']})</title>
<style>body{{font-family:sans-serif;max-width:60em;margin:2em auto;line-height:1.4}}
table{{border-collapse:collapse;width:100%}}td,th{{border:1px solid #999;padding:.3em;
text-align:left;vertical-align:top}}code{{word-break:break-all}}.warn{{color:#8a1c1c}}
.decision{{font-size:1.2em}}</style></head><body>
<h1>Ethics-committee decision record</h1>
<p>Audience: {e(record['audience'])} (do not publish outside the institution).</p>
<h2>Audit</h2>
<table><tr><th>model</th><td>{e(audit['model'])}</td></tr>
<tr><th>weights sha256</th><td><code>{e(audit['model_sha256'])}</code></td></tr>
<tr><th>dataset</th><td>{e(audit['dataset'])} (content hash <code>{e(audit['dataset_hash'])}</code>)</td></tr>
<tr><th>criteria hash</th><td>{e(audit['criteria_hash'] or 'no criteria set recorded')}</td></tr>
<tr><th>audit.json sha256</th><td><code>{e(audit['audit_sha256'])}</code></td></tr>
<tr><th>registered</th><td>by {e(audit['registered_by'])} on {e(audit['registered_at'][:10])}, {len(audit['files'])} files hashed</td></tr></table>
{warning}
<h2>Decision</h2>
{decided}
{chain}
{signed}
<h2>Signature block</h2>
<table><tr><th>name</th><th>role</th><th>date</th><th>answer / decision</th></tr>{signers}</table>
<h2>Reviews</h2>
<table><tr><th>question</th><th>reviewer</th><th>answer</th><th>comment</th><th>when (UTC)</th></tr>{rows}</table>
<p>Record sha256: <code>{e(record['record_sha256'])}</code></p>
</body></html>
"""
