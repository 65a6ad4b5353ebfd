"""auditkit dashboard — the entry point: every page in the sidebar, titled in a committee's words.

``streamlit run app.py``. The landing page is :file:`home.py`; the views are the files
under ``pages/`` (``N_Name.py``, in order). ``st.navigation`` names each page, so the
sidebar reads "Home", "Overview", "Fairness", … rather than the entry script's file name.
"""

from __future__ import annotations

import re
from pathlib import Path

import streamlit as st

HERE = Path(__file__).resolve().parent

#: Sidebar titles where the file name is not the word a committee uses.
TITLES = {"Compare_versions": "Compare versions", "New_audit": "New audit"}


def page_title(path: Path) -> str:
    """``pages/5_Compare_versions.py`` -> ``"Compare versions"``."""
    stem = re.sub(r"^\d+_", "", path.stem)
    return TITLES.get(stem, stem.replace("_", " "))


pages = [st.Page(str(HERE / "home.py"), title="Home", default=True)]
pages += [st.Page(str(p), title=page_title(p), url_path=re.sub(r"^\d+_", "", p.stem))
          for p in sorted((HERE / "pages").glob("*.py"))]
st.navigation(pages).run()
