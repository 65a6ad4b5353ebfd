"""Prediction throughput: RayExecutor vs LocalExecutor on the same machine and images.

    python benchmarks/bench_scale.py [--model derm-lesion@v1] [--dataset fitzpatrick17k]
                                     [--n 1024] [--num-cpus 2] [--batch-size 64]

Runs the model over the same ``--n`` images (the first of the dataset's table) with the
local executor, then with :class:`auditkit.executors.RayExecutor` on a local cluster of
``--num-cpus`` CPUs (one model actor of 1 CPU; the other CPU decodes images), checks
that the outputs are identical, and prints:

- images/s of each and the **overhead ratio** Ray time / local time (>1: Ray slower),
  on a warm cluster and with the cluster's start included; the first Ray run (one
  batch) also starts the worker processes, once per cluster;
- the two stages' rates per CPU, measured in this process on the same images: decoding
  (``load_model_input``, d images/s) and the model (``forward_batch`` with one thread,
  m images/s) — an actor's steady rate is min(d, m) when one CPU decodes for it;
- an extrapolation to W actors: ``time(N, W) = S + N / (W x min(d, m))``, S the warm
  run's time beyond its images at that rate (actor start, model load).

Why not fit S and the rate from two Ray runs: while the actor starts (seconds), the
decoding tasks run ahead, so a short run's decoding hides in the start-up and such a
fit overstates the rate. The extrapolation assumes (it is not a measurement): one CPU
per actor and one more decoding for it; this machine's per-core speed; images on
storage every node reads at W x min(d, m) x image size per second or faster; the object
store not the bottleneck (a 64-image batch of 64x64 RGB float32 is 3 MB); S independent
of W (actors start in parallel). On a 2-core machine Ray cannot be much faster than one
process; it can beat the local executor here only because that one decodes and runs
the model in turn, while Ray's stages overlap.
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from pathlib import Path

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
    import torch

    from auditkit.predict import forward_batch, load_model_input

    model = auditkit.load_model(args.model, device="cpu")
    full = auditkit.load_dataset(args.dataset)
    ds = full.subset(np.arange(len(full)) < args.n)
    n = len(ds)
    card = model.card

    for path in ds.records["path"]:  # every run below reads the files from the page cache
        Path(path).read_bytes()
    t = time.perf_counter()
    local = LocalExecutor(batch_size=args.batch_size).outputs(model, ds)
    local_s = time.perf_counter() - t

    # the two stages per CPU, on the same images (the files are now in the page cache,
    # as they are for the Ray run after the local one)
    t = time.perf_counter()
    pixels = torch.stack([load_model_input(p, input_size=card.input_size, channels=card.channels,
                                           scaling=card.scaling) for p in ds.records["path"]])
    decode_rate = n / (time.perf_counter() - t)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    t = time.perf_counter()
    for start in range(0, n, args.batch_size):
        forward_batch(model, pixels[start:start + args.batch_size], precision="float32")
    model_rate = n / (time.perf_counter() - t)
    torch.set_num_threads(threads)
    actor_rate = min(decode_rate, model_rate)

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
        remote = ex.outputs(model, ds)
        ray_s = time.perf_counter() - t
    finally:
        ray.shutdown()
    if not np.array_equal(local, remote):
        raise SystemExit("outputs differ between the executors: "
                         f"max |diff| {np.abs(local - remote).max():.3g}")
    actors = ex.last_run_["actors"]
    fixed = max(0.0, ray_s - n / (actors * actor_rate))

    print(f"{args.model} on {n} images of {args.dataset}, batch {args.batch_size}, CPU; "
          f"outputs identical: yes; load average {os.getloadavg()[0]:.1f} on "
          f"{os.cpu_count()} cores")
    print(f"local executor         {n / local_s:8.1f} images/s  ({local_s:.1f} s)")
    print(f"ray executor, warm     {n / ray_s:8.1f} images/s  ({ray_s:.1f} s; {actors} "
          f"actor(s) on a {args.num_cpus}-CPU local cluster)")
    print(f"ray cluster start      {cluster_s:8.1f} s; first run (one batch, starts the "
          f"workers) {first_s:.1f} s")
    print(f"decoding, 1 CPU        {decode_rate:8.1f} images/s (d)")
    print(f"model, 1 thread        {model_rate:8.1f} images/s (m)")
    print(f"actor steady rate      {actor_rate:8.1f} images/s = min(d, m)")
    print(f"fixed cost per run S   {fixed:8.1f} s (warm run time beyond N / min(d, m))")
    print("extrapolated, 1,000,000 images: time = S + N / (W x min(d, m)), 2 CPUs per actor")
    for workers in (1, 4, 16, 64):
        print(f"  W = {workers:3d} actors  {workers * actor_rate:9.0f} images/s  "
              f"{(fixed + 1_000_000 / (workers * actor_rate)) / 3600:7.2f} h")
    print(f"overhead ratio ray / local, warm cluster:           {ray_s / local_s:.2f}")
    print(f"overhead ratio ray / local, cluster start included: "
          f"{(cluster_s + first_s + ray_s) / local_s:.2f}")


if __name__ == "__main__":
    main()
