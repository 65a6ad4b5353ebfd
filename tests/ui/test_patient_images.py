"""Patient images: hidden by default for identifiable kinds, never where switched off."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest


def _page(dataset: str) -> None:
    import streamlit as st

    from ui.common import patient_images_allowed

    st.markdown(f"allowed: {patient_images_allowed(dataset, key='show_images')}")


def _allowed(at: AppTest) -> str:
    return next(m.value for m in at.markdown if m.value.startswith("allowed"))


def test_photographs_are_hidden_until_asked():
    at = AppTest.from_function(_page, args=("fitzpatrick17k",)).run()
    assert not at.exception
    assert _allowed(at) == "allowed: False"
    assert "photographs: a face, a tattoo or a birthmark" in at.caption[0].value
    at.toggle(key="show_images").set_value(True).run()
    assert _allowed(at) == "allowed: True"


def test_radiographs_are_shown_without_asking():
    at = AppTest.from_function(_page, args=("covid_cxr",)).run()
    assert _allowed(at) == "allowed: True"
    assert not at.toggle


@pytest.mark.parametrize("dataset", ["fitzpatrick17k", "covid_cxr"])
def test_switched_off_installation_shows_no_image(dataset: str,
                                                  monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("AUDITKIT_SHOW_IMAGES", "0")
    at = AppTest.from_function(_page, args=(dataset,)).run()
    assert _allowed(at) == "allowed: False"
    assert not at.toggle  # no way to ask
    assert "AUDITKIT_SHOW_IMAGES=0" in at.info[0].value
