"""The ``auditkit`` command: everything the dashboard shows, headless.

::

    auditkit models                      list the model registry (hash verified)
    auditkit datasets                    list the built-in and registered datasets
    auditkit audit --model NAME[@VER] --dataset NAME_OR_PATH --out DIR [--checks ...]
                   [--config audit.toml] [--small-cell-k K] [--n-boot N] ...
                   [--executor local|ray [--ray-address ADDRESS]]
    auditkit train NAME@VERSION          re-train a demo model from its recipe
    auditkit compare AUDIT_DIR_A AUDIT_DIR_B | --models NAME@A,NAME@B --dataset D
                     [--executor local|ray [--ray-address ADDRESS]]
                                         compare two versions on the same images
    auditkit users|trail|export ...      review accounts, the trail, release bundles
    auditkit report AUDIT_DIR [--format html|pdf] [--out FILE] [--criteria FILE]
                                         the committee's report (+ machine-readable card)

Bad input exits with code 2 and a message naming what was expected and what was found.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import wording
from ._version import __version__
from .exceptions import AuditKitError, ConfigError

__all__ = ["main"]


class _ProgressLine:
    """A single updating progress line on stderr (a new line per stage)."""

    def __init__(self, stream: Any = None) -> None:
        self.stream = stream or sys.stderr
        self.stage = ""
        self.last = 0.0
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()

    def __call__(self, done: int, total: int, message: str) -> None:
        now = time.monotonic()
        new_stage = message != self.stage
        finished = done >= total
        if not (new_stage or finished or now - self.last > (0.1 if self.tty else 2.0)):
            return
        if new_stage and self.stage and self.tty:
            self.stream.write("\n")
        self.stage, self.last = message, now
        pct = 100.0 * done / total if total else 100.0
        line = f"[auditkit] {message}: {done}/{total} ({pct:.0f}%)"
        if self.tty:
            self.stream.write("\r" + line + ("\n" if finished else ""))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()


def default_audits_dir() -> Path:
    """``$AUDITKIT_AUDITS`` or ``./audits``: where audits are written and listed."""
    return Path(os.environ.get("AUDITKIT_AUDITS", "audits"))


def _cmd_models(args: argparse.Namespace) -> int:
    from .models import list_models

    models = list_models(args.registry)
    if args.json:
        print(json.dumps([{**m.card.to_dict(), "folder": str(m.folder), "verified": m.verify(),
                           "trust": m.trust} for m in models], indent=2))
        return 0
    if not models:
        print("No models found.")
        return 0
    from .wording import model_trust_label

    print(f"{'model':28} {'task':48} {'format':12} {'sha256':10} {'verified':9} trust")
    for m in models:
        ok = "yes" if m.verify() else "NO - weights missing, not allowed or differ from card"
        task = m.card.task if len(m.card.task) <= 46 else m.card.task[:45] + "…"
        print(f"{m.card.ref:28} {task:48} {m.card.format:12} {m.card.sha256[:10]} {ok:9} "
              f"{model_trust_label(m.trust)}")
    return 0


def _cmd_datasets(args: argparse.Namespace) -> int:
    from .data import builtin_dataset_names, dataset_names, find_dataset, load_dataset
    from .exceptions import DatasetNotFoundError
    from .suppression import protected_overview
    from .wording import withheld_count

    def shown(counts: dict[str, Any]) -> dict[str, Any]:
        return {g: (withheld_count(10) if c is None else c) for g, c in counts.items()}

    builtins = set(builtin_dataset_names())
    for name in dataset_names():
        origin = "built-in" if name in builtins else "registered"
        try:
            spec, root = find_dataset(name, data_root=args.data_root)
            ds = load_dataset(spec, root=root, check_images=False, on_invalid="drop")
        except DatasetNotFoundError as exc:
            print(f"{name} ({origin}): NOT FOUND\n  {exc}\n")
            continue
        except AuditKitError as exc:
            print(f"{name} ({origin}): CANNOT BE USED\n  {exc}\n")
            continue
        # the same small-cell rule as every export: groups under 10 images or patients
        summary = protected_overview(ds.summary(), k=10, patient_counts=ds.patient_counts())
        print(f"{name} ({origin}): {summary['n_images']} images at {root}"
              + (f" ({len(ds.problems)} row(s) with problems left out)" if ds.problems else ""))
        print(f"  classes: {shown(summary['class_counts'])}")
        for attr, counts in summary["group_counts"].items():
            print(f"  {attr}: {shown(counts)}")
    return 0


def _parse_checks(text: str) -> list[str]:
    return [c.strip() for c in text.split(",") if c.strip()]


#: audit settings: CLI flag destination -> AuditConfig field (the config file uses the field names)
_SETTINGS = {
    "checks": "checks", "seed": "seed", "n_boot": "n_boot", "confidence": "confidence",
    "min_group_size": "min_group_size", "small_cell_k": "small_cell_k",
    "evaluate_on": "evaluate_on", "device": "device", "batch_size": "batch_size",
    "precision": "precision", "intersection": "intersections", "options": "options",
}


def _read_config_file(path: str) -> dict[str, Any]:
    import tomllib
    from dataclasses import fields

    from .audit import AuditConfig

    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError as exc:
        raise ConfigError(f"--config {path} does not exist; expected a TOML file of audit "
                          "settings (see auditkit audit --help).") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"--config {path} is not valid TOML: {exc}.") from exc
    known = [f.name for f in fields(AuditConfig)]
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ConfigError(f"--config {path} has unknown settings {unknown}; expected among "
                          f"{known}.")
    if isinstance(data.get("checks"), str):
        data["checks"] = _parse_checks(data["checks"])
    return data


def audit_config_from_args(args: argparse.Namespace) -> Any:
    """The :class:`AuditConfig` of ``auditkit audit``: defaults, then ``--config``, then flags."""
    from .audit import AuditConfig

    settings: dict[str, Any] = _read_config_file(args.config) if args.config else {}
    if args.checks is not None:
        settings["checks"] = _parse_checks(args.checks)
    if args.intersection:
        settings["intersections"] = [pair.split(":") for pair in args.intersection]
    if args.options is not None:
        try:
            options = json.loads(args.options)
        except json.JSONDecodeError as exc:
            raise ConfigError(
                f"--options must be a JSON object; got {args.options!r} instead ({exc})."
            ) from exc
        if not isinstance(options, dict):
            raise ConfigError(f"--options must be a JSON object; got {args.options!r} instead.")
        settings["options"] = {**settings.get("options", {}), **options}
    for dest, name in _SETTINGS.items():
        if dest in ("checks", "intersection", "options"):
            continue
        value = getattr(args, dest)
        if value is not None:
            settings[name] = value
    checks = list(settings.get("checks") or ["performance"])
    settings["checks"] = ["performance"] + [c for c in checks if c != "performance"]
    try:
        return AuditConfig(**settings)
    except TypeError as exc:
        raise ConfigError(f"Audit settings are not valid: {exc}.") from exc


def _executor_from_args(args: argparse.Namespace, config: Any) -> Any:
    """``--executor local`` (default) or ``ray`` (``--ray-address``; docs/performance.md)."""
    if args.executor == "ray":
        from .executors import RayExecutor

        device = "auto" if config.device == "auto" else (
            "cuda" if str(config.device).startswith("cuda") else "cpu")
        return RayExecutor(address=args.ray_address, batch_size=config.batch_size,
                           precision=config.precision, device=device)
    if args.ray_address:
        raise ConfigError(f"--ray-address {args.ray_address} needs --executor ray; got "
                          "--executor local.")
    return None  # run_audit's LocalExecutor with the config's batch size and precision


def _cmd_audit(args: argparse.Namespace) -> int:
    from .audit import run_audit
    from .data import load_dataset
    from .models import load_model

    config = audit_config_from_args(args)
    criteria = None
    if args.criteria:
        from .criteria import load_criteria

        criteria = load_criteria(args.criteria)  # refused before anything runs
    progress = _ProgressLine()
    executor = _executor_from_args(args, config)  # a bad --ray-address is refused first
    model = load_model(args.model, registry=args.registry, device=config.device,
                       trust_model_code=True if args.trust_model_code else None)
    from ._local import installation_secret

    dataset = load_dataset(args.dataset, data_root=args.data_root,
                           on_invalid="drop" if args.drop_invalid else "raise", progress=progress,
                           key_secret=installation_secret(args.cache_dir))
    if dataset.problems:
        print(f"[auditkit] went on without {dataset.n_rows_total - len(dataset)} invalid row(s) "
              f"of {dataset.n_rows_total}; first problem: {dataset.problems[0]}", file=sys.stderr)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    out = Path(args.out) if args.out else (
        default_audits_dir() / f"{model.card.name}@{model.card.version}__{dataset.name}__{stamp}")
    try:
        audit = run_audit(model=model, dataset=dataset, config=config, out_dir=out,
                          executor=executor, cache_dir=args.cache_dir, progress=progress,
                          overwrite=args.overwrite,
                          criteria=criteria.to_record() if criteria else None)
    finally:
        close = getattr(executor, "close", None)
        if close is not None:  # a local Ray cluster started for this audit is shut down
            close()
    perf = audit["results"].get("performance", {})
    if (perf.get("metrics") or {}).get("accuracy", {}).get("value") is not None:
        lines = list(perf.get("summary", []))
        if perf.get("may_include_training") and lines:
            print(lines.pop(0))  # "Training images may be included ..." comes first
        print(wording.performance_headline(perf))
        for line in lines:
            print(f"  {line}")
    evidence = (audit.get("evidence_files") or {}).get("predictions", {})
    print(f"wrote {out / 'audit.json'} and {out / evidence.get('file', 'predictions.csv')}")
    if criteria is not None:
        from .overview import evaluate_audit

        result, path = evaluate_audit(out, criteria=criteria)
        print(f"criteria {criteria.name!r} (hash {criteria.hash[:12]}…) recorded; evaluation "
              f"{path}")
        for answer in result.answers:
            print(f"  {answer.label:16} {answer.question}")
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from .criteria import load_criteria
    from .report import write_report

    criteria = load_criteria(args.criteria) if args.criteria else None
    paths = write_report(args.audit_dir, fmt=args.format, out=args.out, criteria=criteria)
    print(f"wrote {paths[0]} and {paths[1]}")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from .training import train_recipe

    train_recipe(args.recipe, out_root=args.out_root, data_root=args.data_root,
                 device=args.device, epochs=args.epochs, progress=_ProgressLine())
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    from .audit import AuditConfig
    from .compare._cli import check_executor_use, run

    check_executor_use(args)
    # the audits compare runs: --device, --batch-size and --precision (checked here, first)
    config = AuditConfig(device=args.device, batch_size=args.batch_size,
                         precision=args.precision)
    executor = _executor_from_args(args, config)  # a bad address is refused now
    if executor is None:  # local: built now, so a bad --batch-size or --precision is too
        from .predict import LocalExecutor

        executor = LocalExecutor(batch_size=config.batch_size, precision=config.precision)
    try:
        return run(args, _ProgressLine(), default_audits_dir(), executor=executor)
    finally:
        close = getattr(executor, "close", None)
        if close is not None:  # a local Ray cluster started for the audits is shut down
            close()


def _add_compare_parser(sub: Any) -> None:
    """``auditkit compare`` (issue 11): paired comparison of two model versions."""
    p = sub.add_parser(
        "compare", help="compare two versions of a model on the same held-out images",
        description="Compare version B with version A on the images held out from both "
                    "(paired bootstrap, McNemar, change in gap, non-inferiority). Writes "
                    "comparison.json and paired_predictions.csv (docs/compare.md). With "
                    "--models, a version without a stored audit on the dataset is audited "
                    "first, locally or on a Ray cluster (--executor ray).")
    p.add_argument("audits", nargs="*", metavar="AUDIT_DIR",
                   help="two audit folders: A (reference) then B")
    p.add_argument("--models", help="NAME@A,NAME@B: reuse their newest stored audits or run them")
    p.add_argument("--dataset", help="dataset for --models (built-in name or path)")
    p.add_argument("--out", help="output folder (default: a new audits/compare__… folder)")
    p.add_argument("--n-boot", type=int, default=1000, help="paired bootstrap resamples")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--margin", type=float, default=0.05,
                   help="non-inferiority margin δ as a proportion (default 0.05 = 5 points)")
    p.add_argument("--alpha", type=float, default=0.05, help="family-wise error rate")
    p.add_argument("--min-group-size", type=int, default=10)
    p.add_argument("--small-cell-k", type=int, default=10,
                   help="hide groups with fewer images or patients (0: off)")
    p.add_argument("--intersection", action="append", default=[], metavar="ATTR:ATTR")
    p.add_argument("--all-images", action="store_true",
                   help="compare every shared image, not only those held out from both")
    p.add_argument("--device", default="auto",
                   help="for the audits --models has to run: auto (default), cpu, cuda or "
                        "cuda:N")
    p.add_argument("--precision", default="auto",
                   help="for those audits: auto (default), float32, bf16 or fp16 (GPU)")
    p.add_argument("--batch-size", type=int, default=64,
                   help="for those audits: images per forward pass (default 64)")
    _add_executor_arguments(p, runs="the audits --models has to run (stored audits are "
                                    "reused as they are)")
    p.add_argument("--registry", help="model registry folder")
    _add_trust_argument(p)
    p.add_argument("--data-root", help="folder holding the dataset folders")
    p.add_argument("--cache-dir", help="prediction cache folder")
    p.set_defaults(func=_cmd_compare)


def _add_executor_arguments(p: argparse.ArgumentParser, *, runs: str) -> None:
    """``--executor local|ray`` and ``--ray-address`` (docs/performance.md), for ``runs``."""
    p.add_argument("--executor", choices=["local", "ray"], default="local",
                   help=f"where the model runs for {runs}: local (default, this process) or "
                        "ray (a Ray cluster; needs pip install -e '.[ray]'; same numbers)")
    p.add_argument("--ray-address", metavar="ADDRESS",
                   help="with --executor ray: HOST:PORT of a running cluster (`ray start "
                        "--head` prints it), ray://HOST:PORT or auto; default $RAY_ADDRESS, "
                        "else a local cluster is started for the run and shut down after it")


_REGISTRY_HELP = ("model registry folder(s), ':'-separated; '@bundled' is the demo models "
                  "(default: $AUDITKIT_MODELS, else the bundled models/)")

_AUDIT_EPILOG = """\
config file (--config audit.toml), every key optional:
  checks = ["performance", "fairness"]   # or "performance,fairness"
  seed = 0
  n_boot = 1000
  confidence = 0.95
  min_group_size = 10
  small_cell_k = 10
  evaluate_on = "auto"                    # auto | test | all
  device = "auto"
  batch_size = 64
  precision = "auto"
  intersections = [["sex", "age"]]
  [options.robustness]                    # per-check settings, as in --options
  n_images = 200

exit codes: 0 done; 2 bad input (a message says what was expected and what was found).
"""


def _add_trust_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--trust-model-code", action="store_true",
                   help="load TorchScript / torch.export weights, which carry code (they "
                        "must still pass auditkit's static checks); off by default")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="auditkit",
        description="Audit trained medical-imaging models: accuracy, fairness across patient "
                    "groups, explanations, robustness and privacy.",
    )
    parser.add_argument("--version", action="version", version=f"auditkit {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("models", help="list the model registry")
    p.add_argument("--registry", help=_REGISTRY_HELP)
    p.add_argument("--json", action="store_true", help="print the cards as JSON")
    p.set_defaults(func=_cmd_models)

    p = sub.add_parser("datasets", help="list the built-in and registered datasets "
                                        "($AUDITKIT_DATASET_REGISTRY) and where they were found")
    p.add_argument("--data-root", help="folder holding the built-in dataset folders")
    p.set_defaults(func=_cmd_datasets)

    p = sub.add_parser(
        "audit", help="audit a model on a dataset",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Audit a model on a dataset. Every setting has a flag; the same settings "
                    "can come from --config FILE (flags given on the command line win).",
        epilog=_AUDIT_EPILOG,
    )
    p.add_argument("--model", required=True,
                   help="NAME[@VERSION] in the registry, or a model folder (docs/models.md)")
    p.add_argument("--dataset", required=True,
                   help="built-in or registered name, a dataset .toml, or a folder with "
                        "auditkit.toml (docs/datasets.md)")
    p.add_argument("--out", help="output folder (default: a new audits/NAME@VERSION__DATASET__TIME)")
    p.add_argument("--config", metavar="AUDIT.TOML",
                   help="TOML file of audit settings (keys below); flags override it")
    p.add_argument("--checks", help="comma-separated: performance,fairness,explain,robustness,"
                                    "privacy (default performance)")
    p.add_argument("--device", help="auto (default), cpu, cuda or cuda:N")
    p.add_argument("--precision", help="auto (default), float32, bf16 or fp16 (GPU)")
    p.add_argument("--batch-size", type=int, help="images per forward pass (default 64)")
    p.add_argument("--seed", type=int, help="seed of every random process (default 0)")
    p.add_argument("--n-boot", type=int, help="bootstrap resamples for intervals (default 1000)")
    p.add_argument("--confidence", type=float,
                   help="interval level, e.g. 0.95 (default); in [0.5, 1)")
    p.add_argument("--min-group-size", type=int,
                   help="groups smaller than this are 'too few to judge' (default 10)")
    p.add_argument("--small-cell-k", type=int,
                   help="small-cell protection: groups under k images/patients are suppressed "
                        "in every export (default 10; 0 turns it off)")
    p.add_argument("--intersection", action="append", default=[], metavar="ATTR:ATTR",
                   help="audit two attributes jointly, e.g. sex:age (repeatable)")
    p.add_argument("--evaluate-on", choices=["auto", "test", "all"],
                   help="rows to measure on: auto (default) = the model's test split, stopping "
                        "when the split does not match the dataset; test = the split, required; "
                        "all = every image, saying training images may be included")
    p.add_argument("--options", help='per-check settings as JSON, e.g. '
                                     '\'{"robustness": {"n_images": 200}}\'')
    _add_executor_arguments(p, runs="the audit")
    p.add_argument("--registry", help=_REGISTRY_HELP)
    _add_trust_argument(p)
    p.add_argument("--data-root", help="folder holding the built-in dataset folders")
    p.add_argument("--cache-dir", help="prediction cache folder (default ~/.cache/auditkit)")
    p.add_argument("--drop-invalid", action="store_true",
                   help="go on with the valid rows when some rows have problems")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the audit in a used --out folder (its audit files are cleared)")
    p.add_argument("--criteria", metavar="FILE",
                   help="acceptance criteria (TOML) fixed before the results: recorded with "
                        "their hash in audit.json and evaluated (docs/overview.md)")
    p.set_defaults(func=_cmd_audit)

    p = sub.add_parser("report", help="the committee's report of a stored audit (HTML or PDF)")
    p.add_argument("audit_dir", metavar="AUDIT_DIR", help="folder holding audit.json")
    p.add_argument("--format", default="html", choices=["html", "pdf"])
    p.add_argument("--out", help="report file (default: AUDIT_DIR/report.FORMAT); the "
                                 "machine-readable card is written beside it as STEM.card.json")
    p.add_argument("--criteria", metavar="FILE",
                   help="judge against these criteria (default: those recorded in the audit, "
                        "else the shipped default for the model's task); kept as a new "
                        "evaluation, audit.json is never changed")
    p.set_defaults(func=_cmd_report)

    p = sub.add_parser("train", help="re-train a demo model from its recipe (seeded)")
    p.add_argument("recipe", help="NAME@VERSION of a recipe, e.g. derm-lesion@v1")
    p.add_argument("--out-root", help="registry folder to write into (default: models/)")
    p.add_argument("--data-root", help="folder holding the dataset folders")
    p.add_argument("--device", default="auto")
    p.add_argument("--epochs", type=int, help="override the recipe's epochs")
    p.set_defaults(func=_cmd_train)

    _add_compare_parser(sub)

    from ._review_cli import add_review_commands  # users, trail, export (docs/review.md)

    add_review_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code (2 for bad input)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except AuditKitError as exc:
        print(f"auditkit: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into `head` and closed early: not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
