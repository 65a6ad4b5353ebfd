"""Optional Ed25519 signatures of decisions (the ``cryptography`` package).

A chair's key pair is made once (``auditkit users keygen NAME``): the private key stays
with the chair (a PEM file, mode 0600), the public key goes on their account. A signed
decision can be checked offline by anyone holding the decision record, which carries the
signed message, the signature and the public key (:func:`verify_record`).
"""

from __future__ import annotations

import base64
from typing import Any

from ..exceptions import ConfigError, RuleViolation

__all__ = ["generate_key_pair", "load_public_key", "sign_decision", "verify_record",
           "verify_signature"]


def generate_key_pair() -> tuple[bytes, str]:
    """A new Ed25519 key pair: (private key PEM bytes, public key PEM text)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    return private, public.decode()


def load_public_key(pem: str) -> Any:
    """The Ed25519 public key in ``pem``; anything else is refused."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        key = serialization.load_pem_public_key(pem.encode())
    except ValueError as exc:
        raise ConfigError(f"expected an Ed25519 public key in PEM form; could not read it "
                          f"({exc}).") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise ConfigError(f"expected an Ed25519 public key; got {type(key).__name__} instead.")
    return key


def sign_decision(private_key_pem: bytes, message: bytes, public_key_pem: str) -> str:
    """Base64 Ed25519 signature of ``message``; the key must match the account's key."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    try:
        key = serialization.load_pem_private_key(private_key_pem, password=None)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"expected an unencrypted Ed25519 private key in PEM form; could "
                          f"not read it ({exc}).") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"expected an Ed25519 private key; got {type(key).__name__} "
                          "instead.")
    signature = key.sign(message)
    if not verify_signature(public_key_pem, message, base64.b64encode(signature).decode()):
        raise RuleViolation("the private key given does not match the public key on the "
                            "chair's account.")
    return base64.b64encode(signature).decode()


def verify_signature(public_key_pem: str, message: bytes, signature_b64: str) -> bool:
    """True when ``signature_b64`` is a valid Ed25519 signature of ``message``."""
    from cryptography.exceptions import InvalidSignature

    try:
        load_public_key(public_key_pem).verify(base64.b64decode(signature_b64), message)
    except (InvalidSignature, ValueError, ConfigError):
        return False
    return True


def verify_record(record: dict[str, Any]) -> bool:
    """Check a decision record's signature offline (no database needed).

    ``record`` is the JSON decision record (:func:`auditkit.store.decision_record`);
    True when its ``signature`` block verifies against its own ``signed_message`` and
    ``public_key``, and the message matches the decision printed in the record.
    """
    sig = record.get("signature") or {}
    if not sig.get("value"):
        return False
    message = str(sig.get("signed_message", "")).encode()
    import json

    try:
        signed = json.loads(message)
    except json.JSONDecodeError:
        return False
    decision = record.get("decision") or {}
    same = all(signed.get(k) == decision.get(k) for k in ("decision", "conditions",
                                                          "reaudit_date", "chair",
                                                          "decided_at"))
    return same and verify_signature(str(sig.get("public_key", "")), message, sig["value"])
