"""Real-browser smoke test: `streamlit run app.py` driven by Debian's headless Chromium.

One server for the session (tests/conftest.py ``demo_server``), shared with the page walk
(tests/test_browser_pages.py).

Visits the landing page and every page under pages/, checks the content is there and no
exception is shown, and saves a screenshot of each to test-artifacts/.
"""

from __future__ import annotations

import re

import pytest

from tests._browser import ARTIFACTS, BROWSER_MARKS, REPO, wait_for_text

pytestmark = BROWSER_MARKS


def _page_paths() -> list[tuple[str, str]]:
    pages = []
    for f in sorted((REPO / "pages").glob("*.py")):
        name = re.sub(r"^\d+_", "", f.stem)
        pages.append((f.stem, name))
    return pages


def test_landing_page_lists_models(demo_server: str, browser: object) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    browser.get(demo_server)  # type: ignore[attr-defined]
    body = wait_for_text(browser, "Audits on file")
    for model in ("derm-lesion v1", "derm-lesion v2", "cxr-covid v1", "mri-tumor v1"):
        assert model in body
    assert "weights match the card" in body
    assert not browser.find_elements("css selector", '[data-testid="stException"]')  # type: ignore[attr-defined]
    browser.save_screenshot(str(ARTIFACTS / "landing.png"))  # type: ignore[attr-defined]


@pytest.mark.parametrize(("stem", "path"), _page_paths())
def test_every_page_opens_without_error(demo_server: str, browser: object, stem: str,
                                        path: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    browser.get(f"{demo_server}/{path}")  # type: ignore[attr-defined]
    body = wait_for_text(browser, "Model", timeout=90)
    assert "Model" in body, body[:500]
    assert not browser.find_elements("css selector", '[data-testid="stException"]'), body[:2000]  # type: ignore[attr-defined]
    assert "Traceback" not in body
    browser.save_screenshot(str(ARTIFACTS / f"page_{stem}.png"))  # type: ignore[attr-defined]
