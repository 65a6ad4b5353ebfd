"""A new user's journey in a real browser: the "New audit" page drafts the card and the
dataset description for a TorchScript model and DICOM images, the user corrects them,
saves, runs the audit; the dataset then shows on the landing page and in the Fairness
page's picker. Screenshots of each step go to test-artifacts/."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests._browser import ARTIFACTS, BROWSER_MARKS, streamlit_server
from tests._browser import wait_for_text as _wait_for_text
from tests._byo import doc_block, make_hospital_dicoms, make_hospital_model

pytestmark = BROWSER_MARKS


@pytest.fixture(scope="module")
def newcomer(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from tests.conftest import real_data_root

    data_root = real_data_root()
    if data_root is None:
        pytest.skip("real datasets not found")
    base = tmp_path_factory.mktemp("newcomer")
    data = base / "hospital_cxr"
    make_hospital_dicoms(data_root, data)
    built = make_hospital_model(base / "scratch")
    (base / "our_models").mkdir()
    (base / "our_datasets").mkdir()
    return {"data": data, "model_file": built / "model.torchscript.pt",
            "models": base / "our_models", "datasets": base / "our_datasets", "base": base}


@pytest.fixture(scope="module")
def server(newcomer: dict[str, Path]) -> Iterator[str]:
    """Its own server: the newcomer's model and dataset registries start empty."""
    env = {"AUDITKIT_AUDITS": str(newcomer["base"] / "audits"),
           "AUDITKIT_CACHE": str(newcomer["base"] / "cache"),
           "AUDITKIT_MODELS": str(newcomer["models"]),
           "AUDITKIT_DATASET_REGISTRY": str(newcomer["datasets"])}
    with streamlit_server(env, newcomer["base"] / "streamlit.log") as url:
        yield url


def _type(driver: object, selector: str, text: str, *, apply: str) -> None:
    from selenium.webdriver.common.keys import Keys

    box = driver.find_element("css selector", selector)  # type: ignore[attr-defined]
    box.click()
    box.send_keys(Keys.CONTROL, "a")
    box.send_keys(Keys.DELETE)
    box.send_keys(text)
    box.send_keys(*{"enter": (Keys.ENTER,), "ctrl-enter": (Keys.CONTROL, Keys.ENTER)}[apply])
    time.sleep(1.5)


def _click_text(driver: object, tag: str, text: str, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:  # the page may still be re-running
        for el in driver.find_elements("tag name", tag):  # type: ignore[attr-defined]
            try:
                if text in el.text:
                    el.click()
                    time.sleep(1.5)
                    return
            except Exception:  # noqa: BLE001 - an element replaced while re-rendering
                break
        time.sleep(1)
    raise AssertionError(f"no <{tag}> reading {text!r}")


def test_new_audit_journey_in_the_browser(server: str, browser: object,  # noqa: F811
                                          newcomer: dict[str, Path]) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    browser.get(f"{server}/New_audit")  # type: ignore[attr-defined]
    _wait_for_text(browser, "Give a model file and a dataset")
    _type(browser, 'input[aria-label^="Model file on this computer"]',
          str(newcomer["model_file"]), apply="enter")
    _type(browser, 'input[aria-label^="Dataset: a folder"]', str(newcomer["data"]),
          apply="enter")
    _click_text(browser, "label", "I trust this model file's code")
    _click_text(browser, "button", "Draft the card and the dataset description")
    body = _wait_for_text(browser, "problem(s) to correct")
    assert "field 'task'" in body and "Dry run: the model accepts 1-channel 128x128" in body
    browser.save_screenshot(str(ARTIFACTS / "new_audit_1_drafted.png"))  # type: ignore[attr-defined]

    card = json.loads(doc_block("models.md", "## Worked example", "json"))
    drafted = browser.find_element(  # type: ignore[attr-defined]
        "css selector", 'textarea[aria-label="Model card (card.json)"]').get_attribute("value")
    card["sha256"] = json.loads(drafted)["sha256"]
    _type(browser, 'textarea[aria-label="Model card (card.json)"]', json.dumps(card),
          apply="ctrl-enter")
    toml = doc_block("datasets.md", "## DICOM images", "toml").replace(
        'root = "/data/pacs_export"', f'root = "{newcomer["data"]}"')
    _type(browser, 'textarea[aria-label="Dataset description (TOML)"]', toml,
          apply="ctrl-enter")
    body = _wait_for_text(browser, "Both files are valid.")
    assert "Both files are valid." in body, body[:3000]
    _click_text(browser, "button", "Save both files")
    body = _wait_for_text(browser, "Saved:")
    assert (newcomer["models"] / "cxr-hospital" / "v1" / "card.json").is_file()
    assert (newcomer["datasets"] / "hospital_cxr.toml").is_file()
    _click_text(browser, "label", "all images (training images may be included)")
    _click_text(browser, "button", "Run the audit")
    body = _wait_for_text(browser, "Training images may be included", timeout=180)
    assert "all 40 images of hospital_cxr" in body
    assert not browser.find_elements("css selector", '[data-testid="stException"]')  # type: ignore[attr-defined]
    summary = [el for el in browser.find_elements("tag name", "p")  # type: ignore[attr-defined]
               if el.text.startswith("Training images may be included")]
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'});",  # type: ignore[attr-defined]
                           summary[-1])
    browser.save_screenshot(str(ARTIFACTS / "new_audit_2_ran.png"))  # type: ignore[attr-defined]

    browser.get(server)  # type: ignore[attr-defined]
    body = _wait_for_text(browser, "Audits on file")
    assert "hospital_cxr (registered)" in body and "cxr-hospital" in body
    browser.save_screenshot(str(ARTIFACTS / "new_audit_3_landing.png"))  # type: ignore[attr-defined]
    browser.get(f"{server}/Fairness")  # type: ignore[attr-defined]
    body = _wait_for_text(browser, "hospital_cxr", timeout=120)
    assert "cxr-hospital@v1" in body and "hospital_cxr" in body
    assert not browser.find_elements("css selector", '[data-testid="stException"]')  # type: ignore[attr-defined]
    browser.save_screenshot(str(ARTIFACTS / "new_audit_4_fairness_picker.png"))  # type: ignore[attr-defined]
