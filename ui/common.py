"""Streamlit-only helpers shared by the pages: caching wrappers, pickers, progress.

The library (:mod:`auditkit`) never imports streamlit; this module is the only glue.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import UTC
from pathlib import Path
from typing import Any

import streamlit as st

import auditkit
from auditkit import wording
from auditkit.cli import default_audits_dir
from auditkit.controls import is_control
from auditkit.wording import control_banner, model_trust_warning


def _route_through_navigation() -> None:
    """Send a page opened by its own URL through ``app.py``'s ``st.navigation``.

    Streamlit runs a page of the ``pages/`` folder directly (its older multipage mode,
    whose sidebar names the entry page after its file: "app") until some session has
    run ``app.py`` and called ``st.navigation``. The first page run in a fresh server
    switches that mode off and reruns, so the sidebar reads Home, Overview, Fairness, …
    from the first visit on (tests/test_browser_pages.py opens pages by URL first).
    Uses a Streamlit internal; where it is missing nothing changes.
    """
    try:
        from streamlit.runtime.pages_manager import PagesManager
    except ImportError:  # pragma: no cover - a Streamlit without it
        return
    if getattr(PagesManager, "uses_pages_directory", None):
        PagesManager.uses_pages_directory = False
        st.rerun()


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
        out.append({**m.card.to_dict(), "folder": str(m.folder), "verified": m.verify(),
                    "trust": m.trust})
    return out


def _trust_key(ref: str) -> str:
    return f"trust_model_code__{ref}"


def loaded_model(ref: str, device: str = "auto") -> auditkit.LoadedModel:
    """The model, loaded with the trust the user gave it in the sidebar (if asked).

    A model that cannot be loaded (not trusted, refused by the static checks, weights
    missing or changed) stops the page with the reason, never a traceback.
    """
    trusted = st.session_state.get(_trust_key(ref))
    try:
        return _loaded_model(ref, device, None if trusted is None else bool(trusted))
    except auditkit.ModelError as exc:
        st.error(f"The model **{ref}** was not loaded:\n\n```\n{exc}\n```")
        st.stop()
        raise AssertionError("unreachable") from exc  # st.stop() raises


@st.cache_resource(show_spinner=False)
def _loaded_model(ref: str, device: str, trust_model_code: bool | None
                  ) -> auditkit.LoadedModel:
    return auditkit.load_model(ref, device=device, trust_model_code=trust_model_code)


def trust_model_code_switch(card: dict[str, Any]) -> None:
    """Sidebar switch "I trust this model's code", shown only for models that need it.

    TorchScript and torch.export weights carry code; auditkit runs it only when the
    user says so (demo models auditkit ships need no switch). Trusted code must still
    pass auditkit's static checks.
    """
    if card.get("trust") != "required":
        return
    ref = f"{card['name']}@{card['version']}"
    default = os.environ.get("AUDITKIT_TRUST_MODEL_CODE", "").strip().lower() in (
        "1", "true", "yes")
    trusted = st.sidebar.toggle(
        "I trust this model's code", value=default, key=_trust_key(ref),
        help=f"{ref} is saved as {card['format']}, a format that carries code. Turn this on "
             "only if you trust whoever built the file. auditkit still refuses files that "
             "read or write files, start processes, use the network or print.")
    if not trusted:
        st.sidebar.warning(model_trust_warning(ref), icon="🔒")


@st.cache_resource(show_spinner="Checking the dataset's images…")
def loaded_dataset(name: str, data_root: str | None = None) -> auditkit.Dataset:
    return auditkit.load_dataset(name, data_root=data_root, on_invalid="drop")


@st.cache_data(show_spinner=False)
def dataset_overview(name: str, data_root: str | None = None) -> dict[str, Any]:
    """Table-only summary (no image decoding) for the landing page."""
    spec, root = auditkit.find_dataset(name, data_root=data_root)
    from auditkit.suppression import protected_overview

    ds = auditkit.load_dataset(spec, root=root, check_images=False, on_invalid="drop")
    # the same small-cell rule as every export: groups under 10 images or patients (and
    # the complementary group) show as "fewer than 10"
    summary = protected_overview(ds.summary(), k=10, patient_counts=ds.patient_counts())
    return {**summary, "description": spec.description, "license": spec.license,
            "n_rows_left_out": len(ds.problems)}


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
    trust_model_code_switch(card)
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
        st.info(f"The dataset **{md_text(name)}** is not on this computer.")
        st.code(str(exc), language=None)
        st.stop()
    except auditkit.DataError as exc:
        st.error(f"The dataset **{md_text(name)}** cannot be used:")
        st.code(str(exc), language=None)
        st.stop()
    if dataset.problems:
        shown = "\n".join(str(p) for p in dataset.problems[:10])
        st.warning(
            f"{dataset.n_rows_total - len(dataset)} of {dataset.n_rows_total} rows of "
            f"**{md_text(name)}** have problems and were left out; the audit uses the "
            f"{len(dataset)} valid rows."
        )
        st.code(shown, language=None)
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

    try:
        audit = auditkit.run_audit(model=model, dataset=dataset, config=config, out_dir=out_dir,
                                   progress=progress)
    except auditkit.AuditKitError as exc:  # e.g. an audits folder that cannot be written
        bar.empty()
        st.error("The audit could not be run or saved:")
        st.code(str(exc), language=None)
        st.stop()
        raise AssertionError("unreachable") from exc  # st.stop() raises
    bar.empty()
    return audit


def new_run_dir(ref: str, dataset_name: str, check: str) -> Path:
    """A fresh folder for a page's run: earlier audits are never overwritten."""
    from datetime import datetime

    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S-%f")
    return default_audits_dir() / f"{ref}__{dataset_name}__{check}__{stamp}"


def viewer_audience() -> str:
    """This session's audience: in-house for a signed-in member, else the deployment's."""
    from auditkit.export import audience_for
    from ui.auth import session_user

    return audience_for(session_user())


def stored_audits(root: Path | None = None) -> list[dict[str, Any]]:
    """Readable audits under the audits folder (newest first), as this viewer may see them.

    A signed-in member of the institution reads each audit's in-house copy (every group
    with its exact n); anyone else the deployment's default (:func:`viewer_audience`).
    See :func:`show_unreadable_audits`.
    """
    return auditkit.list_audits(root or default_audits_dir(), audience=viewer_audience())[0]


def show_unreadable_audits(root: Path | None = None) -> None:
    """Name every audit.json of the audits folder that cannot be read, and why (never raises)."""
    bad = auditkit.list_audits(root or default_audits_dir())[1]
    if bad:
        from auditkit.wording import unreadable_audits

        st.warning(unreadable_audits(len(bad)) + "\n\n"
                   + "\n".join(f"- {md_text(b['path'])}: {md_text(b['why'])}" for b in bad))


_MARKDOWN_SPECIALS = frozenset("\\`*[]<>|~$")


def chart_text(value: Any) -> str:
    """``value`` as literal text in a plotly label: plotly renders ``<a href>``, ``<b>`` and
    ``<br>`` in legend names, axis categories and titles, so ``<``/``>``/``&`` are escaped."""
    import html

    return html.escape(str(value), quote=False)


def md_text(value: Any) -> str:
    """``value`` as literal text inside ``st.markdown``/``st.caption``: no links, images or HTML.

    Line breaks become spaces and every character that could start markup is
    backslash-escaped: brackets (links, images, ``:red[...]``), ``<`` (HTML, autolinks),
    emphasis and code marks, ``$`` (LaTeX), table bars, an underscore at a word edge, and
    a leading ``#``, ``-``, ``+``, ``=``, ``>`` or ``1.``. A group name, card text or file
    name supplied by a user is so shown as written.
    """
    text = " ".join(str(value).split())
    out = []
    for i, c in enumerate(text):
        inner = (0 < i < len(text) - 1 and text[i - 1].isalnum() and text[i + 1].isalnum())
        if c in _MARKDOWN_SPECIALS or (c == "_" and not inner):
            out.append("\\" + c)
        else:
            out.append(c)
    escaped = "".join(out)
    head = escaped.split(" ", 1)[0]
    if escaped[:1] in ("#", "-", "+", "=", ">"):
        escaped = "\\" + escaped
    elif head[:-1].isdigit() and head[-1:] in (".", ")"):
        escaped = head[:-1] + "\\" + escaped[len(head) - 1:]
    return escaped


def newest_audit(check: str, ref: str, dataset_name: str
                 ) -> tuple[dict[str, Any] | None, Path | None]:
    """The newest stored audit of ``ref`` on ``dataset_name`` that ran ``check``, and its folder."""
    for entry in stored_audits():
        a = entry["audit"]  # read_audit checked these fields' types
        if (f"{a['model']['name']}@{a['model']['version']}" == ref
                and a["dataset"]["name"] == dataset_name and check in a["results"]):
            return a, Path(entry["path"])
    return None, None


def show_audience(audit: dict[str, Any] | None) -> None:
    """A caption saying whose view of the audit this is (in-house or release)."""
    from auditkit.wording import audience_view
    from ui.auth import session_user

    if audit is None:
        return
    user = session_user()
    audience = audit.get("audience", "release")
    st.caption(audience_view(audience, signed_in_as=user.full_name if user and
                             audience == "in-house" else None))


def require_stored_result(check: str, ref: str, dataset_name: str, *, missing: str,
                          require_assessed: bool = True
                          ) -> tuple[dict[str, Any], dict[str, Any], Path]:
    """The newest stored audit running ``check``, its result and folder — or stop the page.

    Shows ``missing`` (what to press) when there is none, and a warning when the check
    ran but was not assessed (unless ``require_assessed`` is False).
    """
    audit, folder = newest_audit(check, ref, dataset_name)
    show_audience(audit)
    if audit is None or folder is None:
        st.info(missing)
        st.stop()
        raise AssertionError("unreachable")  # st.stop() raises; this satisfies type checkers
    result = audit["results"][check]
    if not isinstance(result, dict):
        st.warning(f"The stored {check} result of {md_text(folder)} is not readable.")
        st.stop()
        raise AssertionError("unreachable")
    if require_assessed and result.get("status") != "assessed":
        st.warning(f"Not assessed: {md_text(result.get('reason'))}")
        st.stop()
    return audit, result, folder


def stored_result(check: str, ref: str, dataset_name: str) -> dict[str, Any] | None:
    """The newest stored audit of ``ref`` on ``dataset_name`` that ran ``check``."""
    return newest_audit(check, ref, dataset_name)[0]


def show_table(raw: Any, columns: Sequence[wording.Column], *, key: str, file_name: str,
               caption: str | None = None) -> None:
    """A table a committee reads, with the full raw table one click away.

    ``columns`` picks and names what matters (:func:`auditkit.wording.reader_table`: every
    number formatted, at most 4 decimals, intervals with their value); the download
    button gives every column of ``raw`` as CSV.
    """
    st.dataframe(wording.reader_table(raw, columns), hide_index=True, key=key, width="stretch")
    st.download_button(f"Download the full table ({len(raw.columns)} columns, CSV)",
                       data=raw.to_csv(index=False).encode("utf-8"), file_name=file_name,
                       mime="text/csv", key=f"{key}_csv")
    if caption:
        st.caption(caption)


def patient_images_allowed(dataset_name: str, key: str) -> bool:
    """Whether this page may draw patient images now, saying why not when it may not.

    Never when the deployment switched images off (``AUDITKIT_SHOW_IMAGES=0``); for
    identifiable kinds (photographs, or a kind the dataset does not state) only after the
    viewer ticks "Show patient images"; radiographs and MRI are shown by default.
    """
    from auditkit.suppression import images_identifiable, images_may_be_shown

    kind = getattr(auditkit.dataset_spec(dataset_name), "image_kind", None)
    if not images_may_be_shown():
        st.info(wording.images_hidden_reason(kind or "images", allowed=False))
        return False
    if not images_identifiable(kind):
        return True
    st.caption(wording.images_hidden_reason(
        f"{kind}s" if kind else "images of an unstated kind", allowed=True))
    return bool(st.toggle("Show patient images", value=False, key=key))


# every page imports this module: the first page run of a fresh server goes through
# st.navigation (see _route_through_navigation)
_route_through_navigation()
