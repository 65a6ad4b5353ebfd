"""The one exception tree of auditkit.

Every error auditkit raises on purpose derives from :class:`AuditKitError`, so a
caller (the CLI, the dashboard, a notebook) can catch all of them in one place and
show the message, which always says what was expected and what was found.

::

    AuditKitError
    ├── ConfigError         an option or argument is out of range / unknown
    ├── DataError           a dataset description or its files are wrong
    │   └── DatasetNotFoundError
    └── ModelError          a model card or weights file is wrong
        ├── ModelNotFoundError
        ├── IntegrityError  the weights do not match the sha256 in the card
        ├── UnsafeModelError the file would run code when loaded; nothing was run
        └── UntrustedModelError the format carries code and the user has not said
                                they trust it (``trust_model_code``)
    └── StoreError          the review store refused or could not do a write
        ├── AuthenticationError  unknown account, wrong password or disabled account
        ├── RuleViolation   a review rule forbids it (roles, quorum, own comments, ...)
        └── EvidenceChangedError an audit's files differ from their registered sha256
"""

from __future__ import annotations

__all__ = [
    "AuditKitError",
    "AuthenticationError",
    "ConfigError",
    "DataError",
    "DatasetNotFoundError",
    "EvidenceChangedError",
    "IntegrityError",
    "ModelError",
    "ModelNotFoundError",
    "RuleViolation",
    "StoreError",
    "UnsafeModelError",
    "UntrustedModelError",
]


class AuditKitError(Exception):
    """Base class of every error auditkit raises deliberately."""


class ConfigError(AuditKitError, ValueError):
    """An option, argument or configuration value is not valid."""


class DataError(AuditKitError, ValueError):
    """A dataset description, its table or its image files are not valid.

    Attributes
    ----------
    problems : list of DatasetProblem
        Every problem found, when the error comes from dataset validation.
    """

    def __init__(self, message: str, problems: list | None = None) -> None:
        super().__init__(message)
        self.problems = list(problems or [])


class DatasetNotFoundError(DataError):
    """A named dataset could not be found where it was looked for."""


class ModelError(AuditKitError, ValueError):
    """A model card or weights file is not valid."""


class ModelNotFoundError(ModelError):
    """A model name or version is not in the registry."""


class IntegrityError(ModelError):
    """The weights file does not have the sha256 written in its model card."""


class UnsafeModelError(ModelError):
    """The weights file would execute code when unpickled; it was refused unopened."""


class UntrustedModelError(ModelError):
    """The weights carry code (TorchScript, torch.export) and were not marked trusted.

    Pass ``trust_model_code=True`` (CLI ``--trust-model-code``) to load them; they
    must still pass auditkit's static checks.
    """


class StoreError(AuditKitError, ValueError):
    """The review store (:mod:`auditkit.store`) refused a write or could not do it."""


class AuthenticationError(StoreError):
    """Unknown account, wrong password, or a disabled account (one message for all three)."""


class RuleViolation(StoreError):
    """A review rule forbids the write: a role, the quorum, someone else's comment, ..."""


class EvidenceChangedError(RuleViolation):
    """An audit's files no longer match the sha256 recorded when it was registered.

    Attributes
    ----------
    changes : list of str
        One line per changed or missing file.
    """

    def __init__(self, message: str, changes: list[str] | None = None) -> None:
        super().__init__(message)
        self.changes = list(changes or [])
