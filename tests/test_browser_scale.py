"""Every page in a real browser on a stored 1,000,000-image audit (issue 17).

The audit is built once per session by the benchmark's own builder
(``benchmarks.bench_scale_checks.build_million_audit``: the demo chest X-ray audit on
covid_cxr, its predictions table resampled to 1,000,000 rows and stored as Parquet),
served by one ``streamlit run app.py`` (tests/_browser.py) and every page is opened
twice by its address and twice by its sidebar link in headless Chromium. The seconds from navigation until Streamlit has finished
the script go to ``test-artifacts/page_timings_1m.json`` and are printed: this is a
measurement, not a timed test — it asserts that every page drew its title without an
exception, never a number of seconds (docs/performance.md quotes the timings).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from auditkit.evidence import open_table
from benchmarks.bench_scale_checks import (
    browser_timings,
    build_million_audit,
    dashboard_pages,
    print_browser_timings,
)
from tests._browser import ARTIFACTS, BROWSER_MARKS
from tests.conftest import real_data_root

pytestmark = [*BROWSER_MARKS, pytest.mark.slow]

N_IMAGES = 1_000_000


@pytest.fixture(scope="session")
def million_audit(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, float, Path]:
    """(root holding ``audits/``, seconds the build took, datasets) — built once per session."""
    data = real_data_root()
    if data is None:
        pytest.skip("the shared datasets are not at $AUDITKIT_DATASETS")
    root = tmp_path_factory.mktemp("million")
    with pytest.MonkeyPatch.context() as mp:  # the builder sets AUDITKIT_AUDITS / _CACHE
        mp.setenv("AUDITKIT_DATASETS", str(data))
        mp.setenv("AUDITKIT_AUDITS", str(root / "audits"))
        mp.setenv("AUDITKIT_CACHE", str(root / "cache"))
        t = time.perf_counter()
        build_million_audit(root, N_IMAGES)
        return root, time.perf_counter() - t, data


def test_every_page_draws_on_a_million_image_audit(
        million_audit: tuple[Path, float, Path]) -> None:
    root, build_s, data = million_audit
    (folder,) = (root / "audits").iterdir()
    stored = json.loads((folder / "audit.json").read_text(encoding="utf-8"))
    assert stored["evidence_files"]["predictions"]["rows"] == N_IMAGES
    assert (folder / "predictions.parquet").is_file()

    table = open_table(folder, "predictions")  # a page of the million rows, as a pager would
    t = time.perf_counter()
    page = table.page(654_321, 50, columns=["image"])
    page_s = time.perf_counter() - t
    assert page["image"].tolist() == [f"img_{k}" for k in range(654_321, 654_371)]

    rows = browser_timings(root, root / "streamlit.log", datasets=data)

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "page_timings_1m.json").write_text(json.dumps(
        {"n_images": N_IMAGES, "build_seconds": round(build_s, 1),
         "page_of_50_rows_seconds": round(page_s, 3),
         "measured": "seconds from navigation until the title shows and Streamlit has "
                     "finished the script (headless Chromium, one server); how = reload "
                     "(the page's address loaded afresh) or click (its sidebar link in the "
                     "running app)",
         "pages": rows}, indent=2) + "\n", encoding="utf-8")
    print(f"\nstored 1,000,000-image audit built in {build_s:.1f} s; a 50-row page of its "
          f"predictions table read in {page_s:.2f} s")
    print_browser_timings(rows)

    assert {r["page"] for r in rows} == {name for name, _, _ in dashboard_pages()}
    assert {r["how"] for r in rows} == {"reload", "click"}
    problems = [r for r in rows if r["exception"] or not r["title_shown"]]
    assert not problems, (problems, (root / "streamlit.log").read_text()[-3000:])
    # the pages drew this audit, not an empty state
    shown = {r["page"] for r in rows if r["model_shown"]}
    print("pages naming the audited model:", sorted(shown))
    assert {"0_Overview.py", "1_Fairness.py"} <= shown, sorted(shown)
    print("pages showing 1,000,000:", sorted({r["page"] for r in rows if r["million_shown"]}))
