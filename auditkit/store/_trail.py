"""The tamper-evident trail: an append-only hash chain over every write.

Each write of the store appends one event whose payload is the canonical JSON of
``{"seq", "at", "actor", "kind", "rows"}`` (``rows``: ``{table: [row snapshot, ...]}``,
every row the write created or changed, as stored). Its hash is::

    hash = sha256(prev_hash + "\\n" + payload)          (hex; prev_hash of #1 is 64 zeros)

so changing, removing or reordering any event breaks every hash after it.
:func:`verify_trail` recomputes the chain, then replays the snapshots and compares them
with the tables, so a row edited or deleted behind the store's back (with SQL, say) is
named too, together with the event that wrote it, and finally re-hashes every registered
audit's files. It is *tamper-evident*, not tamper-proof: someone with write access to the
database could rebuild the whole chain, which is why the decision record prints the
chain head at the time of the decision (compare it with :attr:`TrailReport.heads`), and
why decisions can be signed with the chair's own key.

Canonical JSON is JSON with sorted keys, no insignificant whitespace and UTF-8 text
(``json.dumps(sort_keys=True, separators=(",", ":"), ensure_ascii=False)``). Payloads hold
only strings, integers, booleans and nulls, for which this is the same text as RFC 8785
(JSON Canonicalization Scheme) with ASCII keys; it is written by hand here because the
standard library's encoder already produces it and no float formatting is involved.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["GENESIS", "TrailProblem", "TrailReport", "canonical_json", "chain_hash",
           "hash_password_hash", "sha256_file"]

#: ``prev_hash`` of the first event.
GENESIS = "0" * 64


def canonical_json(value: Any) -> str:
    """Sorted keys, compact separators, UTF-8 text (see the module docstring)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False)


def chain_hash(prev_hash: str, payload: str) -> str:
    """``sha256(prev_hash + "\\n" + payload)`` as 64 hex digits."""
    return hashlib.sha256(f"{prev_hash}\n{payload}".encode()).hexdigest()


def hash_password_hash(value: str | None) -> str | None:
    """What the trail keeps of a password hash: its sha256 (never the hash itself)."""
    return None if value is None else hashlib.sha256(value.encode()).hexdigest()


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """sha256 of a file's bytes (hex)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


@dataclass(frozen=True)
class TrailProblem:
    """One thing :func:`verify_trail` found wrong.

    Attributes
    ----------
    seq : int or None
        The event concerned: the broken event itself, or the event that wrote the row
        or registered the file (None for a row no event wrote).
    kind : str
        ``edited event``, ``missing or reordered event``, ``edited row``, ``deleted row``,
        ``row outside the trail``, ``evidence file changed``, ``evidence file missing``,
        ``head mismatch`` or ``bad signature``.
    message : str
        A sentence naming the event, the row or file, and what differs.
    """

    seq: int | None
    kind: str
    message: str

    def __str__(self) -> str:
        where = f"event #{self.seq}" if self.seq is not None else "no event"
        return f"{where}: {self.kind}: {self.message}"


@dataclass
class TrailReport:
    """Result of :func:`verify_trail`.

    Attributes
    ----------
    n_events : int
    head : str
        Hash of the newest event (64 zeros for an empty trail).
    problems : list of TrailProblem
        Sorted by event; empty when the trail is intact.
    heads : dict
        ``{seq: hash}`` of every event, to compare with a chain head printed earlier.
    """

    n_events: int
    head: str
    problems: list[TrailProblem] = field(default_factory=list)
    heads: dict[int, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def first(self) -> TrailProblem | None:
        """The first broken event (lowest seq; problems without an event last)."""
        return self.problems[0] if self.problems else None

    def sort(self) -> None:
        big = 1 << 62
        self.problems.sort(key=lambda p: (big if p.seq is None else p.seq))
