"""Datasets: validation reports every problem at once; attributes; DICOM; real data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import auditkit
from auditkit.data import AttributeSpec, DatasetSpec, find_dataset, load_dataset
from auditkit.exceptions import ConfigError, DataError, DatasetNotFoundError
from tests.conftest import dicom_skeleton


def test_tiny_dataset_loads_with_groups(tiny_dataset_dir: Path) -> None:
    ds = load_dataset(tiny_dataset_dir)
    assert len(ds) == 24 and ds.has_patients
    assert ds.group_counts()["sex"] == {"female": 12, "male": 12}
    assert set(ds.records["skin"]) == {"I", "II", "III", "IV", "V", "VI"}
    assert ds.records.loc[0, "age"] == "<40" and ds.records.loc[0, "age_years"] == 20
    assert list(ds.records["label_index"][:2]) == [0, 1]
    assert len(ds.content_hash) == 64


def test_content_hash_changes_with_pixels(tiny_dataset_dir: Path) -> None:
    before = load_dataset(tiny_dataset_dir).content_hash
    assert load_dataset(tiny_dataset_dir).content_hash == before
    img = tiny_dataset_dir / "images" / "img_000.png"
    arr = np.asarray(Image.open(img)).copy()
    arr[0, 0] = 255 - arr[0, 0]
    Image.fromarray(arr).save(img)
    assert load_dataset(tiny_dataset_dir).content_hash != before


def test_every_problem_reported_at_once_with_lines(tiny_dataset_dir: Path) -> None:
    table = pd.read_csv(tiny_dataset_dir / "table.csv", dtype=str)
    table.loc[1, "image"] = "images/missing.png"          # line 3
    (tiny_dataset_dir / "images" / "broken.png").write_bytes(b"not an image")
    table.loc[2, "image"] = "images/broken.png"           # line 4
    table.loc[3, "label"] = "melanoma?"                   # line 5
    table.loc[4, "sex"] = "unknown-sex"                   # line 6
    table.loc[5, "skin"] = "9"                            # line 7
    table.loc[6, "age"] = "old"                           # line 8
    table.to_csv(tiny_dataset_dir / "table.csv", index=False)
    with pytest.raises(DataError, match=r"6 problem\(s\) in 6 of 24 rows") as info:
        load_dataset(tiny_dataset_dir)
    problems = {(p.line, p.kind) for p in info.value.problems}
    assert problems == {(3, "missing_image"), (4, "unreadable_image"), (5, "unknown_label"),
                        (6, "bad_attribute"), (7, "bad_attribute"), (8, "bad_attribute")}
    message = str(info.value)
    assert "line 5: label 'melanoma?' is not one of ['benign', 'malignant']" in message
    assert "expected a fitzpatrick skin type 1-6 or I-VI; got '9'" in message
    assert "--drop-invalid" in message
    # the user may go on with the valid rows; nothing is lost from the report
    ds = load_dataset(tiny_dataset_dir, on_invalid="drop")
    assert len(ds) == 18 and ds.n_rows_total == 24 and len(ds.problems) == 6


def test_missing_column_is_fatal(tiny_dataset_dir: Path) -> None:
    table = pd.read_csv(tiny_dataset_dir / "table.csv", dtype=str).drop(columns=["site"])
    table.to_csv(tiny_dataset_dir / "table.csv", index=False)
    with pytest.raises(DataError, match="attribute 'site' reads column 'site', which is not in"):
        load_dataset(tiny_dataset_dir, on_invalid="drop")


def test_empty_values_become_unknown_group(tiny_dataset_dir: Path) -> None:
    table = pd.read_csv(tiny_dataset_dir / "table.csv", dtype=str)
    table.loc[0, "sex"] = ""
    table.to_csv(tiny_dataset_dir / "table.csv", index=False)
    ds = load_dataset(tiny_dataset_dir)
    assert ds.records.loc[0, "sex"] == "unknown"


def test_duplicate_rows_are_flagged(tiny_dataset_dir: Path) -> None:
    table = pd.read_csv(tiny_dataset_dir / "table.csv", dtype=str)
    table = pd.concat([table, table.iloc[[0]]])
    table.to_csv(tiny_dataset_dir / "table.csv", index=False)
    with pytest.raises(DataError, match="listed more than once"):
        load_dataset(tiny_dataset_dir)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"kind": "height"}, "has kind 'height'; expected one of"),
    ({"kind": "skin_tone"}, "needs scale 'fitzpatrick' or 'monk'; got None instead"),
    ({"kind": "age", "bands": (60, 40)}, "bands must be strictly increasing"),
    ({"kind": "sex", "name": "label"}, "Attribute name must be an identifier other than"),
])
def test_bad_attribute_specs(kwargs: dict, message: str) -> None:
    args = {"name": "a", "column": "a", **kwargs}
    with pytest.raises(ConfigError, match=message):
        AttributeSpec(**args)


def test_monk_scale_and_bands() -> None:
    from auditkit.data import _attribute_group

    monk = AttributeSpec(name="tone", column="t", kind="skin_tone", scale="monk", bands=(4, 8))
    assert _attribute_group(monk, "3") == ("1-3", 3.0)
    assert _attribute_group(monk, "10") == ("8-10", 10.0)
    fitz = AttributeSpec(name="f", column="f", kind="skin_tone", scale="fitzpatrick", bands=(3, 5))
    assert _attribute_group(fitz, "VI")[0] == "V-VI"
    age = AttributeSpec(name="age", column="age", kind="age")
    assert _attribute_group(age, "045Y") == ("40-59", 45.0)
    assert _attribute_group(age, "006M")[0] == "<40"


def test_unknown_dataset_says_what_to_do(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(DatasetNotFoundError, match="expected a built-in name"):
        find_dataset("no-such-data")
    monkeypatch.setattr("auditkit.data.dataset_search_paths", lambda: [tmp_path])
    with pytest.raises(DatasetNotFoundError, match="pass --data-root DIR") as info:
        find_dataset("covid_cxr")
    assert str(tmp_path / "covid_cxr") in str(info.value)


def _write_dicom(path: Path, *, sex: str, age: str, ethnic: str, pixels: np.ndarray) -> None:
    ds = dicom_skeleton()
    ds.PatientSex, ds.PatientAge, ds.EthnicGroup = sex, age, ethnic
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = pixels.astype(np.uint16).tobytes()
    ds.save_as(path, enforce_file_format=True)


def test_dicom_attributes_come_from_tags_when_table_lacks_them(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    (tmp_path / "img").mkdir()
    rows = []
    stored = []
    for i, (sex, age, eth) in enumerate([("F", "034Y", "Hispanic"), ("M", "071Y", "White"),
                                         ("F", "", "")]):
        stored.append(rng.integers(0, 4096, size=(20, 24)))
        _write_dicom(tmp_path / "img" / f"{i}.dcm", sex=sex, age=age, ethnic=eth,
                     pixels=stored[-1])
        rows.append({"file": f"img/{i}.dcm", "finding": "covid" if i else "not_covid",
                     "sex": "M" if i == 2 else ""})
    pd.DataFrame(rows).to_csv(tmp_path / "t.csv", index=False)
    spec = DatasetSpec(
        name="dcm", table="t.csv", image_column="file", label_column="finding",
        classes=("not_covid", "covid"),
        attributes=(AttributeSpec(name="sex", column="sex", kind="sex"),
                    AttributeSpec(name="age", column="PatientAge", kind="age"),
                    AttributeSpec(name="ethnicity", column="ethnic", kind="ethnicity")),
    )
    ds = load_dataset(spec, root=tmp_path)
    assert ds.records["sex"].tolist() == ["female", "male", "male"]  # table wins when filled
    assert ds.records["age"].tolist() == ["<40", "60+", "unknown"]
    assert ds.records["ethnicity"].tolist() == ["Hispanic", "White", "unknown"]
    img = auditkit.read_image(tmp_path / "img" / "0.dcm")
    # 12 bits stored: 0..4095 maps to 0..255 (the full bit range, not each image's own range)
    assert img.shape == (20, 24) and img.dtype == np.uint8
    np.testing.assert_array_equal(img, np.round(stored[0] / 4095 * 255).astype(np.uint8))


@pytest.mark.parametrize(("name", "n", "attrs", "groups"), [
    ("fitzpatrick17k", 4087, {"skin_type", "skin_type_group", "skin_type_centaur", "source_site"},
     {"skin_type_group": {"I-II": 2127, "III-IV": 1384, "V-VI": 432, "unknown": 144}}),
    ("covid_cxr", 318, {"sex", "age", "view"},
     {"sex": {"female": 107, "male": 196, "unknown": 15}}),
    ("lgg_mri", 3929, {"race", "ethnicity", "sex", "age", "site"},
     {"race": {"black or african american": 374, "unknown": 20, "white": 3535}}),
])
def test_real_datasets_load_with_attributes(data_root: Path, name: str, n: int, attrs: set,
                                            groups: dict) -> None:
    ds = load_dataset(name, data_root=data_root)
    assert len(ds) == n and ds.n_rows_total == n and not ds.problems
    assert set(ds.attribute_names) == attrs
    for attr, counts in groups.items():
        assert ds.group_counts()[attr] == counts
    if name == "lgg_mri":
        assert ds.records["patient_id"].nunique() == 110
        assert ds.records["mask"].notna().all()
    if name == "covid_cxr":
        assert ds.summary()["class_counts"] == {"not_covid": 101, "covid": 217}
