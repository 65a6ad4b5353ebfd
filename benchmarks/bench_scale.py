"""Prediction throughput: RayExecutor vs LocalExecutor on the same machine and images.

    python benchmarks/bench_scale.py [--model derm-lesion@v1] [--dataset fitzpatrick17k]
                                     [--n 1024] [--num-cpus 2] [--batch-size 64]

Runs the model over the same ``--n`` images (the first of the dataset's table) with the
local executor, then with :class:`auditkit.executors.RayExecutor` on a local cluster of
``--num-cpus`` CPUs (one model actor of 1 CPU; the other CPUs decode images), checks
that the outputs are identical, and prints:

- images/s of each, and the **overhead ratio** Ray time / local time (>1: Ray slower),
  with and without the cluster's start;
- the first Ray run's time (one batch: it also starts the worker processes, once per
  cluster), then Ray's fixed cost per run S (actor start, model load, pipeline start)
  and its **per-actor throughput** r, from two later runs on the same warm cluster, of
  n/4 and n images: ``time(N) = S + N / r`` fitted through both (so neither includes the other's
  start-up, and r is the whole pipeline's rate: decoding and model together);
- an extrapolation to W actors: ``time(N, W) = S + N / (W x r)``.

The extrapolation assumes (it is not a measurement): one CPU (or GPU) per actor and at
least as many CPUs again decoding, so that decoding keeps up as it does here; images on
storage every node reads at W x r x image size per second or faster; this machine's
per-core speed; the object store not the bottleneck (a 64-image batch of 64x64 RGB
float32 is 3 MB); S independent of W (actors start in parallel). On a 2-core machine
Ray cannot be much faster than one process: both cores are in use either way.
"""

from __future__ import annotations

import argparse
import logging
import time

import numpy as np

import auditkit
from auditkit.executors import RayExecutor
from auditkit.predict import LocalExecutor


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="derm-lesion@v1")
    parser.add_argument("--dataset", default="fitzpatrick17k")
    parser.add_argument("--n", type=int, default=1024, help="images (the table's first)")
    parser.add_argument("--num-cpus", type=int, default=2, help="CPUs of the local cluster")
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    import ray

    model = auditkit.load_model(args.model, device="cpu")
    full = auditkit.load_dataset(args.dataset)
    ds = full.subset(np.arange(len(full)) < args.n)
    small = full.subset(np.arange(len(full)) < args.n // 4)
    n, n_small = len(ds), len(small)

    t = time.perf_counter()
    local = LocalExecutor(batch_size=args.batch_size).outputs(model, ds)
    local_s = time.perf_counter() - t

    t = time.perf_counter()
    logging.getLogger("ray._private.authentication").setLevel(logging.ERROR)
    ray.init(address="local", num_cpus=args.num_cpus, include_dashboard=False,
             log_to_driver=False, logging_level=logging.WARNING)
    cluster_s = time.perf_counter() - t
    try:
        ex = RayExecutor(batch_size=args.batch_size, device="cpu")
        t = time.perf_counter()  # the first run also starts the worker processes
        ex.outputs(model, full.subset(np.arange(len(full)) < args.batch_size))
        first_s = time.perf_counter() - t
        t = time.perf_counter()
        ex.outputs(model, small)
        small_s = time.perf_counter() - t
        t = time.perf_counter()
        remote = ex.outputs(model, ds)
        ray_s = time.perf_counter() - t
    finally:
        ray.shutdown()
    if not np.array_equal(local, remote):
        raise SystemExit("outputs differ between the executors: "
                         f"max |diff| {np.abs(local - remote).max():.3g}")
    actors = ex.last_run_["actors"]
    rate = (n - n_small) / (ray_s - small_s) / actors  # per actor, whole pipeline
    fixed = ray_s - n / (rate * actors)

    print(f"{args.model} on {n} images of {args.dataset}, batch {args.batch_size}, CPU; "
          f"outputs identical: yes")
    print(f"local executor        {n / local_s:8.1f} images/s  ({local_s:.1f} s)")
    print(f"ray executor          {n / ray_s:8.1f} images/s  ({ray_s:.1f} s; {actors} "
          f"actor(s) on a {args.num_cpus}-CPU local cluster started in {cluster_s:.1f} s)")
    print(f"ray first run         {first_s:8.1f} s for one batch (starts the worker processes: "
          "once per cluster and driver)")
    print(f"ray fixed cost S      {fixed:8.1f} s per run (actor start, model load)  "
          f"[fit through {n_small} images: {small_s:.1f} s, {n}: {ray_s:.1f} s]")
    print(f"ray per-actor rate r  {rate:8.1f} images/s (decoding + model)")
    print("extrapolated, 1,000,000 images: time = S + N / (W x r)")
    for workers in (1, 4, 16, 64):
        print(f"  W = {workers:3d} actors  {workers * rate:9.0f} images/s  "
              f"{(fixed + 1_000_000 / (workers * rate)) / 3600:7.2f} h")
    print(f"overhead ratio ray / local, one warm cluster:       {ray_s / local_s:.2f}")
    print(f"overhead ratio ray / local, cluster start included: "
          f"{(cluster_s + first_s + ray_s) / local_s:.2f}")


if __name__ == "__main__":
    main()
