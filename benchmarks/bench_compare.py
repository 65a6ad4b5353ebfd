"""Time of a paired version comparison: 100,000 paired predictions × 20 groups × 1,000 resamples.

Target (issue 11): under 5 s on the project's 2-core CPU, *with* AUROC (a default
metric, 1,000 resamples like every other metric). The machine is shared, so the
script reports CPU time (``time.process_time``, all threads of this process) beside
wall time; the target is judged on CPU time.

Baseline for the ratio ("old"): the same comparison with the AUROC resampled by the
vectorised numpy rank plan, one group at a time (``auroc_engine="numpy"``: the
implementation before the compiled one-pass kernel of
:mod:`auditkit.compare._auroc`), on the same data and draw — the numbers are equal,
only the time differs. ``--baseline`` also times two *independent* bootstraps through
:func:`auditkit._metrics.compute_metrics` (what an unpaired comparison would cost).

Memory stays bounded: ``chunk`` resamples are drawn at a time (``chunk × patients``
floats), never a resamples × images matrix; a second, untimed run under
``tracemalloc`` prints the peak (tracing slows allocation, so it is not timed).

    python benchmarks/bench_compare.py [--n 100000] [--boot 1000] [--patients 0]
        [--metrics all|sums] [--no-old] [--baseline]
"""

from __future__ import annotations

import argparse
import os
import time
import tracemalloc
from typing import Any

import numpy as np
import pandas as pd

from auditkit._metrics import MetricInputs, compute_metrics
from auditkit.compare import COMPARED_METRICS, PAIRED_METRICS, compare_predictions
from auditkit.compare._auroc import numba_available

TARGET_S = 5.0


def make_data(n: int, n_patients: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    proba = {}
    preds = {}
    shared = rng.random(n)
    for v, acc in (("a", 0.70), ("b", 0.72)):
        right = (shared + 0.1 * rng.random(n)) < acc * 1.05  # correlated versions
        p = np.where(right, y, (y + rng.integers(1, 3, n)) % 3)
        pr = rng.dirichlet([1.0, 1.0, 1.0], n)
        pr[np.arange(n), p] += 1.5
        proba[v] = pr / pr.sum(axis=1, keepdims=True)
        preds[v] = proba[v].argmax(axis=1)
    # 20 groups: 4 attributes x 5 groups
    groups = pd.DataFrame({f"attr{j}": rng.choice([f"g{k}" for k in range(5)], n)
                           for j in range(4)})
    patients = (np.arange(n) // max(1, n // n_patients)).astype(str) if n_patients else None
    return {"y": y, "pred_a": preds["a"], "pred_b": preds["b"], "proba_a": proba["a"],
            "proba_b": proba["b"], "groups": groups, "patients": patients}


def timed(data: dict, **kw: Any) -> tuple[dict, float, float]:
    """One comparison: (result, wall seconds, CPU seconds of this process)."""
    t0, c0 = time.perf_counter(), time.process_time()
    result = compare_predictions(**data, positive=1, class_names=["benign", "malignant", "other"],
                                 random_state=0, **kw)
    return result, time.perf_counter() - t0, time.process_time() - c0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--boot", type=int, default=1000)
    parser.add_argument("--patients", type=int, default=0,
                        help="number of patients (0: every image its own patient)")
    parser.add_argument("--metrics", choices=["all", "sums"], default="all",
                        help="all: every compared metric (default); sums: without AUROC")
    parser.add_argument("--no-old", action="store_true",
                        help="skip timing the old numpy AUROC plan (about 20 s CPU)")
    parser.add_argument("--baseline", action="store_true",
                        help="also time two independent compute_metrics bootstraps")
    args = parser.parse_args()
    data = make_data(args.n, args.patients)
    metrics = list(COMPARED_METRICS if args.metrics == "all" else PAIRED_METRICS)
    n_groups = sum(data["groups"][c].nunique() for c in data["groups"].columns)
    # warm up imports (statsmodels) and the numba compilation (cached on disk after the
    # first run) outside the timing
    warm = {k: (v[:200] if k != "groups" else v.iloc[:200]) if v is not None else None
            for k, v in data.items()}
    c0 = time.process_time()
    for engine in ("auto", "numpy"):
        compare_predictions(**warm, positive=1, class_names=["benign", "malignant", "other"],
                            n_boot=20, auroc_engine=engine)
    warm_cpu = time.process_time() - c0
    result, seconds, cpu = timed(data, n_boot=args.boot, metrics=metrics)
    units = args.patients or args.n
    load = os.getloadavg()[0]
    engine = "numba kernel" if numba_available() else "numpy plan (numba missing)"
    print(f"paired comparison: {args.n:,} paired predictions ({units:,} resampled units) x "
          f"{n_groups} groups (+ overall) x {args.boot:,} resamples x {len(metrics)} "
          f"metrics ({', '.join(metrics)}; AUROC by {engine})")
    print(f"  new: {seconds:.2f} s wall, {cpu:.2f} s CPU (target < {TARGET_S:.0f} s CPU: "
          f"{'met' if cpu < TARGET_S else 'NOT met'}; load average {load:.1f} on "
          f"{os.cpu_count()} cores; warm-up incl. compilation {warm_cpu:.2f} s CPU, not timed)")
    if "auroc" in metrics and not args.no_old:
        old, old_s, old_cpu = timed(data, n_boot=args.boot, metrics=metrics,
                                    auroc_engine="numpy")
        same = all(
            np.allclose([g["metrics"]["auroc"][k] for g in old["groups"]],
                        [g["metrics"]["auroc"][k] for g in result["groups"]], equal_nan=True)
            for k in ("a", "b", "difference"))
        print(f"  old (numpy AUROC plan, per group): {old_s:.2f} s wall, {old_cpu:.2f} s CPU; "
              f"ratio old / new = {old_cpu / cpu:.1f}x CPU, {old_s / seconds:.1f}x wall; "
              f"same AUROC values: {same}")
    tracemalloc.start()
    compare_predictions(**data, positive=1, class_names=["benign", "malignant", "other"],
                        n_boot=args.boot, random_state=0, metrics=metrics)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(f"  peak traced memory {peak / 2**20:.0f} MiB (an n x B float matrix would be "
          f"{args.n * args.boot * 8 / 2**20:,.0f} MiB); family size "
          f"{result['multiplicity']['family_size']}")
    if args.baseline:
        t0 = time.perf_counter()
        rng = np.random.default_rng(0)
        cols = {c: data["groups"][c].to_numpy() for c in data["groups"].columns}
        masks = [np.ones(args.n, dtype=bool)] + [cols[c] == g for c in cols
                                                for g in np.unique(cols[c])]
        for mask in masks:
            for v in ("a", "b"):
                compute_metrics(MetricInputs(
                    y=data["y"][mask], pred=data[f"pred_{v}"][mask],
                    proba=data[f"proba_{v}"][mask], positive=1,
                    clusters=None if data["patients"] is None else data["patients"][mask]),
                    n_boot=args.boot, rng=rng,
                    metrics=metrics)
        base = time.perf_counter() - t0
        print(f"baseline, two independent compute_metrics bootstraps (unpaired): {base:.2f} s; "
              f"ratio paired / unpaired = {seconds / base:.2f}")


if __name__ == "__main__":
    main()
