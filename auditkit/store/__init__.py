"""The ethics committee's review store: accounts, reviews, decisions and their trail.

A real database (SQLAlchemy 2; SQLite by default, PostgreSQL in a hospital) behind a
small API whose rules hold whoever calls it, the dashboard or a script:

* roles: ``engineer`` registers audits, ``reviewer`` answers the Overview's questions,
  ``chair`` records the decision, ``administrator`` manages accounts;
* nobody decides on a model they registered, only a chair decides, a decision needs a
  quorum of complete reviews, nobody edits another's comment, and no decision is
  recorded on an audit whose files no longer match their registered sha256;
* every write appends an event to a hash chain; :meth:`ReviewStore.verify_trail` names
  the first broken event.

This package never imports torch, the checks or streamlit: it runs in a hospital's web
tier without a GPU stack. See ``docs/review.md``.
"""

from ..exceptions import AuthenticationError, EvidenceChangedError, RuleViolation, StoreError
from ._accounts import ANSWERS, DECISIONS, QUESTION_IDS, QUESTIONS, ROLES
from ._record import decision_record, render_decision_record_html, signature_block
from ._schema import SCHEMA_REVISION
from ._signing import generate_key_pair, verify_record
from ._store import (
    DEFAULT_QUORUM,
    AuditInfo,
    DecisionInfo,
    ReviewInfo,
    ReviewStore,
    UserInfo,
    current_revision,
    default_db_url,
    downgrade,
    make_engine,
    upgrade,
)
from ._trail import TrailProblem, TrailReport, canonical_json, chain_hash

__all__ = [
    "ANSWERS",
    "DECISIONS",
    "DEFAULT_QUORUM",
    "QUESTIONS",
    "QUESTION_IDS",
    "ROLES",
    "SCHEMA_REVISION",
    "AuditInfo",
    "AuthenticationError",
    "DecisionInfo",
    "EvidenceChangedError",
    "ReviewInfo",
    "ReviewStore",
    "RuleViolation",
    "StoreError",
    "TrailProblem",
    "TrailReport",
    "UserInfo",
    "canonical_json",
    "chain_hash",
    "current_revision",
    "decision_record",
    "default_db_url",
    "downgrade",
    "generate_key_pair",
    "make_engine",
    "render_decision_record_html",
    "signature_block",
    "upgrade",
    "verify_record",
]
