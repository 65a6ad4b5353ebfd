"""Speed: auditkit's subgroup audit vs fairlearn's MetricFrame(n_boot=200).

    python benchmarks/bench_fairness.py

10,000 predictions, 12 intersectional groups (3 sexes x 4 age bands), 3 metrics
(accuracy, sensitivity, specificity). auditkit computes its analytic small-sample
intervals (docs/statistics.md) *and* a 200-permutation gap test; MetricFrame its 200
bootstrap resamples. With groups of ~800 images the two kinds of interval should agree
within 0.02; the speed ratio is printed last.
"""

from __future__ import annotations

import time
import warnings

import numpy as np
import pandas as pd
from fairlearn.metrics import MetricFrame
from sklearn.metrics import accuracy_score, recall_score

from auditkit.fairness import FairnessAudit


def specificity(y_true, y_pred):  # noqa: ANN001, ANN201
    return recall_score(y_true, y_pred, pos_label=0, zero_division=np.nan)


def main() -> None:
    rng = np.random.default_rng(0)
    n = 10_000
    sex = rng.choice(["female", "male", "other"], n, p=[0.45, 0.45, 0.10])
    age = rng.choice(["<40", "40-59", "60-79", "80+"], n)
    y = (rng.random(n) < 0.3).astype(int)
    pred = np.where(rng.random(n) < 0.8, y, 1 - y)
    proba = np.column_stack([1 - pred * 0.8, pred * 0.8 + 0.1])
    joint = np.char.add(np.char.add(sex.astype(str), " × "), age.astype(str))

    t = time.perf_counter()
    res = FairnessAudit(n_boot=200, n_permutations=200,
                        metrics=["accuracy", "sensitivity", "specificity"], random_state=0).compute(
        y=y, pred=pred, proba=proba, positive=1, groups=pd.DataFrame({"sex × age": joint}))
    ours = time.perf_counter() - t

    t = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mf = MetricFrame(metrics={"accuracy": accuracy_score, "sensitivity": recall_score,
                                  "specificity": specificity},
                         y_true=y, y_pred=pred, sensitive_features=joint, n_boot=200,
                         ci_quantiles=[0.025, 0.975], random_state=0)
    theirs = time.perf_counter() - t

    diffs = []
    lo_df, hi_df = mf.by_group_ci
    for e in res["groups"]:
        for m in ("accuracy", "sensitivity", "specificity"):
            lo, hi = e[m]["ci"]
            diffs += [abs(lo - lo_df.loc[e["group"], m]), abs(hi - hi_df.loc[e["group"], m])]
    # auditkit against itself with another seed: its intervals are analytic, so 0 here
    # (MetricFrame's own Monte Carlo noise is part of the difference above)
    other = FairnessAudit(n_boot=200, n_permutations=200,
                          metrics=["accuracy", "sensitivity", "specificity"], random_state=1).compute(
        y=y, pred=pred, proba=proba, positive=1, groups=pd.DataFrame({"sex × age": joint}))
    self_diffs = [abs(a[m]["ci"][i] - b[m]["ci"][i]) for a, b in zip(res["groups"], other["groups"])
                  for m in ("accuracy", "sensitivity", "specificity") for i in (0, 1)]
    print(f"groups: {len(res['groups'])}, predictions: {n}, metrics: 3, resamples: 200")
    print(f"auditkit FairnessAudit : {ours:8.3f} s")
    print(f"fairlearn MetricFrame  : {theirs:8.3f} s")
    print(f"interval bounds vs MetricFrame: largest difference {max(diffs):.4f}, median "
          f"{np.median(diffs):.4f}, {np.mean(np.array(diffs) <= 0.02):.0%} within 0.02 "
          f"(target <= 0.02)")
    print(f"auditkit, other seed (analytic intervals): largest {max(self_diffs):.4f}, "
          f"median {np.median(self_diffs):.4f}")
    print(f"speed ratio (MetricFrame / auditkit): {theirs / ours:.0f}x")


if __name__ == "__main__":
    main()
