"""Bad state on disk: unreadable audits, damaged cache entries, unwritable and reused folders."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

import auditkit
from auditkit.audit import list_audits, read_audit
from auditkit.cli import main
from auditkit.predict import predict
from tests.conftest import BrightnessNet, make_image_dataset, write_model
from tests.ui.conftest import tiny_covid  # noqa: F401 - a fixture

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "app.py", *sorted((REPO / "pages").glob("*.py"))]

#: audit.json contents that must be named, with why, and never crash anything
BAD_AUDITS = {
    "json_list": (b"[1, 2, 3]", "holds a JSON list; expected an object"),
    "created_at_number": (None, "lacks created_at as text (found int)"),
    "not_utf8": (b'{"model": "\xff\xfe caf\xe9"}', "is not UTF-8 text (byte 11)"),
    "empty": (b"", "is empty"),
    "truncated": (b'{"schema_version": "1.0", "model": {"na', "is not valid JSON"),
    "model_not_object": (b'{"model": "x", "dataset": {"name": "covid_cxr"}, "results": {}, '
                         b'"created_at": "2026-01-01"}', "lacks model name and version"),
}


def _good_audit() -> dict:
    return {"schema_version": "1.0", "created_at": "2026-01-02T03:04:05+00:00",
            "model": {"name": "cxr-tiny", "version": "v1"},
            "dataset": {"name": "covid_cxr", "n_images": 40}, "results": {"performance": {}}}


def _plant_bad_audits(root: Path) -> None:
    for name, (content, _why) in BAD_AUDITS.items():
        (root / name).mkdir(parents=True)
        if content is None:
            content = json.dumps({**_good_audit(), "created_at": 5}).encode()
        (root / name / "audit.json").write_bytes(content)


def test_list_audits_names_every_unreadable_file_and_why(tmp_path: Path) -> None:
    _plant_bad_audits(tmp_path)
    (tmp_path / "good").mkdir()
    (tmp_path / "good" / "audit.json").write_text(json.dumps(_good_audit()))
    readable, unreadable = list_audits(tmp_path)
    assert [a["path"] for a in readable] == [str(tmp_path / "good")]
    why = {Path(u["path"]).name: u["why"] for u in unreadable}
    assert set(why) == set(BAD_AUDITS)
    for name, (_content, reason) in BAD_AUDITS.items():
        assert why[name].startswith("audit.json " + reason), (name, why[name])
    with pytest.raises(auditkit.DataError, match="holds a JSON list"):
        read_audit(tmp_path / "json_list" / "audit.json")
    assert list_audits(tmp_path / "missing") == ([], [])


@pytest.mark.parametrize("page", PAGES, ids=[p.stem for p in PAGES])
def test_every_page_names_unreadable_audits_and_never_crashes(
        page: Path, tiny_covid: Path, tmp_path: Path,  # noqa: F811
        monkeypatch: pytest.MonkeyPatch) -> None:
    audits = tmp_path / "audits"
    monkeypatch.setenv("AUDITKIT_AUDITS", str(audits))
    _plant_bad_audits(audits)
    assert main(["audit", "--model", str(tiny_covid), "--dataset", "covid_cxr", "--checks",
                 "fairness", "--n-boot", "20", "--out", str(audits / "good")]) == 0
    st.cache_data.clear()
    at = AppTest.from_file(str(page), default_timeout=120).run()
    assert not at.exception, at.exception
    if page.name == "6_New_audit.py":  # writes a new audit; lists none, so names none
        return
    warning = " ".join(w.value for w in at.warning)
    assert f"{len(BAD_AUDITS)} audit folders could not be read" in warning
    for name in BAD_AUDITS:
        assert name in warning
    if page.name == "app.py":
        listed = at.dataframe[-1].value
        assert listed["folder"].tolist() == [str(audits / "good")]
    if page.name == "1_Fairness.py":  # the readable audit is still shown
        assert any("cxr" in m.value and "covid" in m.value for m in at.markdown)


# --------------------------------------------------------------------------- cache


def _corruptions(path: Path, good: bytes) -> dict[str, bytes]:
    import io

    def npz(**arrays: np.ndarray) -> bytes:
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        return buf.getvalue()

    with np.load(io.BytesIO(good)) as z:
        outputs, images = z["outputs"], z["images"]
    nan = outputs.copy()
    nan[0] = np.nan
    return {
        "empty": b"",
        "truncated": good[: len(good) // 2],
        "garbage": b"not a zip file at all" * 10,
        "wrong_length": npz(outputs=outputs[:-1], images=images[:-1]),
        "nan": npz(outputs=nan, images=images),
        "pickled": npz(outputs=np.array([{"x": 1}], dtype=object), images=images),
        "no_outputs": npz(images=images),
    }


def test_damaged_cache_entries_are_discarded_and_recomputed(tmp_path: Path) -> None:
    toml = make_image_dataset(tmp_path / "data", n=12)
    dataset = auditkit.load_dataset(toml)
    model = auditkit.load_model(write_model(tmp_path / "m", BrightnessNet(2), fmt="torchscript"),
                                device="cpu")
    cache = tmp_path / "cache"
    fresh = predict(model, dataset, cache_dir=cache)
    assert not fresh.from_cache
    entry = cache / "predictions" / f"{fresh.cache_key}.npz"
    good = entry.read_bytes()
    for name, damaged in _corruptions(entry, good).items():
        entry.write_bytes(damaged)
        again = predict(model, dataset, cache_dir=cache)
        assert not again.from_cache, name
        np.testing.assert_array_equal(again.outputs, fresh.outputs)
        assert predict(model, dataset, cache_dir=cache).from_cache, name  # rewritten, usable


def test_an_unwritable_cache_folder_is_a_clear_error(tmp_path: Path) -> None:
    toml = make_image_dataset(tmp_path / "data", n=8)
    dataset = auditkit.load_dataset(toml)
    model = auditkit.load_model(write_model(tmp_path / "m", BrightnessNet(2), fmt="torchscript"),
                                device="cpu")
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(auditkit.ConfigError,
                       match=r"The prediction cache folder .*a-file/predictions cannot be "
                             r"written \(.*\); expected a folder this user may write"):
        predict(model, dataset, cache_dir=blocker)


# --------------------------------------------------------------------------- CLI folders


@pytest.fixture
def cli_setup(tmp_path: Path) -> dict:
    toml = make_image_dataset(tmp_path / "data", n=24)
    folder = write_model(tmp_path / "reg" / "tiny" / "v1", BrightnessNet(2), fmt="torchscript")
    args = ["audit", "--model", str(folder), "--dataset", str(toml), "--n-boot", "20"]
    return {"args": args, "tmp": tmp_path}


def test_unwritable_audit_and_cache_folders_exit_2(cli_setup: dict, capsys, monkeypatch) -> None:
    blocker = cli_setup["tmp"] / "a-file"
    blocker.write_text("x")
    assert main([*cli_setup["args"], "--out", str(blocker / "audit")]) == 2
    err = capsys.readouterr().err
    assert "auditkit: error: The audit folder" in err and "cannot be written" in err
    monkeypatch.setenv("AUDITKIT_CACHE", str(blocker / "cache"))
    assert main([*cli_setup["args"], "--out", str(cli_setup["tmp"] / "o")]) == 2
    err = capsys.readouterr().err
    assert "auditkit: error: The auditkit cache folder" in err and "Set AUDITKIT_CACHE" in err
    assert "Traceback" not in err


def test_a_used_out_folder_is_refused_unless_overwrite_which_clears_stale_evidence(
        cli_setup: dict, capsys: pytest.CaptureFixture) -> None:
    out = cli_setup["tmp"] / "out"
    assert main([*cli_setup["args"], "--out", str(out)]) == 0
    first = (out / "audit.json").read_bytes()
    assert main([*cli_setup["args"], "--out", str(out), "--checks", "fairness"]) == 2
    assert "is not empty; expected a new or empty folder" in capsys.readouterr().err
    assert (out / "audit.json").read_bytes() == first  # nothing stored earlier is lost
    # stale evidence of another run, and a file that is not auditkit's
    (out / "robustness.csv").write_text("image,attack\nTCGA_OLD,pgd\n")
    (out / "attributions.npz").write_bytes(b"old")
    (out / "notes.txt").write_text("reviewer notes")
    assert main([*cli_setup["args"], "--out", str(out), "--overwrite", "--checks",
                 "fairness"]) == 0
    assert not (out / "robustness.csv").exists() and not (out / "attributions.npz").exists()
    assert (out / "notes.txt").read_text() == "reviewer notes"
    audit = json.loads((out / "audit.json").read_text())
    assert "fairness" in audit["results"]
    assert sorted(p.name for p in out.parent.iterdir() if p.name.startswith(".")) == []


def test_a_failed_audit_never_destroys_the_one_stored_before(
        cli_setup: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    out = cli_setup["tmp"] / "out"
    assert main([*cli_setup["args"], "--out", str(out)]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def broken(ctx: object) -> dict:
        raise auditkit.ConfigError("this check fails on purpose")

    monkeypatch.setattr("auditkit.fairness.run_check", broken)
    assert main([*cli_setup["args"], "--out", str(out), "--overwrite", "--checks",
                 "fairness"]) == 2
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert not [p for p in out.parent.iterdir() if p.name.endswith(".partial")]


def test_a_page_run_into_an_unwritable_audits_folder_says_so(
        tiny_covid: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    monkeypatch.setenv("AUDITKIT_AUDITS", str(blocker / "audits"))
    at = AppTest.from_file(str(REPO / "pages" / "1_Fairness.py"), default_timeout=120).run()
    at.sidebar.button(key="fairness_run").click().run()
    assert not at.exception, at.exception
    assert "The audit could not be run or saved" in at.error[0].value
    assert "cannot be written" in at.code[0].value
