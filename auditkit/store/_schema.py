"""The review store's tables (SQLAlchemy 2 declarative models).

Every table that holds state (users, audits, audit_files, reviews, decisions) carries
``event_seq``: the trail event that last wrote the row. The trail (``events``) is
append-only; ``chain_head`` holds its newest hash and is the one row every write locks,
so writes are serialised on SQLite and PostgreSQL alike. Times are ISO-8601 strings in
UTC (``2026-11-28T09:12:03.123456+00:00``) so that both databases give back exactly what
was hashed into the trail.

The schema is created and upgraded only by the Alembic migrations beside this file
(``migrations/versions``); :data:`SCHEMA_REVISION` is the newest one.
"""

from __future__ import annotations

from sqlalchemy import Boolean, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

__all__ = ["SCHEMA_REVISION", "STATE_TABLES", "Audit", "AuditFile", "Base", "ChainHead",
           "Decision", "Event", "Review", "User"]

#: The Alembic revision the models below describe.
SCHEMA_REVISION = "0002"


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    full_name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str | None] = mapped_column(String(320), unique=True, nullable=True)
    roles: Mapped[str] = mapped_column(String(200))
    password_hash: Mapped[str | None] = mapped_column(String(200), nullable=True)
    active: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[str] = mapped_column(String(40))
    event_seq: Mapped[int] = mapped_column(Integer)
    # revision 0002
    public_key: Mapped[str | None] = mapped_column(Text, nullable=True)


class Audit(Base):
    __tablename__ = "audits"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_name: Mapped[str] = mapped_column(String(200))
    model_version: Mapped[str] = mapped_column(String(100))
    model_sha256: Mapped[str] = mapped_column(String(64))
    dataset_name: Mapped[str] = mapped_column(String(200))
    dataset_hash: Mapped[str] = mapped_column(String(128))
    criteria_hash: Mapped[str | None] = mapped_column(String(128), nullable=True)
    audit_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    folder: Mapped[str] = mapped_column(Text)
    registered_by: Mapped[str] = mapped_column(String(64))
    registered_at: Mapped[str] = mapped_column(String(40))
    event_seq: Mapped[int] = mapped_column(Integer)


class AuditFile(Base):
    __tablename__ = "audit_files"
    __table_args__ = (UniqueConstraint("audit_id", "path"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    audit_id: Mapped[int] = mapped_column(ForeignKey("audits.id"))
    path: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(Integer)
    event_seq: Mapped[int] = mapped_column(Integer)


class Review(Base):
    __tablename__ = "reviews"
    __table_args__ = (UniqueConstraint("audit_id", "question", "reviewer"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    audit_id: Mapped[int] = mapped_column(ForeignKey("audits.id"))
    question: Mapped[str] = mapped_column(String(40))
    reviewer: Mapped[str] = mapped_column(String(64))
    answer: Mapped[str] = mapped_column(String(40))
    comment: Mapped[str] = mapped_column(Text)
    created_at: Mapped[str] = mapped_column(String(40))
    updated_at: Mapped[str] = mapped_column(String(40))
    event_seq: Mapped[int] = mapped_column(Integer)


class Decision(Base):
    __tablename__ = "decisions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    audit_id: Mapped[int] = mapped_column(ForeignKey("audits.id"))
    chair: Mapped[str] = mapped_column(String(64))
    decision: Mapped[str] = mapped_column(String(40))
    conditions: Mapped[str] = mapped_column(Text)
    reaudit_date: Mapped[str | None] = mapped_column(String(10), nullable=True)
    decided_at: Mapped[str] = mapped_column(String(40))
    chain_head: Mapped[str] = mapped_column(String(64))
    event_seq: Mapped[int] = mapped_column(Integer)
    # revision 0002
    signature: Mapped[str | None] = mapped_column(Text, nullable=True)


class Event(Base):
    """One append-only trail event: ``hash = sha256(prev_hash + "\\n" + payload)``."""

    __tablename__ = "events"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    at: Mapped[str] = mapped_column(String(40))
    actor: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(40))
    payload: Mapped[str] = mapped_column(Text)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64), unique=True)


class ChainHead(Base):
    """The single row (id 1) every write locks; holds the newest event's seq and hash."""

    __tablename__ = "chain_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(Integer)
    hash: Mapped[str] = mapped_column(String(64))


#: Tables whose rows the trail vouches for, in write order.
STATE_TABLES = {"users": User, "audits": Audit, "audit_files": AuditFile,
                "reviews": Review, "decisions": Decision}
