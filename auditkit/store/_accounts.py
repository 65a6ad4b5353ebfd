"""Roles, review vocabulary and password hashing (argon2id via argon2-cffi)."""

from __future__ import annotations

from ..exceptions import ConfigError
from ..overview._types import QUESTIONS as _OVERVIEW

__all__ = ["ANSWERS", "DECISIONS", "QUESTIONS", "QUESTION_IDS", "ROLES", "check_password",
           "hash_password", "needs_rehash", "parse_roles"]

#: Roles a local or single-sign-on account can hold (one account may hold several).
ROLES = ("engineer", "reviewer", "chair", "administrator")

#: The Overview's questions, (id, text): one list for the page, the report and the store
#: (the ids are the stable keys a review is stored under).
QUESTIONS: tuple[tuple[str, str], ...] = tuple((key, text) for key, text, *_ in _OVERVIEW)
QUESTION_IDS = tuple(q for q, _ in QUESTIONS)

#: A reviewer's answer to one question (about the audit's answer to it).
ANSWERS = ("agree", "disagree", "needs_more_evidence")

#: What a chair records.
DECISIONS = ("approve", "approve_with_conditions", "reject", "defer")


def parse_roles(roles: str | list[str] | tuple[str, ...]) -> list[str]:
    """Roles as a sorted list; refuses unknown names."""
    items = roles.split(",") if isinstance(roles, str) else list(roles)
    found = sorted({r.strip().lower() for r in items if r.strip()})
    unknown = [r for r in found if r not in ROLES]
    if not found or unknown:
        raise ConfigError(f"roles must be among {list(ROLES)}; got {items} instead.")
    return found


def _hasher():  # type: ignore[no-untyped-def]
    try:
        from argon2 import PasswordHasher
    except ImportError as exc:  # pragma: no cover - a declared dependency
        raise ConfigError("local accounts need argon2-cffi: pip install argon2-cffi") from exc
    return PasswordHasher()  # argon2id with the library's current (RFC 9106) parameters


def hash_password(password: str) -> str:
    """An argon2id hash of ``password`` (at least 12 characters)."""
    if len(password) < 12:
        raise ConfigError(
            f"a password must have at least 12 characters; got {len(password)} instead.")
    return str(_hasher().hash(password))


def check_password(stored_hash: str, password: str) -> bool:
    """True when ``password`` matches ``stored_hash`` (constant-time, by argon2-cffi)."""
    from argon2.exceptions import InvalidHashError, VerificationError

    try:
        return bool(_hasher().verify(stored_hash, password))
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(stored_hash: str) -> bool:
    """True when the hash was made with weaker parameters than today's defaults."""
    return bool(_hasher().check_needs_rehash(stored_hash))
