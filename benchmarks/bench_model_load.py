"""What the safe loading costs: auditkit's checked load vs torch's own unchecked load.

    python benchmarks/bench_model_load.py [--repeats 5]

For each demo model: seconds for torch's own loader (``torch.jit.load``,
``torch.export.load``, ``torch.load(weights_only=True)``), for auditkit's static checks
alone, and for ``auditkit.load_model`` (sha256 + checks + load); then the ratio
auditkit / torch (baseline: torch's own loader). Each is warmed up once first.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch

import auditkit
from auditkit import _model_security as sec


def _seconds(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up: first imports and caches
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def _loaders(path: Path, fmt: str) -> tuple[Callable[[], object], Callable[[], object]]:
    """torch's own loader and auditkit's static checks for one weights file."""
    if fmt == "torchscript":
        return (lambda: torch.jit.load(str(path), map_location="cpu"),
                lambda: sec.check_torchscript_archive(path))
    if fmt == "export":
        return (lambda: torch.export.load(str(path)).module(),
                lambda: sec.check_export_archive(path))
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return (lambda: load_file(str(path)), lambda: None)
    return (lambda: torch.load(str(path), map_location="cpu", weights_only=True),
            lambda: sec.scan_file(path))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    logging.getLogger("torch").setLevel(logging.ERROR)
    print(f"{'model':18} {'format':12} {'torch s':>8} {'checks s':>9} {'auditkit s':>11} ratio")
    for ref in ("derm-lesion@v1", "mri-tumor@v1", "cxr-covid@v1", "derm-lesion@v2"):
        entry = auditkit.resolve_model(ref)
        plain, checks = _loaders(entry.weights_path, entry.card.format)
        base = _seconds(plain, args.repeats)
        check = _seconds(checks, args.repeats)
        ours = _seconds(partial(auditkit.load_model, ref, device="cpu"), args.repeats)
        print(f"{ref:18} {entry.card.format:12} {base:8.3f} {check:9.3f} {ours:11.3f} "
              f"{ours / base:5.2f}x")


if __name__ == "__main__":
    main()
