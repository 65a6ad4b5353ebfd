"""Hostile data: paths out of the dataset folder, decompression bombs, corrupt DICOM files."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import auditkit
from auditkit.cli import main
from auditkit.data import (
    DatasetSpec,
    ImageTooLargeError,
    load_dataset,
    read_image,
    resolve_confined,
)
from auditkit.exceptions import ConfigError, DataError, DatasetNotFoundError
from tests.conftest import dicom_skeleton

REPO = Path(__file__).resolve().parents[1]
#: Memory that validating the bombs may add over validating one small image (stated bound).
BOMB_MEMORY_BOUND_MB = 150


def _png(path: Path, value: int = 100, size: int = 8) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size, size, 3), value, dtype=np.uint8)).save(path)


def png_bomb(path: Path, side: int) -> Path:
    """A valid grayscale PNG of ``side`` x ``side`` zeros: a few hundred KB on disk."""
    comp = zlib.compressobj(9)
    row = b"\x00" * (side + 1)  # filter byte + pixels
    idat = b"".join(comp.compress(row) for _ in range(side)) + comp.flush()

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat)
                     + chunk(b"IEND", b""))
    return path


def write_dicom(path: Path, *, rows: int, cols: int, pixels: bytes | None = None,
                patient_id: str = "", sex: str = "F", age: str = "050Y") -> Path:
    """A DICOM file; ``pixels`` may be much shorter than Rows x Columns claim (a bomb)."""
    ds = dicom_skeleton()
    ds.PatientID, ds.PatientName = patient_id, patient_id
    ds.PatientSex, ds.PatientAge = sex, age
    ds.Rows, ds.Columns = rows, cols
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    if pixels is None:
        pixels = np.random.default_rng(0).integers(0, 4096, (rows, cols)).astype(
            np.uint16).tobytes()
    ds.PixelData = pixels
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def _spec(**kw: object) -> DatasetSpec:
    base: dict = dict(name="hostile", table="t.csv", image_column="image", label_column="label",
                      classes=("a", "b"))
    base.update(kw)
    return DatasetSpec(**base)


# --------------------------------------------------------------------------- paths


@pytest.fixture
def hostile_paths(tmp_path: Path) -> dict:
    """A dataset whose table points out of its folder in every way, plus valid rows."""
    root, outside = tmp_path / "data", tmp_path / "outside"
    for i in range(4):
        _png(root / "images" / f"ok{i}.png")
    _png(outside / "secret.png", value=250)
    (root / "images" / "link.png").symlink_to(outside / "secret.png")
    (root / "images" / "dirlink").symlink_to(outside, target_is_directory=True)
    entries = {
        "dotdot": "../outside/secret.png",
        "absolute": str(outside / "secret.png"),
        "symlink": "images/link.png",
        "dir_symlink": "images/dirlink/secret.png",
        "dotdot_missing": "../outside/nothing.png",
        "inside_missing": "images/nothing.png",
        "etc_passwd": "/etc/passwd",
    }
    rows = [{"image": f"images/ok{i}.png", "label": "a" if i % 2 else "b"} for i in range(4)]
    rows += [{"image": e, "label": "a"} for e in entries.values()]
    pd.DataFrame(rows).to_csv(root / "t.csv", index=False)
    return {"root": root, "outside": outside, "entries": entries}


def test_paths_out_of_the_dataset_folder_are_refused_like_missing_files(
        hostile_paths: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    read: list[Path] = []
    real_read = Path.read_bytes

    def spy(self: Path) -> bytes:
        read.append(self.resolve())
        return real_read(self)

    monkeypatch.setattr(Path, "read_bytes", spy)
    ds = load_dataset(_spec(), root=hostile_paths["root"], on_invalid="drop")
    assert sorted(ds.records["image"]) == [f"images/ok{i}.png" for i in range(4)]
    messages = {p.message.replace(repr(e), "<entry>")
                for p in ds.problems for e in hostile_paths["entries"].values()
                if repr(e) in p.message}
    # one message for "missing" and "not allowed": nothing tells which files exist elsewhere
    assert messages == {"image file <entry> is missing or not allowed (images must be files "
                        "inside the dataset folder)"}
    assert {p.kind for p in ds.problems} == {"missing_image"}
    assert len(ds.problems) == len(hostile_paths["entries"])
    outside = hostile_paths["outside"].resolve()
    assert not [p for p in read if p.is_relative_to(outside) or str(p) == "/etc/passwd"]


def test_declared_image_roots_are_allowed_and_nothing_else(hostile_paths: dict,
                                                           tmp_path: Path) -> None:
    store = tmp_path / "store"
    _png(store / "s.png")
    table = hostile_paths["root"] / "t.csv"
    rows = pd.read_csv(table)
    rows.loc[len(rows)] = [str(store / "s.png"), "b"]
    rows.loc[len(rows)] = ["../store/s.png", "a"]
    rows.to_csv(table, index=False)
    ds = load_dataset(_spec(image_roots=("../store",)), root=hostile_paths["root"],
                      on_invalid="drop")
    assert str(store / "s.png") in set(ds.records["image"])
    assert "../store/s.png" in set(ds.records["image"])
    assert not {"../outside/secret.png", "images/link.png"} & set(ds.records["image"])
    assert any("inside the dataset folder or its image_roots" in p.message for p in ds.problems)


def test_masks_and_the_table_are_confined_too(hostile_paths: dict) -> None:
    root = hostile_paths["root"]
    table = pd.DataFrame({"image": [f"images/ok{i}.png" for i in range(4)],
                          "label": ["a", "b", "a", "b"],
                          "mask": ["images/ok0.png", "../outside/secret.png", "", "/etc/passwd"]})
    table.to_csv(root / "m.csv", index=False)
    ds = load_dataset(_spec(table="m.csv", mask_column="mask"), root=root, on_invalid="drop")
    assert ds.records["image"].tolist() == ["images/ok0.png", "images/ok2.png"]
    assert {p.kind for p in ds.problems} == {"missing_mask"}
    assert all("missing or not allowed" in p.message for p in ds.problems)
    with pytest.raises(DatasetNotFoundError, match="'../outside/t.csv' is missing or not allowed"):
        load_dataset(_spec(table="../outside/t.csv"), root=root)


def test_resolve_confined_resolves_before_checking(tmp_path: Path) -> None:
    _png(tmp_path / "d" / "a.png")
    assert resolve_confined("a.png", tmp_path / "d") == (tmp_path / "d" / "a.png").resolve()
    assert resolve_confined("./a.png", tmp_path / "d") is not None
    assert resolve_confined("../d/a.png", tmp_path / "d") is not None  # lands back inside
    assert resolve_confined("a.png\0.jpg", tmp_path / "d") is None
    assert resolve_confined("", tmp_path / "d") is None
    (tmp_path / "d" / "loop").symlink_to(tmp_path / "d" / "loop")
    assert resolve_confined("loop", tmp_path / "d") is None


def test_image_roots_must_be_a_list_of_folders() -> None:
    with pytest.raises(ConfigError, match="image_roots must be a list of folder paths; got "
                                          "'/data' instead"):
        DatasetSpec.from_dict({"name": "x", "table": "t.csv", "image_column": "i",
                               "label_column": "l", "classes": ["a", "b"],
                               "image_roots": "/data"})


def test_datasets_without_image_roots_keep_their_content_hash() -> None:
    spec = auditkit.data.builtin_spec("covid_cxr")
    assert "image_roots" not in spec.to_dict()


# --------------------------------------------------------------------------- limits


@pytest.fixture(scope="module")
def bombs(tmp_path_factory: pytest.TempPathFactory) -> dict:
    folder = tmp_path_factory.mktemp("bombs")
    (folder / "images").mkdir()
    png = png_bomb(folder / "images" / "bomb0.png", 12000)
    for i in range(1, 4):
        (folder / "images" / f"bomb{i}.png").write_bytes(png.read_bytes())
    dcm = write_dicom(folder / "images" / "bomb.dcm", rows=16000, cols=16000,
                      pixels=b"\x00" * 4096)
    _png(folder / "images" / "small.png")
    rows = [{"image": f"images/bomb{i}.png", "label": "a"} for i in range(4)]
    rows += [{"image": "images/bomb.dcm", "label": "b"}, {"image": "images/small.png",
                                                          "label": "a"}]
    pd.DataFrame(rows).to_csv(folder / "bombs.csv", index=False)
    pd.DataFrame(rows[-1:]).to_csv(folder / "small.csv", index=False)
    return {"folder": folder, "png": png, "dcm": dcm}


def test_bombs_are_small_files(bombs: dict) -> None:
    assert bombs["png"].stat().st_size < 1_000_000
    assert bombs["dcm"].stat().st_size < 100_000


@pytest.mark.parametrize("kind", ["png", "dcm"])
def test_read_image_refuses_a_bomb_from_its_header(bombs: dict, kind: str) -> None:
    side = 12000 if kind == "png" else 16000
    with pytest.raises(ImageTooLargeError,
                       match=rf"image file bomb[0-9]?\.{'png' if kind == 'png' else 'dcm'} is "
                             rf"{side} × {side} = {side * side:,} pixels; expected at most "
                             r"67,108,864 pixels \(set AUDITKIT_MAX_PIXELS"):
        read_image(bombs[kind])


def test_pixel_limit_is_configurable(bombs: dict, monkeypatch: pytest.MonkeyPatch,
                                     tmp_path: Path) -> None:
    _png(tmp_path / "p.png", size=20)
    monkeypatch.setenv("AUDITKIT_MAX_PIXELS", "399")
    with pytest.raises(ImageTooLargeError, match="20 × 20 = 400 pixels; expected at most 399"):
        read_image(tmp_path / "p.png")
    monkeypatch.setenv("AUDITKIT_MAX_PIXELS", "400")
    assert read_image(tmp_path / "p.png").shape == (20, 20, 3)
    monkeypatch.setenv("AUDITKIT_MAX_PIXELS", "lots")
    with pytest.raises(ConfigError, match="AUDITKIT_MAX_PIXELS must be a positive whole number "
                                          "of pixels; got 'lots' instead"):
        read_image(tmp_path / "p.png")


def test_validation_names_each_bomb_and_goes_on(bombs: dict) -> None:
    ds = load_dataset(_spec(table="bombs.csv"), root=bombs["folder"], on_invalid="drop")
    assert ds.records["image"].tolist() == ["images/small.png"]
    assert sorted(p.kind for p in ds.problems) == ["image_too_large"] * 5
    assert {p.message.split(" is ")[0] for p in ds.problems} == {  # the table's entry
        f"image file '{e}'" for e in [f"images/bomb{i}.png" for i in range(4)]
        + ["images/bomb.dcm"]}


_CHILD = """
import resource, sys
from auditkit.data import DatasetSpec, load_dataset
spec = DatasetSpec(name="b", table=sys.argv[2], image_column="image", label_column="label",
                   classes=("a", "b"))
ds = load_dataset(spec, root=sys.argv[1], on_invalid="drop")
print(len(ds), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def _peak_kb(folder: Path, table: str) -> tuple[int, int]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-c", _CHILD, str(folder), table], env=env,
                         capture_output=True, text=True, timeout=120, check=True)
    n, peak = out.stdout.split()
    return int(n), int(peak)


def test_validation_memory_stays_bounded_on_bombs(bombs: dict) -> None:
    """Four 12000x12000 PNG bombs and a 16000x16000 DICOM, validated by four threads."""
    n_small, base = _peak_kb(bombs["folder"], "small.csv")
    n_bombs, peak = _peak_kb(bombs["folder"], "bombs.csv")
    assert n_small == n_bombs == 1
    assert (peak - base) / 1024 < BOMB_MEMORY_BOUND_MB, (base, peak)


# --------------------------------------------------------------------------- corrupt files


@pytest.fixture
def covid_with_corrupt_dicom(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "data" / "covid_cxr"
    rows = []
    for i in range(12):
        name = f"images/{i}.dcm"
        write_dicom(root / name, rows=8, cols=8)
        rows.append({"image": name, "label_covid": "COVID-19" if i % 2 else "No Finding",
                     "patient_id": f"p{i}", "sex": "", "age": "", "view": "PA"})
    (root / "images" / "3.dcm").write_bytes(b"DICM-but-not-really" * 20)
    (root / "images" / "5.dcm").write_bytes(b"")
    pd.DataFrame(rows).to_csv(root / "metadata.csv", index=False)
    monkeypatch.setenv("AUDITKIT_DATA_ROOT", str(tmp_path / "data"))
    return tmp_path / "data"


def test_a_corrupt_dicom_is_a_reported_row_not_a_crash(covid_with_corrupt_dicom: Path) -> None:
    spec, root = auditkit.find_dataset("covid_cxr", data_root=covid_with_corrupt_dicom)
    for check_images in (False, True):
        ds = load_dataset(spec, root=root, check_images=check_images, on_invalid="drop")
        assert len(ds) == 10
        bad = {p.line: p for p in ds.problems}
        assert set(bad) == {5, 7}
        assert all(p.kind == "unreadable_image" for p in bad.values())
    with pytest.raises(DataError, match="line 5: image file 'images/3.dcm'"):
        load_dataset(spec, root=root)


def test_auditkit_datasets_survives_a_corrupt_dicom(covid_with_corrupt_dicom: Path,
                                                     capsys: pytest.CaptureFixture) -> None:
    assert main(["datasets", "--data-root", str(covid_with_corrupt_dicom)]) == 0
    out = capsys.readouterr().out
    assert "covid_cxr (built-in): 10 images" in out and "2 row(s) with problems left out" in out


def test_landing_page_survives_a_corrupt_dicom(covid_with_corrupt_dicom: Path) -> None:
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    st.cache_data.clear()
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=120).run()
    assert not at.exception
    assert any("covid_cxr" in e.label and "10 images" in e.label for e in at.expander)


def test_dicom_header_limits_refuse_before_pixels_are_read(tmp_path: Path) -> None:
    """A DICOM claiming many frames is refused as well (frames count towards the limit)."""
    path = write_dicom(tmp_path / "m.dcm", rows=4096, cols=4096, pixels=b"\x00" * 64)
    import pydicom

    ds = pydicom.dcmread(path)
    ds.NumberOfFrames = 8
    ds.save_as(path)
    with pytest.raises(ImageTooLargeError, match="4096 × 4096 × 8 frames"):
        read_image(path)


@pytest.mark.parametrize("name", ["fitzpatrick17k", "covid_cxr", "lgg_mri"])
def test_header_size_matches_pil_on_real_images(data_root: Path, name: str) -> None:
    from auditkit.data import _png_jpeg_size

    table = pd.read_csv(data_root / name / "metadata.csv", dtype=str).head(25)
    checked = 0
    for rel in table["image"]:
        data = (data_root / name / rel).read_bytes()
        size = _png_jpeg_size(data)
        with Image.open(data_root / name / rel) as img:
            if img.format in ("PNG", "JPEG"):
                assert size == img.size, rel
                checked += 1
    assert checked == 25
