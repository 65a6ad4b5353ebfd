"""Audiences: the in-house review sees every group with its n; a release export does not.

On the three real demo audits (fairness on each model's held-out test split):
cxr-covid v1 on covid_cxr, derm-lesion v1 on fitzpatrick17k and mri-tumor v1 on lgg_mri.
Each audit runs once per session (the derm and mri ones are marked slow: ~10-20 s each on
an idle 2-core machine, under a minute at a load of 20).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from auditkit.cli import main
from auditkit.exceptions import ConfigError
from auditkit.export import IN_HOUSE_FILE, export_audit, in_house_groups
from auditkit.suppression import apply_small_cell_policy, suppressed_label

K = 10

#: What each demo audit is known to hold (read off the data; the tests check it).
#: ``small`` are groups of fewer than K patients the committee must see in-house;
#: ``hidden_in_release`` is whether the release copy hides any group at all.
DEMO = {
    "cxr-covid": {"model": "cxr-covid@v1", "dataset": "covid_cxr", "small": None,
                  "hidden_in_release": True},
    # fitzpatrick17k has no patient ids and every skin-type group of the test split holds
    # >= 10 images (type VI: 29), so nothing is hidden, even for release
    "derm-lesion": {"model": "derm-lesion@v1", "dataset": "fitzpatrick17k", "small": None,
                    "hidden_in_release": False},
    # lgg_mri's test split: 91 images of 3 Black patients, 21 of 1 Hispanic patient
    "mri-tumor": {"model": "mri-tumor@v1", "dataset": "lgg_mri",
                  "small": {("race", "black or african american"): (91, 3),
                            ("ethnicity", "hispanic or latino"): (21, 1)},
                  "hidden_in_release": True},
}


@pytest.fixture(scope="session", params=[
    "cxr-covid",
    pytest.param("derm-lesion", marks=pytest.mark.slow),
    pytest.param("mri-tumor", marks=pytest.mark.slow),
])
def demo_audit(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
               data_root: Path) -> tuple[str, Path]:
    """``(name, folder)`` of a real fairness audit of one demo model, run once a session."""
    name = request.param
    if name == "cxr-covid":  # the store tests' own audit: not run twice
        return name, request.getfixturevalue("real_audit")
    out = tmp_path_factory.mktemp("demo") / name
    cache = tmp_path_factory.mktemp("cache")
    # only what the export needs: the groups (not the photo-based skin-tone estimate, which
    # reads every derm image again and is half of that audit's time)
    assert main(["audit", "--model", DEMO[name]["model"], "--dataset", DEMO[name]["dataset"],
                 "--checks", "fairness", "--n-boot", "50", "--out", str(out), "--data-root",
                 str(data_root), "--cache-dir", str(cache),
                 "--options", json.dumps({"fairness": {"estimate_skin_tone": False}})]) == 0
    return name, out


def _families(rows: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for r in rows:
        out.setdefault(r["attribute"], []).append(r)
    return out


def test_in_house_review_shows_every_group_with_its_exact_n(
        demo_audit: tuple[str, Path]) -> None:
    name, real_audit = demo_audit
    groups = in_house_groups(real_audit)
    doc = json.loads((real_audit / IN_HOUSE_FILE).read_text())
    assert doc["audience"] == "in-house" == doc["small_cell_protection"]["audience"]
    n_test = doc["results"]["performance"]["n"]
    assert groups and all(g["n"] is not None for g in groups)
    for attribute, rows in _families(groups).items():
        if "×" in attribute:
            continue
        assert sum(g["n"] for g in rows) == n_test, attribute  # every image in some group
    small = [g for g in groups if g["n"] < K
             or (g["n_patients"] is not None and g["n_patients"] < K)]
    assert all(g["too_few"] for g in small)  # shown, with its own "too few to judge"
    known = DEMO[name]["small"]
    if known:
        by_key = {(g["attribute"], g["group"]): g for g in groups}
        for key, (n, n_patients) in known.items():
            assert (by_key[key]["n"], by_key[key]["n_patients"]) == (n, n_patients), key
            assert by_key[key]["too_few"], key
    release = json.loads((real_audit / "audit.json").read_text())
    assert release["audience"] == "release"
    hidden = {(g["attribute"], g["group"]) for g in release["results"]["fairness"]["groups"]
              if g.get("suppressed")}
    assert hidden <= {(g["attribute"], g["group"]) for g in groups}
    assert bool(hidden) == DEMO[name]["hidden_in_release"], sorted(hidden)
    assert {(g["attribute"], g["group"]) for g in small} <= hidden  # small: in-house only
    if known:
        assert set(known) <= hidden


def _subtraction_attack(release: dict, in_house: list[dict], frame: pd.DataFrame) -> None:
    """No hidden cell can be recovered as total minus the visible cells of its attribute."""
    exact = {(g["attribute"], g["group"]): g for g in in_house}
    rows = release["results"]["fairness"]["groups"]
    for attribute, family in _families(rows).items():
        hidden = [r for r in family if r.get("suppressed")]
        assert len(hidden) != 1, (attribute, hidden)  # one hidden cell = total - the rest
        for r in family:
            truth = exact[(attribute, r["group"])]
            small = truth["n"] < K or (truth["n_patients"] or K) < K
            if small:
                assert r.get("suppressed") and r["n"] is None, (attribute, r["group"])
            if r.get("suppressed"):
                assert all(v is None for k, v in r.items()
                           if k not in ("attribute", "group", "too_few", "suppressed", "kind",
                                        "attributes"))
    for attribute in {r["attribute"] for r in rows if "×" not in r["attribute"]}:
        if attribute not in frame.columns:
            continue
        counts = Counter(frame[attribute])
        label = suppressed_label(K)
        shown = {g: c for g, c in counts.items() if g != label}
        assert all(c >= K for c in shown.values()), (attribute, shown)
        merged = [g for g in (r["group"] for r in rows if r["attribute"] == attribute)
                  if g not in shown and g in {x["group"] for x in in_house}]
        assert len(merged) != 1, (attribute, merged)  # the relabelled cell mixes >= 2 groups


def test_release_export_passes_the_subtraction_test(demo_audit: tuple[str, Path],
                                                    tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    name, real_audit = demo_audit
    out = tmp_path / "bundle"
    assert main(["export", str(real_audit), "--release", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"withheld {IN_HOUSE_FILE}: in-house only" in printed
    assert sorted(p.name for p in out.iterdir()) == ["MANIFEST.json", "audit.json",
                                                     "predictions.csv"]
    manifest = json.loads((out / "MANIFEST.json").read_text())
    assert manifest["audience"] == "release" and manifest["small_cell_k"] == K
    assert {m["audience"] for m in manifest["files"].values()} == {"release"}
    release = json.loads((out / "audit.json").read_text())
    assert release["audience"] == "release" == release["small_cell_protection"]["audience"]
    frame = pd.read_csv(out / "predictions.csv", dtype=str, keep_default_na=False)
    _subtraction_attack(release, in_house_groups(real_audit), frame)
    # the in-house bundle, by contrast, has every count
    assert main(["export", str(real_audit), "--in-house", "--out", str(tmp_path / "in")]) == 0
    inside = json.loads((tmp_path / "in" / "audit.json").read_text())
    assert inside["audience"] == "in-house"
    assert all(g["n"] is not None for g in inside["results"]["fairness"]["groups"])
    # a stricter threshold hides more; a looser one than the audit's is refused
    stricter = export_audit(real_audit, tmp_path / "k20", k=20)
    assert stricter["small_cell_k"] == 20
    with pytest.raises(ConfigError, match="needs k >= the audit's own threshold 10; got 5"):
        export_audit(real_audit, tmp_path / "k5", k=5)
    with pytest.raises(ConfigError, match="must be new or empty"):
        export_audit(real_audit, out)


def test_audience_is_an_explicit_argument_of_the_rule() -> None:
    audit = {"results": {"fairness": {"groups": [
        {"attribute": "race", "group": "white", "n": 660, "n_patients": 20, "too_few": False},
        {"attribute": "race", "group": "black", "n": 91, "n_patients": 3, "too_few": True}]}}}
    inside, _ = apply_small_cell_policy(audit, None, k=K, count_patients=True,
                                        audience="in-house")
    outside, _ = apply_small_cell_policy(audit, None, k=K, count_patients=True,
                                         audience="release")
    assert [g["n"] for g in inside["results"]["fairness"]["groups"]] == [660, 91]
    assert [g["n"] for g in outside["results"]["fairness"]["groups"]] == [None, None]
    assert (inside["audience"], outside["audience"]) == ("in-house", "release")
    with pytest.raises(ConfigError, match="audience must be one of .'in-house', 'release'.; "
                                          "got 'public' instead"):
        apply_small_cell_policy(audit, None, k=K, audience="public")
