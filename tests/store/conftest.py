"""The store tests run against SQLite and against a real PostgreSQL server.

``.ci/run`` starts PostgreSQL from Debian's packages in a temporary data directory and
exports ``AUDITKIT_TEST_PG_URL``; locally, without it, the PostgreSQL half is skipped
with that message. Each test gets a fresh, empty database of its own.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from auditkit.store import ReviewStore

PG_URL = os.environ.get("AUDITKIT_TEST_PG_URL", "")
BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.skipif(
    not PG_URL, reason="AUDITKIT_TEST_PG_URL is not set: start PostgreSQL (.ci/run does, "
                       "see .ci/postgres.sh) to run the store tests against it"))]
PASSWORD = "correct horse battery"


@pytest.fixture(autouse=True)
def _fast_password_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    """argon2id with small cost in tests (the default costs ~0.1 s of CPU per hash).

    The algorithm and the code path are the same; ``test_default_hasher_is_argon2id``
    checks the shipped parameters.
    """
    from argon2 import PasswordHasher

    from auditkit.store import _accounts

    monkeypatch.setattr(_accounts, "_hasher",
                        lambda: PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A URL of a new, empty database on the backend under test."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'review.db'}"
        return
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"ak_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def store(db_url: str) -> Iterator[ReviewStore]:
    s = ReviewStore(db_url, quorum=2)
    yield s
    s.close()


@pytest.fixture(scope="session")
def real_audit(tmp_path_factory: pytest.TempPathFactory, data_root: Path) -> Path:
    """A real audit folder: cxr-covid v1 on covid_cxr (performance and fairness)."""
    from auditkit.cli import main

    out = tmp_path_factory.mktemp("real") / "cxr-audit"
    cache = tmp_path_factory.mktemp("cache")
    assert main(["audit", "--model", "cxr-covid@v1", "--dataset", "covid_cxr", "--checks",
                 "fairness", "--n-boot", "50", "--out", str(out), "--data-root",
                 str(data_root), "--cache-dir", str(cache)]) == 0
    return out


@pytest.fixture
def audit_dir(real_audit: Path, tmp_path: Path) -> Path:
    """A private copy of the real audit (tests change its files)."""
    dest = tmp_path / "audit"
    shutil.copytree(real_audit, dest)
    return dest


@pytest.fixture
def team(store: ReviewStore) -> ReviewStore:
    """An administrator, an engineer, three reviewers and a chair."""
    people = [("ada", ["administrator"]), ("eve", ["engineer"]), ("rita", ["reviewer"]),
              ("rob", ["reviewer"]), ("ray", ["reviewer"]), ("carl", ["chair"]),
              ("cleo", ["chair", "engineer", "reviewer"])]
    for name, roles in people:
        store.add_user(name, full_name=name.capitalize() + " Example", roles=roles,
                       password=PASSWORD, email=f"{name}@hospital.example", actor="system:test")
    return store


def answer_all(store: ReviewStore, audit_id: int, reviewer: str,
               answer: str = "agree") -> None:
    from auditkit.store import QUESTION_IDS

    for q in QUESTION_IDS:
        store.record_review(audit_id, question=q, answer=answer,
                            comment=f"{reviewer} on {q}", actor=reviewer)
