"""Every sentence of the statistical judgements, tested against the numbers it describes."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from auditkit import wording
from auditkit.fairness import FairnessAudit, describe_gap
from auditkit.privacy import describe_exposure


def _gap(**kw):
    base = {"attribute": "skin_type", "metric": "sensitivity", "status": "assessed",
            "worst_group": "V", "best_group": "II", "worst": 1 / 3, "best": 0.8,
            "n_worst": 12, "n_best": 40, "units_worst": 7, "units_best": 30,
            "denominator_of": "positives", "gap": 0.4667, "gap_ci": [0.10, 0.83],
            "p_adjusted": 0.012, "real": True, "family_size": 16,
            "minimum_detectable_gap": 0.31}
    return {**base, **kw}


@pytest.mark.parametrize(("caught", "words"), [
    (1 / 3, "misses 67%"), (0.5, "misses 50%"), (0.9, "misses 10%"), (1.0, "misses none"),
    (0.0, "misses all"), (0.05, "misses 95%"),
])
def test_miss_rate_words_match_the_rate(caught, words) -> None:
    assert wording.share_missed(caught) == words
    assert "nearly all" not in wording.share_missed(caught)


def test_gap_sentence_states_the_adjusted_interval_and_n_in_patients() -> None:
    text = describe_gap(_gap(), "malignant")
    assert "misses 67% of malignant cases (12 positives from 7 patients)" in text
    assert "it misses 20% (40 positives from 30 patients)" in text
    assert "Gap 47 points (simultaneous 95% interval 10 to 83)" in text
    assert "larger than chance (p = 0.012, adjusted for 16 comparisons)" in text


def test_cannot_tell_sits_beside_the_adjusted_interval_and_the_power() -> None:
    text = describe_gap(_gap(real=False, gap_ci=[0.0, 0.52], p_adjusted=0.31), "malignant")
    assert "simultaneous 95% interval 0 to 52" in text
    assert "cannot tell whether this gap is real or chance (p = 0.310" in text
    assert "only a gap of about 31 points or more would have been detected" in text
    assert "larger than chance" not in text


def test_not_assessed_gives_the_real_reason() -> None:
    groups = [
        {"group": "female", "hidden_by_small_cell_rule": True, "too_few": False},
        {"group": "unknown", "is_unknown": True, "too_few": False},
        {"group": "male", "too_few": False, "n": 38, "n_patients": 19,
         "sensitivity": {"too_few": True, "denominator": 6, "denominator_patients": 4,
                         "denominator_of": "positives"}},
        {"group": "other", "too_few": True, "n": 4, "n_patients": 2},
    ]
    reason = wording.gap_not_assessed_reason(groups, ["sensitivity"], 10)
    assert "female hidden by small-cell protection" in reason
    assert "male (6 positives from 4 patients for sensitivity)" in reason
    assert "other (4 images from 2 patients) below 10 images or patients" in reason
    assert "unknown not compared" in reason


def test_not_assessed_reason_from_an_audit_names_the_suppressed_group() -> None:
    rng = np.random.default_rng(0)
    n = 200
    g = np.where(np.arange(n) < 6, "small", "large")
    y = (rng.random(n) < 0.4).astype(int)
    p1 = np.clip(0.3 + 0.4 * y + 0.2 * rng.random(n), 0, 1)
    res = FairnessAudit(n_boot=0, n_permutations=100, small_cell_k=10).compute(
        y=y, pred=(p1 >= 0.5).astype(int), proba=np.column_stack([1 - p1, p1]), positive=1,
        groups=pd.DataFrame({"site": g}))
    d = next(d for d in res["disparities"] if d["metric"] == "accuracy")
    assert d["status"] == "not_assessed"
    assert "small hidden by small-cell protection" in d["reason"]


@pytest.mark.parametrize(("entry", "expected"), [
    ({"model": 0.59, "baseline": 0.656, "difference": -0.066, "ci": [-0.39, 0.26],
      "class": "covid"},
     "The model is less accurate than always answering 'covid' would be: accuracy 59% against "
     "66%"),
    ({"model": 0.40, "baseline": 0.656, "difference": -0.256, "ci": [-0.39, -0.12],
      "class": "covid"}, "The model is worse than always answering 'covid'"),
    ({"model": 0.80, "baseline": 0.52, "difference": 0.28, "ci": [0.2, 0.36],
      "class": "benign"}, "the model beats this baseline"),
])
def test_majority_baseline_sentence(entry, expected) -> None:
    text = wording.baseline_sentence("majority_class", entry)
    assert expected in text
    assert f"{100 * entry['difference']:+.0f} points" in text


def test_chance_sentence_follows_the_interval() -> None:
    no = wording.baseline_sentence("chance_auroc", {"model": 0.56, "baseline": 0.5,
                                                    "difference": 0.06, "ci": [-0.04, 0.16]})
    assert "no better than chance" in no and "-4 to +16" in no
    yes = wording.baseline_sentence("chance_auroc", {"model": 0.71, "baseline": 0.5,
                                                     "difference": 0.21, "ci": [0.03, 0.34]})
    assert "better than chance" in yes and "no better" not in yes


def test_cli_headline_uses_the_evaluated_n() -> None:
    perf = {"n": 820, "n_patients": None, "evaluated_on": "the model's held-out test split",
            "metrics": {"accuracy": {"value": 0.585, "ci": [0.55, 0.62]}}}
    text = wording.performance_headline(perf)
    assert text.startswith("accuracy 58% (55% to 62%) on n = 820 images")
    assert "4,087" not in text and "4087" not in text


def test_membership_finding_is_symmetric() -> None:
    text = describe_exposure(0.61, [0.49, 0.71], n_attacks=3)
    assert "could not tell" in text
    assert "cannot rule out chance" in text and "leakage up to an AUC of 0.71" in text
    assert "strongest of 3 attacks" in text


def test_correction_note_counts_the_family() -> None:
    note = wording.correction_note({"size": 16, "alpha": 0.05, "n_permutations": 1000,
                                    "codings": {"skin tone": ["skin_type", "skin_type_group"]}})
    assert "16 attribute × metric comparisons" in note and "1,000 permutations" in note
    assert "skin_type, skin_type_group are codings of one variable (skin tone)" in note
    assert re.search(r"held at 5%", note)


def test_metric_names_keep_their_case_at_the_start_of_a_sentence() -> None:
    text = wording.gap_sentence(_gap(metric="auroc", worst=0.61, best=0.78,
                                     denominator_of="positives or negatives (the fewer)"))
    assert text.startswith("AUROC for skin type: V 61%")


def test_without_patient_ids_no_sentence_mentions_patients() -> None:
    rng = np.random.default_rng(1)
    n = 300
    g = np.where(rng.random(n) < 0.5, "a", "b")
    y = (rng.random(n) < 0.4).astype(int)
    p1 = np.clip(0.3 + 0.4 * y + 0.3 * rng.random(n), 0, 1)
    res = FairnessAudit(n_boot=0, n_permutations=200).compute(
        y=y, pred=(p1 >= 0.5).astype(int), proba=np.column_stack([1 - p1, p1]), positive=1,
        groups=pd.DataFrame({"site": g}))
    text = " ".join(describe_gap(d) for d in res["disparities"]) + res["correction"]
    assert "patient" not in text
    assert "images are shuffled" in res["correction"]
    assert wording.fmt_points(0.01) == "1 point" and wording.fmt_points(-0.012) == "-1 point"
