"""The Compare versions page under AppTest: audit two versions, then the paired comparison."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch
from streamlit.testing.v1 import AppTest

from tests.conftest import write_model
from tests.ui.conftest import all_text

PAGE = str(Path(__file__).resolve().parents[2] / "pages" / "5_Compare_versions.py")


class DarkerNet(torch.nn.Module):
    """A second version: one logit from brightness with a shifted threshold."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x.mean(dim=(1, 2, 3)).unsqueeze(1) + 0.35) * 4.0


@pytest.fixture
def two_cxr_versions(tiny_covid: Path) -> Path:
    """tiny_covid's cxr-tiny v1 plus a v2, each with a split.csv (30 images held out from both)."""
    v2 = write_model(tiny_covid.parent / "v2", DarkerNet(), fmt="torchscript", channels=1, size=8,
                     name="cxr-tiny", version="v2", output="binary_logit",
                     class_names=["not_covid", "covid"])
    card = json.loads((v2 / "card.json").read_text())
    card["dataset"] = "covid_cxr"
    (v2 / "card.json").write_text(json.dumps(card))
    images = [f"images/{i}.png" for i in range(40)]
    for folder, train in ((tiny_covid, images[:5]), (v2, images[5:10])):
        pd.DataFrame({"image": images,
                      "split": ["train" if im in train else "test" for im in images]}).to_csv(
            folder / "split.csv", index=False)
    return v2


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # plotly/streamlit internals
def test_compare_page_audits_then_compares(two_cxr_versions: Path) -> None:
    at = AppTest.from_file(PAGE, default_timeout=180).run()
    assert not at.exception, at.exception
    assert at.sidebar.selectbox(key="compare_family").value == "cxr-tiny"
    # default: the two most recent versions
    assert at.sidebar.selectbox(key="compare_a_cxr-tiny").value == "v1"
    assert at.sidebar.selectbox(key="compare_b_cxr-tiny").value == "v2"
    assert "No stored audit of **cxr-tiny v1, v2**" in at.info[0].value
    at.sidebar.select_slider(key="compare_n_boot").set_value(200)
    at.sidebar.button(key="compare_run").click().run()
    assert not at.exception, at.exception
    text = all_text(at)
    # the plain-language summary comes first, with the product's verdict words
    assert "In plain words." in text
    assert "Compared on 30 of 40 images, held out from both versions" in text
    assert any(w in text for w in ("✔ meets", "▲ concern", "? cannot tell", "– not assessed"))
    assert "not worse than v1 by more than 5 points of accuracy" in text
    charts = at.get("plotly_chart")
    assert len(charts) == 2  # forest plot and trend
    forest = json.loads(charts[0].proto.spec)
    assert forest["data"][0]["y"][0].startswith("all images (n = 30 images, 30 patients)")
    shapes = forest["layout"]["shapes"]
    assert [s["x0"] for s in shapes] == [0, -5]  # no change and the δ margin
    trend = json.loads(charts[1].proto.spec)
    assert list(trend["data"][0]["x"]) == ["v1", "v2"]
    flips = at.dataframe[1].value
    row = flips[flips["label"] == "all images"].iloc[0]
    assert row["both_right"] + row["right_to_wrong"] + row["wrong_to_right"] + \
        row["both_wrong"] == 30
    # a wider margin moves the δ line
    at.sidebar.slider(key="compare_margin").set_value(10).run()
    assert not at.exception, at.exception
    shapes = json.loads(at.get("plotly_chart")[0].proto.spec)["layout"]["shapes"]
    assert [s["x0"] for s in shapes] == [0, -10]
    assert "by more than 10 points" in all_text(at)


def test_compare_page_with_one_version_says_so(tiny_covid: Path) -> None:
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    assert not at.exception, at.exception
    assert "has one version (v1): there is nothing to compare yet" in at.info[0].value


def test_compare_page_refuses_two_audits_of_different_data(two_cxr_versions: Path,
                                                           tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    import auditkit

    audits = tmp_path / "audits"
    monkeypatch.setenv("AUDITKIT_AUDITS", str(audits))
    data_root = two_cxr_versions.parents[2] / "data"
    ds = auditkit.load_dataset("covid_cxr", data_root=data_root)
    for v in ("v1", "v2"):
        model = auditkit.load_model(f"cxr-tiny@{v}", device="cpu")
        auditkit.run_audit(model=model, dataset=ds, out_dir=audits / f"cxr-tiny@{v}__covid_cxr",
                           config=auditkit.AuditConfig(n_boot=20))
    # tamper with v2's stored audit: it now claims other data
    path = audits / "cxr-tiny@v2__covid_cxr" / "audit.json"
    audit = json.loads(path.read_text())
    audit["dataset"]["hash"] = "0" * 64
    path.write_text(json.dumps(audit))
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    assert not at.exception, at.exception
    assert "Expected two audits of the same dataset content" in at.error[0].value
