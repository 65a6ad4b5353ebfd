"""The review rules hold in the store itself, whoever calls it (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from auditkit.exceptions import (
    AuthenticationError,
    ConfigError,
    EvidenceChangedError,
    RuleViolation,
    StoreError,
)
from auditkit.store import QUESTION_IDS, ReviewStore, decision_record, signature_block
from tests.store.conftest import PASSWORD, answer_all

FUTURE = (datetime.now(UTC).date() + timedelta(days=180)).isoformat()


def test_registration_records_identity_and_every_file_hash(team: ReviewStore,
                                                           audit_dir: Path) -> None:
    import hashlib

    info = team.register_audit(audit_dir, actor="eve")
    audit = json.loads((audit_dir / "audit.json").read_text())
    assert (info.model_name, info.model_version) == ("cxr-covid", "v1")
    assert info.model_sha256 == audit["model"]["sha256"]
    assert info.dataset_hash == audit["dataset"]["hash"]
    assert dict(info.files) == {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in audit_dir.iterdir()}
    assert info.audit_sha256 == dict(info.files)["audit.json"]
    assert team.audits() == [info] and team.audit(info.id) == info
    with pytest.raises(StoreError, match=f"registered already as audit {info.id} .by eve"):
        team.register_audit(audit_dir, actor="eve")


def test_only_engineers_register_and_bad_folders_are_refused(team: ReviewStore,
                                                            audit_dir: Path,
                                                            tmp_path: Path) -> None:
    with pytest.raises(RuleViolation, match=r"rita holds the role\(s\) \['reviewer'\]; this "
                                            "needs engineer"):
        team.register_audit(audit_dir, actor="rita")
    with pytest.raises(StoreError, match="expected an audit folder holding audit.json"):
        team.register_audit(tmp_path, actor="eve")
    (tmp_path / "audit.json").write_text("[1, 2]")
    with pytest.raises(StoreError, match="is not an auditkit audit.json"):
        team.register_audit(tmp_path, actor="eve")


def test_passwords_are_argon2_hashed_and_sign_in_does_not_tell_which_part_failed(
        team: ReviewStore) -> None:
    from sqlalchemy import text

    with team.engine.connect() as conn:
        stored = conn.execute(text("select password_hash from users where name='rita'")
                              ).scalar_one()
    assert stored.startswith("$argon2id$") and PASSWORD not in stored
    assert team.authenticate("rita", PASSWORD).roles == ("reviewer",)
    messages = set()
    for name, pw in [("rita", "wrong password!"), ("nobody", PASSWORD)]:
        with pytest.raises(AuthenticationError) as err:
            team.authenticate(name, pw)
        messages.add(str(err.value))
    team.disable_user("rita", actor="ada")
    with pytest.raises(AuthenticationError) as err:
        team.authenticate("rita", PASSWORD)
    messages.add(str(err.value))
    assert messages == {"unknown account, wrong password, or the account is disabled."}
    team.reset_password("rob", "a brand new passphrase", actor="ada")
    assert team.authenticate("rob", "a brand new passphrase").name == "rob"
    with pytest.raises(ConfigError, match="at least 12 characters; got 5 instead"):
        team.reset_password("rob", "short", actor="ada")
    with pytest.raises(RuleViolation, match="this needs administrator"):
        team.disable_user("rob", actor="carl")


def test_full_review_and_decision(team: ReviewStore, audit_dir: Path) -> None:
    audit = team.register_audit(audit_dir, actor="eve")
    answer_all(team, audit.id, "rita")
    answer_all(team, audit.id, "rob", answer="needs_more_evidence")
    d = team.record_decision(audit.id, decision="approve_with_conditions", actor="carl",
                             conditions="Only for adults; recheck sensitivity for women",
                             reaudit_date=FUTURE)
    assert (d.chair, d.decision, d.reaudit_date) == ("carl", "approve_with_conditions", FUTURE)
    assert d.event_hash == team.head()[1]
    block = signature_block(team, audit.id)
    assert [(s["name"], s["role"]) for s in block["signatories"]] == [
        ("rita", "reviewer"), ("rob", "reviewer"), ("carl", "chair")]
    assert block["signatories"][1]["text"] == (
        "agrees on 0 of 7 questions, needs more evidence on 7")
    assert block["chain_head"]["hash"] == d.event_hash
    record = decision_record(team, audit.id)
    assert record["decision"]["label"] == "approve with conditions"
    assert len(record["reviews"]) == 2 * len(QUESTION_IDS)


def test_nobody_decides_on_a_model_they_registered(team: ReviewStore, audit_dir: Path,
                                                   real_audit: Path, tmp_path: Path) -> None:
    audit = team.register_audit(audit_dir, actor="cleo")  # cleo: chair, engineer, reviewer
    answer_all(team, audit.id, "rita")
    answer_all(team, audit.id, "rob")
    with pytest.raises(RuleViolation, match=r"cleo registered cxr-covid@v1 \(audit 1\); nobody "
                                            "records the decision on a model they registered"):
        team.record_decision(audit.id, decision="approve", actor="cleo")
    with pytest.raises(RuleViolation, match="nobody reviews an audit they registered"):
        team.record_review(audit.id, question="accuracy", answer="agree", actor="cleo")
    assert team.record_decision(audit.id, decision="approve", actor="carl").chair == "carl"


def test_only_a_chair_decides_and_quorum_counts_complete_reviews(team: ReviewStore,
                                                                  audit_dir: Path) -> None:
    audit = team.register_audit(audit_dir, actor="eve")
    answer_all(team, audit.id, "rita")
    for q in QUESTION_IDS[:-1]:  # rob skips the last question: not a complete review
        team.record_review(audit.id, question=q, answer="agree", actor="rob")
    with pytest.raises(RuleViolation, match=r"needs 2 complete reviews .every question "
                                            r"answered.; audit 1 has 1 \(rita\)"):
        team.record_decision(audit.id, decision="reject", actor="carl")
    with pytest.raises(RuleViolation, match=r"rita holds the role\(s\) \['reviewer'\]; this "
                                            "needs chair"):
        team.record_decision(audit.id, decision="reject", actor="rita")
    team.record_review(audit.id, question=QUESTION_IDS[-1], answer="disagree", actor="rob")
    assert team.complete_reviewers(audit.id) == ["rita", "rob"]
    team.disable_user("rob", actor="ada")  # a disabled account's reviews stop counting
    with pytest.raises(RuleViolation, match="has 1"):
        team.record_decision(audit.id, decision="reject", actor="carl")
    answer_all(team, audit.id, "ray")
    assert team.record_decision(audit.id, decision="reject", actor="carl").decision == "reject"


def test_nobody_edits_another_reviewers_comment(team: ReviewStore, audit_dir: Path) -> None:
    audit = team.register_audit(audit_dir, actor="eve")
    mine = team.record_review(audit.id, question="fairness", answer="disagree",
                              comment="3 women in the test set is too few", actor="rita")
    with pytest.raises(RuleViolation, match=f"review {mine.id} was written by rita; nobody "
                                            r"edits another's comment \(rob tried\)"):
        team.edit_review(mine.id, answer="agree", comment="fine", actor="rob")
    # writing one's own answer to the same question makes a separate review
    team.record_review(audit.id, question="fairness", answer="agree", comment="ok", actor="rob")
    edited = team.edit_review(mine.id, answer="needs_more_evidence",
                              comment="ask for more women", actor="rita")
    assert edited.comment == "ask for more women" and edited.created_at == mine.created_at
    by = {r.reviewer: r for r in team.reviews(audit.id)}
    assert by["rita"].answer == "needs_more_evidence" and by["rob"].comment == "ok"


def test_bad_values_say_what_was_expected(team: ReviewStore, audit_dir: Path) -> None:
    audit = team.register_audit(audit_dir, actor="eve")
    with pytest.raises(ConfigError, match="question must be one of .*; got 'speed' instead"):
        team.record_review(audit.id, question="speed", answer="agree", actor="rita")
    with pytest.raises(ConfigError, match="answer must be one of .*; got 'maybe' instead"):
        team.record_review(audit.id, question="accuracy", answer="maybe", actor="rita")
    with pytest.raises(ConfigError, match="decision must be one of"):
        team.record_decision(audit.id, decision="yes", actor="carl")
    with pytest.raises(ConfigError, match="needs the conditions written out"):
        team.record_decision(audit.id, decision="approve_with_conditions", actor="carl")
    with pytest.raises(ConfigError, match="reaudit_date must lie in the future"):
        team.record_decision(audit.id, decision="approve", actor="carl",
                             reaudit_date="2001-01-01")
    with pytest.raises(ConfigError, match="reaudit_date must be a date YYYY-MM-DD; got "
                                          "'next year' instead"):
        team.record_decision(audit.id, decision="approve", actor="carl",
                             reaudit_date="next year")
    with pytest.raises(ConfigError, match="roles must be among"):
        team.add_user("zed", full_name="Z", roles=["boss"], password=PASSWORD, actor="ada")
    with pytest.raises(RuleViolation, match="'ghost' is not an active account"):
        team.record_review(audit.id, question="accuracy", answer="agree", actor="ghost")


def test_no_decision_on_an_audit_whose_files_changed(team: ReviewStore,
                                                     audit_dir: Path) -> None:
    audit = team.register_audit(audit_dir, actor="eve")
    answer_all(team, audit.id, "rita")
    answer_all(team, audit.id, "rob")
    preds = audit_dir / "predictions.csv"
    preds.write_bytes(preds.read_bytes().replace(b",", b";", 1))
    with pytest.raises(EvidenceChangedError, match="audit 1 cannot be decided on: 1 of its "
                                                   "files differ .* .predictions.csv changed "
                                                   "after registration"):
        team.record_decision(audit.id, decision="approve", actor="carl")
    assert team.decisions(audit.id) == []


def test_single_sign_on_finds_the_account_by_email(team: ReviewStore) -> None:
    team.add_user("olga", full_name="Olga SSO", roles=["reviewer"], email="Olga@Hospital.example",
                  actor="ada")
    assert team.user_by_email("olga@hospital.example").name == "olga"
    with pytest.raises(AuthenticationError, match="has no active auditkit account"):
        team.user_by_email("stranger@elsewhere.example")
    with pytest.raises(AuthenticationError):  # no password: cannot sign in locally
        team.authenticate("olga", "")
    with pytest.raises(ConfigError, match="needs its e-mail address"):
        team.add_user("nopw", full_name="N", roles=["reviewer"], actor="ada")


def test_signed_decision_verifies_offline_and_a_forgery_does_not(team: ReviewStore,
                                                                  audit_dir: Path) -> None:
    from auditkit.store import generate_key_pair, verify_record

    private, public = generate_key_pair()
    team.set_public_key("carl", public, actor="ada")
    audit = team.register_audit(audit_dir, actor="eve")
    answer_all(team, audit.id, "rita")
    answer_all(team, audit.id, "rob")
    with pytest.raises(RuleViolation, match="must be signed"):
        team.record_decision(audit.id, decision="approve", actor="carl")
    other, _ = generate_key_pair()
    with pytest.raises(RuleViolation, match="does not match the public key"):
        team.record_decision(audit.id, decision="approve", actor="carl",
                             private_key_pem=other)
    d = team.record_decision(audit.id, decision="approve", actor="carl", private_key_pem=private)
    assert d.signature
    record = json.loads(json.dumps(decision_record(team, audit.id)))
    assert verify_record(record)
    forged = json.loads(json.dumps(record))
    forged["decision"]["decision"] = "reject"
    assert not verify_record(forged)
    forged = json.loads(json.dumps(record))
    forged["signature"]["signed_message"] = forged["signature"]["signed_message"].replace(
        '"approve"', '"reject"')
    forged["decision"]["decision"] = "reject"
    assert not verify_record(forged)
    assert team.verify_trail().ok


def test_store_never_imports_torch_or_streamlit() -> None:
    import subprocess
    import sys

    code = ("import sys, auditkit.store, auditkit.cli; "
            "bad = [m for m in ('torch', 'streamlit', 'auditkit.fairness', 'auditkit.audit') "
            "if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_default_hasher_is_argon2id_with_the_librarys_recommended_cost(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import argon2

    monkeypatch.undo()  # the fast hasher of the other tests
    from auditkit.store._accounts import _hasher, hash_password, needs_rehash

    hasher = _hasher()
    assert not needs_rehash(hash_password("twelve chars!"))
    assert hasher.type is argon2.Type.ID
    assert hasher.time_cost >= 3 and hasher.memory_cost >= 64 * 1024



def test_report_signature_block_carries_the_recorded_decision(team: ReviewStore,
                                                               audit_dir: Path) -> None:
    from auditkit.report import build_report_html

    audit = team.register_audit(audit_dir, actor="eve")
    empty = build_report_html(audit_dir, signature=signature_block(team, audit.id))
    assert "To be completed by the reviewing committee." in empty  # nobody has signed yet
    answer_all(team, audit.id, "rita")
    answer_all(team, audit.id, "rob", answer="disagree")
    d = team.record_decision(audit.id, decision="reject", actor="carl",
                             conditions="", reaudit_date=FUTURE)
    html = build_report_html(audit_dir, signature=signature_block(team, audit.id))
    assert "To be completed by the reviewing committee." not in html
    for text in ("Rita Example (rita)", "Rob Example (rob)", "Carl Example (carl)",
                 "<b>Decision:</b> reject", d.event_hash, d.decided_at[:10]):
        assert text in html, text
