"""Checks that scale: the fairness bootstrap and gap permutations in bounded memory.

The bootstrap (:func:`auditkit._metrics.compute_metrics`) and the permutation gap tests
(:func:`auditkit._gaps.run_gap_tests`) process resamples a block at a time. The blocks
are drawn from the generator in the same order as one big matrix, so the chunked
results must equal the in-memory method (one block) up to floating-point round-off:
the stated tolerance is 1e-12, far below the Monte Carlo error of the intervals
(checked here too, by changing the seed).
"""

from __future__ import annotations

import tracemalloc

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from auditkit import _gaps, _metrics
from auditkit._gaps import GapTest, run_gap_tests
from auditkit._metrics import MetricInputs, compute_metrics, percentile_interval
from auditkit.fairness import FairnessAudit

ROUND_OFF = 1e-12


def _synthetic(n: int, *, seed: int = 0, ties: bool = True, n_groups: int = 5) -> dict:
    """Seeded predictions of patients with 1-5 images in ``n_groups`` groups."""
    rng = np.random.default_rng(seed)
    per_patient = rng.integers(1, 6, size=n)
    patient = np.repeat(np.arange(n), per_patient)[:n]
    group = np.array([f"g{k}" for k in range(n_groups)])[rng.integers(0, n_groups, n)[patient]]
    y = (rng.random(n) < 0.3).astype(int)
    score = 1.0 / (1.0 + np.exp(-(1.6 * y - 0.8 + rng.normal(0, 1.0, n))))
    if ties:
        score = np.round(score, 2)  # many positives tie negatives
    return {"y": y, "pred": (score >= 0.5).astype(int),
            "proba": np.column_stack([1 - score, score]),
            "patients": np.char.add("p", patient.astype(str)), "group": group}


@pytest.mark.parametrize("by_patient", [False, True])
def test_bootstrap_in_blocks_equals_in_memory(monkeypatch, by_patient):
    d = _synthetic(4000, seed=1)
    inputs = MetricInputs(y=d["y"], pred=d["pred"], proba=d["proba"], positive=1,
                          clusters=d["patients"] if by_patient else None)
    monkeypatch.setattr(_metrics, "BOOTSTRAP_CHUNK_CELLS", 10 ** 12)
    point_a, whole = compute_metrics(inputs, n_boot=300, rng=np.random.default_rng(7))
    monkeypatch.setattr(_metrics, "BOOTSTRAP_CHUNK_CELLS", 30_000)  # 7 resamples a block
    point_b, blocks = compute_metrics(inputs, n_boot=300, rng=np.random.default_rng(7))
    assert point_a == point_b
    assert set(whole) == set(blocks)
    for name in whole:
        assert blocks[name].shape == (300,)
        np.testing.assert_allclose(blocks[name], whole[name], rtol=0, atol=ROUND_OFF,
                                   err_msg=name)
        lo_a, hi_a = percentile_interval(whole[name])
        lo_b, hi_b = percentile_interval(blocks[name])
        assert abs(lo_a - lo_b) <= ROUND_OFF and abs(hi_a - hi_b) <= ROUND_OFF


def test_bootstrap_memory_is_bounded_by_the_block(monkeypatch):
    """Peak traced memory follows the block size, not resamples x images."""
    d = _synthetic(10_000, seed=2)
    inputs = MetricInputs(y=d["y"], pred=d["pred"], proba=d["proba"], positive=1,
                          clusters=d["patients"])
    one_matrix = 400 * 10_000 * 8  # one (B, n) float64 matrix: 32 MB

    def peak(cells: int) -> int:
        monkeypatch.setattr(_metrics, "BOOTSTRAP_CHUNK_CELLS", cells)
        tracemalloc.start()
        compute_metrics(inputs, n_boot=400, rng=np.random.default_rng(0),
                        metrics=["auroc", "auroc_macro", "ece"])
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return top

    assert peak(10 ** 12) > one_matrix  # the in-memory method holds (B, n) matrices
    assert peak(50_000) < one_matrix / 4


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("by_patient", [False, True])
def test_gap_permutations_in_blocks_equal_in_memory(monkeypatch, ties, by_patient):
    d = _synthetic(3000, seed=3, ties=ties)
    sex = np.where(np.random.default_rng(4).random(3000) < 0.5, "f", "m")
    kwargs = {"y": d["y"], "pred": d["pred"], "proba": d["proba"], "positive": 1,
              "units": d["patients"] if by_patient else None,
              "attributes": {"group": d["group"], "sex": sex},
              "eligible": {"group": [f"g{k}" for k in range(5)], "sex": ["f", "m"]}}
    monkeypatch.setattr(_gaps, "PERMUTATION_CHUNK_CELLS", 10 ** 12)
    whole = run_gap_tests(GapTest(n_permutations=199, random_state=5), **kwargs)
    monkeypatch.setattr(_gaps, "PERMUTATION_CHUNK_CELLS", 40_000)  # 13 permutations a block
    blocks = run_gap_tests(GapTest(n_permutations=199, random_state=5), **kwargs)
    assert list(whole) == list(blocks)
    assert ("group", "auroc") in whole
    for key in whole:
        assert repr(blocks[key]) == repr(whole[key]), key


@pytest.mark.parametrize("ties", [False, True])
def test_group_auroc_by_sort_equals_scikit_learn(ties):
    """The radix-sort AUROC per group equals roc_auc_score (ties count one half)."""
    d = _synthetic(5000, seed=6, ties=ties, n_groups=4)
    score, is_pos = d["proba"][:, 1], d["y"] == 1
    code = np.array([int(g[1:]) for g in d["group"]]) - 1  # group g0 left out (-1)
    labels = np.vstack([code, np.random.default_rng(0).permutation(code)])
    ranking = _gaps._Ranking.of(score, is_pos)
    assert (ranking.order_ties_lost is not None) == ties
    n_pairs = np.array([[(is_pos & (row == j)).sum() * (~is_pos & (row == j)).sum()
                         for j in range(3)] for row in labels], dtype=float)
    auc = _gaps._group_aurocs(None, labels, 3, np.arange(5000), ranking, n_pairs)
    for r, row in enumerate(labels):
        for j in range(3):
            mask = row == j
            assert auc[r, j] == pytest.approx(roc_auc_score(is_pos[mask], score[mask]),
                                              abs=1e-12)


def test_fairness_intervals_match_in_memory_within_round_off(monkeypatch):
    """Chunked vs in-memory on the whole check: equal to 1e-12, while a new seed moves them."""
    d = _synthetic(8000, seed=8)
    groups = pd.DataFrame({"group": d["group"]})

    def run(cells: int, seed: int = 0) -> dict:
        monkeypatch.setattr(_metrics, "BOOTSTRAP_CHUNK_CELLS", cells)
        monkeypatch.setattr(_gaps, "PERMUTATION_CHUNK_CELLS", cells)
        return FairnessAudit(n_boot=150, n_permutations=150, random_state=seed).compute(
            y=d["y"], pred=d["pred"], proba=d["proba"], positive=1, groups=groups,
            patients=d["patients"])

    whole, blocks, other_seed = run(10 ** 12), run(40_000), run(40_000, seed=1)

    def bounds(result: dict) -> np.ndarray:
        vals = [b for e in result["groups"] for m in ("auroc_macro", "ece", "ece_debiased")
                for b in e[m]["ci"]]
        vals += [b for g in result["disparities"] if g["status"] == "assessed"
                 for b in g.get("gap_ci", g.get("ci"))]
        vals += [g["p_adjusted"] for g in result["disparities"] if g["status"] == "assessed"]
        return np.array(vals, dtype=float)

    np.testing.assert_allclose(bounds(blocks), bounds(whole), rtol=0, atol=ROUND_OFF)
    # Monte Carlo error (another seed) is orders of magnitude larger than the tolerance
    assert np.abs(bounds(other_seed) - bounds(whole)).max() > 1e-4
