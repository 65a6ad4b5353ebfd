"""The committee's survey, acceptance criteria and stored evaluations."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

import auditkit
from auditkit import wording
from auditkit.cli import main
from auditkit.criteria import default_criteria, load_criteria, parse_criteria, task_type_of
from auditkit.evidence import read_table, write_table
from auditkit.exceptions import ConfigError
from auditkit.overview import (
    QUESTIONS,
    evaluate_audit,
    find_model_folder,
    judge_at_least,
    judge_at_most,
    judge_beats_baseline,
    list_evaluations,
    survey,
    training_mix,
)
from tests.conftest import BrightnessNet, write_model

CRITERIA = """
[criteria]
name = "Test committee"
task = "binary"
fixed_on = 2026-11-01
fixed_by = "committee"

[performance]
min_sensitivity = 0.5

[fairness]
metrics = ["accuracy"]
max_gap = 0.3
"""


def _audit(tmp_path: Path, model_dir: Path, dataset_dir: Path, *, checks: list[str],
           name: str = "a") -> Path:
    model = auditkit.load_model(model_dir, device="cpu")
    dataset = auditkit.load_dataset(dataset_dir / "auditkit.toml")
    out = tmp_path / name
    auditkit.run_audit(model=model, dataset=dataset, out_dir=out,
                       config=auditkit.AuditConfig(checks=checks, n_boot=100, device="cpu",
                                                   min_group_size=2, small_cell_k=0))
    return out


# --------------------------------------------------------------------------- judging rules


def test_at_least_uses_the_interval_and_says_how_many_more_would_settle_it() -> None:
    assert judge_at_least(0.9, 0.85, 0.95, 0.8) == ("meets", "")
    assert judge_at_least(0.6, 0.5, 0.7, 0.8) == ("concern", "")
    verdict, reason = judge_at_least(0.7, 0.6, 0.8, 0.75, n=100, unit="patients")
    # half-width 0.1, distance 0.05: n' = 100 * (0.1 / 0.05)^2 = 400, i.e. 300 more
    assert verdict == "cannot tell"
    assert reason == ("the interval (60% to 80%) reaches across 75%; about 300 more patients "
                      "would settle it if the value held")
    assert judge_at_least(None, None, None, 0.8)[0] == "not assessed"
    assert judge_at_least(0.9, None, None, 0.8)[0] == "cannot tell"


def test_at_most_mirrors_at_least() -> None:
    assert judge_at_most(0.05, 0.01, 0.09, 0.1) == ("meets", "")
    assert judge_at_most(0.3, 0.2, 0.4, 0.1) == ("concern", "")
    assert judge_at_most(0.1, 0.05, 0.15, 0.12)[0] == "cannot tell"


def test_a_trivial_baseline_puts_the_burden_on_the_model() -> None:
    # below the baseline is a concern even when the interval reaches above it
    assert judge_beats_baseline(0.59, 0.42, 0.73, 0.66)[0] == "concern"
    assert judge_beats_baseline(0.66, 0.5, 0.8, 0.66)[0] == "concern"  # equal is not better
    assert judge_beats_baseline(0.9, 0.8, 0.95, 0.66) == ("meets", "")
    assert judge_beats_baseline(0.7, 0.6, 0.8, 0.66)[0] == "cannot tell"


# --------------------------------------------------------------------------- criteria files


def test_criteria_hash_ignores_layout_and_changes_with_any_rule(tmp_path: Path) -> None:
    a = tmp_path / "a.toml"
    a.write_text(CRITERIA)
    b = tmp_path / "b.toml"
    b.write_text("# reformatted, with comments\n" + CRITERIA.replace("max_gap = 0.3",
                                                                    "max_gap   =   0.30  # pts"))
    c = tmp_path / "c.toml"
    c.write_text(CRITERIA.replace("max_gap = 0.3", "max_gap = 0.25"))
    assert load_criteria(a).hash == load_criteria(b).hash
    assert load_criteria(a).hash != load_criteria(c).hash
    assert len(load_criteria(a).hash) == 64


def test_bad_criteria_say_what_was_expected_and_found(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(CRITERIA.replace("min_sensitivity = 0.5", "min_sensitivity = 1.5\nfoo = 1")
                   .replace('metrics = ["accuracy"]', 'metrics = ["accurcy"]'))
    with pytest.raises(ConfigError) as err:
        load_criteria(bad)
    text = str(err.value)
    assert "(3 problems)" in text
    assert "performance.min_sensitivity: Input should be less than or equal to 1; got 1.5" in text
    assert "performance.foo: unknown key (not a criterion auditkit knows)" in text
    assert "fairness.metrics" in text and "accurcy" in text
    with pytest.raises(ConfigError, match="must be an existing TOML file"):
        load_criteria(tmp_path / "missing.toml")
    (tmp_path / "broken.toml").write_text("[criteria\n")
    with pytest.raises(ConfigError, match="must be valid TOML"):
        load_criteria(tmp_path / "broken.toml")
    with pytest.raises(ConfigError, match="criteria.task"):
        parse_criteria({"criteria": {"name": "x", "task": "regression", "fixed_on": "2026-01-01"}})


@pytest.mark.parametrize("task", ["binary", "multiclass", "multilabel", "segmentation"])
def test_default_criteria_ship_for_every_task_type(task: str) -> None:
    crit = default_criteria(task)
    assert crit.rules.criteria.task == task
    assert crit.source == f"default:{task}"
    assert crit.fixed_on == "2026-11-28"


def test_demo_model_folders_are_found_in_the_default_registry(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AUDITKIT_MODELS", raising=False)
    folder = find_model_folder("derm-lesion", "v1")
    assert folder is not None and (folder / "split.csv").is_file()
    assert json.loads((folder / "card.json").read_text())["version"] == "v1"
    assert find_model_folder("derm-lesion", "v9") is None


def test_task_type_of_demo_models() -> None:
    assert task_type_of({"output": "binary_logit", "class_names": ["a", "b"]}) == "binary"
    assert task_type_of({"output": "softmax", "class_names": ["a", "b", "c"]}) == "multiclass"
    assert task_type_of({"output": "multilabel_sigmoid", "class_names": ["a"]}) == "multilabel"
    assert task_type_of({"output": "segmentation", "class_names": ["bg", "t"]}) == "segmentation"


# --------------------------------------------------------------------------- the survey


def test_partial_audit_answers_every_question_and_says_what_was_not_assessed(
        tmp_path: Path, brightness_model_dir: Path, tiny_dataset_dir: Path) -> None:
    folder = _audit(tmp_path, brightness_model_dir, tiny_dataset_dir,
                    checks=["performance", "fairness"])
    result = survey(json.loads((folder / "audit.json").read_text()))
    assert [a.key for a in result.answers] == [q[0] for q in QUESTIONS]
    for a in result.answers:
        assert a.verdict in wording.VERDICTS
        assert a.label == wording.verdict_label(a.verdict)
        assert a.findings and a.headline
    for key, check in (("explain", "explain"), ("robustness", "robustness"),
                       ("privacy", "privacy")):
        answer = result.answer(key)
        assert answer.verdict == "not assessed"
        assert f"the {check} check did not run in this audit" in answer.headline
        assert f"--checks {check}" in answer.findings[0].reason
    assert result.answer("change").headline == "no earlier version compared"
    # the bright-means-malignant model is right on every image: beats the majority class
    acc = result.answer("accuracy")
    majority = acc.findings[0]
    assert majority.source == "baseline" and majority.verdict == "meets"
    assert "n = 24 images, 12 patients" in majority.evidence


def test_a_model_worse_than_the_majority_class_is_a_concern_in_plain_words(
        tmp_path: Path, tiny_dataset_dir: Path) -> None:
    # known truth: the inverted brightness model gets every image wrong
    inverted = write_model(tmp_path / "reg" / "inv" / "v1", BrightnessNet(2, scale=-4.0),
                           fmt="torchscript", name="inv")
    folder = _audit(tmp_path, inverted, tiny_dataset_dir, checks=["performance"])
    acc = survey(json.loads((folder / "audit.json").read_text())).answer("accuracy")
    assert acc.verdict == "concern"
    assert acc.headline == ("This model is right on 0% of test images; answering 'benign' for "
                            "every image would be right on 50%.")
    assert acc.findings[0].verdict == "concern"


def test_baselines_written_by_the_performance_check_are_read_when_present(
        tmp_path: Path, brightness_model_dir: Path, tiny_dataset_dir: Path) -> None:
    folder = _audit(tmp_path, brightness_model_dir, tiny_dataset_dir, checks=["performance"])
    audit = json.loads((folder / "audit.json").read_text())
    audit["results"]["performance"]["baselines"] = {
        "majority_class": {"class": "malignant", "accuracy": {"value": 1.0}}}
    acc = survey(audit).answer("accuracy")
    assert "answering 'malignant' for every image would be right on 100%" in acc.headline


def test_fairness_gap_is_judged_against_the_criterion_with_the_adjusted_interval(
        tmp_path: Path, brightness_model_dir: Path, tiny_dataset_dir: Path) -> None:
    folder = _audit(tmp_path, brightness_model_dir, tiny_dataset_dir,
                    checks=["performance", "fairness"])
    audit = json.loads((folder / "audit.json").read_text())
    crit = parse_criteria({"criteria": {"name": "t", "task": "binary", "fixed_on": "2026-01-01"},
                           "fairness": {"metrics": ["accuracy"], "max_gap": 0.3}})
    gaps = [d for d in audit["results"]["fairness"]["disparities"]
            if d["metric"] == "accuracy" and d["status"] == "assessed"]
    assert gaps
    fair = survey(audit, criteria=crit).answer("fairness")
    assert len(fair.findings) == len(gaps)
    for f, d in zip(fair.findings, gaps):
        expected = judge_at_most(d["gap"], *d["gap_ci_adjusted"], 0.3)[0]
        assert f.verdict == expected
        assert "(adjusted interval)" in f.evidence
    # a planted gap far above the criterion, with its interval clear of it, is a concern
    gaps[0].update(gap=0.6, gap_ci_adjusted=[0.45, 0.75], worst_group="b", best_group="a")
    planted = survey(audit, criteria=crit).answer("fairness")
    assert planted.verdict == "concern"
    assert planted.findings[0].verdict == "concern"


def test_groups_never_seen_in_training_are_a_concern(
        tmp_path: Path, brightness_model_dir: Path, tiny_dataset_dir: Path) -> None:
    # known truth: site "b" (images 12-23) is only in the test split
    images = [f"images/img_{i:03d}.png" for i in range(24)]
    (brightness_model_dir / "split.csv").write_text(
        "image,split\n" + "".join(f"{im},{'train' if i < 8 else 'test'}\n"
                                  for i, im in enumerate(images)))
    registry = brightness_model_dir.parents[1]
    folder = _audit(tmp_path, brightness_model_dir, tiny_dataset_dir,
                    checks=["performance", "fairness"])
    audit = json.loads((folder / "audit.json").read_text())
    mix = training_mix(folder, audit, registry=registry)
    assert mix is not None
    site = {r["group"]: r for r in mix["site"]}
    assert (site["a"]["n_train"], site["a"]["n_test"]) == (8, 4)
    assert (site["b"]["n_train"], site["b"]["n_test"]) == (0, 12)
    evidence = survey(audit, training=mix).answer("evidence")
    by_criterion = {f.criterion: f for f in evidence.findings}
    absent = by_criterion["site: every group of the test data was also in the training data"]
    assert absent.verdict == "concern" and evidence.verdict == "concern"
    assert "never seen in training: b (12 test images)" in absent.evidence
    assert by_criterion["sex: every group of the test data was also in the training data"
                        ].verdict == "meets"
    # the counts are kept per file version: a rewritten predictions table is counted again
    table = read_table(folder, "predictions")
    assert set(table["split"]) == {"train", "test"}
    table["split"] = "test"
    write_table(table, folder, "predictions")
    recounted = {r["group"]: r for r in training_mix(folder, audit, registry=registry)["site"]}
    assert (recounted["a"]["n_train"], recounted["a"]["n_test"]) == (0, 12)
    # weights that differ from the registry's card: no training mix is claimed
    audit["model"]["sha256"] = "0" * 64
    assert training_mix(folder, audit, registry=registry) is None


# --------------------------------------------------------------------------- evaluations


def test_changing_criteria_makes_a_new_evaluation_and_keeps_both(
        tmp_path: Path, brightness_model_dir: Path, tiny_dataset_dir: Path) -> None:
    folder = _audit(tmp_path, brightness_model_dir, tiny_dataset_dir,
                    checks=["performance", "fairness"])
    audit_bytes = (folder / "audit.json").read_bytes()
    first, path1 = evaluate_audit(folder)  # shipped default for a two-class model
    assert path1 == folder / "evaluations" / f"{default_criteria('binary').hash}.json"
    stored1 = path1.read_text()
    strict = tmp_path / "strict.toml"
    strict.write_text(CRITERIA.replace("min_sensitivity = 0.5", "min_sensitivity = 0.999"))
    second, path2 = evaluate_audit(folder, criteria=load_criteria(strict))
    assert path2 != path1 and path2.name == f"{load_criteria(strict).hash}.json"
    assert path1.read_text() == stored1  # the first evaluation is kept unchanged
    assert (folder / "audit.json").read_bytes() == audit_bytes  # never a silent edit
    # evaluating again under the same criteria keeps the first record
    evaluate_audit(folder)
    assert path1.read_text() == stored1
    records = list_evaluations(folder)
    assert {r["criteria_hash"] for r in records} == {first.criteria["hash"],
                                                     second.criteria["hash"]}
    rec = json.loads(path2.read_text())
    assert rec["audit_sha256"] == hashlib.sha256(audit_bytes).hexdigest()
    assert rec["criteria"]["name"] == "Test committee"
    assert rec["verdicts"]["accuracy"] == second.answer("accuracy").verdict


def test_audit_with_criteria_records_them_before_the_results(
        tmp_path: Path, brightness_model_dir: Path, tiny_dataset_dir: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    crit_file = tmp_path / "committee.toml"
    crit_file.write_text(CRITERIA)
    out = tmp_path / "run"
    assert main(["audit", "--model", str(brightness_model_dir), "--dataset",
                 str(tiny_dataset_dir), "--out", str(out), "--n-boot", "50", "--device", "cpu",
                 "--criteria", str(crit_file)]) == 0
    audit = json.loads((out / "audit.json").read_text())
    crit = load_criteria(crit_file)
    assert audit["criteria"]["hash"] == crit.hash
    assert audit["criteria"]["fixed_on"] == "2026-11-01"
    assert (out / "evaluations" / f"{crit.hash}.json").is_file()
    result = survey(audit)
    assert result.criteria["hash"] == crit.hash and result.criteria_recorded_in_audit
    line = wording.overview_criteria_line(result.criteria, recorded_in_audit=True,
                                          audit_created_at=audit["created_at"])
    assert "recorded in the audit when it ran" in line
    assert "Test committee" in capsys.readouterr().out
    # a tampered record is refused rather than trusted
    audit["criteria"]["rules"]["performance"]["min_sensitivity"] = 0.1
    with pytest.raises(ConfigError, match="does not match its rules"):
        survey(audit)


def test_bad_criteria_stop_the_audit_before_it_runs(
        tmp_path: Path, brightness_model_dir: Path, tiny_dataset_dir: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(CRITERIA.replace("max_gap = 0.3", "max_gap = -1"))
    out = tmp_path / "run"
    assert main(["audit", "--model", str(brightness_model_dir), "--dataset",
                 str(tiny_dataset_dir), "--out", str(out), "--criteria", str(bad)]) == 2
    assert "fairness.max_gap: Input should be greater than or equal to 0" in capsys.readouterr().err
    assert not out.exists()


# --------------------------------------------------------------------------- real demo model


@pytest.mark.slow
def test_cxr_covid_v1_is_a_concern_worse_than_answering_covid(
        tmp_path: Path, data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    out = tmp_path / "cxr"
    cache = tmp_path_factory.getbasetemp() / "demo-prediction-cache"
    assert main(["audit", "--model", "cxr-covid@v1", "--dataset", "covid_cxr", "--out", str(out),
                 "--n-boot", "200", "--device", "cpu", "--data-root", str(data_root),
                 "--cache-dir", str(cache)]) == 0
    result, _ = evaluate_audit(out)
    acc = result.answer("accuracy")
    assert acc.verdict == "concern"
    assert acc.headline == ("This model is right on 59% of test images; answering 'covid' for "
                            "every image would be right on 66%.")
    assert result.answers[0] is acc  # the first line of the survey
    assert "n = 61 images, 32 patients" in acc.findings[0].evidence
