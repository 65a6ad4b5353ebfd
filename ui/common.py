"""Streamlit-only helpers shared by the pages: caching wrappers, pickers, progress.

The library (:mod:`auditkit`) never imports streamlit; this module is the only glue.
"""

from __future__ import annotations

import json
import os
from datetime import UTC
from pathlib import Path
from typing import Any

import streamlit as st

import auditkit
from auditkit.cli import default_audits_dir
from auditkit.controls import is_control
from auditkit.wording import control_banner


def registry_models(registry: str | None = None) -> list[dict[str, Any]]:
    """Cards of the registry with a verified flag.

    Cached by the files' sizes and modification times, so a replaced weights file is
    re-hashed (and flagged) on the next page load.
    """
    from auditkit.models import registry_paths

    roots = registry_paths(registry)
    stamp = tuple(sorted((str(p), p.stat().st_mtime_ns, p.stat().st_size)
                         for root in roots if root.exists()
                         for p in root.rglob("*") if p.is_file()))
    return _registry_models(os.pathsep.join(str(r) for r in roots), stamp)


@st.cache_data(show_spinner=False)
def _registry_models(roots: str, stamp: tuple) -> list[dict[str, Any]]:
    out = []
    for m in auditkit.list_models(roots):
        out.append({**m.card.to_dict(), "folder": str(m.folder), "verified": m.verify()})
    return out


@st.cache_resource(show_spinner=False)
def loaded_model(ref: str, device: str = "auto") -> auditkit.LoadedModel:
    return auditkit.load_model(ref, device=device)


@st.cache_resource(show_spinner="Checking the dataset's images…")
def loaded_dataset(name: str, data_root: str | None = None) -> auditkit.Dataset:
    return auditkit.load_dataset(name, data_root=data_root, on_invalid="drop")


@st.cache_data(show_spinner=False)
def dataset_overview(name: str, data_root: str | None = None) -> dict[str, Any]:
    """Table-only summary (no image decoding) for the landing page."""
    spec, root = auditkit.find_dataset(name, data_root=data_root)
    from auditkit.suppression import suppress_counts

    ds = auditkit.load_dataset(spec, root=root, check_images=False, on_invalid="drop")
    summary = ds.summary()
    # the same small-cell rule as every export: tiny groups show as "fewer than 10"
    summary["group_counts"] = {a: suppress_counts(c, k=10)
                               for a, c in summary["group_counts"].items()}
    return {**summary, "description": spec.description, "license": spec.license}


def attribute_names_of(dataset_name: str) -> list[str]:
    """Attribute names of a built-in or registered dataset (its description; no data needed)."""
    return [a.name for a in auditkit.dataset_spec(dataset_name).attributes]


def data_root() -> str | None:
    """``$AUDITKIT_DATA_ROOT``: searched first for the built-in datasets (docs/datasets.md)."""
    return os.environ.get("AUDITKIT_DATA_ROOT") or None


def dataset_choices() -> list[str]:
    """Every dataset a page can pick: the built-in ones, then those registered in
    ``$AUDITKIT_DATASET_REGISTRY`` (docs/datasets.md). A broken registry stops the page
    with its message rather than hiding the user's datasets."""
    try:
        return auditkit.dataset_names()
    except auditkit.AuditKitError as exc:
        st.error(f"The dataset registry could not be read:\n\n```\n{exc}\n```")
        st.stop()
        raise AssertionError("unreachable") from exc  # st.stop() raises


def pick_model_and_dataset(key: str) -> tuple[str, str]:
    """Sidebar pickers for a model and a dataset; the dataset defaults to the card's."""
    models = registry_models()
    if not models:
        st.info("No models in the registry. Add a folder with card.json under models/.")
        st.stop()
    # demo models first (the default pick), control models after them
    models = sorted(models, key=is_control)
    refs = [f"{m['name']}@{m['version']}" for m in models]
    ref = st.sidebar.selectbox("Model", refs, key=f"{key}_model",
                               format_func=lambda r: f"{r} (control)" if is_control(
                                   models[refs.index(r)]) else r)
    card = models[refs.index(ref)]
    show_control_warning(card)
    names = dataset_choices()
    default = names.index(card["dataset"]) if card.get("dataset") in names else 0
    # keyed by model too, so switching the model re-selects that model's own dataset
    dataset = st.sidebar.selectbox("Dataset", names, index=default,
                                   key=f"{key}_dataset_{card['name']}")
    return ref, dataset


def show_control_warning(card: dict[str, Any]) -> bool:
    """A warning banner on every page while a control model (deliberately flawed) is selected.

    Returns True when the banner was shown. Control models exist to validate auditkit
    (docs/validation.md); nothing they show is about a model fit for patients.
    """
    if not is_control(card):
        return False
    st.warning(control_banner(card), icon="⚠️")
    return True


def require_dataset(name: str) -> auditkit.Dataset:
    """Load a dataset or explain, in plain words, what to do when it is missing."""
    try:
        dataset = loaded_dataset(name, data_root())
    except auditkit.DatasetNotFoundError as exc:
        st.info(f"The dataset **{name}** is not on this computer.\n\n```\n{exc}\n```")
        st.stop()
    except auditkit.DataError as exc:
        st.error(f"The dataset **{name}** cannot be used:\n\n```\n{exc}\n```")
        st.stop()
    if dataset.problems:
        shown = "\n".join(str(p) for p in dataset.problems[:10])
        st.warning(
            f"{dataset.n_rows_total - len(dataset)} of {dataset.n_rows_total} rows of **{name}** "
            f"have problems and were left out; the audit uses the {len(dataset)} valid rows."
            f"\n\n```\n{shown}\n```"
        )
    return dataset


def run_with_progress(*, ref: str, dataset_name: str, config: auditkit.AuditConfig,
                      out_dir: Path | None = None) -> dict[str, Any]:
    """Run an audit with a progress bar; returns the audit dict."""
    model = loaded_model(ref, config.device)
    dataset = require_dataset(dataset_name)
    bar = st.progress(0.0, text="Starting…")

    def progress(done: int, total: int, message: str) -> None:
        bar.progress(min(1.0, done / total) if total else 1.0,
                     text=f"{message}: {done} of {total}")

    audit = auditkit.run_audit(model=model, dataset=dataset, config=config, out_dir=out_dir,
                               progress=progress)
    bar.empty()
    return audit


def new_run_dir(ref: str, dataset_name: str, check: str) -> Path:
    """A fresh folder for a page's run: earlier audits are never overwritten."""
    from datetime import datetime

    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S-%f")
    return default_audits_dir() / f"{ref}__{dataset_name}__{check}__{stamp}"


def stored_audits(root: Path | None = None) -> list[dict[str, Any]]:
    """Audits already written under the audits folder (newest first)."""
    base = root or default_audits_dir()
    found = []
    for path in sorted(base.glob("*/audit.json")):
        try:
            audit = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            continue  # a damaged file is listed nowhere rather than crashing the page
        found.append({"path": str(path.parent), "audit": audit})
    found.sort(key=lambda a: a["audit"].get("created_at", ""), reverse=True)
    return found


def newest_audit(check: str, ref: str, dataset_name: str
                 ) -> tuple[dict[str, Any] | None, Path | None]:
    """The newest stored audit of ``ref`` on ``dataset_name`` that ran ``check``, and its folder."""
    for entry in stored_audits():
        a = entry["audit"]
        if (f"{a['model']['name']}@{a['model']['version']}" == ref
                and a["dataset"]["name"] == dataset_name and check in a.get("results", {})):
            return a, Path(entry["path"])
    return None, None


def require_stored_result(check: str, ref: str, dataset_name: str, *, missing: str,
                          require_assessed: bool = True
                          ) -> tuple[dict[str, Any], dict[str, Any], Path]:
    """The newest stored audit running ``check``, its result and folder — or stop the page.

    Shows ``missing`` (what to press) when there is none, and a warning when the check
    ran but was not assessed (unless ``require_assessed`` is False).
    """
    audit, folder = newest_audit(check, ref, dataset_name)
    if audit is None or folder is None:
        st.info(missing)
        st.stop()
        raise AssertionError("unreachable")  # st.stop() raises; this satisfies type checkers
    result = audit["results"][check]
    if require_assessed and result.get("status") != "assessed":
        st.warning(f"Not assessed: {result.get('reason')}")
        st.stop()
    return audit, result, folder


def stored_result(check: str, ref: str, dataset_name: str) -> dict[str, Any] | None:
    """The newest stored audit of ``ref`` on ``dataset_name`` that ran ``check``."""
    return newest_audit(check, ref, dataset_name)[0]


def fmt_ci(value: float | None, ci: list[float | None] | None, pct: bool = True) -> str:
    """``"81% (74-87%)"`` or ``"0.81 (0.74-0.87)"``; "n/a" for undefined values."""
    if value is None:
        return "n/a"
    lo, hi = ci or [None, None]
    if pct:
        text = f"{100 * value:.0f}%"
        return text + (f" ({100 * lo:.0f}–{100 * hi:.0f}%)" if lo is not None else "")
    text = f"{value:.2f}"
    return text + (f" ({lo:.2f}–{hi:.2f})" if lo is not None else "")
