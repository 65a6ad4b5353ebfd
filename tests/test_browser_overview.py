"""Real-browser check of the Overview on a stored audit of the real cxr-covid v1 model.

Uses the session's server and its audits of every demo model (tests/conftest.py
``demo_server``, ``demo_audits``), opens the Overview in headless Chromium, checks the
concern sentence and the seven answers are on the screen, and saves
``test-artifacts/overview_cxr-covid.png``.
"""

from __future__ import annotations

from typing import Any

import pytest

from auditkit.overview import QUESTIONS
from tests._browser import ARTIFACTS, BROWSER_MARKS, wait_for_text

pytestmark = [*BROWSER_MARKS, pytest.mark.slow]


def test_overview_of_cxr_covid_shows_the_concern(demo_server: str, demo_audits: Any,
                                                 browser: object) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    demo_audits("cxr-covid@v1")
    browser.get(f"{demo_server}/Overview")  # type: ignore[attr-defined]
    body = wait_for_text(browser, "no earlier version compared", timeout=120)
    assert ("This model is right on 59% of test images; answering 'covid' for every image "
            "would be right on 66%.") in body
    for _, question, _, _ in QUESTIONS:
        assert question in body
    assert "▲ concern" in body
    assert not browser.find_elements(  # type: ignore[attr-defined]
        "css selector", '[data-testid="stException"]')
    browser.save_screenshot(str(ARTIFACTS / "overview_cxr-covid.png"))  # type: ignore[attr-defined]
