"""Every page, for every demo model, in a real browser, after its check has run.

The session's audits of the four demo models (fast settings, tests/conftest.py
``demo_audits``) are opened on each page with that model picked in the sidebar; a
full-page screenshot goes to ``test-artifacts/walk/<model>/<page>.png`` and the page's
text is held to what a committee member must be able to trust:

- no number shows more than 4 decimals (in text and in table cells);
- no raw JSON (no ``st.json`` block, no ``{"`` in the text);
- every interval is shown with its n: a paragraph, caption or table showing "(a to b)"
  also says how many images (or patients, or explanations) it rests on; a metric's n is
  in the caption that follows its row.
"""

from __future__ import annotations

import re
import time
from typing import Any

import pytest

from tests._browser import ARTIFACTS, BROWSER_MARKS, full_page_screenshot, wait_for_text
from tests.conftest import DEMO_MODELS

pytestmark = [*BROWSER_MARKS, pytest.mark.slow]

#: Page URL path, its sidebar model picker's key, and text that shows the page has drawn.
PAGES = [("Overview", "overview_model", "Seven questions"),
         ("Fairness", "fairness_model", "What the audit finds"),
         ("Explanations", "explain_model", "Can these explanations be trusted?"),
         ("Robustness", "robustness_model", "In plain words."),
         ("Privacy", "privacy_model", "Membership inference")]

INTERVAL = re.compile(r"\((?:95% interval )?-?\d[\d.,]*%? to [-+]?\d[\d.,]*%?\)")
HAS_N = re.compile(r"n = \d|\bimages\b|\bpatients\b|explanations|\d+ of \d+")
TOO_PRECISE = re.compile(r"(?<![\w.])-?\d+\.\d{5,}")

#: Text blocks a reader sees: paragraphs and captions, metrics (with the blocks after
#: their row), and tables (header and every rendered cell).
BLOCKS_JS = """
const out = [];
document.querySelectorAll('[data-testid="stMain"] [data-testid="stMarkdownContainer"]')
  .forEach(e => { if (!e.closest('[data-testid="stMetric"]')) out.push(['text', e.innerText]); });
document.querySelectorAll('[data-testid="stMain"] [data-testid="stMetric"]').forEach(m => {
  let row = m.closest('[data-testid="stHorizontalBlock"]') || m;
  let after = [], el = row.closest('[data-testid="stElementContainer"], .stHorizontalBlock') || row;
  let sib = row.parentElement ? row.parentElement.nextElementSibling : null;
  for (let i = 0; i < 4 && sib; i++, sib = sib.nextElementSibling) after.push(sib.innerText);
  out.push(['metric', m.innerText + '\\n' + after.join('\\n')]);
});
document.querySelectorAll('[data-testid="stMain"] [data-testid="stDataFrame"]').forEach(t => {
  const cells = [...t.querySelectorAll('th, td, [role="columnheader"], [role="gridcell"]')]
    .map(c => c.textContent);
  out.push(['table', cells.join('\\n')]);
});
return out;
"""


def _pick(driver: Any, key: str, option: str) -> None:
    """Choose ``option`` in the selectbox with key ``key`` (a combobox with a listbox)."""
    if driver.find_element("css selector", f".st-key-{key} input").get_attribute(
            "value").split(" ")[0] == option:
        return
    opener = driver.find_element("css selector", f'.st-key-{key} button[aria-label="Open"]')
    driver.execute_script("arguments[0].click();", opener)
    deadline = time.time() + 10
    while time.time() < deadline:
        for choice in driver.find_elements("css selector", '[role="option"]'):
            if choice.text.strip().split(" ")[0] == option:
                driver.execute_script("arguments[0].click();", choice)
                time.sleep(1.0)
                return
        time.sleep(0.3)
    raise AssertionError(f"no option {option!r} in {key}")


def page_text_problems(blocks: list[list[str]], body: str) -> list[str]:
    """What a committee member would trip on in a page's text (empty when nothing)."""
    problems = []
    for kind, text in blocks:
        for number in TOO_PRECISE.findall(text):
            problems.append(f"{kind} shows {number} (more than 4 decimals)")
        if INTERVAL.search(text) and not HAS_N.search(text):
            problems.append(f"{kind} shows an interval without its n: {text[:300]!r}")
    if re.search(r"\{\s*\"", body):
        problems.append("raw JSON in the page text")
    return problems


def test_page_text_check_finds_what_it_must():
    """The checker itself: it flags a raw float, an interval without n, and JSON."""
    assert page_text_problems([["table", "gap\n-0.1270721456046533"]], "")
    assert page_text_problems([["text", "accuracy 62% (53% to 70%)"]], "")
    assert not page_text_problems([["text", "accuracy 62% (53% to 70%), n = 128 images"]], "")
    assert page_text_problems([], '{"counts": {"I": 3}}')


@pytest.mark.parametrize("ref", [r for r, _ in DEMO_MODELS])
def test_every_page_of_every_demo_model_reads_right(ref: str, demo_server: str,
                                                    demo_audits: Any, browser: Any) -> None:
    demo_audits(ref)
    out = ARTIFACTS / "walk" / ref.replace("@", "_")
    problems: list[str] = []
    for path, key, ready in PAGES:
        browser.get(f"{demo_server}/{path}")
        wait_for_text(browser, "Model", timeout=120)
        _pick(browser, key, ref)
        body = wait_for_text(browser, ready, timeout=180)
        assert ready in body, (ref, path, body[-2000:])
        assert not browser.find_elements("css selector", '[data-testid="stException"]'), \
            (ref, path, body[-2000:])
        assert not browser.find_elements("css selector", '[data-testid="stJson"]'), (ref, path)
        full_page_screenshot(browser, out / f"{path}.png")
        problems += [f"{ref} {path}: {p}"
                     for p in page_text_problems(browser.execute_script(BLOCKS_JS), body)]
    assert not problems, "\n".join(problems)


def test_sidebar_titles_are_words_a_committee_uses(demo_server: str, browser: Any) -> None:
    browser.get(demo_server)
    wait_for_text(browser, "Audits on file")
    nav = browser.find_element("css selector", '[data-testid="stSidebarNav"]').text
    titles = [t.strip() for t in nav.splitlines() if t.strip()]
    assert titles[:6] == ["Home", "Overview", "Fairness", "Explanations", "Robustness",
                          "Privacy"], titles
    assert "Compare versions" in titles and "app" not in titles
