"""Per-image evidence files: CSV for small audits, Parquet for large ones, one reader.

An audit folder holds one row per image in ``predictions`` (and other per-image
tables). Up to :data:`PARQUET_MIN_ROWS` rows they are written as CSV, which a reviewer
opens in a spreadsheet; from that many rows on as Parquet (columnar, compressed,
typed), which the library reads lazily: only the columns asked for, a page of rows at
a time, or record batches streamed through a function. A million-image audit's
``predictions.parquet`` is then read a few columns at a time, never as a whole table
of text. :func:`export_csv` writes any table as CSV again (formulas neutralised, see
:mod:`auditkit._export`).

The threshold is a documented setting: :data:`PARQUET_MIN_ROWS`, overridden by the
environment variable ``AUDITKIT_PARQUET_MIN_ROWS`` (0 writes Parquet always). Which
format an audit used is recorded in ``audit.json`` under ``evidence_files``
(``docs/audit-schema.md``).

Readers are column-tolerant: extra columns (e.g. one a later version adds) are
carried along, and a reader asking for a column that is not there gets a
:class:`~auditkit.exceptions.DataError` naming what it expected and what it found.
Parquet via pyarrow (a maintained columnar library) rather than a hand-written format.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from ._export import with_audience, write_frame_csv
from .exceptions import DataError

__all__ = [
    "PARQUET_MIN_ROWS",
    "EvidenceTable",
    "describe",
    "evidence_format",
    "export_csv",
    "file_stamp",
    "find_table",
    "open_table",
    "read_table",
    "write_table",
]

#: Per-image tables with at least this many rows are written as Parquet, smaller ones
#: as CSV. Override with the environment variable ``AUDITKIT_PARQUET_MIN_ROWS``.
PARQUET_MIN_ROWS = 100_000
_FORMATS = ("csv", "parquet")


def evidence_format(n_rows: int) -> str:
    """``"parquet"`` for tables of at least the threshold's rows, else ``"csv"``."""
    raw = os.environ.get("AUDITKIT_PARQUET_MIN_ROWS", "").strip()
    if raw:
        try:
            threshold = int(raw)
        except ValueError:
            raise DataError(f"AUDITKIT_PARQUET_MIN_ROWS must be a whole number of rows; "
                            f"got {raw!r} instead.") from None
    else:
        threshold = PARQUET_MIN_ROWS
    return "parquet" if n_rows >= threshold else "csv"


def _parquet_text_safe(frame: pd.DataFrame) -> pd.DataFrame:
    """Object columns as text (Parquet needs one type per column; CSV wrote them as text)."""
    out = frame.copy()
    for col in out.columns:
        if out[col].dtype == object:
            out[col] = out[col].map(lambda v: "" if v is None or v != v else str(v)
                                    ).astype("string")
    return out


#: Rows per Parquet row group (the unit a reader decodes at once).
ROW_GROUP_ROWS = 65_536


def write_table(frame: pd.DataFrame, folder: str | os.PathLike[str], stem: str, *,
                fmt: str | None = None, audience: str | None = None) -> Path:
    """Write ``frame`` as ``folder/stem.csv`` or ``folder/stem.parquet``, atomically.

    Parameters
    ----------
    frame : DataFrame
        One row per image.
    folder : path
    stem : str
        File name without suffix, e.g. ``"predictions"``.
    fmt : {"csv", "parquet"}, optional
        Default: :func:`evidence_format` of the row count. The other format's file of
        the same stem is removed, so a folder never holds two versions of one table.
    audience : {"in-house", "release"}, optional
        Stated in a last ``audience`` column of every row, in either format (see
        :func:`auditkit._export.write_frame_csv`).

    Returns
    -------
    Path
        The file written.
    """
    fmt = fmt or evidence_format(len(frame))
    if fmt not in _FORMATS:
        raise DataError(f"Evidence format must be one of {list(_FORMATS)}; got {fmt!r} instead.")
    folder = Path(folder)
    path = folder / f"{stem}.{fmt}"
    if fmt == "csv":
        write_frame_csv(frame, path, audience=audience)
    else:
        out = _parquet_text_safe(frame)
        if audience is not None:
            out = with_audience(out, audience)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        # row groups of ROW_GROUP_ROWS: a page of the table (EvidenceTable.page) then
        # decodes one or two groups, not the whole column
        out.to_parquet(tmp, index=False, engine="pyarrow", compression="zstd",
                       row_group_size=ROW_GROUP_ROWS)
        os.replace(tmp, path)
    for other in _FORMATS:
        stale = folder / f"{stem}.{other}"
        if other != fmt and stale.exists():
            stale.unlink()
    return path


def find_table(folder: str | os.PathLike[str], stem: str) -> Path | None:
    """``folder/stem.parquet`` or ``folder/stem.csv`` (whichever exists), else None."""
    for fmt in ("parquet", "csv"):
        path = Path(folder) / f"{stem}.{fmt}"
        if path.is_file():
            return path
    return None


def file_stamp(path: str | os.PathLike[str]) -> tuple[str, int, int]:
    """(resolved path, modification time in ns, size): the key of a cached summary of a file.

    A page redraws on every click, and a million-row table is re-read each time unless
    its summaries are kept; keyed by this stamp, a summary is recomputed as soon as the
    file is rewritten (audit folders are written once, so in practice never).
    """
    path = Path(path).resolve()
    st = path.stat()
    return str(path), st.st_mtime_ns, st.st_size


@dataclass(frozen=True)
class EvidenceTable:
    """A per-image table opened lazily: nothing but its schema is read on opening.

    Attributes
    ----------
    path : Path
    format : str
        ``"csv"`` or ``"parquet"``.
    columns : list of str
    n_rows : int
    """

    path: Path
    format: str
    columns: list[str]
    n_rows: int

    def _check(self, columns: Sequence[str] | None) -> list[str] | None:
        if columns is None:
            return None
        missing = [c for c in columns if c not in self.columns]
        if missing:
            raise DataError(f"{self.path.name}: expected columns {missing}; found "
                            f"{self.columns} instead.")
        return list(columns)

    def read(self, columns: Sequence[str] | None = None, *, as_text: bool = False
             ) -> pd.DataFrame:
        """The table, or only ``columns`` of it.

        ``as_text=True`` gives every cell as text ("" for missing), as
        ``pd.read_csv(dtype=str, keep_default_na=False)`` does for a CSV.
        """
        wanted = self._check(columns)
        if self.format == "csv":
            if as_text:
                return pd.read_csv(self.path, usecols=wanted, dtype=str,
                                   keep_default_na=False)[wanted or self.columns]
            return pd.read_csv(self.path, usecols=wanted)[wanted or self.columns]
        frame = pd.read_parquet(self.path, columns=wanted, engine="pyarrow")
        return _as_text(frame) if as_text else frame

    def iter_batches(self, columns: Sequence[str] | None = None, *,
                     batch_size: int = 65_536, as_text: bool = False
                     ) -> Iterator[pd.DataFrame]:
        """Stream ``columns`` in frames of at most ``batch_size`` rows (bounded memory)."""
        wanted = self._check(columns)
        if self.format == "csv":
            text: dict[str, Any] = {"dtype": str, "keep_default_na": False} if as_text else {}
            for chunk in pd.read_csv(self.path, usecols=wanted, chunksize=batch_size, **text):
                yield chunk[wanted or self.columns]
            return
        import pyarrow.parquet as pq

        with pq.ParquetFile(self.path) as handle:
            for batch in handle.iter_batches(batch_size=batch_size, columns=wanted):
                frame = batch.to_pandas()
                yield _as_text(frame) if as_text else frame

    def page(self, offset: int, limit: int, columns: Sequence[str] | None = None
             ) -> pd.DataFrame:
        """Rows ``offset`` to ``offset + limit`` (a page of a large table)."""
        if offset < 0 or limit < 0:
            raise DataError(f"A page needs offset >= 0 and limit >= 0; got offset={offset}, "
                            f"limit={limit} instead.")
        wanted = self._check(columns)
        if self.format == "csv":
            return pd.read_csv(self.path, usecols=wanted, skiprows=range(1, offset + 1),
                               nrows=limit)[wanted or self.columns]
        import pyarrow.parquet as pq

        with pq.ParquetFile(self.path) as handle:
            parts, seen = [], 0
            for g in range(handle.num_row_groups):
                rows = handle.metadata.row_group(g).num_rows
                if seen + rows > offset and seen < offset + limit:
                    part = handle.read_row_group(g, columns=wanted).to_pandas()
                    parts.append(part.iloc[max(0, offset - seen):offset + limit - seen])
                seen += rows
        if not parts:
            return pd.DataFrame(columns=wanted or self.columns)
        return pd.concat(parts, ignore_index=True)


def _as_text(frame: pd.DataFrame) -> pd.DataFrame:
    """Every cell as the text CSV would hold ("" for missing)."""
    out = pd.DataFrame(index=frame.index)
    for col in frame.columns:
        values = frame[col]
        if values.dtype != object and pd.api.types.is_string_dtype(values.dtype):
            out[col] = values.fillna("")  # already text (Arrow-backed): no per-cell work
        else:
            out[col] = values.astype(object).where(values.notna(), "").astype(str)
    return out


def open_table(path_or_folder: str | os.PathLike[str], stem: str | None = None
               ) -> EvidenceTable:
    """Open a per-image table lazily: ``open_table(folder, "predictions")`` or a file path.

    Raises
    ------
    DataError
        No such table, or a file that is neither CSV nor Parquet.
    """
    if stem is not None:
        found = find_table(path_or_folder, stem)
        if found is None:
            raise DataError(f"Expected {stem}.parquet or {stem}.csv in {path_or_folder}; "
                            "found neither.")
        path = found
    else:
        path = Path(path_or_folder)
        if not path.is_file():
            raise DataError(f"Expected a per-image table at {path}; found no file.")
    fmt = path.suffix.lstrip(".").lower()
    if fmt == "csv":
        header = pd.read_csv(path, nrows=0)
        with open(path, "rb") as fh:
            n_lines = sum(chunk.count(b"\n") for chunk in iter(lambda: fh.read(1 << 20), b""))
        return EvidenceTable(path, "csv", [str(c) for c in header.columns], max(0, n_lines - 1))
    if fmt == "parquet":
        import pyarrow.parquet as pq

        try:
            meta = pq.read_metadata(path)
        except (OSError, ValueError) as exc:
            raise DataError(f"{path.name}: expected a Parquet file; could not read it ({exc})."
                            ) from exc
        return EvidenceTable(path, "parquet", list(meta.schema.names), int(meta.num_rows))
    raise DataError(f"Expected a .csv or .parquet per-image table; got {path.name!r} instead.")


def read_table(path_or_folder: str | os.PathLike[str], stem: str | None = None, *,
               columns: Sequence[str] | None = None, as_text: bool = False) -> pd.DataFrame:
    """Read a per-image table (or only ``columns``); see :class:`EvidenceTable.read`."""
    return open_table(path_or_folder, stem).read(columns, as_text=as_text)


def export_csv(path_or_folder: str | os.PathLike[str], stem: str | None = None, *,
               dest: str | os.PathLike[str]) -> Path:
    """Write a per-image table (CSV or Parquet) to ``dest`` as CSV, formulas neutralised.

    Streams batches, so a million-row Parquet table is exported in bounded memory.
    """
    table = open_table(path_or_folder, stem)
    dest = Path(dest)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    from ._export import csv_safe_frame

    first = True
    for batch in table.iter_batches():
        csv_safe_frame(batch).to_csv(tmp, index=False, header=first, mode="w" if first else "a")
        first = False
    if first:  # no rows: the header alone
        csv_safe_frame(pd.DataFrame(columns=table.columns)).to_csv(tmp, index=False)
    os.replace(tmp, dest)
    return dest


def describe(table: EvidenceTable) -> dict[str, Any]:
    """The ``audit.json`` record of a written table: file, format, rows."""
    return {"file": table.path.name, "format": table.format, "rows": table.n_rows}
