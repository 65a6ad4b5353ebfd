"""Streamlit glue for the "New audit" page: staging uploads, parsing the edited drafts,
running the audit with the user's trust decision. The drafting itself is
:mod:`auditkit.drafts`."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import streamlit as st

import auditkit
from auditkit.data import dataset_registry_paths
from auditkit.drafts import (
    dataset_toml,
    draft_audit,
    save_drafts,
    trust_kwargs,
    validate_drafts,
)
from auditkit.models import registry_paths
from ui.common import new_run_dir


def stage_upload(upload: Any) -> Path:
    """Write an uploaded model file to a private temporary folder; returns its path."""
    folder = Path(tempfile.mkdtemp(prefix="auditkit-upload-"))
    path = folder / Path(upload.name).name  # never a path the uploader chose
    path.write_bytes(upload.getvalue())
    return path


def start_drafts(model_file: Path, dataset_path: str, trusted: bool,
                 table_upload: Any = None) -> None:
    """Draft both files and put them, editable, into the session."""
    table = None
    if table_upload is not None:
        import io

        import pandas as pd

        try:
            table = pd.read_csv(io.BytesIO(table_upload.getvalue()), dtype=str,
                                keep_default_na=False)
        except (pd.errors.ParserError, UnicodeDecodeError) as exc:
            raise auditkit.DataError(f"The uploaded table {table_upload.name} is not a readable "
                                     f"CSV file: {exc}.") from exc
    draft = draft_audit(model_file, dataset_path, trusted=trusted, table=table,
                        table_name=table_upload.name if table_upload is not None else "table.csv")
    table = draft.dataset.pop("_table", None)
    st.session_state["new_card_text"] = json.dumps(draft.card, indent=2)
    st.session_state["new_dataset_text"] = dataset_toml(draft.dataset)
    st.session_state["new_notes"] = draft.notes
    st.session_state["new_weights"] = str(model_file)
    st.session_state["new_table"] = table
    st.session_state["new_trusted"] = trusted  # the card draft carries the trust decision
    st.session_state.pop("new_saved", None)


def parse_card(text: str) -> tuple[dict[str, Any] | None, list[str]]:
    """The edited card text as a dict, or the JSON error (with its line) as a problem."""
    try:
        card = json.loads(text)
    except json.JSONDecodeError as exc:
        return None, [f"card.json is not valid JSON at line {exc.lineno}, column {exc.colno}: "
                      f"{exc.msg}"]
    return card, []


def check_drafts(card_text: str, dataset_text: str) -> dict[str, list[str]]:
    """Every problem of both edited drafts, one line each."""
    card, problems = parse_card(card_text)
    if card is None:
        return {"card": problems, "dataset": validate_drafts({}, dataset_text)["dataset"]}
    import tomllib

    table = st.session_state.get("new_table")
    try:
        data = tomllib.loads(dataset_text)
    except tomllib.TOMLDecodeError:
        data = None
    if table is not None and data is not None:
        return validate_drafts(card, {**data, "_table": table})
    # checking every image is slow for a large dataset: once per text and table version
    stamp: tuple[str, int] = ("", 0)
    if data is not None and isinstance(data.get("table"), str):
        path = Path(str(data.get("root") or ".")) / data["table"]
        if path.is_file():
            stamp = (str(path), path.stat().st_mtime_ns)
    return _validate(json.dumps(card, sort_keys=True), dataset_text, stamp)


@st.cache_data(show_spinner="Checking every image of the dataset…", max_entries=16)
def _validate(card_json: str, dataset_text: str, stamp: tuple[str, int]) -> dict[str, list[str]]:
    return validate_drafts(json.loads(card_json), dataset_text)


def default_dataset_registry() -> str:
    paths = dataset_registry_paths()
    return str(paths[0]) if paths else str(Path("auditkit-datasets").resolve())


def default_model_registry() -> str:
    return str(registry_paths()[0])


def save_edited(*, card_text: str, dataset_text: str, model_registry: str,
                dataset_registry: str, overwrite: bool) -> dict[str, Any]:
    """Save both edited drafts (never overwriting unasked); what was saved, for the session."""
    import tomllib

    card, problems = parse_card(card_text)
    if card is None:
        raise auditkit.ConfigError(problems[0])
    try:
        dataset = tomllib.loads(dataset_text)
    except tomllib.TOMLDecodeError as exc:
        raise auditkit.ConfigError(f"The dataset description is not valid TOML: {exc}.") from exc
    table = st.session_state.get("new_table")
    saved = save_drafts(card=card, weights=st.session_state["new_weights"],
                        dataset={**dataset, **({"_table": table} if table is not None else {})},
                        model_registry=model_registry, dataset_registry=dataset_registry,
                        overwrite=overwrite)
    return {"ref": f"{card['name']}@{card['version']}", "dataset": dataset["name"],
            "card": str(saved["card"]), "toml": str(saved["dataset"]),
            "files": [str(p) for p in saved.values()]}


def run_new_audit(*, saved: dict[str, Any], config: auditkit.AuditConfig,
                  trusted: bool) -> tuple[dict[str, Any], Path]:
    """Load the saved model (with the user's trust decision) and dataset; run with a progress bar."""
    model = auditkit.load_model(Path(saved["card"]).parent, device=config.device,
                                **trust_kwargs(trusted))
    dataset = auditkit.load_dataset(saved["toml"], on_invalid="drop")
    bar = st.progress(0.0, text="Starting…")

    def progress(done: int, total: int, message: str) -> None:
        bar.progress(min(1.0, done / total) if total else 1.0, text=f"{message}: {done} of {total}")

    out = new_run_dir(saved["ref"], saved["dataset"], "new")
    audit = auditkit.run_audit(model=model, dataset=dataset, config=config, out_dir=out,
                               progress=progress)
    bar.empty()
    return audit, out


def registry_env_hint(model_registry: str, dataset_registry: str) -> str | None:
    """What to set so the saved files appear in every page, when they would not yet."""
    hints = []
    models = [str(p.resolve()) for p in registry_paths()]
    if str(Path(model_registry).resolve()) not in models:
        hints.append(f"AUDITKIT_MODELS={model_registry}{os.pathsep}@bundled")
    datasets = [str(p.resolve()) for p in dataset_registry_paths()]
    if str(Path(dataset_registry).resolve()) not in datasets:
        hints.append(f"AUDITKIT_DATASET_REGISTRY={dataset_registry}")
    if not hints:
        return None
    return ("To see them in every page and in the CLI, start auditkit with "
            + " and ".join(f"`{h}`" for h in hints) + " (docs/models.md, docs/datasets.md).")
