"""auditkit's PGD sweep against a bare torchattacks loop over the same batches.

Both sides attack the same images, at the same budgets (0.5, 1, 2, 4, 8 / 255), with
the same PGD settings (10 steps, α = ε/4, random start, ``torch.manual_seed`` before
each budget) and both compute the predictions on the attacked images (robust
accuracy needs them). The bare loop is what a user would write by hand: a
``nn.Module`` doing the card's normalization, then ``torchattacks.PGD`` batch by
batch. Runs alternate (bare, auditkit, bare, …) and the median of each is compared.
The last line printed is the overhead ratio (auditkit / bare); target ≤ 1.10.

    python benchmarks/bench_robustness.py [--model derm-lesion@v1] [--n-images 64]

Without the demo models or datasets it falls back to a tiny random SmallResNet on
random images (say so when quoting the number).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from torch import nn

EPS = [0.5 / 255, 1 / 255, 2 / 255, 4 / 255, 8 / 255]


class _Normalized(nn.Module):
    def __init__(self, module: nn.Module, mean: list[float], std: list[float]) -> None:
        super().__init__()
        self.module = module
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.module((x - self.mean) / self.std)
        if out.shape[1] == 1:  # single-logit binary model: [0, z] as auditkit does
            out = torch.cat([torch.zeros_like(out), out], dim=1)
        return out


def _inputs(ref: str, n: int, device: str):
    import auditkit
    from auditkit.robustness import sample_images
    from auditkit.robustness._check import _load_images

    try:
        model = auditkit.load_model(ref, device=device)
    except auditkit.AuditKitError as exc:
        print(f"(demo model not available: {exc}; using a tiny random model)")
        return _tiny(n, device)
    try:
        dataset = auditkit.load_dataset(model.card.dataset, check_images=False)
    except auditkit.AuditKitError:
        print("(dataset not on this machine: attacking uniform random images instead)")
        torch.manual_seed(0)
        x = torch.rand(n, model.card.channels, *model.card.input_size)
        return model, x, np.arange(n) % model.n_classes, f"{ref} on random images"
    rows = sample_images(dataset.records, n, stratify_by=None, rng=np.random.default_rng(0))
    x = _load_images(model, dataset.records["path"].iloc[rows].tolist())
    y = np.asarray([model.card.class_names.index(c) for c in dataset.records["label"].iloc[rows]])
    return model, x, y, ref


def _tiny(n: int, device: str):
    import auditkit
    from auditkit.architectures import SmallResNet
    from auditkit.models import LoadedModel, ModelCard

    torch.manual_seed(0)
    module = SmallResNet(in_channels=3, num_outputs=3).eval().to(device)
    card = ModelCard(name="tiny", version="v0", task="benchmark", class_names=["a", "b", "c"],
                     positive_class="b", output="softmax", input_size=[64, 64], channels=3,
                     normalization={"mean": [0.5] * 3, "std": [0.25] * 3}, format="state_dict",
                     weights="none", sha256="0" * 64, architecture="small_resnet")
    model = LoadedModel(card=card, module=module, device=auditkit.select_device(device))
    return model, torch.rand(n, 3, 64, 64), np.arange(n) % 3, "tiny random SmallResNet"


def bare_sweep(model, x: torch.Tensor, y: np.ndarray, batch_size: int, seed: int) -> list[float]:
    import torchattacks

    net = _Normalized(model.module, model.card.normalization["mean"],
                      model.card.normalization["std"]).to(model.device).eval()
    yt = torch.as_tensor(y)
    accs = []
    for eps in EPS:
        atk = torchattacks.PGD(net, eps=eps, alpha=eps / 4, steps=10, random_start=True)
        torch.manual_seed(seed)
        advs = []
        for i in range(0, len(x), batch_size):
            advs.append(atk(x[i:i + batch_size].to(model.device),
                            yt[i:i + batch_size].to(model.device)).detach().cpu())
        correct = 0
        with torch.no_grad():
            for i, adv in zip(range(0, len(x), batch_size), advs):
                pred = net(adv.to(model.device)).argmax(1).cpu()
                correct += int((pred == yt[i:i + batch_size]).sum())
        accs.append(correct / len(x))
    return accs


def auditkit_sweep(model, x: torch.Tensor, y: np.ndarray, batch_size: int, seed: int
                   ) -> list[float]:
    from auditkit.robustness import AdversarialAttack, AttackModel, predict_classes

    wrapped = AttackModel(model)
    clean, _ = predict_classes(wrapped, x, batch_size=batch_size)
    accs = []
    for eps in EPS:
        out = AdversarialAttack("pgd", eps=eps, seed=seed, batch_size=batch_size).run(
            wrapped, x, y, clean_pred=clean)
        accs.append(float((out.attacked_pred == y).mean()))
    return accs


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="derm-lesion@v1")
    p.add_argument("--n-images", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--device", default="auto")
    args = p.parse_args()
    model, x, y, what = _inputs(args.model, args.n_images, args.device)
    print(f"model: {what}; {len(x)} images {tuple(x.shape[1:])}; device {model.device}; "
          f"torch threads {torch.get_num_threads()}; PGD-10 at ε = 0.5, 1, 2, 4, 8 /255")
    bare_sweep(model, x[:8], y[:8], args.batch_size, 0)  # warm-up (TorchScript profiling)
    auditkit_sweep(model, x[:8], y[:8], args.batch_size, 0)
    times = {"bare": [], "auditkit": []}
    results = {}
    for _ in range(args.repeats):
        for name, fn in (("bare", bare_sweep), ("auditkit", auditkit_sweep)):
            if model.device.type == "cuda":
                torch.cuda.synchronize()
            t = time.perf_counter()
            results[name] = fn(model, x, y, args.batch_size, 0)
            if model.device.type == "cuda":
                torch.cuda.synchronize()
            times[name].append(time.perf_counter() - t)
    for name in ("bare", "auditkit"):
        print(f"{name:9s} median {statistics.median(times[name]):.2f}s over {args.repeats} runs "
              f"({', '.join(f'{t:.2f}' for t in times[name])}); robust accuracy "
              + ", ".join(f"{a:.3f}" for a in results[name]))
    if results["bare"] != results["auditkit"]:
        print("WARNING: robust accuracies differ between the two loops")
    ratio = statistics.median(times["auditkit"]) / statistics.median(times["bare"])
    print(f"overhead ratio (auditkit / bare torchattacks): {ratio:.3f}")


if __name__ == "__main__":
    main()
