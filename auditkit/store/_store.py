"""The review store: accounts, registered audits, reviews and decisions behind rules.

Every write runs in one transaction that first locks the trail's head row, checks the
rules against the database as it is at that moment, changes the rows, and appends the
trail event; a write that fails anywhere leaves no row and no event behind.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Engine, create_engine, event, func, select
from sqlalchemy.exc import IntegrityError as SAIntegrityError
from sqlalchemy.orm import Session

from ..exceptions import (
    AuthenticationError,
    ConfigError,
    EvidenceChangedError,
    RuleViolation,
    StoreError,
)
from ._accounts import (
    ANSWERS,
    DECISIONS,
    QUESTION_IDS,
    check_password,
    hash_password,
    parse_roles,
)
from ._schema import (
    SCHEMA_REVISION,
    STATE_TABLES,
    Audit,
    AuditFile,
    Base,
    ChainHead,
    Decision,
    Event,
    Review,
    User,
)
from ._trail import (
    GENESIS,
    TrailProblem,
    TrailReport,
    canonical_json,
    chain_hash,
    hash_password_hash,
    sha256_file,
)

__all__ = ["DEFAULT_QUORUM", "AuditInfo", "DecisionInfo", "ReviewInfo", "ReviewStore",
           "UserInfo", "default_db_url", "upgrade"]

#: Reviews (distinct reviewers who answered every question) a decision needs by default.
DEFAULT_QUORUM = 2
_T = TypeVar("_T")
_MIGRATED: set[str] = set()
_MIGRATE_LOCK = threading.Lock()


def default_db_url() -> str:
    """``$AUDITKIT_DB_URL``, else a SQLite file beside the audits.

    The default is ``sqlite:///<$AUDITKIT_AUDITS or ./audits>/auditkit-review.db``. A
    hospital points it at PostgreSQL, e.g.
    ``postgresql+psycopg://auditkit@db.example.org/auditkit``.
    """
    url = os.environ.get("AUDITKIT_DB_URL", "").strip()
    if url:
        return url
    audits = Path(os.environ.get("AUDITKIT_AUDITS", "audits"))
    return f"sqlite:///{(audits / 'auditkit-review.db').resolve()}"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def _snapshot(obj: Base) -> dict[str, Any]:
    """A row as the trail records it (the password hash only as its sha256)."""
    out: dict[str, Any] = {}
    for column in obj.__table__.columns:
        value = getattr(obj, column.key)
        if column.name == "password_hash":
            out["password_hash_sha256"] = hash_password_hash(value)
        else:
            out[column.name] = value
    return out


def _migrations_dir() -> Path:
    return Path(__file__).resolve().parent / "migrations"


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the database to ``revision`` with the store's Alembic migrations."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(_migrations_dir()))
    with engine.begin() as connection:
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, revision)


def downgrade(engine: Engine, revision: str) -> None:
    """Take the database back to ``revision`` (used by the migration tests)."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(_migrations_dir()))
    with engine.begin() as connection:
        cfg.attributes["connection"] = connection
        command.downgrade(cfg, revision)


def current_revision(engine: Engine) -> str | None:
    """The Alembic revision the database is at (None when never migrated)."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def make_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite gets WAL, foreign keys and ``BEGIN IMMEDIATE``.

    ``BEGIN IMMEDIATE`` takes SQLite's write lock when a transaction starts, so two
    writers queue (for up to 30 s) instead of failing with "database is locked" when
    both try to upgrade a read lock; PostgreSQL writers queue on the head row's lock.
    """
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30})

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.isolation_level = None  # SQLAlchemy's begin hook below
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _on_begin(connection: Any) -> None:
            connection.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    try:
        return create_engine(url, pool_pre_ping=True)
    except Exception as exc:  # bad URL or driver missing
        raise ConfigError(
            f"AUDITKIT_DB_URL must be a SQLAlchemy URL such as sqlite:///path/review.db or "
            f"postgresql+psycopg://user@host/db; got {url!r} instead ({exc})."
        ) from exc


@dataclass(frozen=True)
class UserInfo:
    name: str
    full_name: str
    email: str | None
    roles: tuple[str, ...]
    active: bool
    created_at: str
    has_password: bool
    public_key: str | None

    def has(self, role: str) -> bool:
        return role in self.roles


@dataclass(frozen=True)
class AuditInfo:
    id: int
    model_name: str
    model_version: str
    model_sha256: str
    dataset_name: str
    dataset_hash: str
    criteria_hash: str | None
    audit_sha256: str
    folder: str
    registered_by: str
    registered_at: str
    files: tuple[tuple[str, str], ...]

    @property
    def model_ref(self) -> str:
        return f"{self.model_name}@{self.model_version}"


@dataclass(frozen=True)
class ReviewInfo:
    id: int
    audit_id: int
    question: str
    reviewer: str
    answer: str
    comment: str
    created_at: str
    updated_at: str


@dataclass(frozen=True)
class DecisionInfo:
    id: int
    audit_id: int
    chair: str
    decision: str
    conditions: str
    reaudit_date: str | None
    decided_at: str
    chain_head_before: str
    event_seq: int
    event_hash: str
    signature: str | None


def _user_info(u: User) -> UserInfo:
    return UserInfo(name=u.name, full_name=u.full_name, email=u.email,
                    roles=tuple(u.roles.split(",")), active=bool(u.active),
                    created_at=u.created_at, has_password=u.password_hash is not None,
                    public_key=u.public_key)


def _review_info(r: Review) -> ReviewInfo:
    return ReviewInfo(id=r.id, audit_id=r.audit_id, question=r.question, reviewer=r.reviewer,
                      answer=r.answer, comment=r.comment, created_at=r.created_at,
                      updated_at=r.updated_at)


class ReviewStore:
    """Accounts, registered audits, reviews, decisions and their trail in one database.

    Parameters
    ----------
    url : str, optional
        SQLAlchemy URL; default :func:`default_db_url` (``$AUDITKIT_DB_URL`` or a SQLite
        file beside the audits).
    quorum : int, optional
        Distinct reviewers who must have answered every Overview question before a
        decision can be recorded; default ``$AUDITKIT_REVIEW_QUORUM`` or 2.
    migrate : bool
        Bring the schema to the newest revision on opening (default True).

    Examples
    --------
    >>> store = ReviewStore("sqlite:///:memory:")  # doctest: +SKIP
    >>> store.add_user("ada", full_name="Ada L.", roles=["administrator"],
    ...                password="a long passphrase", actor="system:root")  # doctest: +SKIP
    """

    def __init__(self, url: str | None = None, *, quorum: int | None = None,
                 migrate: bool = True) -> None:
        self.url = url or default_db_url()
        if quorum is None:
            raw = os.environ.get("AUDITKIT_REVIEW_QUORUM", str(DEFAULT_QUORUM))
            try:
                quorum = int(raw)
            except ValueError as exc:
                raise ConfigError(
                    f"AUDITKIT_REVIEW_QUORUM must be a whole number; got {raw!r} instead."
                ) from exc
        if quorum < 1:
            raise ConfigError(f"quorum must be >= 1; got {quorum} instead.")
        self.quorum = quorum
        self.engine = make_engine(self.url)
        if migrate:
            with _MIGRATE_LOCK:
                key = str(self.engine.url)
                if key not in _MIGRATED or current_revision(self.engine) != SCHEMA_REVISION:
                    upgrade(self.engine)
                    _MIGRATED.add(key)

    def close(self) -> None:
        self.engine.dispose()

    # ------------------------------------------------------------------ plumbing
    @contextmanager
    def _read(self) -> Iterator[Session]:
        with Session(self.engine, expire_on_commit=False) as session, session.begin():
            yield session

    def _write(self, *, actor: str, kind: str,
               change: Callable[[Session], tuple[list[Base], _T]]) -> _T:
        """One transaction: lock the head, apply ``change``, append the event."""
        try:
            with Session(self.engine, expire_on_commit=False) as session, session.begin():
                head = session.execute(
                    select(ChainHead).where(ChainHead.id == 1).with_for_update()
                ).scalar_one()
                rows, result = change(session)
                seq = head.seq + 1
                for row in rows:
                    row.event_seq = seq  # type: ignore[attr-defined]
                session.flush()
                snapshot: dict[str, list[dict[str, Any]]] = {}
                for row in rows:
                    snapshot.setdefault(row.__tablename__, []).append(_snapshot(row))
                at = _now()
                payload = canonical_json({"seq": seq, "at": at, "actor": actor, "kind": kind,
                                          "rows": snapshot})
                digest = chain_hash(head.hash, payload)
                session.add(Event(seq=seq, at=at, actor=actor, kind=kind, payload=payload,
                                  prev_hash=head.hash, hash=digest))
                head.seq, head.hash = seq, digest
            return result
        except SAIntegrityError as exc:
            raise StoreError(f"the database refused the write ({kind}): {exc.orig}") from exc

    @staticmethod
    def _actor(session: Session, name: str, *roles: str) -> User:
        user = session.execute(select(User).where(User.name == name)).scalar_one_or_none()
        if user is None or not user.active:
            raise RuleViolation(f"{name!r} is not an active account; only signed-in, active "
                                "accounts may write.")
        held = set(user.roles.split(","))
        if roles and not held & set(roles):
            raise RuleViolation(
                f"{name} holds the role(s) {sorted(held)}; this needs "
                f"{' or '.join(roles)}.")
        return user

    @staticmethod
    def _system_or_admin(session: Session, actor: str) -> None:
        """The command line on the server acts as ``system:<os user>``; else an administrator."""
        if actor.startswith("system:"):
            return
        ReviewStore._actor(session, actor, "administrator")

    # ------------------------------------------------------------------ accounts
    def add_user(self, name: str, *, full_name: str, roles: list[str] | str,
                 password: str | None = None, email: str | None = None,
                 actor: str) -> UserInfo:
        """Create an account; ``password`` None makes a single-sign-on-only account."""
        name = name.strip()
        if not name or len(name) > 64 or not name.replace("-", "").replace(".", "").replace(
                "_", "").isalnum():
            raise ConfigError(f"an account name must be 1-64 letters, digits, '.', '-' or '_'; "
                              f"got {name!r} instead.")
        role_list = parse_roles(roles)
        pw_hash = hash_password(password) if password is not None else None
        if pw_hash is None and not email:
            raise ConfigError("an account without a password signs in through single sign-on "
                              "and needs its e-mail address; got neither.")

        def change(session: Session) -> tuple[list[Base], UserInfo]:
            self._system_or_admin(session, actor)
            if session.execute(select(User).where(User.name == name)).scalar_one_or_none():
                raise StoreError(f"an account named {name!r} exists already.")
            user = User(name=name, full_name=full_name.strip() or name,
                        email=(email or None) and email.strip().lower(),
                        roles=",".join(role_list), password_hash=pw_hash, active=True,
                        created_at=_now(), event_seq=0)
            session.add(user)
            session.flush()
            return [user], _user_info(user)

        return self._write(actor=actor, kind="user.added", change=change)

    def _update_user(self, name: str, actor: str, kind: str,
                     apply: Callable[[User], None]) -> UserInfo:
        def change(session: Session) -> tuple[list[Base], UserInfo]:
            self._system_or_admin(session, actor)
            user = session.execute(select(User).where(User.name == name)).scalar_one_or_none()
            if user is None:
                raise StoreError(f"no account named {name!r}.")
            apply(user)
            return [user], _user_info(user)

        return self._write(actor=actor, kind=kind, change=change)

    def disable_user(self, name: str, *, actor: str) -> UserInfo:
        """Disable an account (kept, with its reviews; it can no longer sign in or write)."""
        return self._update_user(name, actor, "user.disabled",
                                 lambda u: setattr(u, "active", False))

    def enable_user(self, name: str, *, actor: str) -> UserInfo:
        return self._update_user(name, actor, "user.enabled",
                                 lambda u: setattr(u, "active", True))

    def reset_password(self, name: str, password: str, *, actor: str) -> UserInfo:
        """Set a new password (argon2id-hashed)."""
        new_hash = hash_password(password)
        return self._update_user(name, actor, "user.password_reset",
                                 lambda u: setattr(u, "password_hash", new_hash))

    def set_public_key(self, name: str, public_key_pem: str, *, actor: str) -> UserInfo:
        """Record a chair's Ed25519 public key (PEM); their decisions are then signed."""
        from ._signing import load_public_key

        load_public_key(public_key_pem)  # refuses anything but an Ed25519 key
        return self._update_user(name, actor, "user.key_set",
                                 lambda u: setattr(u, "public_key", public_key_pem.strip()))

    def authenticate(self, name: str, password: str) -> UserInfo:
        """The account for ``name`` when ``password`` matches and it is active.

        One message for an unknown name, a wrong password and a disabled account, so
        the sign-in form does not tell which accounts exist.
        """
        with self._read() as session:
            user = session.execute(select(User).where(User.name == name.strip())
                                   ).scalar_one_or_none()
            stored = user.password_hash if user is not None else None
            # verify against a real hash even for an unknown name (same time either way)
            ok = check_password(stored or _DUMMY_HASH.value, password)
            if user is None or stored is None or not ok or not user.active:
                raise AuthenticationError("unknown account, wrong password, or the account "
                                          "is disabled.")
            return _user_info(user)

    def user(self, name: str) -> UserInfo:
        with self._read() as session:
            user = session.execute(select(User).where(User.name == name)).scalar_one_or_none()
            if user is None:
                raise StoreError(f"no account named {name!r}.")
            return _user_info(user)

    def user_by_email(self, email: str) -> UserInfo:
        """The active account with this e-mail (how single sign-on finds its account)."""
        with self._read() as session:
            user = session.execute(select(User).where(User.email == email.strip().lower())
                                   ).scalar_one_or_none()
            if user is None or not user.active:
                raise AuthenticationError(
                    f"{email} signed in through single sign-on but has no active auditkit "
                    "account; an administrator adds it with `auditkit users add NAME --email "
                    f"{email} --role ...`.")
            return _user_info(user)

    def users(self) -> list[UserInfo]:
        with self._read() as session:
            return [_user_info(u) for u in session.execute(select(User).order_by(User.name))
                    .scalars()]

    # ------------------------------------------------------------------ audits
    def register_audit(self, folder: str | os.PathLike[str], *, actor: str) -> AuditInfo:
        """Record an audit folder: its identity and the sha256 of every file in it.

        The folder must hold an ``audit.json`` written by ``auditkit audit``. Files whose
        name starts with ``.`` (temporary files) are left out.
        """
        root = Path(folder).resolve()
        audit_json = root / "audit.json"
        if not audit_json.is_file():
            raise StoreError(f"expected an audit folder holding audit.json; found no "
                             f"audit.json in {root}.")
        try:
            audit = json.loads(audit_json.read_text(encoding="utf-8"))
            model, dataset = audit["model"], audit["dataset"]
            identity = (str(model["name"]), str(model["version"]), str(model["sha256"]),
                        str(dataset["name"]), str(dataset["hash"]))
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as exc:
            raise StoreError(f"{audit_json} is not an auditkit audit.json (expected JSON with "
                             f"model name/version/sha256 and dataset name/hash): {exc}") from exc
        criteria = audit.get("criteria")
        criteria_hash = (criteria.get("hash") if isinstance(criteria, dict)
                         else audit.get("criteria_hash"))
        files = sorted((p.relative_to(root).as_posix(), sha256_file(p), p.stat().st_size)
                       for p in root.rglob("*")
                       if p.is_file() and not any(part.startswith(".")
                                                  for part in p.relative_to(root).parts))
        audit_sha = next(h for path, h, _ in files if path == "audit.json")

        def change(session: Session) -> tuple[list[Base], AuditInfo]:
            self._actor(session, actor, "engineer")
            earlier = session.execute(select(Audit).where(Audit.audit_sha256 == audit_sha)
                                      ).scalar_one_or_none()
            if earlier is not None:
                raise StoreError(f"this audit.json is registered already as audit "
                                 f"{earlier.id} (by {earlier.registered_by}).")
            row = Audit(model_name=identity[0], model_version=identity[1],
                        model_sha256=identity[2], dataset_name=identity[3],
                        dataset_hash=identity[4], criteria_hash=criteria_hash,
                        audit_sha256=audit_sha, folder=str(root), registered_by=actor,
                        registered_at=_now(), event_seq=0)
            session.add(row)
            session.flush()
            file_rows = [AuditFile(audit_id=row.id, path=p, sha256=h, size=n, event_seq=0)
                         for p, h, n in files]
            session.add_all(file_rows)
            session.flush()
            info = AuditInfo(id=row.id, model_name=row.model_name,
                             model_version=row.model_version, model_sha256=row.model_sha256,
                             dataset_name=row.dataset_name, dataset_hash=row.dataset_hash,
                             criteria_hash=row.criteria_hash, audit_sha256=audit_sha,
                             folder=row.folder, registered_by=actor,
                             registered_at=row.registered_at,
                             files=tuple((p, h) for p, h, _ in files))
            return [row, *file_rows], info

        return self._write(actor=actor, kind="audit.registered", change=change)

    @staticmethod
    def _audit_info(session: Session, row: Audit) -> AuditInfo:
        files = session.execute(select(AuditFile).where(AuditFile.audit_id == row.id)
                                .order_by(AuditFile.path)).scalars()
        return AuditInfo(id=row.id, model_name=row.model_name, model_version=row.model_version,
                         model_sha256=row.model_sha256, dataset_name=row.dataset_name,
                         dataset_hash=row.dataset_hash, criteria_hash=row.criteria_hash,
                         audit_sha256=row.audit_sha256, folder=row.folder,
                         registered_by=row.registered_by, registered_at=row.registered_at,
                         files=tuple((f.path, f.sha256) for f in files))

    def audits(self) -> list[AuditInfo]:
        with self._read() as session:
            rows = session.execute(select(Audit).order_by(Audit.id)).scalars().all()
            return [self._audit_info(session, r) for r in rows]

    def audit(self, audit_id: int) -> AuditInfo:
        with self._read() as session:
            row = session.get(Audit, audit_id)
            if row is None:
                raise StoreError(f"no registered audit with id {audit_id}.")
            return self._audit_info(session, row)

    def evidence_changes(self, audit_id: int) -> list[str]:
        """One line per registered file of the audit that is missing or changed."""
        return _file_changes(self.audit(audit_id))

    # ------------------------------------------------------------------ reviews
    def record_review(self, audit_id: int, *, question: str, answer: str, comment: str = "",
                      actor: str) -> ReviewInfo:
        """Create or update ``actor``'s own answer to one question of one audit."""
        self._check_answer(question, answer)

        def change(session: Session) -> tuple[list[Base], ReviewInfo]:
            self._actor(session, actor, "reviewer")
            audit = session.get(Audit, audit_id)
            if audit is None:
                raise StoreError(f"no registered audit with id {audit_id}.")
            if audit.registered_by == actor:
                raise RuleViolation(f"{actor} registered audit {audit_id}; nobody reviews an "
                                    "audit they registered.")
            row = session.execute(select(Review).where(
                Review.audit_id == audit_id, Review.question == question,
                Review.reviewer == actor)).scalar_one_or_none()
            now = _now()
            if row is None:
                row = Review(audit_id=audit_id, question=question, reviewer=actor,
                             answer=answer, comment=comment.strip(), created_at=now,
                             updated_at=now, event_seq=0)
                session.add(row)
            else:
                row.answer, row.comment, row.updated_at = answer, comment.strip(), now
            session.flush()
            return [row], _review_info(row)

        return self._write(actor=actor, kind="review.recorded", change=change)

    def edit_review(self, review_id: int, *, answer: str, comment: str,
                    actor: str) -> ReviewInfo:
        """Change an existing answer; only its author may."""

        def change(session: Session) -> tuple[list[Base], ReviewInfo]:
            self._actor(session, actor, "reviewer")
            row = session.get(Review, review_id)
            if row is None:
                raise StoreError(f"no review with id {review_id}.")
            if row.reviewer != actor:
                raise RuleViolation(f"review {review_id} was written by {row.reviewer}; "
                                    f"nobody edits another's comment ({actor} tried).")
            self._check_answer(row.question, answer)
            row.answer, row.comment, row.updated_at = answer, comment.strip(), _now()
            return [row], _review_info(row)

        return self._write(actor=actor, kind="review.edited", change=change)

    @staticmethod
    def _check_answer(question: str, answer: str) -> None:
        if question not in QUESTION_IDS:
            raise ConfigError(f"question must be one of {list(QUESTION_IDS)}; got "
                              f"{question!r} instead.")
        if answer not in ANSWERS:
            raise ConfigError(f"answer must be one of {list(ANSWERS)}; got {answer!r} "
                              "instead.")

    def reviews(self, audit_id: int) -> list[ReviewInfo]:
        with self._read() as session:
            rows = session.execute(select(Review).where(Review.audit_id == audit_id)
                                   .order_by(Review.reviewer, Review.question)).scalars()
            return [_review_info(r) for r in rows]

    def complete_reviewers(self, audit_id: int) -> list[str]:
        """Active reviewers who answered every Overview question of the audit."""
        with self._read() as session:
            return self._complete_reviewers(session, audit_id)

    @staticmethod
    def _complete_reviewers(session: Session, audit_id: int) -> list[str]:
        rows = session.execute(
            select(Review.reviewer, func.count(func.distinct(Review.question)))
            .join(User, User.name == Review.reviewer)
            .where(Review.audit_id == audit_id, User.active.is_(True))
            .group_by(Review.reviewer)).all()
        return sorted(name for name, n in rows if n == len(QUESTION_IDS))

    # ------------------------------------------------------------------ decisions
    def record_decision(self, audit_id: int, *, decision: str, actor: str,
                        conditions: str = "", reaudit_date: str | date | None = None,
                        private_key_pem: bytes | None = None) -> DecisionInfo:
        """Record the committee's decision on one audit (chair only).

        Refused when the chair registered this model (any audit of the same name and
        version), when fewer than ``quorum`` reviewers answered every question, when
        the audit's files no longer match their registered sha256, and for "approve
        with conditions" without conditions. With ``private_key_pem`` (the chair's
        Ed25519 key, whose public half is on their account) the decision is signed.
        """
        if decision not in DECISIONS:
            raise ConfigError(f"decision must be one of {list(DECISIONS)}; got {decision!r} "
                              "instead.")
        conditions = conditions.strip()
        if decision == "approve_with_conditions" and not conditions:
            raise ConfigError("approve_with_conditions needs the conditions written out; "
                              "got none.")
        when: str | None = None
        if reaudit_date:
            try:
                when = (reaudit_date if isinstance(reaudit_date, date)
                        else date.fromisoformat(str(reaudit_date))).isoformat()
            except ValueError as exc:
                raise ConfigError(f"reaudit_date must be a date YYYY-MM-DD; got "
                                  f"{reaudit_date!r} instead.") from exc
            if when <= datetime.now(UTC).date().isoformat():
                raise ConfigError(f"reaudit_date must lie in the future; got {when}.")
        info = self.audit(audit_id)
        changes = _file_changes(info)
        if changes:
            raise EvidenceChangedError(
                f"audit {audit_id} cannot be decided on: {len(changes)} of its files differ "
                f"from what was registered ({changes[0]}).", changes)

        def change(session: Session) -> tuple[list[Base], None]:
            chair = self._actor(session, actor, "chair")
            own = session.execute(select(Audit.id).where(
                Audit.model_name == info.model_name, Audit.model_version == info.model_version,
                Audit.registered_by == actor)).scalars().first()
            if own is not None:
                raise RuleViolation(f"{actor} registered {info.model_ref} (audit {own}); "
                                    "nobody records the decision on a model they registered.")
            done = [r for r in self._complete_reviewers(session, audit_id) if r != actor]
            if len(done) < self.quorum:
                raise RuleViolation(
                    f"a decision needs {self.quorum} complete reviews (every question "
                    f"answered); audit {audit_id} has {len(done)}"
                    + (f" ({', '.join(done)})" if done else "") + ".")
            head = session.execute(select(ChainHead).where(ChainHead.id == 1)).scalar_one()
            row = Decision(audit_id=audit_id, chair=actor, decision=decision,
                           conditions=conditions, reaudit_date=when, decided_at=_now(),
                           chain_head=head.hash, event_seq=0)
            if chair.public_key:
                if private_key_pem is None:
                    raise RuleViolation(f"{actor} has a signing key on file; the decision "
                                        "must be signed with the matching private key.")
                from ._signing import sign_decision

                row.signature = sign_decision(private_key_pem, decision_message(row, info),
                                              chair.public_key)
            elif private_key_pem is not None:
                raise RuleViolation(f"{actor} has no public key on file to check the "
                                    "signature against; an administrator adds it first "
                                    "(`auditkit users keygen`).")
            session.add(row)
            session.flush()
            return [row], None

        self._write(actor=actor, kind="decision.recorded", change=change)
        return self.decisions(audit_id)[-1]

    def decisions(self, audit_id: int) -> list[DecisionInfo]:
        """Every decision on the audit, oldest first (the last one stands)."""
        with self._read() as session:
            rows = session.execute(select(Decision, Event.hash)
                                   .join(Event, Event.seq == Decision.event_seq, isouter=True)
                                   .where(Decision.audit_id == audit_id)
                                   .order_by(Decision.id)).all()
            return [DecisionInfo(id=d.id, audit_id=d.audit_id, chair=d.chair,
                                 decision=d.decision, conditions=d.conditions,
                                 reaudit_date=d.reaudit_date, decided_at=d.decided_at,
                                 chain_head_before=d.chain_head, event_seq=d.event_seq,
                                 event_hash=h or "", signature=d.signature)
                    for d, h in rows]

    # ------------------------------------------------------------------ trail
    def head(self) -> tuple[int, str]:
        """``(seq, hash)`` of the newest trail event (``(0, 64 zeros)`` when empty)."""
        with self._read() as session:
            head = session.execute(select(ChainHead).where(ChainHead.id == 1)).scalar_one()
            return head.seq, head.hash

    def events(self) -> list[dict[str, Any]]:
        """The trail, oldest first: seq, at, actor, kind, hash."""
        with self._read() as session:
            return [{"seq": e.seq, "at": e.at, "actor": e.actor, "kind": e.kind,
                     "hash": e.hash}
                    for e in session.execute(select(Event).order_by(Event.seq)).scalars()]

    def verify_trail(self, *, check_files: bool = True) -> TrailReport:
        """Recompute the chain, replay it against the tables, re-hash evidence files."""
        with self._read() as session:
            events = session.execute(select(Event).order_by(Event.seq)).scalars().all()
            head_row = session.execute(select(ChainHead).where(ChainHead.id == 1)
                                       ).scalar_one_or_none()
            actual = {name: {row.id: _snapshot(row)  # type: ignore[attr-defined]
                             for row in session.execute(select(model)).scalars()}
                      for name, model in STATE_TABLES.items()}
        report = TrailReport(n_events=len(events), head=events[-1].hash if events else GENESIS)
        problems = report.problems
        prev_hash, prev_seq = GENESIS, 0
        expected: dict[tuple[str, int], tuple[dict[str, Any], int]] = {}
        for ev in events:
            report.heads[ev.seq] = ev.hash
            try:
                payload = json.loads(ev.payload)
            except json.JSONDecodeError:
                payload = None
            if ev.prev_hash != prev_hash or ev.seq != prev_seq + 1:
                gap = (f"events #{prev_seq + 1}-#{ev.seq - 1} are missing"
                       if ev.seq > prev_seq + 1 else "the order of events was changed")
                problems.append(TrailProblem(ev.seq, "missing or reordered event",
                                             f"it does not follow event #{prev_seq} "
                                             f"({gap} or an event was removed)."))
            fields_ok = isinstance(payload, dict) and all(
                payload.get(k) == getattr(ev, k) for k in ("seq", "at", "actor", "kind"))
            if chain_hash(ev.prev_hash, ev.payload) != ev.hash or not fields_ok:
                problems.append(TrailProblem(ev.seq, "edited event",
                                             f"{ev.kind} by {ev.actor} at {ev.at}: its hash "
                                             "does not match its content."))
            if isinstance(payload, dict):
                for table, rows in (payload.get("rows") or {}).items():
                    for row in rows:
                        expected[(table, row.get("id"))] = (row, ev.seq)
            prev_hash, prev_seq = ev.hash, ev.seq
        if head_row is not None and (head_row.seq, head_row.hash) != (prev_seq, prev_hash):
            problems.append(TrailProblem(
                head_row.seq, "head mismatch",
                f"the head records event #{head_row.seq} ({head_row.hash[:12]}…) but the "
                f"newest event is #{prev_seq} ({prev_hash[:12]}…): events at the end were "
                "removed or the head was edited."))
        for table, rows_now in actual.items():
            for row_id, now in rows_now.items():
                found = expected.pop((table, row_id), None)
                if found is None:
                    problems.append(TrailProblem(None, "row outside the trail",
                                                 f"{_describe(table, now)} was written "
                                                 "without a trail event."))
                    continue
                then, seq = found
                differs = sorted(k for k in set(then) | set(now)
                                 if then.get(k) != now.get(k)
                                 and not (k not in then and now.get(k) is None))
                if differs:
                    problems.append(TrailProblem(
                        seq, "edited row",
                        f"{_describe(table, now)} differs from what this event recorded "
                        f"({', '.join(differs)})."))
        for (table, _row_id), (then, seq) in expected.items():
            problems.append(TrailProblem(seq, "deleted row",
                                         f"{_describe(table, then)}, written by this event, "
                                         "is gone from the database."))
        if check_files:
            problems.extend(self._file_problems(actual))
        problems.extend(self._signature_problems(actual))
        report.sort()
        return report

    @staticmethod
    def _file_problems(actual: dict[str, dict[int, dict[str, Any]]]) -> list[TrailProblem]:
        out = []
        for f in actual["audit_files"].values():
            audit = actual["audits"].get(f["audit_id"])
            if audit is None:
                continue
            path = Path(audit["folder"]) / f["path"]
            where = f"audit {audit['id']} ({audit['model_name']}@{audit['model_version']})"
            if not path.is_file():
                out.append(TrailProblem(f["event_seq"], "evidence file missing",
                                        f"{f['path']} of {where} is gone from {audit['folder']}."))
            elif sha256_file(path) != f["sha256"]:
                out.append(TrailProblem(
                    f["event_seq"], "evidence file changed",
                    f"{f['path']} of {where} changed after registration (sha256 "
                    f"{f['sha256'][:12]}… registered, {sha256_file(path)[:12]}… now)."))
        return out

    @staticmethod
    def _signature_problems(actual: dict[str, dict[int, dict[str, Any]]]) -> list[TrailProblem]:
        from ._signing import verify_signature

        keys = {u["name"]: u.get("public_key") for u in actual["users"].values()}
        out = []
        for d in actual["decisions"].values():
            if not d.get("signature"):
                continue
            audit = actual["audits"].get(d["audit_id"])
            key = keys.get(d["chair"])
            ok = bool(audit and key) and verify_signature(
                key or "", _message_from_snapshot(d, audit or {}), d["signature"])
            if not ok:
                out.append(TrailProblem(d["event_seq"], "bad signature",
                                        f"decision {d['id']} on audit {d['audit_id']} by "
                                        f"{d['chair']}: the Ed25519 signature does not verify "
                                        "with the chair's public key."))
        return out


class _DummyHash:
    """A real argon2 hash to verify against for unknown names (made once, lazily)."""

    _value: str | None = None

    @property
    def value(self) -> str:
        if self._value is None:
            type(self)._value = hash_password("not a password of anyone")
        return self._value or ""


_DUMMY_HASH = _DummyHash()


def _describe(table: str, row: dict[str, Any]) -> str:
    if table == "reviews":
        return (f"review {row.get('id')} (audit {row.get('audit_id')}, question "
                f"{row.get('question')}, by {row.get('reviewer')})")
    if table == "decisions":
        return (f"decision {row.get('id')} (audit {row.get('audit_id')}, "
                f"{row.get('decision')} by {row.get('chair')})")
    if table == "audits":
        return f"audit {row.get('id')} ({row.get('model_name')}@{row.get('model_version')})"
    if table == "audit_files":
        return f"file {row.get('path')} of audit {row.get('audit_id')}"
    return f"account {row.get('name')}"


def _file_changes(info: AuditInfo) -> list[str]:
    out = []
    for rel, digest in info.files:
        path = Path(info.folder) / rel
        if not path.is_file():
            out.append(f"{rel} is missing")
        elif sha256_file(path) != digest:
            out.append(f"{rel} changed after registration")
    return out


def decision_message(row: Decision, info: AuditInfo) -> bytes:
    """The bytes a chair signs: canonical JSON of the decision and the audit's identity."""
    return _message_from_snapshot(
        {"id": row.id, "audit_id": row.audit_id, "chair": row.chair, "decision": row.decision,
         "conditions": row.conditions, "reaudit_date": row.reaudit_date,
         "decided_at": row.decided_at, "chain_head": row.chain_head},
        {"audit_sha256": info.audit_sha256, "model_name": info.model_name,
         "model_version": info.model_version, "model_sha256": info.model_sha256})


def _message_from_snapshot(d: dict[str, Any], audit: dict[str, Any]) -> bytes:
    return canonical_json({
        "audit_id": d["audit_id"], "audit_sha256": audit.get("audit_sha256"),
        "model": f"{audit.get('model_name')}@{audit.get('model_version')}",
        "model_sha256": audit.get("model_sha256"), "chair": d["chair"],
        "decision": d["decision"], "conditions": d["conditions"],
        "reaudit_date": d["reaudit_date"], "decided_at": d["decided_at"],
        "chain_head": d["chain_head"]}).encode()
