"""Local state: the cache folder, the per-installation secret and pseudonymous image keys.

Exports never carry an image's file name: file names of real datasets embed patient
ids and scan dates (``TCGA_CS_4941_19960909_001.jpg``), and a user's DICOM files are
often named after the PatientID. Every export instead names an image by its *key*,
``HMAC-SHA256(secret, dataset name + NUL + table entry)`` truncated to 20 hex digits
(80 bits: a collision among a million images has probability below 1e-12).

The secret is 32 random bytes made once per installation with :mod:`secrets` and kept
in ``<cache>/installation.key`` (``$AUDITKIT_CACHE``, else ``~/.cache/auditkit``),
readable by its owner only (mode 0600). Without it, a key cannot be turned back into a
file name, nor can a guessed file name be confirmed (a plain hash could be: the TCGA
naming scheme is public). The mapping back to files is written to
``<cache>/keys/<dataset>.csv`` (mode 0600), never into an audit folder; deleting the
cache makes a new secret, so later audits use new keys.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from collections.abc import Iterable
from pathlib import Path

from .exceptions import ConfigError

__all__ = ["KEY_PREFIX", "default_cache_dir", "image_key", "image_keys", "installation_secret",
           "write_key_map"]

SECRET_FILE = "installation.key"
KEY_PREFIX = "img-"
_KEY_HEX = 20


def default_cache_dir() -> Path:
    """``$AUDITKIT_CACHE`` or ``~/.cache/auditkit``."""
    env = os.environ.get("AUDITKIT_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "auditkit"


def _unwritable(folder: Path, exc: OSError) -> ConfigError:
    return ConfigError(
        f"The auditkit cache folder {folder} cannot be written ({exc.strerror or exc}); "
        "expected a folder this user may write. Set AUDITKIT_CACHE (CLI: --cache-dir) to one."
    )


def installation_secret(cache_dir: str | os.PathLike[str] | None = None) -> bytes:
    """The 32-byte per-installation secret, created (mode 0600) on first use.

    Raises
    ------
    ConfigError
        When the cache folder cannot be created or the secret cannot be written.
    """
    folder = Path(cache_dir) if cache_dir else default_cache_dir()
    path = folder / SECRET_FILE
    try:
        data = path.read_bytes()
        if len(data) == 32:
            return data
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise _unwritable(folder, exc) from exc
    try:
        folder.mkdir(parents=True, exist_ok=True)
        new = secrets.token_bytes(32)
        # O_EXCL: when two processes race, the first secret wins and both use it
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            data = path.read_bytes()
            if len(data) == 32:
                return data
            path.unlink()  # a damaged secret (wrong length) is replaced
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(new)
        return new
    except OSError as exc:
        raise _unwritable(folder, exc) from exc


def image_key(secret: bytes, dataset: str, image: str) -> str:
    """The pseudonymous key of one image, e.g. ``"img-3f9a2c1b7d0e4a55c1d2"``."""
    mac = hmac.new(secret, f"{dataset}\0{image}".encode(), hashlib.sha256).hexdigest()
    return KEY_PREFIX + mac[:_KEY_HEX]


def image_keys(secret: bytes, dataset: str, images: Iterable[str]) -> list[str]:
    """:func:`image_key` of each image."""
    return [image_key(secret, dataset, str(i)) for i in images]


def write_key_map(dataset: str, keys: Iterable[str], images: Iterable[str], *,
                  cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Write ``<cache>/keys/<dataset>.csv`` (``key,image``; mode 0600) and return its path.

    The only place a key meets its file name; it stays on this computer.
    """
    import csv

    folder = (Path(cache_dir) if cache_dir else default_cache_dir()) / "keys"
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in dataset) or "dataset"
    path = folder / f"{safe}.csv"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        known: dict[str, str] = {}
        if path.is_file():
            try:
                with open(path, newline="", encoding="utf-8") as fh:
                    known = {row["key"]: row["image"] for row in csv.DictReader(fh)
                             if row.get("key") and row.get("image")}
            except (csv.Error, UnicodeDecodeError):
                known = {}  # a damaged map is rebuilt from this dataset
        known.update(zip(keys, images))
        tmp = folder / f".{safe}.{os.getpid()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(["key", "image"])
            writer.writerows(sorted(known.items()))
        os.replace(tmp, path)
    except OSError as exc:
        raise _unwritable(folder, exc) from exc
    return path
