"""Migrations keep every row; the users/trail commands; the default database setting."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text

from auditkit.cli import main
from auditkit.store import (
    SCHEMA_REVISION,
    ReviewStore,
    current_revision,
    default_db_url,
    downgrade,
    upgrade,
)
from tests.store.conftest import PASSWORD, answer_all


def _dump(store: ReviewStore, revision_columns: bool) -> dict[str, list[tuple]]:
    tables = ["users", "audits", "audit_files", "reviews", "decisions", "events", "chain_head"]
    out = {}
    with store.engine.connect() as conn:
        for t in tables:
            rows = conn.execute(text(f"select * from {t} order by 1")).mappings().all()
            out[t] = [tuple((k, v) for k, v in sorted(r.items())
                            if revision_columns or k not in ("public_key", "signature"))
                      for r in rows]
    return out


def test_migration_from_the_previous_schema_keeps_every_row(team: ReviewStore,
                                                            audit_dir: Path) -> None:
    audit = team.register_audit(audit_dir, actor="eve")
    answer_all(team, audit.id, "rita")
    answer_all(team, audit.id, "rob")
    team.record_decision(audit.id, decision="defer", actor="carl")
    before = _dump(team, revision_columns=False)
    assert current_revision(team.engine) == SCHEMA_REVISION == "0002"
    downgrade(team.engine, "0001")  # the previous schema, with this data in it
    assert current_revision(team.engine) == "0001"
    with team.engine.connect() as conn:
        cols = list(conn.execute(text("select * from users limit 1")).keys())
    assert "public_key" not in cols
    assert _dump(team, revision_columns=False) == before
    upgrade(team.engine)
    assert current_revision(team.engine) == "0002"
    assert _dump(team, revision_columns=False) == before
    reopened = ReviewStore(team.url, quorum=2)
    assert reopened.verify_trail().ok  # rows of 0001 still match what the trail recorded
    assert [d.decision for d in reopened.decisions(audit.id)] == ["defer"]
    reopened.close()


def test_default_database_lies_beside_the_audits(monkeypatch: pytest.MonkeyPatch,
                                                 tmp_path: Path) -> None:
    monkeypatch.delenv("AUDITKIT_DB_URL", raising=False)
    monkeypatch.setenv("AUDITKIT_AUDITS", str(tmp_path / "audits"))
    assert default_db_url() == f"sqlite:///{tmp_path / 'audits' / 'auditkit-review.db'}"
    monkeypatch.setenv("AUDITKIT_DB_URL", "postgresql+psycopg://auditkit@db.example/auditkit")
    assert default_db_url() == "postgresql+psycopg://auditkit@db.example/auditkit"


def test_users_command_adds_disables_resets_and_lists(db_url: str, monkeypatch:
                                                      pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("NEW_PW", PASSWORD)
    assert main(["users", "add", "rita", "--role", "reviewer", "--full-name", "Rita Reviewer",
                 "--email", "rita@hospital.example", "--password-env", "NEW_PW",
                 "--db", db_url]) == 0
    assert main(["users", "add", "olga", "--role", "reviewer", "--role", "chair", "--sso-only",
                 "--email", "olga@hospital.example", "--db", db_url]) == 0
    store = ReviewStore(db_url)
    assert store.authenticate("rita", PASSWORD).full_name == "Rita Reviewer"
    monkeypatch.setenv("NEW_PW", "another long passphrase")
    assert main(["users", "reset", "rita", "--password-env", "NEW_PW", "--db", db_url]) == 0
    assert store.authenticate("rita", "another long passphrase").name == "rita"
    assert main(["users", "disable", "rita", "--db", db_url]) == 0
    assert not store.user("rita").active
    capsys.readouterr()
    assert main(["users", "list", "--db", db_url]) == 0
    listing = capsys.readouterr().out
    assert "rita" in listing and "disabled" in listing and "single sign-on" in listing
    # bad input: exit 2 with the reason
    monkeypatch.setenv("NEW_PW", "short")
    assert main(["users", "add", "sam", "--role", "reviewer", "--password-env", "NEW_PW",
                 "--db", db_url]) == 2
    assert "at least 12 characters; got 5 instead" in capsys.readouterr().err
    assert main(["users", "disable", "nobody", "--db", db_url]) == 2
    assert main(["users", "disable", "rita", "--as", "olga", "--db", db_url]) == 2
    assert "this needs administrator" in capsys.readouterr().err
    events = store.events()
    assert [e["kind"] for e in events] == ["user.added", "user.added", "user.password_reset",
                                           "user.disabled"]
    assert events[0]["actor"].startswith("system:")
    store.close()


def test_keygen_writes_a_private_key_and_signs_decisions(db_url: str, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch,
                                                         audit_dir: Path) -> None:
    monkeypatch.setenv("PW", PASSWORD)
    for name, role in [("eve", "engineer"), ("rita", "reviewer"), ("rob", "reviewer"),
                       ("carl", "chair")]:
        assert main(["users", "add", name, "--role", role, "--password-env", "PW",
                     "--db", db_url]) == 0
    key = tmp_path / "carl.pem"
    assert main(["users", "keygen", "carl", "--out", str(key), "--db", db_url]) == 0
    assert key.stat().st_mode & 0o777 == 0o600
    store = ReviewStore(db_url, quorum=2)
    audit = store.register_audit(audit_dir, actor="eve")
    answer_all(store, audit.id, "rita")
    answer_all(store, audit.id, "rob")
    d = store.record_decision(audit.id, decision="approve", actor="carl",
                              private_key_pem=key.read_bytes())
    assert d.signature and store.verify_trail().ok
    # a signature edited in the database is named
    with store.engine.begin() as conn:
        conn.execute(text("update decisions set signature = :s"),
                     {"s": d.signature[:-4] + "AAA="})
    kinds = {p.kind for p in store.verify_trail().problems}
    assert kinds == {"edited row", "bad signature"}
    store.close()


def test_trail_verify_accepts_a_head_printed_earlier(team: ReviewStore, audit_dir: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    audit = team.register_audit(audit_dir, actor="eve")
    _, head = team.head()
    answer_all(team, audit.id, "rita")
    assert main(["trail", "verify", "--db", team.url, "--head", head]) == 0
    assert "trail intact: 15 events" in capsys.readouterr().out
    assert main(["trail", "verify", "--db", team.url, "--head", "f" * 64]) == 1
    assert "is not in this trail" in capsys.readouterr().out
    assert main(["trail", "show", "--db", team.url]) == 0
    assert "audit.registered" in capsys.readouterr().out
