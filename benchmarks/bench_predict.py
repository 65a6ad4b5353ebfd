"""Where inference time goes: loader alone vs loader+model, and cached vs uncached.

    python benchmarks/bench_predict.py [--model derm-lesion@v1] [--dataset fitzpatrick17k]
                                       [--device auto|cpu|cuda]

Prints images/s for: the DataLoader alone (decode + resize), loader + model (uncached
predict), and predict served from the cache; then the ratios.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch
from torch.utils.data import DataLoader

import auditkit
from auditkit.predict import ImageTensors, LocalExecutor, predict


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="derm-lesion@v1")
    parser.add_argument("--dataset", default="fitzpatrick17k")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=None)
    args = parser.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print(f"skipped: --device {args.device} needs a CUDA GPU, and torch sees none "
              "(docs/performance.md lists the GPU runs)")
        return
    model = auditkit.load_model(args.model, device=args.device)
    ds = auditkit.load_dataset(args.dataset)
    n = len(ds)
    ex = LocalExecutor(batch_size=args.batch_size, num_workers=args.workers)
    workers = args.workers if args.workers is not None else (
        min(8, max(0, (torch.get_num_threads()) - 1)) if model.device.type == "cuda" else 0)

    t = time.perf_counter()
    loader = DataLoader(ImageTensors(ds.records["path"].tolist(), input_size=model.card.input_size,
                                     channels=model.card.channels), batch_size=args.batch_size,
                        num_workers=workers)
    for _batch in loader:
        pass
    loader_s = time.perf_counter() - t

    with tempfile.TemporaryDirectory() as cache:
        t = time.perf_counter()
        first = predict(model, ds, executor=ex, cache_dir=cache)
        uncached_s = time.perf_counter() - t
        t = time.perf_counter()
        second = predict(model, ds, executor=ex, cache_dir=cache)
        cached_s = time.perf_counter() - t
    assert not first.from_cache and second.from_cache
    print(f"{args.model} on {args.dataset}: {n} images, device {model.device}, "
          f"precision {first.settings['precision']}, batch {args.batch_size}, workers {workers}")
    print(f"loader alone        {n / loader_s:10.1f} images/s")
    print(f"loader + model      {n / uncached_s:10.1f} images/s (uncached predict)")
    print(f"cached predict      {n / cached_s:10.1f} images/s")
    print(f"model share of uncached time: {max(0.0, 1 - loader_s / uncached_s):.0%}")
    print(f"cached vs uncached speed-up: {uncached_s / cached_s:.1f}x")


if __name__ == "__main__":
    main()
