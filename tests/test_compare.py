"""Version comparison: paired differences, McNemar, gaps, non-inferiority, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from statsmodels.stats.contingency_tables import mcnemar

import auditkit
from auditkit._local import installation_secret
from auditkit._metrics import MetricInputs, compute_metrics, percentile_interval
from auditkit.cli import main
from auditkit.compare import (
    COMPARED_METRICS,
    CompareSettings,
    compare_audits,
    compare_predictions,
    paired_bootstrap,
    previous_version_comparison,
    version_trend,
)
from auditkit.compare._paired import build_columns, metric_from_sums
from auditkit.stats import bootstrap_stepdown, westfall_young_stepdown
from tests.conftest import write_model

CLASSES = ["benign", "malignant"]


# --------------------------------------------------------------------------- fixtures


class ThresholdNet(torch.nn.Module):
    """Calls an image malignant when its mean (normalised) brightness exceeds ``threshold``."""

    def __init__(self, threshold: float) -> None:
        super().__init__()
        self.threshold = torch.nn.Parameter(torch.tensor(threshold))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = x.mean(dim=(1, 2, 3)).unsqueeze(1) - self.threshold
        return torch.cat([-3 * m, 3 * m], dim=1)


def make_dataset(folder: Path, *, n: int = 80, seed: int = 0, shift: int = 0) -> Path:
    """Images of random brightness; the label follows brightness with noise (so models err)."""
    rng = np.random.default_rng(seed)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        level = int(rng.integers(20, 236))
        label = "malignant" if level + rng.normal(0, 45) > 128 else "benign"
        arr = np.full((8, 8, 3), min(255, level + shift), dtype=np.uint8)
        name = f"images/img_{i:03d}.png"
        Image.fromarray(arr).save(folder / name)
        rows.append({"image": name, "label": label, "patient_id": f"PID-QX-{i // 2:04d}",
                     "sex": "F" if (i // 2) % 2 else "M",
                     "site": "rare" if i < 4 else ("a" if i < n // 2 else "b")})
    pd.DataFrame(rows).to_csv(folder / "table.csv", index=False)
    (folder / "auditkit.toml").write_text(
        'name = "tiny"\ntable = "table.csv"\nimage_column = "image"\nlabel_column = "label"\n'
        'classes = ["benign", "malignant"]\npatient_column = "patient_id"\n'
        '[[attributes]]\nname = "sex"\ncolumn = "sex"\nkind = "sex"\n'
        '[[attributes]]\nname = "site"\ncolumn = "site"\nkind = "categorical"\n')
    return folder


def write_version(registry: Path, version: str, threshold: float, test_images: list[str],
                  all_images: list[str]) -> Path:
    folder = write_model(registry / "tiny" / version, ThresholdNet(threshold), fmt="torchscript",
                         size=8, version=version)
    split = pd.DataFrame({"image": all_images,
                          "split": ["test" if im in test_images else "train" for im in all_images]})
    split.to_csv(folder / "split.csv", index=False)
    return folder


@pytest.fixture
def two_versions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    data = make_dataset(tmp_path / "data" / "tiny")
    images = pd.read_csv(data / "table.csv")["image"].tolist()
    reg = tmp_path / "reg"
    # v1 trained on the first 10 images, v2 on images 10-19: 60 images held out from both
    write_version(reg, "v1", 0.0, images[10:], images)
    write_version(reg, "v2", 0.4, images[:10] + images[20:], images)
    monkeypatch.setenv("AUDITKIT_MODELS", str(reg))
    audits = {}
    for v in ("v1", "v2"):
        out = tmp_path / "audits" / f"tiny@{v}"
        assert main(["audit", "--model", f"tiny@{v}", "--dataset", str(data), "--out", str(out),
                     "--checks", "fairness", "--n-boot", "50", "--device", "cpu",
                     "--min-group-size", "3"]) == 0
        audits[v] = out
    return {"data": data, "registry": reg, "audits": audits, "images": images}


def synthetic(n: int = 3000, seed: int = 0, n_classes: int = 3) -> dict:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_classes, n)
    out = {"y": y}
    for v, acc in (("a", 0.7), ("b", 0.75)):
        right = rng.random(n) < acc
        pred = np.where(right, y, (y + rng.integers(1, n_classes, n)) % n_classes)
        proba = rng.dirichlet(np.ones(n_classes), n)
        proba[np.arange(n), pred] += 1.0
        out[f"proba_{v}"] = proba / proba.sum(axis=1, keepdims=True)
        out[f"pred_{v}"] = out[f"proba_{v}"].argmax(axis=1)
    out["groups"] = pd.DataFrame({"sex": rng.choice(["F", "M"], n),
                                  "skin": rng.choice(["I-II", "III-IV", "V-VI"], n,
                                                     p=[0.6, 0.3, 0.1])})
    out["patients"] = np.array([f"p{i // 3}" for i in range(n)])
    return out


# --------------------------------------------------------------------------- the engine


def test_paired_point_estimates_equal_the_audit_metrics_per_group() -> None:
    d = synthetic()
    res = compare_predictions(**d, positive=1, class_names=["b", "m", "n"], n_boot=50)
    for row in res["groups"]:
        mask = (np.ones(len(d["y"]), bool) if row["attribute"] == "overall"
                else (d["groups"][row["attribute"]] == row["group"]).to_numpy())
        for v in ("a", "b"):
            point, _ = compute_metrics(MetricInputs(y=d["y"][mask], pred=d[f"pred_{v}"][mask],
                                                    proba=d[f"proba_{v}"][mask], positive=1),
                                       metrics=list(COMPARED_METRICS))
            for metric in COMPARED_METRICS:
                assert row["metrics"][metric][v] == pytest.approx(point[metric], abs=1e-12), (
                    row["group"], metric)
        assert row["n_patients"] == len(set(d["patients"][mask]))


def test_resamples_do_not_depend_on_the_chunk_size() -> None:
    d = synthetic(n=500)
    cols = build_columns(y=d["y"], pred_a=d["pred_a"], pred_b=d["pred_b"], proba_a=d["proba_a"],
                         proba_b=d["proba_b"], positive=1, n_classes=3)
    codes = [np.zeros(500, int), pd.factorize(d["groups"]["skin"])[0]]
    one = paired_bootstrap(cols.values, codes, patients=d["patients"], n_boot=60,
                           rng=np.random.default_rng(3), chunk=60)
    many = paired_bootstrap(cols.values, codes, patients=d["patients"], n_boot=60,
                            rng=np.random.default_rng(3), chunk=7)
    for a, b in zip(one, many):
        np.testing.assert_allclose(a.replicates, b.replicates, rtol=1e-6, atol=1e-5)  # float32 sums


def test_patients_are_resampled_together_for_both_versions() -> None:
    # every patient has two images, both right under A and both wrong under B, or the
    # reverse: a resample of images would split pairs, one of patients never does
    y = np.zeros(40, int)
    pred_a = np.repeat([0, 1], 20)
    pred_b = 1 - pred_a
    proba = np.full((40, 2), 0.5)
    cols = build_columns(y=y, pred_a=pred_a, pred_b=pred_b, proba_a=proba, proba_b=proba,
                         positive=1, n_classes=2)
    patients = np.repeat(np.arange(20), 2)
    (gs,) = paired_bootstrap(cols.values, [np.zeros(40, int)], patients=patients, n_boot=200,
                             rng=np.random.default_rng(0))
    n_right = gs.replicates[:, 0, cols.index["a:correct"]]
    assert np.all(n_right % 2 == 0)  # whole patients only
    # and the two versions' sums come from the same draw: they add up to the total
    total = gs.replicates[:, 0, cols.index["n"]]
    np.testing.assert_array_equal(n_right + gs.replicates[:, 0, cols.index["b:correct"]], total)


@pytest.mark.parametrize("rho", [0.8])
def test_simulation_paired_interval_is_narrower_and_covers_the_truth(rho: float) -> None:
    """Correlated versions with a known accuracy difference: coverage and width."""
    rng = np.random.default_rng(2026)
    n, reps, n_boot = 300, 200, 200
    p_a, p_b = 0.70, 0.76
    covered, paired_w, unpaired_w = 0, [], []
    from scipy.stats import norm

    for r in range(reps):
        # Gaussian copula: both versions tend to fail on the same hard images
        z = rng.multivariate_normal([0, 0], [[1, rho], [rho, 1]], size=n)
        right_a = z[:, 0] < norm.ppf(p_a)
        right_b = z[:, 1] < norm.ppf(p_b)
        y = np.zeros(n, int)
        pred_a, pred_b = np.where(right_a, 0, 1), np.where(right_b, 0, 1)
        proba = np.full((n, 2), 0.5)
        cols = build_columns(y=y, pred_a=pred_a, pred_b=pred_b, proba_a=proba, proba_b=proba,
                             positive=1, n_classes=2)
        (gs,) = paired_bootstrap(cols.values, [np.zeros(n, int)], patients=None, n_boot=n_boot,
                                 rng=np.random.default_rng(r))
        diff = (metric_from_sums(gs.replicates[:, 0], cols.index, "b", "accuracy")
                - metric_from_sums(gs.replicates[:, 0], cols.index, "a", "accuracy"))
        lo, hi = percentile_interval(diff, 0.95)
        covered += lo <= p_b - p_a <= hi
        paired_w.append(hi - lo)
        # unpaired: two independent bootstraps (what two separate audits would give)
        rng_u = np.random.default_rng(10_000 + r)
        _, ra = compute_metrics(MetricInputs(y=y, pred=pred_a, proba=proba, positive=1),
                                n_boot=n_boot, rng=rng_u, metrics=["accuracy"])
        _, rb = compute_metrics(MetricInputs(y=y, pred=pred_b, proba=proba, positive=1),
                                n_boot=n_boot, rng=rng_u, metrics=["accuracy"])
        ulo, uhi = percentile_interval(rb["accuracy"] - ra["accuracy"], 0.95)
        unpaired_w.append(uhi - ulo)
    coverage = covered / reps
    print(f"coverage {coverage:.3f}, mean width paired {np.mean(paired_w):.4f}, "
          f"unpaired {np.mean(unpaired_w):.4f}")
    # nominal 95%; the binomial sd over 200 replications is 1.5 points
    assert 0.91 <= coverage <= 0.985, coverage
    # both versions fail on many of the same images: pairing removes that shared noise
    assert np.mean(paired_w) < 0.75 * np.mean(unpaired_w), (np.mean(paired_w),
                                                           np.mean(unpaired_w))


def test_simulation_stepdown_controls_the_familywise_error() -> None:
    """12 groups, no true difference anywhere: the corrected family errs in about 5% of runs.

    The comparison's family-wise control is :func:`auditkit.stats.bootstrap_stepdown`,
    which runs the fairness gaps' own :func:`westfall_young_stepdown` on the studentized
    paired bootstrap (one step-down implementation for both).
    """
    rng = np.random.default_rng(7)
    reps, n, n_groups, n_boot = 200, 600, 12, 300
    any_raw, any_adj = 0, 0
    for r in range(reps):
        y = np.zeros(n, int)
        right_a = rng.random(n) < 0.7
        right_b = np.where(rng.random(n) < 0.5, right_a, rng.random(n) < 0.7)  # same rate
        proba = np.full((n, 2), 0.5)
        cols = build_columns(y=y, pred_a=np.where(right_a, 0, 1), pred_b=np.where(right_b, 0, 1),
                             proba_a=proba, proba_b=proba, positive=1, n_classes=2)
        groups = np.arange(n) % n_groups
        (gs,) = paired_bootstrap(cols.values, [groups], patients=None, n_boot=n_boot,
                                 rng=np.random.default_rng(r))
        point = (metric_from_sums(gs.point, cols.index, "b", "accuracy")
                 - metric_from_sums(gs.point, cols.index, "a", "accuracy"))
        boot = (metric_from_sums(gs.replicates, cols.index, "b", "accuracy")
                - metric_from_sums(gs.replicates, cols.index, "a", "accuracy"))
        res = bootstrap_stepdown(point, boot, alpha=0.05)
        raw = [percentile_interval(boot[:, g], 0.95) for g in range(n_groups)]
        any_raw += any(lo > 0 or hi < 0 for lo, hi in raw)
        any_adj += bool(res.reject.any())
        # verdict, adjusted p-value and interval never disagree
        assert np.array_equal(res.reject, res.p_adjusted <= 0.05)
        assert np.array_equal(res.reject, np.abs(point) > res.half_width)
        # the whole family's critical value exceeds a single test's 1.96
        assert (res.half_width_first / res.standard_error > 1.96).all()
    print(f"family-wise error: corrected {any_adj / reps:.3f}, uncorrected {any_raw / reps:.3f}")
    assert any_adj / reps <= 0.10, any_adj / reps
    assert any_raw / reps >= 0.25, any_raw / reps  # uncorrected, 12 tests err far more often


def test_stepdown_finds_a_real_difference() -> None:
    rng = np.random.default_rng(1)
    est = np.array([0.10, 0.0, 0.01])
    reps = est + rng.normal(0, 0.02, size=(1000, 3))
    res = bootstrap_stepdown(est, reps, alpha=0.05)
    p = res.p_adjusted
    assert p[0] < 0.01 and p[1] > 0.5 and p[2] > 0.2
    assert list(res.reject) == [True, False, False]
    crit = res.half_width_first / res.standard_error
    assert (1.96 < crit).all() and (crit < 3.0).all()


def test_bootstrap_stepdown_is_westfall_young_on_studentized_replicates() -> None:
    """One implementation: the comparison's step-down is the fairness gaps' step-down."""
    rng = np.random.default_rng(4)
    est = np.array([0.08, -0.01, np.nan, 0.03, 0.0])
    reps = est + rng.normal(0, 1, size=(400, 5)) * np.array([0.02, 0.03, 0.02, 0.015, 0.0])
    reps[:, 2] = np.nan
    res = bootstrap_stepdown(est, reps, alpha=0.05)
    se = np.nanstd(reps[:, [0, 1, 3]], axis=0, ddof=1)
    direct = westfall_young_stepdown(np.abs(est[[0, 1, 3]]) / se,
                                     np.abs(reps[:, [0, 1, 3]] - est[[0, 1, 3]]) / se,
                                     method="maxT")
    assert np.allclose(res.p_adjusted[[0, 1, 3]], direct.p_adjusted)
    assert np.allclose(res.half_width[[0, 1, 3]], direct.critical * se)
    assert np.isnan(res.p_adjusted[2]) and np.isnan(res.half_width[2])
    # a difference no resample moves is certain: here exactly 0, so p = 1, width 0
    assert res.p_adjusted[4] == 1.0 and res.half_width[4] == 0.0 and not res.reject[4]
    assert res.family_size == 4
    one_sided = bootstrap_stepdown(est, reps, alpha=0.05, alternative="greater")
    assert one_sided.reject[0] and not one_sided.reject[1]
    with pytest.raises(ValueError, match="method must be 'minP' or 'maxT'; got 'max' instead"):
        westfall_young_stepdown(est, reps, method="max")
    with pytest.raises(ValueError, match="alternative must be 'two-sided' or 'greater'; got "
                                         "'less' instead"):
        bootstrap_stepdown(est, reps, alternative="less")
    with pytest.raises(ValueError, match=r"replicates must have shape \(B, 5\); got \(400, 4\)"):
        bootstrap_stepdown(est, reps[:, :4])


def test_maxt_decision_and_critical_value_agree() -> None:
    """As for min-P (tests/test_statistics.py): verdict, adjusted p and critical value agree."""
    rng = np.random.default_rng(9)
    for _ in range(50):
        h = int(rng.integers(1, 8))
        reps = np.abs(rng.normal(size=(500, h)))
        obs = np.abs(rng.normal(size=h) * 2 + rng.uniform(0, 4, h))
        res = westfall_young_stepdown(obs, reps, alpha=0.05, method="maxT")
        assert np.array_equal(res.reject, obs > res.critical)
        assert np.array_equal(res.reject, res.p_adjusted <= 0.05)
        assert (res.p_adjusted >= res.p_raw - 1e-12).all()
        assert (res.critical <= res.critical_first + 1e-12).all()  # stepping down only lowers it


def test_large_family_can_still_call_a_clear_change() -> None:
    """168 differences, 1,000 resamples (the demo's sizes): a clear change is still called.

    A min-P step-down cannot reject anything here (its resolution, 1/1001, is coarser than
    0.05/168); max-T on studentized differences can, and leaves the null members alone.
    """
    rng = np.random.default_rng(2)
    est = np.zeros(168)
    est[0] = 0.2
    reps = est + rng.normal(0, 0.03, size=(1000, 168))
    res = bootstrap_stepdown(est, reps, alpha=0.05)
    assert res.reject[0] and not res.reject[1:].any()
    assert np.isfinite(res.half_width).all() and (res.half_width < 0.2).all()
    assert 3.0 < (res.half_width_first / res.standard_error).min() < 4.5  # ~ Šidák for 168
    minp = westfall_young_stepdown(np.abs(est) / res.standard_error,
                                   np.abs(reps - est) / res.standard_error, method="minP")
    assert not minp.reject.any()
    # and through the whole comparison: a planted change in one group is called
    d = synthetic(n=3000)
    skin = d["groups"]["skin"].to_numpy()
    d["pred_b"] = np.where(skin == "I-II", d["y"], d["pred_b"])  # B right on every I-II image
    res = compare_predictions(**d, positive=1, class_names=["b", "m", "n"], n_boot=1000,
                              metrics=["accuracy", "sensitivity", "auroc"])
    row = next(r for r in res["groups"] if r["group"] == "I-II")
    assert row["metrics"]["accuracy"]["change"] == "better"
    assert row["metrics"]["accuracy"]["ci_adjusted"][0] > 0


# --------------------------------------------------------------------------- verdicts


def test_noninferiority_verdicts_and_sentence() -> None:
    rng = np.random.default_rng(0)
    n = 4000
    y = rng.integers(0, 2, n)
    group = np.where(np.arange(n) < 2000, "big", np.where(np.arange(n) < 3994, "worse", "tiny"))
    right_a = rng.random(n) < 0.8
    # B = A except in "worse", where B is wrong 30 points more often
    right_b = np.where(group == "worse", right_a & (rng.random(n) < 0.62), right_a)
    pred_a, pred_b = np.where(right_a, y, 1 - y), np.where(right_b, y, 1 - y)
    proba_a = np.column_stack([1 - pred_a * 0.8 - 0.1, pred_a * 0.8 + 0.1])
    proba_b = np.column_stack([1 - pred_b * 0.8 - 0.1, pred_b * 0.8 + 0.1])
    res = compare_predictions(y=y, pred_a=pred_a, pred_b=pred_b, proba_a=proba_a,
                              proba_b=proba_b, positive=1, class_names=CLASSES,
                              groups=pd.DataFrame({"g": group}), n_boot=300, margin=0.05,
                              small_cell_k=0, labels=("v1", "v2"))
    rows = {r["group"]: r for r in res["groups"]}
    ni = {g: rows[g]["metrics"]["accuracy"]["noninferiority"]["verdict"] for g in rows}
    # half the images lose 30 points: overall B is clearly worse by more than δ too
    assert ni == {"all images": "concern", "big": "meets", "worse": "concern",
                  "tiny": "cannot tell"}
    assert rows["worse"]["metrics"]["accuracy"]["change"] == "worse"
    assert rows["big"]["flips"]["right_to_wrong"] == rows["big"]["flips"]["wrong_to_right"] == 0
    by = res["noninferiority"]["by_metric"]["accuracy"]
    assert by["verdict"] == "concern" and by["groups_concern"] == ["all images", "g worse"]
    assert by["groups_cannot_judge"] == ["g tiny"]
    assert by["sentence"].startswith("▲ concern: v2 is not worse than v1 by more than 5 points "
                                     "of accuracy for any group — v2 is worse by more than the "
                                     "margin for all images, g worse")
    assert "Too few or withheld to judge: g tiny" in by["sentence"]
    # the change in gap: B opened a gap between "big" and "worse"
    gap = next(g for g in res["gaps"] if g["attribute"] == "g" and g["metric"] == "accuracy")
    assert gap["verdict"] == "widened" and gap["ci"][0] > 0
    assert gap["b"]["worst_group"] == "worse"


def _one_group_pair(rng: np.random.Generator, n: int, *, worse: float = 0.0,
                    swap: float = 0.0) -> dict[str, np.ndarray]:
    """``n`` images, A right 90% of the time; B loses ``worse`` of the images (points of
    accuracy), and a share ``swap`` of images change, half each way (no difference)."""
    y = rng.integers(0, 2, n)
    right_a = rng.random(n) < 0.9
    u = rng.random(n)
    right_b = np.where(right_a, u >= (worse + swap / 2) / 0.9, u < (swap / 2) / 0.1)
    pred_a, pred_b = np.where(right_a, y, 1 - y), np.where(right_b, y, 1 - y)
    return {"y": y, "pred_a": pred_a, "pred_b": pred_b,
            "proba_a": np.column_stack([0.9 - pred_a * 0.8, 0.1 + pred_a * 0.8]),
            "proba_b": np.column_stack([0.9 - pred_b * 0.8, 0.1 + pred_b * 0.8])}


def _accuracy_verdict(d: dict[str, np.ndarray], seed: int) -> dict:
    res = compare_predictions(**d, positive=1, class_names=CLASSES,
                              groups=pd.DataFrame({"g": ["x"] * len(d["y"])}),
                              metrics=("accuracy",), ni_metrics=("accuracy",), n_boot=200,
                              small_cell_k=0, random_state=seed)
    return next(r for r in res["groups"] if r["group"] == "x")["metrics"]["accuracy"]


def test_simulation_small_group_truly_worse_is_not_called_not_worse() -> None:
    # known truth: B is 10 points less accurate than A on a 12-image group, twice the
    # 5-point margin. The paired bootstrap alone said "not worse" (meets) in 24 of these
    # 100 seeded audits, mostly when none of the 12 images happened to change (its
    # interval is then [0, 0]); the one-sided bound at alpha = 0.05 allows 5. Now: 0.
    verdicts = [_accuracy_verdict(_one_group_pair(np.random.default_rng(s), 12, worse=0.10),
                                  s)["noninferiority"]["verdict"] for s in range(100)]
    assert verdicts.count("meets") <= 5, verdicts.count("meets")


def test_simulation_equal_versions_on_a_large_group_are_still_found_not_worse() -> None:
    # the cautious bound must not cost the committee its vote where the data suffice:
    # 300 images, no true difference (3% of images change, half each way); the bootstrap
    # alone said "meets" in 40 of these 40 audits, and so does the cautious bound
    verdicts = [_accuracy_verdict(_one_group_pair(np.random.default_rng(s), 300, swap=0.03),
                                  s)["noninferiority"]["verdict"] for s in range(40)]
    assert verdicts.count("meets") >= 36, verdicts


def test_no_image_changed_still_has_an_interval() -> None:
    # both versions right on every one of 15 images: not "100% (100% to 100%)", not [0, 0]
    y = np.array([0, 1] * 7 + [1])
    proba = np.column_stack([0.9 - y * 0.8, 0.1 + y * 0.8])
    e = _accuracy_verdict({"y": y, "pred_a": y, "pred_b": y, "proba_a": proba,
                           "proba_b": proba}, 0)
    assert e["a"] == e["b"] == 1.0 and e["difference"] == 0.0
    assert e["a_ci"][0] < 0.85 and e["a_ci"][1] > 0.999  # Wilson, as on the Fairness page
    assert e["ci"][0] < -0.15 and e["ci"][1] > 0.15
    assert e["ci_adjusted"][0] <= e["ci"][0] and e["change"] == "cannot tell"
    assert e["noninferiority"]["verdict"] == "cannot tell"


def test_identical_versions_do_not_differ_and_say_so() -> None:
    d = synthetic(n=1500)
    res = compare_predictions(y=d["y"], pred_a=d["pred_a"], pred_b=d["pred_a"],
                              proba_a=d["proba_a"], proba_b=d["proba_a"], positive=1,
                              class_names=["b", "m", "n"], groups=d["groups"],
                              patients=d["patients"], n_boot=100, labels=("v1", "v2"))
    assert all(r["mcnemar"]["p_value"] == 1.0 for r in res["groups"])
    assert ("v1 and v2 do not differ meaningfully anywhere" in " ".join(res["summary"]))


def test_bad_settings_say_what_was_expected() -> None:
    d = synthetic(n=100)
    with pytest.raises(auditkit.ConfigError, match=r"Unknown metrics \['brier'\]; expected"):
        compare_predictions(**d, positive=1, class_names=["b", "m", "n"], metrics=["brier"])
    with pytest.raises(auditkit.ConfigError, match=r"margin must be in \[0, 1\)"):
        compare_predictions(**d, positive=1, class_names=["b", "m", "n"], margin=5)


# --------------------------------------------------------------------------- audits and the CLI


def _as_keys(audit_dir: Path, names: list[str]) -> list[str]:
    """The exports' pseudonymous keys of these table entries (this installation's secret)."""
    from auditkit._local import image_keys, installation_secret

    dataset = json.loads((audit_dir / "audit.json").read_text())["dataset"]["name"]
    return image_keys(installation_secret(), dataset, names)


def _recompute_from_predictions(dir_a: Path, dir_b: Path, shared: list[str],
                                attributes: list[str]) -> dict:
    shared = _as_keys(dir_a, shared)  # exports name images by key, split.csv by file
    fa = pd.read_csv(dir_a / "predictions.csv", dtype=str, keep_default_na=False)
    fb = pd.read_csv(dir_b / "predictions.csv", dtype=str, keep_default_na=False)
    fa = fa.set_index("image").loc[shared]
    fb = fb.set_index("image").loc[shared]
    ra = (fa["pred"] == fa["label"]).to_numpy()
    rb = (fb["pred"] == fb["label"]).to_numpy()
    out = {("overall", "all images"): (ra, rb)}
    for attr in attributes:
        for g in fa[attr].unique():
            mask = (fa[attr] == g).to_numpy()
            out[(attr, g)] = (ra[mask], rb[mask])
    return out


def _check_against_recomputation(doc: dict, recomputed: dict) -> int:
    checked = 0
    for row in doc["results"]["groups"]:
        key = (row["attribute"], row["group"])
        if row.get("suppressed") or key not in recomputed:
            continue
        ra, rb = recomputed[key]
        acc = row["metrics"]["accuracy"]
        assert acc["difference"] == pytest.approx(rb.mean() - ra.mean(), abs=1e-12), key
        table = [[int((ra & rb).sum()), int((ra & ~rb).sum())],
                 [int((~ra & rb).sum()), int((~ra & ~rb).sum())]]
        assert row["flips"] == {"both_right": table[0][0], "right_to_wrong": table[0][1],
                                "wrong_to_right": table[1][0], "both_wrong": table[1][1]}
        expected = mcnemar(np.asarray(table), exact=True).pvalue if table[0][1] + table[1][0] \
            else 1.0
        assert row["mcnemar"]["p_value"] == pytest.approx(expected, rel=1e-12), key
        checked += 1
    return checked


def test_cli_compare_audit_dirs_matches_recomputation(two_versions: dict, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cmp"
    a, b = two_versions["audits"]["v1"], two_versions["audits"]["v2"]
    assert main(["compare", str(a), str(b), "--out", str(out), "--n-boot", "200",
                 "--min-group-size", "3", "--small-cell-k", "5"]) == 0
    printed = capsys.readouterr()
    assert "Compared on 60 of 80 images, held out from both versions" in printed.out
    assert "paired bootstrap" in printed.err  # progress lines
    doc = json.loads((out / "comparison.json").read_text())
    assert doc["schema_version"] == "1.0" and doc["kind"] == "comparison"
    assert doc["images"]["dropped"] == {"missing_from_predictions_of_b": 0,
                                        "not_held_out_from_a": 10, "not_held_out_from_b": 10}
    assert doc["labels"] == {"a": "v1", "b": "v2"}
    images = two_versions["images"]
    shared = images[20:]
    checked = _check_against_recomputation(
        doc, _recompute_from_predictions(a, b, shared, ["sex", "site"]))
    assert checked >= 4
    paired = pd.read_csv(out / "paired_predictions.csv")
    assert sorted(paired["image"]) == sorted(_as_keys(a, shared))
    assert {"pred_a", "pred_b", "flip", "prob_malignant_a", "prob_malignant_b"} <= set(paired)
    # the versions really differ here, and the flip table says how
    overall = doc["results"]["groups"][0]
    assert overall["flips"]["right_to_wrong"] + overall["flips"]["wrong_to_right"] > 0


def test_overview_reads_what_changed_from_the_stored_comparison(two_versions: dict,
                                                               tmp_path: Path) -> None:
    from auditkit.overview import survey

    a, b = two_versions["audits"]["v1"], two_versions["audits"]["v2"]
    audit_b = json.loads((b / "audit.json").read_text())
    # before any comparison is stored: the line says so
    assert survey(audit_b, audit_dir=b).answer("change").verdict == "not assessed"
    out = a.parent / "compare__tiny_v1_v2"  # beside the audits, where the page writes too
    assert main(["compare", str(a), str(b), "--out", str(out), "--n-boot", "200",
                 "--min-group-size", "3", "--small-cell-k", "5"]) == 0
    doc = json.loads((out / "comparison.json").read_text())
    by_metric = doc["results"]["noninferiority"]["by_metric"]
    change = survey(audit_b, audit_dir=b).answer("change")
    assert [f.verdict for f in change.findings] == [e["verdict"] for e in by_metric.values()]
    assert all("not worse than v1" in f.criterion for f in change.findings)
    assert [f.evidence for f in change.findings] == [e["sentence"] for e in by_metric.values()]
    # version A's own audit is not "changed since" anything: the comparison is not its
    audit_a = json.loads((a / "audit.json").read_text())
    assert survey(audit_a, audit_dir=a).answer("change").verdict == "not assessed"


def test_library_compare_uses_patients_and_hides_small_groups(two_versions: dict) -> None:
    ds = auditkit.load_dataset(two_versions["data"])
    doc, paired = compare_audits(two_versions["audits"]["v1"], two_versions["audits"]["v2"],
                                 dataset=ds, settings=CompareSettings(n_boot=100, small_cell_k=5,
                                                                      min_group_size=3))
    res = doc["results"]
    assert res["resampling_unit"] == "patient" and res["n_patients"] == 30
    # "rare" has 4 images but none is held out from both: absent; every shown group has >= 5
    for row in res["groups"]:
        assert row.get("suppressed") or row["n"] >= 5
    text = json.dumps(doc) + paired.to_csv()
    assert "PID-QX-" not in text  # planted patient ids never leave the library


def test_audits_made_with_another_cache_dir_compare_on_the_same_images(
        two_versions: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # audits written with --cache-dir name images by keys from that folder's secret; the
    # comparison takes each audit's recorded split, not keys recomputed with the default
    data, audits = two_versions["data"], {}
    for v in ("v1", "v2"):
        audits[v] = tmp_path / "elsewhere" / f"tiny@{v}"
        assert main(["audit", "--model", f"tiny@{v}", "--dataset", str(data), "--out",
                     str(audits[v]), "--checks", "fairness", "--n-boot", "50", "--device", "cpu",
                     "--min-group-size", "3", "--cache-dir", str(tmp_path / "other-cache")]) == 0
    keys = pd.read_csv(audits["v1"] / "predictions.csv", dtype=str)["image"]
    default = pd.read_csv(two_versions["audits"]["v1"] / "predictions.csv", dtype=str)["image"]
    assert not set(keys) & set(default)  # another secret: other keys for the same images
    capsys.readouterr()
    assert main(["compare", str(audits["v1"]), str(audits["v2"]), "--out",
                 str(tmp_path / "cmp"), "--n-boot", "50", "--min-group-size", "3"]) == 0
    assert "Compared on 60 of 80 images, held out from both versions" in capsys.readouterr().out
    # with the records of the dataset keyed by this installation's secret: told what to do
    with pytest.raises(auditkit.DataError, match="pass the same --cache-dir to `auditkit "
                                                 "compare` as to `auditkit audit`"):
        compare_audits(audits["v1"], audits["v2"], dataset=auditkit.load_dataset(data))
    doc, _ = compare_audits(audits["v1"], audits["v2"], dataset=auditkit.load_dataset(
        data, key_secret=installation_secret(tmp_path / "other-cache")))
    assert doc["images"]["shared"] == 60


def test_compare_runs_its_audits_with_the_batch_size_and_precision_given(
        two_versions: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    args = ["compare", "--models", "tiny@v1,tiny@v2", "--dataset", str(two_versions["data"]),
            "--n-boot", "50", "--min-group-size", "3", "--device", "cpu"]
    assert main([*args, "--batch-size", "0"]) == 2  # refused before any audit runs
    assert "batch_size must be >= 1; got 0 instead." in capsys.readouterr().err
    monkeypatch.setenv("AUDITKIT_AUDITS", str(tmp_path / "fresh"))  # no stored audits
    assert main([*args, "--batch-size", "7", "--precision", "float32",
                 "--out", str(tmp_path / "cmp")]) == 0
    made = sorted((tmp_path / "fresh").glob("tiny@*/audit.json"))
    assert len(made) == 2
    for path in made:
        config = json.loads(path.read_text())["config"]
        assert (config["batch_size"], config["precision"]) == (7, "float32")


def test_different_datasets_exit_2(two_versions: dict, tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    other = make_dataset(tmp_path / "other" / "tiny", shift=3)  # same names, other pixels
    out = tmp_path / "audit-other"
    assert main(["audit", "--model", "tiny@v2", "--dataset", str(other), "--out", str(out),
                 "--n-boot", "20", "--device", "cpu"]) == 0
    capsys.readouterr()
    assert main(["compare", str(two_versions["audits"]["v1"]), str(out)]) == 2
    err = capsys.readouterr().err
    assert "Expected two audits of the same dataset content; found 'tiny' (content hash" in err


def test_no_shared_held_out_images_exit_2(two_versions: dict, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    images = two_versions["images"]
    reg = two_versions["registry"]
    # v3 holds out only images v1 trained on
    write_version(reg, "v3", 0.2, images[:10], images)
    out = tmp_path / "audit-v3"
    assert main(["audit", "--model", "tiny@v3", "--dataset", str(two_versions["data"]),
                 "--out", str(out), "--n-boot", "20", "--device", "cpu"]) == 0
    capsys.readouterr()
    assert main(["compare", str(two_versions["audits"]["v1"]), str(out)]) == 2
    err = capsys.readouterr().err
    assert ("Expected images held out from both v1 and v3 (the intersection of their split.csv "
            "test sets) among the 80 images of tiny; found none") in err
    assert main(["compare", "--models", "tiny@v1"]) == 2
    assert "--models expects NAME@A,NAME@B" in capsys.readouterr().err


def test_cli_compare_models_on_a_dataset_given_by_path(two_versions: dict, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """--models with --dataset PATH runs the missing audits on that dataset (it used to
    look the dataset up by its name, which only built-in and registered datasets have)."""
    audits = tmp_path / "new-audits"
    monkeypatch.setenv("AUDITKIT_AUDITS", str(audits))
    out = tmp_path / "cmp"
    assert main(["compare", "--models", "tiny@v1,tiny@v2", "--dataset",
                 str(two_versions["data"] / "auditkit.toml"), "--out", str(out), "--n-boot",
                 "50", "--device", "cpu", "--min-group-size", "3"]) == 0
    doc = json.loads((out / "comparison.json").read_text())
    assert doc["images"]["shared"] == 60
    assert sorted(p.name.split("__")[0] for p in audits.iterdir()) == ["tiny@v1", "tiny@v2"]
    assert all(Path(doc[side]["audit"]).parent == audits for side in ("a", "b"))


def test_previous_version_comparison_and_trend(two_versions: dict, tmp_path: Path) -> None:
    audits_dir = tmp_path / "audits"
    res = previous_version_comparison("tiny", "v2", "tiny", audits_dir=audits_dir,
                                      settings=CompareSettings(n_boot=50, min_group_size=3))
    assert res["status"] == "assessed" and res["previous"] == "v1"
    assert res["sentence"].startswith("On the same n = 60 images")
    first = previous_version_comparison("tiny", "v1", "tiny", audits_dir=audits_dir)
    assert first == {"status": "not_assessed",
                     "reason": "not assessed: tiny@v1 is the first version"}
    trend = version_trend("tiny", "tiny", audits_dir=audits_dir)
    assert [r["version"] for r in trend] == ["v1", "v2"]
    for row in trend:
        audit = json.loads((Path(row["audit"]) / "audit.json").read_text())
        assert row["headline"]["value"] == audit["results"]["performance"]["metrics"][
            "accuracy"]["value"]
        assert row["worst_group"]["value"] <= row["headline"]["value"] + 1e-12
        assert row["worst_group"]["ci"][0] is not None


@pytest.mark.slow  # two derm-lesion audits on 4,087 images, then the comparison
def test_demo_compare_derm_v1_v2(tmp_path: Path, data_root: Path,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    audits = tmp_path / "audits"
    monkeypatch.setenv("AUDITKIT_AUDITS", str(audits))
    out = tmp_path / "cmp"
    assert main(["compare", "--models", "derm-lesion@v1,derm-lesion@v2", "--dataset",
                 "fitzpatrick17k", "--out", str(out), "--n-boot", "200", "--device", "cpu",
                 "--data-root", str(data_root)]) == 0
    doc = json.loads((out / "comparison.json").read_text())
    assert doc["images"]["shared"] == 820  # both versions' test split
    dirs = {Path(doc["a"]["audit"]).name.split("__")[0]: Path(doc["a"]["audit"]),
            Path(doc["b"]["audit"]).name.split("__")[0]: Path(doc["b"]["audit"])}
    split = pd.read_csv(auditkit.resolve_model("derm-lesion@v1").folder / "split.csv")
    shared = split.loc[split["split"] == "test", "image"].tolist()
    recomputed = _recompute_from_predictions(dirs["derm-lesion@v1"], dirs["derm-lesion@v2"],
                                             shared, ["skin_type_group", "source_site"])
    assert _check_against_recomputation(doc, recomputed) >= 5


def test_difference_wording() -> None:
    from auditkit import wording

    assert wording.fmt_difference(0.04, [-0.03, 0.11]) == "+4 points (−3 to +11)"
    assert wording.fmt_difference(-0.01, [None, None]) == "−1 point (no interval)"
    assert wording.fmt_signed_points(0.0) == "0 points"
    sentence = wording.shared_images_sentence(
        n_total=4087, n_shared=820, labels=("v1", "v2"), held_out_only=True,
        reasons={"missing_from_predictions_of_b": 0, "not_held_out_from_a": 3267,
                 "not_held_out_from_b": 0})
    assert sentence == ("Compared on 820 of 4,087 images, held out from both versions; left "
                        "out: 3,267 not in v1's test split (training, validation or unused).")


def test_from_audits_changes_where_both_audits_hold_them() -> None:
    from auditkit.compare import from_audits

    def group(attr: str, g: str, n: int, value: float, ci: list[float], key: str) -> dict:
        return {"attribute": attr, "group": g, "n": n, "too_few": False,
                key: {"value": value, "ci": ci}}

    def audit(ra: float, auc: float) -> dict:
        return {"results": {
            "robustness": {"status": "assessed", "attacks": [{
                "attack": "pgd", "budget_label": "2/255",
                "overall": {"robust_accuracy": {"value": ra, "ci": [ra - 0.1, ra + 0.1]}},
                "by_group": [group("sex", "F", 40, ra, [ra - 0.2, ra + 0.2], "robust_accuracy"),
                             {"attribute": "sex", "group": "X", "suppressed": True}]}],
                "corruptions": []},
            "privacy": {"membership": {"status": "assessed", "strongest_attack": "loss",
                                       "overall": {"loss": {"auc": {"value": auc,
                                                                    "ci": [auc - 0.05,
                                                                           auc + 0.05]}}},
                                       "groups": []}}}}

    out = from_audits(audit(0.40, 0.60), audit(0.50, 0.55))
    pgd = out["robust_accuracy"]["attacks"][0]
    assert pgd["overall"]["difference"] == pytest.approx(0.10)
    # independent samples: half-widths 0.1 each -> se = 0.1/1.96·√2
    assert pgd["overall"]["ci"] == pytest.approx([0.10 - 0.1 * 2 ** 0.5, 0.10 + 0.1 * 2 ** 0.5])
    assert [g["group"] for g in pgd["by_group"]] == ["F"]  # withheld groups stay withheld
    assert out["membership_auc"]["overall"]["difference"] == pytest.approx(-0.05)
    only_a = from_audits(audit(0.4, 0.6), {"results": {}})
    assert only_a["robust_accuracy"]["status"] == "not_assessed"
    assert only_a["membership_auc"]["reason"] == ("not assessed: membership inference was not "
                                                  "run in both audits")


def test_not_an_audit_folder_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "audit.json").write_text("{not json")
    (tmp_path / "a" / "predictions.csv").write_text("image,label,pred\n")
    assert main(["compare", str(tmp_path / "a"), str(tmp_path / "b")]) == 2
    assert "is not valid JSON" in capsys.readouterr().err
    assert main(["compare", str(tmp_path / "b"), str(tmp_path / "a")]) == 2
    assert ("Expected an audit folder with audit.json and predictions.csv (or "
            f"predictions.parquet); {tmp_path / 'b' / 'audit.json'} was not found."
            ) in capsys.readouterr().err
    assert main(["compare", str(tmp_path / "a")]) == 2
    assert "Expected two audit folders" in capsys.readouterr().err


def test_compare_models_equals_compare_audits(two_versions: dict) -> None:
    from auditkit.compare import compare_models

    ds = auditkit.load_dataset(two_versions["data"])
    settings = CompareSettings(n_boot=100, min_group_size=3, small_cell_k=5)
    models = [auditkit.load_model(f"tiny@{v}", device="cpu") for v in ("v1", "v2")]
    direct, paired = compare_models(models[0], models[1], ds, settings=settings)
    stored, _ = compare_audits(two_versions["audits"]["v1"], two_versions["audits"]["v2"],
                               dataset=ds, settings=settings)
    assert direct["images"]["shared"] == stored["images"]["shared"] == len(paired) == 60
    assert "from_audits" not in direct["results"]
    for a, b in zip(direct["results"]["groups"], stored["results"]["groups"]):
        assert (a["attribute"], a["group"]) == (b["attribute"], b["group"])
        if not a.get("suppressed"):
            for key in ("a", "b", "difference", "ci", "ci_adjusted"):
                assert a["metrics"]["accuracy"][key] == pytest.approx(
                    b["metrics"]["accuracy"][key]), key


def test_intersections_are_compared_too() -> None:
    d = synthetic(n=1200)
    res = compare_predictions(**d, positive=1, class_names=["b", "m", "n"], n_boot=50,
                              intersections=[("sex", "skin")])
    inter = [r for r in res["groups"] if r["attribute"] == "sex×skin"]
    assert len(inter) == 6 and all(r["intersection"] for r in inter)
    row = next(r for r in inter if r["group"] == "F × V-VI")
    mask = ((d["groups"]["sex"] == "F") & (d["groups"]["skin"] == "V-VI")).to_numpy()
    expected = (d["pred_b"][mask] == d["y"][mask]).mean() - (d["pred_a"][mask] == d["y"][mask]).mean()
    assert row["metrics"]["accuracy"]["difference"] == pytest.approx(expected)
    with pytest.raises(auditkit.ConfigError, match="expected attributes among"):
        compare_predictions(**d, positive=1, class_names=["b", "m", "n"], n_boot=50,
                            intersections=[("sex", "age")])


def test_resampled_auroc_equals_the_audit_weighted_auroc() -> None:
    from auditkit._metrics import _weighted_auroc
    from auditkit.compare._paired import AurocPlan

    rng = np.random.default_rng(5)
    n = 400
    score = np.round(rng.random(n), 2)  # many ties
    is_pos = rng.random(n) < 0.3
    idx = np.flatnonzero(rng.random(n) < 0.6)  # one group
    weights = rng.integers(0, 4, size=(50, n)).astype(np.float32)
    got = AurocPlan.build(idx, score, is_pos).replicates(weights)
    expected = _weighted_auroc(score[idx], is_pos[idx], weights[:, idx].astype(np.float64))
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    none_pos = AurocPlan.build(np.flatnonzero(~is_pos), score, is_pos).replicates(weights)
    assert np.isnan(none_pos).all()


@pytest.mark.parametrize("engine", ["numba", "numpy"])
@pytest.mark.parametrize("overall_first", [True, False])
def test_fast_resampled_auroc_equals_sklearn_with_sample_weight(engine: str,
                                                                overall_first: bool) -> None:
    """Every group's resampled AUROC equals scikit-learn's on the resample, ties included.

    Seeded patient-level resamples (several images per patient), scores with many ties
    (rounded to 0.05) for one version and continuous for the other, one grouping with
    images in no group; each resample is checked twice: ``roc_auc_score`` with the draw
    counts as ``sample_weight``, and on the explicitly expanded resample (each image
    repeated as often as its patient was drawn).
    """
    from sklearn.metrics import roc_auc_score

    from auditkit.compare._auroc import AurocReplicates
    from auditkit.compare._paired import draw_counts

    rng = np.random.default_rng(11)
    n = 900
    patient = rng.integers(0, 300, n)
    _, image_patient = np.unique(patient, return_inverse=True)
    m = int(image_patient.max()) + 1
    is_pos = rng.random(n) < 0.35
    scores = [np.round((rng.random(n) + 0.4 * is_pos) / 1.4 * 20) / 20,  # ~20 tied values
              rng.random(n) + 0.6 * is_pos]
    sex = rng.integers(0, 2, n)
    band = np.where(rng.random(n) < 0.1, -1, rng.integers(0, 3, n))  # -1: unknown
    groupings = [np.zeros(n, dtype=np.int64), sex, band]
    if not overall_first:
        groupings = groupings[::-1]
    plan = AurocReplicates(scores, is_pos, groupings, image_patient=image_patient, engine=engine)
    assert plan.engine == engine
    weights = draw_counts(m, 8, rng)
    got = plan.replicates(weights)
    assert got.shape == (8, 2, plan.n_slots) == (8, 2, 6)
    for r in range(8):
        image_w = weights[r][image_patient]
        drawn = np.repeat(np.arange(n), image_w.astype(int))
        for v, score in enumerate(scores):
            for codes, sl in zip(groupings, plan.slices):
                for g in range(sl.stop - sl.start):
                    mask = (codes == g) & (image_w > 0)
                    expected = roc_auc_score(is_pos[mask], score[mask],
                                             sample_weight=image_w[mask])
                    assert got[r, v, sl.start + g] == pytest.approx(expected, abs=1e-12)
                    take = drawn[codes[drawn] == g]
                    assert got[r, v, sl.start + g] == pytest.approx(
                        roc_auc_score(is_pos[take], score[take]), abs=1e-12)
    ones = np.ones(n)
    for v, score in enumerate(scores):
        for codes, sl in zip(groupings, plan.slices):
            for g in range(sl.stop - sl.start):
                mask = codes == g
                assert plan.point[v, sl.start + g] == pytest.approx(
                    roc_auc_score(is_pos[mask], score[mask], sample_weight=ones[mask]), abs=1e-12)
    # a group with one class only has no AUROC: nan, never an error
    only_neg = AurocReplicates(scores, np.zeros(n, dtype=bool), groupings[:1],
                               image_patient=image_patient, engine=engine)
    assert np.isnan(only_neg.replicates(weights)).all() and np.isnan(only_neg.point).all()


def test_draw_counts_are_the_audit_bootstrap_draw() -> None:
    from auditkit._metrics import bootstrap_weights
    from auditkit.compare._paired import draw_counts

    got = draw_counts(500, 40, np.random.default_rng(3))
    expected, _ = bootstrap_weights(None, 500, 40, np.random.default_rng(3))
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, expected)
    assert (got.sum(axis=1) == 500).all()


def test_auroc_engines_give_the_same_comparison() -> None:
    d = synthetic(n=1500)
    kw = dict(positive=1, class_names=["b", "m", "n"], n_boot=60, random_state=2,
              intersections=[("sex", "skin")])
    fast = compare_predictions(**d, **kw)
    slow = compare_predictions(**d, **kw, auroc_engine="numpy")
    for a, b in zip(fast["groups"], slow["groups"]):
        for key in ("a", "b", "difference", "ci", "a_ci", "b_ci", "ci_adjusted", "p_adjusted"):
            assert a["metrics"]["auroc"][key] == pytest.approx(b["metrics"]["auroc"][key],
                                                               abs=1e-12, nan_ok=True), key
    with pytest.raises(auditkit.ConfigError, match="auroc_engine must be 'auto', 'numba' or "
                                                   "'numpy'; got 'gpu' instead"):
        compare_predictions(**d, **{**kw, "n_boot": 20}, auroc_engine="gpu")
