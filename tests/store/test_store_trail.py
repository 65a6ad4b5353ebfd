"""The hash-chain trail names the first broken event: edited, deleted, reordered, changed."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from sqlalchemy import text

from auditkit.cli import main
from auditkit.exceptions import EvidenceChangedError, StoreError
from auditkit.store import QUESTION_IDS, ReviewStore, chain_hash
from tests.store.conftest import answer_all


def _reviewed(team: ReviewStore, audit_dir: Path) -> int:
    audit = team.register_audit(audit_dir, actor="eve")
    answer_all(team, audit.id, "rita")
    answer_all(team, audit.id, "rob")
    return audit.id


def _sql(store: ReviewStore, statement: str, **params: object) -> None:
    with store.engine.begin() as conn:
        conn.execute(text(statement), params)


def _seq_of(store: ReviewStore, table: str, row_id: int) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(text(f"select event_seq from {table} where id = :i"),
                                {"i": row_id}).scalar_one())


def test_intact_trail_verifies_and_every_write_is_one_linked_event(team: ReviewStore,
                                                                    audit_dir: Path) -> None:
    _reviewed(team, audit_dir)
    report = team.verify_trail()
    assert report.ok, report.problems
    events = team.events()
    # 7 accounts + 1 registration + 2 x 7 answers
    assert [e["seq"] for e in events] == list(range(1, 7 + 1 + 2 * len(QUESTION_IDS) + 1))
    assert report.head == events[-1]["hash"] == team.head()[1]
    with team.engine.connect() as conn:
        rows = conn.execute(text("select seq, prev_hash, payload, hash from events order by seq")
                            ).all()
    prev = "0" * 64
    for seq, prev_hash, payload, digest in rows:
        assert prev_hash == prev and chain_hash(prev, payload) == digest, seq
        prev = digest


def test_edited_row_deleted_row_and_changed_evidence_are_each_named(
        team: ReviewStore, audit_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    audit_id = _reviewed(team, audit_dir)
    reviews = {(r.reviewer, r.question): r for r in team.reviews(audit_id)}
    edited, deleted = reviews[("rita", "fairness")], reviews[("rob", "privacy")]
    edited_seq, deleted_seq = _seq_of(team, "reviews", edited.id), _seq_of(team, "reviews",
                                                                            deleted.id)
    _sql(team, "update reviews set comment = 'all fine' where id = :i", i=edited.id)
    _sql(team, "delete from reviews where id = :i", i=deleted.id)
    preds = audit_dir / "predictions.csv"
    preds.write_bytes(preds.read_bytes() + b"\n")
    report = team.verify_trail()
    found = {(p.kind, p.seq) for p in report.problems}
    assert found == {("edited row", edited_seq), ("deleted row", deleted_seq),
                     ("evidence file changed", 8)}
    assert report.first is not None and report.first.seq == 8  # registration came first
    assert main(["trail", "verify", "--db", team.url]) == 1
    out = capsys.readouterr().out
    assert "first broken event: #8" in out
    assert (f"event #{edited_seq}: edited row: review {edited.id} (audit 1, question fairness, "
            "by rita) differs from what this event recorded (comment)") in out
    assert (f"event #{deleted_seq}: deleted row: review {deleted.id} (audit 1, question "
            "privacy, by rob), written by this event, is gone from the database.") in out
    assert "event #8: evidence file changed: predictions.csv of audit 1 (cxr-covid@v1) " \
           "changed after registration" in out
    # and the chair cannot decide on the changed audit
    with pytest.raises(EvidenceChangedError, match="predictions.csv changed after registration"):
        team.record_decision(audit_id, decision="approve", actor="carl")


def test_edited_event_reordered_events_deleted_event_and_truncation(team: ReviewStore,
                                                                    audit_dir: Path) -> None:
    _reviewed(team, audit_dir)
    _sql(team, "update events set payload = replace(payload, 'rita on accuracy', 'bribed') "
               "where seq = 9")
    first = team.verify_trail().first
    assert first is not None and (first.seq, first.kind) == (9, "edited event")
    _sql(team, "update events set seq = -1 where seq = 12")  # swap #12 and #13
    _sql(team, "update events set seq = 12 where seq = 13")
    _sql(team, "update events set seq = 13 where seq = -1")
    kinds = {(p.seq, p.kind) for p in team.verify_trail().problems}
    assert {(12, "missing or reordered event"), (12, "edited event")} <= kinds
    _sql(team, "delete from events where seq = 5")
    kinds = {(p.seq, p.kind) for p in team.verify_trail().problems}
    assert (6, "missing or reordered event") in kinds and (5, "deleted row") not in kinds
    _sql(team, "delete from events where seq = 22")  # the newest event: truncation
    kinds = {(p.seq, p.kind) for p in team.verify_trail().problems}
    assert (22, "head mismatch") in kinds


def test_row_written_behind_the_stores_back_is_named(team: ReviewStore,
                                                     audit_dir: Path) -> None:
    audit_id = _reviewed(team, audit_dir)
    _sql(team, "insert into reviews (audit_id, question, reviewer, answer, comment, created_at, "
               "updated_at, event_seq) values (:a, 'change', 'ray', 'agree', 'x', 't', 't', 0)",
         a=audit_id)
    problems = team.verify_trail().problems
    assert [(p.seq, p.kind) for p in problems] == [(None, "row outside the trail")]
    assert "by ray" in problems[0].message


def test_failed_write_leaves_no_row_and_a_valid_trail(team: ReviewStore, audit_dir: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    audit_id = _reviewed(team, audit_dir)
    before = team.events()
    from auditkit.store import _store

    def broken(prev: str, payload: str) -> str:  # the event cannot be built: write fails late
        raise RuntimeError("disk full")

    monkeypatch.setattr(_store, "chain_hash", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        team.record_review(audit_id, question="change", answer="agree", actor="ray")
    monkeypatch.undo()
    assert team.events() == before
    assert not [r for r in team.reviews(audit_id) if r.reviewer == "ray"]
    assert team.verify_trail().ok
    # a refused write (a rule) leaves nothing either
    with pytest.raises(StoreError):
        team.record_review(audit_id, question="change", answer="agree", actor="eve")
    assert team.events() == before and team.verify_trail().ok


def test_reviewers_writing_at_once_lose_nothing(team: ReviewStore, audit_dir: Path) -> None:
    audit = team.register_audit(audit_dir, actor="eve")
    errors: list[BaseException] = []

    def write(reviewer: str) -> None:
        try:
            store = ReviewStore(team.url, quorum=2)  # one connection pool per "browser"
            for round_ in range(3):
                for q in QUESTION_IDS:
                    store.record_review(audit.id, question=q, answer="agree",
                                        comment=f"{reviewer} round {round_}", actor=reviewer)
            store.close()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(r,)) for r in ("rita", "rob", "ray")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    reviews = team.reviews(audit.id)
    assert len(reviews) == 3 * len(QUESTION_IDS)
    assert {r.comment for r in reviews} == {f"{n} round 2" for n in ("rita", "rob", "ray")}
    assert len(team.events()) == 7 + 1 + 3 * 3 * len(QUESTION_IDS)
    assert team.verify_trail().ok
