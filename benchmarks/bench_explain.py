"""Explanation speed: shap's expected gradients vs the pure model cost of the same work.

    python benchmarks/bench_explain.py                       # derm-lesion@v1 if trained, CPU
    python benchmarks/bench_explain.py --model synthetic-224 --device cuda

The baseline is what the explanation cannot avoid: ``n_samples x explained outputs``
forward+backward passes of the model, in batches of the same size. auditkit computes
expected gradients with shap's own estimator and draws, but builds the path samples on
the device and packs several images into each pass; shap.GradientExplainer itself (a
Python loop per sample with a host copy each) is timed beside it. auditkit explains
only the predicted class (and the true class when it differs; for a two-class model
that second map is free, it is minus the first). The script also times shap's default of
explaining every class, which costs a multiple of the same work for maps nobody looks at.

Printed: seconds per image, the ratio to the baseline (target <= 1.5x), where the rest
goes (shap's per-sample Python loop and copies vs the model's forward+backward passes),
and on a GPU the peak memory. The ratio is printed last.
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import torch

from auditkit.explain import ImageExplainer
from auditkit.explain._base import _ShapGradientRows, _TargetScores, as_logits_module


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _model(name: str, device: torch.device):  # noqa: ANN202
    """(module mapping [0, 1] images to logits, (C, H, W), label)."""
    if name.startswith("synthetic-"):
        from auditkit.architectures import SmallResNet

        size = int(name.split("-")[1])
        torch.manual_seed(0)
        widths = (64, 128, 256, 512) if size >= 224 else (16, 32, 64, 128)
        net = SmallResNet(in_channels=3, num_outputs=3, widths=widths).eval().to(device)
        return net, (3, size, size), f"SmallResNet{list(widths)} at {size}x{size}, random weights"
    import auditkit

    model = auditkit.load_model(name, device=str(device))
    card = model.card
    return (as_logits_module(model), (card.channels, *card.input_size),
            f"{card.ref} ({card.format}, {card.input_size[0]}x{card.input_size[1]})")


def baseline_seconds(net: torch.nn.Module, shape: tuple[int, ...], *, n_samples: int,
                     n_outputs: int, batch: int, device: torch.device, repeats: int) -> float:
    """Seconds for n_samples x n_outputs forward+backward passes, per image."""
    wrapper = _TargetScores(net, [0])
    x = torch.rand((batch, *shape), device=device)
    n_batches = math.ceil(n_samples / batch)
    last = n_samples - (n_batches - 1) * batch

    def once() -> None:
        for _ in range(n_outputs):
            for b in range(n_batches):
                xb = x[: (last if b == n_batches - 1 else batch)].clone().requires_grad_()
                out = wrapper(xb)
                g = torch.autograd.grad(out[:, 0].sum(), xb)[0]
                g.cpu()  # shap also brings every gradient back to the host
    once()
    _sync(device)
    t = time.perf_counter()
    for _ in range(repeats):
        once()
    _sync(device)
    return (time.perf_counter() - t) / repeats


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default=None,
                   help="NAME@VERSION, or synthetic-64 / synthetic-128 / synthetic-224 "
                        "(default: derm-lesion@v1 when trained, else synthetic-64)")
    p.add_argument("--device", default="auto")
    p.add_argument("--n-images", type=int, default=8)
    p.add_argument("--n-samples", type=int, default=32)
    p.add_argument("--background-size", type=int, default=16)
    p.add_argument("--batch-size", default="auto")
    args = p.parse_args()
    from auditkit.models import default_registry, select_device

    device = select_device(args.device)
    name = args.model or ("derm-lesion@v1" if (default_registry() / "derm-lesion" / "v1" /
                                                "card.json").is_file() else "synthetic-64")
    net, shape, label = _model(name, device)
    batch_opt = args.batch_size if args.batch_size == "auto" else int(args.batch_size)
    explainer = ImageExplainer(method="gradient", n_samples=args.n_samples,
                               background_size=args.background_size, batch_size=batch_opt,
                               random_state=0)
    batch = explainer.resolved_batch_size(shape, device)
    g = torch.Generator().manual_seed(0)
    images = torch.rand((args.n_images, *shape), generator=g).to(device)
    background = torch.rand((args.background_size, *shape), generator=g).to(device)
    with torch.no_grad():
        n_classes = int(net(images[:1]).shape[1])
    print(f"model: {label}; device {device}; {args.n_images} images, {args.n_samples} samples, "
          f"background {args.background_size}, batch {batch}, {n_classes} classes")
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    # the explanation auditkit runs: the predicted class, images packed into shared batches
    targets = [[0]] * args.n_images
    explainer.explain(net, images[:2], background=background, targets=targets[:2])  # warm-up
    _sync(device)
    t = time.perf_counter()
    explainer.explain(net, images, background=background, targets=targets)
    _sync(device)
    per_image = (time.perf_counter() - t) / args.n_images
    peak = (f"; peak GPU memory {torch.cuda.max_memory_allocated(device) / 2**30:.2f} GiB"
            if device.type == "cuda" else "")
    base = baseline_seconds(net, shape, n_samples=args.n_samples, n_outputs=1, batch=batch,
                            device=device, repeats=max(3, args.n_images // 2))
    # shap.GradientExplainer itself, same draws (the reference the engine reproduces)
    ref = _ShapGradientRows(args.n_samples, net, background, batch)
    n_ref = min(4, args.n_images)
    _sync(device)
    t = time.perf_counter()
    for i in range(n_ref):
        ref(images[i: i + 1], [0], seed=i)
    _sync(device)
    shap_per_image = (time.perf_counter() - t) / n_ref
    # every class explained (shap's default when no output is chosen)
    t = time.perf_counter()
    explainer.explain(net, images[:n_ref], background=background,
                      targets=[list(range(n_classes))] * n_ref)
    _sync(device)
    every_class = (time.perf_counter() - t) / n_ref
    print(f"explain (predicted class): {per_image:.4f} s/image{peak}")
    print(f"baseline ({args.n_samples} samples x 1 output x forward+backward, batch {batch}): "
          f"{base:.4f} s/image; the rest ({max(0.0, per_image - base):.4f} s/image) is "
          f"building path samples on the device, the score/base pass and the copy back")
    print(f"shap.GradientExplainer itself (same draws, per-sample Python loop and host "
          f"copies): {shap_per_image:.4f} s/image ({shap_per_image / base:.1f}x the baseline)")
    print(f"every class ({n_classes}) explained: {every_class:.4f} s/image "
          f"({every_class / per_image:.1f}x the predicted-class explanation)")
    print(f"ratio explain / baseline: {per_image / base:.2f}x (target <= 1.5x)")


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
