"""The ``auditkit compare`` command (parser in :mod:`auditkit.cli`, body here)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from .. import wording
from .._local import installation_secret
from ..exceptions import ConfigError
from ._inputs import CompareSettings, compare_audits, find_audits, write_comparison


def _settings(args: argparse.Namespace) -> CompareSettings:
    return CompareSettings(
        n_boot=args.n_boot, seed=args.seed, margin=args.margin, alpha=args.alpha,
        min_group_size=args.min_group_size, small_cell_k=args.small_cell_k,
        intersections=[p.split(":") for p in args.intersection],
        held_out_only=not args.all_images)


def _audit_for(ref: str, dataset_name: str, args: argparse.Namespace, audits_dir: Path,
               progress: Any, executor: Any = None) -> Path:
    """The newest stored audit of ``ref`` on the dataset with these weights, or a new one
    (its model run by ``executor``: default the local one, ``--executor ray`` a cluster)."""
    from ..audit import AuditConfig, run_audit
    from ..data import load_dataset
    from ..models import load_model, resolve_model

    found = resolve_model(ref, args.registry)
    for entry in find_audits(audits_dir):
        a = entry["audit"]
        if (a["model"].get("name") == found.card.name
                and a["model"].get("version") == found.card.version
                and a["model"].get("sha256") == found.card.sha256
                and a["dataset"].get("name") == dataset_name):
            print(f"[auditkit] reusing the audit of {found.card.ref} in {entry['path']}",
                  file=sys.stderr)
            return Path(entry["path"])
    print(f"[auditkit] no stored audit of {found.card.ref} on {dataset_name}: running one",
          file=sys.stderr)
    model = load_model(ref, registry=args.registry, device=args.device,
                       trust_model_code=True if args.trust_model_code else None)
    # args.dataset, not its name: a dataset given by path is not found by name
    # keyed with the same folder's secret as `auditkit audit --cache-dir` would
    dataset = load_dataset(args.dataset, data_root=args.data_root, on_invalid="drop",
                           progress=progress, key_secret=installation_secret(args.cache_dir))
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    out = audits_dir / f"{found.card.ref}__{dataset.name}__{stamp}"
    config = AuditConfig(checks=["performance", "fairness"], seed=args.seed,
                         n_boot=args.n_boot, device=args.device,
                         batch_size=args.batch_size, precision=args.precision,
                         min_group_size=args.min_group_size, small_cell_k=args.small_cell_k)
    run_audit(model=model, dataset=dataset, config=config, out_dir=out, executor=executor,
              cache_dir=args.cache_dir, progress=progress)
    return out


def check_executor_use(args: argparse.Namespace) -> None:
    """Refuse ``--executor ray`` where no model runs: two audit folders are compared from
    their stored predictions."""
    if getattr(args, "executor", "local") == "ray" and not args.models:
        raise ConfigError(
            "--executor ray runs the audits of --models NAME@A,NAME@B --dataset D on a Ray "
            "cluster; two audit folders are compared from their stored predictions, with no "
            f"model run. Expected --models, or no --executor; got {len(args.audits)} audit "
            "folder(s).")


def run(args: argparse.Namespace, progress: Any, audits_dir: Path,
        executor: Any = None) -> int:
    """``auditkit compare``; ``executor`` runs the audits ``--models`` has to run."""
    settings = _settings(args)
    if args.models:
        if args.audits:
            raise ConfigError("Give either two audit folders or --models, not both; got "
                              f"{args.audits} and --models {args.models}.")
        refs = [r.strip() for r in args.models.split(",") if r.strip()]
        if len(refs) != 2 or not args.dataset:
            raise ConfigError("--models expects NAME@A,NAME@B (two versions) and --dataset; got "
                              f"--models {args.models!r} and --dataset {args.dataset!r}.")
        from ..data import find_dataset

        spec, _ = find_dataset(args.dataset, data_root=args.data_root)
        dirs = [_audit_for(r, spec.name, args, audits_dir, progress, executor) for r in refs]
    else:
        if len(args.audits) != 2:
            raise ConfigError("Expected two audit folders (AUDIT_DIR_A AUDIT_DIR_B) or --models "
                              f"NAME@A,NAME@B --dataset D; got {len(args.audits)} folder(s).")
        dirs = [Path(p) for p in args.audits]
    print(f"[auditkit] comparing {dirs[0]} (A) with {dirs[1]} (B)", file=sys.stderr)
    doc, paired = compare_audits(dirs[0], dirs[1], settings=settings, registry=args.registry,
                                 key_secret=installation_secret(args.cache_dir),
                                 data_root=args.data_root, progress=progress)
    labels = doc["labels"]["a"], doc["labels"]["b"]
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    out = Path(args.out) if args.out else audits_dir / (
        f"compare__{doc['a']['name']}@{labels[0]}__vs__{doc['b']['name']}@{labels[1]}__"
        f"{doc['dataset']['name']}__{stamp}")
    path = write_comparison(doc, paired, out)
    print(doc["images"]["description"])
    for sentence in doc["results"]["summary"]:
        print(sentence)
    for gap in doc["results"]["gaps"]:
        if gap["metric"] == "accuracy":
            print(wording.gap_change_sentence(gap, labels=labels))
    print(f"wrote {path} and {out / 'paired_predictions.csv'}")
    return 0
