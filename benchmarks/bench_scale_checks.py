"""Scale: the fairness check on 100,000 and 1,000,000 predictions, and pages on a 1M audit.

    python benchmarks/bench_scale_checks.py checks             # 100k and 1M, 1,000 resamples
    python benchmarks/bench_scale_checks.py checks --sizes 100000
    python benchmarks/bench_scale_checks.py match              # chunked vs in-memory, 100k
    python benchmarks/bench_scale_checks.py fairlearn          # ratio to MetricFrame, 10k
    python benchmarks/bench_scale_checks.py pages              # every page, 1M-image audit
    python benchmarks/bench_scale_checks.py pages --browser    # ... and in headless Chromium

Synthetic predictions: 12 groups, patients with 1-5 images each (about 3), a binary
model whose sensitivity differs by group. The fairness check is
``FairnessAudit(n_boot=1000, n_permutations=1000)`` with all its metrics: analytic
intervals, the patient bootstrap for macro AUROC and ECE, and the permutation gap tests.
Each size runs in a fresh subprocess so its peak resident memory
(``resource.getrusage(...).ru_maxrss``, interpreter and imports included) is its own;
wall time and CPU time (``time.process_time``) are printed side by side because the
benchmark machine is shared. ``match`` compares the chunked bootstrap and permutations
with the same computation held in memory in one block (the pre-chunking method) on
100,000 predictions; ``pages`` writes a 1,000,000-image audit folder with the
library's own writers in a temporary directory and times each page under
``streamlit.testing.v1.AppTest`` (target: under 2 s each); with ``--browser`` it also
serves the audit with ``streamlit run app.py`` and times every page in headless Chromium
(:func:`browser_timings`, shared with tests/test_browser_scale.py). Prints ratios, not
pass/fail; the numbers go in docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
N_GROUPS = 12
#: The demo model of the stored million-image audit (``pages``).
MODEL = "cxr-covid@v1"


def synthetic(n: int, *, seed: int = 0) -> dict[str, Any]:
    """``n`` predictions of about ``n / 3`` patients in 12 groups (seeded)."""
    rng = np.random.default_rng(seed)
    per_patient = rng.integers(1, 6, size=n // 2 + 10)  # more than enough; cut at n
    patient = np.repeat(np.arange(per_patient.size), per_patient)[:n]
    group_of_patient = rng.integers(0, N_GROUPS, size=per_patient.size)
    group = np.array([f"group {k + 1:02d}" for k in range(N_GROUPS)])[group_of_patient[patient]]
    sex = np.array(["female", "male"])[rng.integers(0, 2, size=per_patient.size)[patient]]
    y = (rng.random(n) < 0.3).astype(int)
    shift = 0.05 * group_of_patient[patient] / N_GROUPS  # weaker detection in later groups
    score = np.clip(0.25 + 0.5 * y - shift * y + rng.normal(0, 0.18, n), 0.0, 1.0)
    proba = np.column_stack([1.0 - score, score])
    return {"y": y, "pred": (score >= 0.5).astype(int), "proba": proba,
            "patients": np.char.add("p", patient.astype(str)),
            "groups": pd.DataFrame({"group": group, "sex": sex})}


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _run_fairness(n: int, *, n_boot: int, in_memory: bool = False) -> dict[str, Any]:
    from auditkit import _gaps, _metrics
    from auditkit.fairness import FairnessAudit

    if in_memory:  # one block: the whole (B, n) matrices at once, as before chunking
        _metrics.BOOTSTRAP_CHUNK_CELLS = 10 ** 15
        _gaps.PERMUTATION_CHUNK_CELLS = 10 ** 15
    d = synthetic(n)
    before = _peak_mb()
    wall, cpu = time.perf_counter(), time.process_time()
    res = FairnessAudit(n_boot=n_boot, n_permutations=n_boot, random_state=0).compute(
        y=d["y"], pred=d["pred"], proba=d["proba"], positive=1, groups=d["groups"],
        patients=d["patients"])
    return {"n": n, "n_boot": n_boot, "wall_s": time.perf_counter() - wall,
            "cpu_s": time.process_time() - cpu, "peak_rss_mb": _peak_mb(),
            "rss_before_mb": before, "in_memory": in_memory,
            "groups": [{"attribute": e["attribute"], "group": e["group"],
                        **{m: e[m]["ci"] for m in ("auroc_macro", "ece", "ece_debiased",
                                                   "sensitivity", "auroc")}}
                       for e in res["groups"]],
            "gaps": [{k: d.get(k) for k in ("attribute", "metric", "p_adjusted", "gap_ci", "ci")}
                     for d in res["disparities"]]}


def _subprocess(args: list[str]) -> dict[str, Any]:
    out = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True,
                         check=True, cwd=ROOT)
    return json.loads(out.stdout.strip().splitlines()[-1])


def checks(sizes: list[int], n_boot: int) -> None:
    rows = [_subprocess(["_one", str(n), str(n_boot)]) for n in sizes]
    print(f"fairness check, {N_GROUPS} groups + sex, patients with 1-5 images, "
          f"{n_boot} resamples and {n_boot} permutations")
    print(f"{'n':>10} {'wall s':>8} {'cpu s':>8} {'peak RSS MB':>12} {'us/pred (cpu)':>14}")
    for r in rows:
        print(f"{r['n']:>10,} {r['wall_s']:8.1f} {r['cpu_s']:8.1f} {r['peak_rss_mb']:12.0f} "
              f"{1e6 * r['cpu_s'] / r['n']:14.1f}")
    if len(rows) >= 2:
        a, b = rows[0], rows[-1]
        print(f"cpu time ratio {b['n']:,}/{a['n']:,}: {b['cpu_s'] / a['cpu_s']:.1f}x for "
              f"{b['n'] / a['n']:.0f}x the predictions (linear = {b['n'] / a['n']:.0f}x)")
    print(f"peak memory at {rows[-1]['n']:,}: {rows[-1]['peak_rss_mb']:.0f} MB "
          f"(target < 2048 MB)")


def match(n: int, n_boot: int) -> None:
    chunked = _subprocess(["_one", str(n), str(n_boot)])
    whole = _subprocess(["_one", str(n), str(n_boot), "in-memory"])
    diffs = [abs(a - b) for ga, gb in zip(chunked["groups"], whole["groups"])
             for m in ("auroc_macro", "ece", "ece_debiased", "sensitivity", "auroc")
             for a, b in zip(ga[m], gb[m]) if a is not None and b is not None]
    gap_diffs = [abs(a - b) for ga, gb in zip(chunked["gaps"], whole["gaps"])
                 for a, b in zip(ga.get("gap_ci") or ga.get("ci") or [],
                                 gb.get("gap_ci") or gb.get("ci") or [])]
    p_diffs = [abs((ga["p_adjusted"] or 0) - (gb["p_adjusted"] or 0))
               for ga, gb in zip(chunked["gaps"], whole["gaps"])]
    print(f"{n:,} predictions, {n_boot} resamples: chunked vs in-memory (one block)")
    print(f"  group interval bounds: largest difference {max(diffs):.2e} over {len(diffs)}")
    print(f"  gap simultaneous-interval bounds: largest difference {max(gap_diffs):.2e}; "
          f"adjusted p-values: {max(p_diffs):.2e}")
    print(f"  peak RSS chunked {chunked['peak_rss_mb']:.0f} MB vs in-memory "
          f"{whole['peak_rss_mb']:.0f} MB (ratio {whole['peak_rss_mb'] / chunked['peak_rss_mb']:.1f}x)"
          f"; cpu {chunked['cpu_s']:.1f} s vs {whole['cpu_s']:.1f} s")


def versus_fairlearn(n: int = 10_000) -> None:
    import warnings

    from fairlearn.metrics import MetricFrame
    from sklearn.metrics import accuracy_score, recall_score

    from auditkit.fairness import FairnessAudit

    def specificity(y_true, y_pred):  # noqa: ANN001, ANN202
        return recall_score(y_true, y_pred, pos_label=0, zero_division=np.nan)

    d = synthetic(n)
    wall, cpu = time.perf_counter(), time.process_time()
    FairnessAudit(n_boot=1000, n_permutations=1000, random_state=0).compute(
        y=d["y"], pred=d["pred"], proba=d["proba"], positive=1, groups=d["groups"][["group"]],
        patients=d["patients"])
    ours_wall, ours_cpu = time.perf_counter() - wall, time.process_time() - cpu
    wall, cpu = time.perf_counter(), time.process_time()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        MetricFrame(metrics={"accuracy": accuracy_score, "sensitivity": recall_score,
                             "specificity": specificity},
                    y_true=d["y"], y_pred=d["pred"], sensitive_features=d["groups"]["group"],
                    n_boot=200, ci_quantiles=[0.025, 0.975], random_state=0)
    theirs_wall, theirs_cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(f"{n:,} predictions, {N_GROUPS} groups")
    print(f"  auditkit FairnessAudit, all metrics, 1000 resamples + 1000 permutations: "
          f"{ours_wall:.2f} s wall, {ours_cpu:.2f} s cpu")
    print(f"  fairlearn MetricFrame(n_boot=200), 3 metrics: {theirs_wall:.2f} s wall, "
          f"{theirs_cpu:.2f} s cpu")
    print(f"  ratio (MetricFrame / auditkit, cpu): {theirs_cpu / ours_cpu:.1f}x")


def build_million_audit(root: Path, n: int) -> Path:
    """An audit folder whose per-image table has ``n`` rows, written by the library.

    ``auditkit audit`` runs the demo chest X-ray model on covid_cxr (performance and
    fairness) into ``root/audits``; its predictions table is then resampled (seeded) to
    ``n`` rows with fresh pseudonymous keys and jittered probabilities and written back
    with :func:`auditkit.evidence.write_table` (Parquet: ``n`` is past the threshold),
    and ``audit.json`` records it. Pages read audit.json's aggregates (their size does
    not grow with images) and this table (which does).
    """
    import os

    from auditkit.cli import main as cli
    from auditkit.evidence import describe, open_table, read_table, write_table

    os.environ["AUDITKIT_AUDITS"] = str(root / "audits")
    os.environ["AUDITKIT_CACHE"] = str(root / "cache")
    out = root / "audits" / f"{MODEL}__covid_cxr__million"
    if cli(["audit", "--model", MODEL, "--dataset", "covid_cxr", "--checks",
            "performance,fairness", "--n-boot", "200", "--device",
            "cpu", "--out", str(out)]) != 0:
        raise SystemExit("the demo audit failed (are the datasets at $AUDITKIT_DATASETS?)")
    small = read_table(out, "predictions")
    rng = np.random.default_rng(0)
    big = small.iloc[rng.integers(0, len(small), n)].reset_index(drop=True)
    big["image"] = np.char.add("img_", np.arange(n).astype(str))
    probs = [c for c in big.columns if c.startswith("prob_")]
    jitter = np.clip(big[probs].to_numpy(float) + rng.normal(0, 0.02, (n, len(probs))), 1e-6, 1)
    big[probs] = jitter / jitter.sum(axis=1, keepdims=True)
    path = write_table(big, out, "predictions")
    audit = json.loads((out / "audit.json").read_text(encoding="utf-8"))
    audit["evidence_files"] = {"predictions": describe(open_table(path))}
    (out / "audit.json").write_text(json.dumps(audit, indent=2) + "\n", encoding="utf-8")
    return out


def _time_page(path: Path) -> tuple[float, float, list[str]]:
    """Wall and CPU seconds of one AppTest run of ``path`` (audited model picked), errors."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(path), default_timeout=300)
    t, cpu = time.perf_counter(), time.process_time()
    at.run()
    pickers = [s for s in at.sidebar.selectbox
               if str(s.key or "").endswith("_model") and "cxr-covid@v1" in s.options]
    if pickers and pickers[0].value != "cxr-covid@v1":
        pickers[0].set_value("cxr-covid@v1").run()
    return (time.perf_counter() - t, time.process_time() - cpu,
            [str(e.value) for e in at.exception])


def dashboard_pages() -> list[tuple[str, str, str]]:
    """(file name, URL path, title) of every page app.py serves, read from the files."""
    import re

    out = []
    for path in [ROOT / "home.py", *sorted((ROOT / "pages").glob("*.py"))]:
        title = re.search(r'^st\.title\("([^"]+)"\)', path.read_text(encoding="utf-8"), re.M)
        if title is None:
            raise ValueError(f"{path.name}: expected one st.title(\"...\") line; found none")
        url = "" if path.name == "home.py" else re.sub(r"^\d+_", "", path.stem)
        out.append((path.name, url, title.group(1)))
    return out


def browser_timings(root: Path, log: Path, *, visits: int = 2,
                    datasets: Path | None = None) -> list[dict[str, Any]]:
    """Every page of ``streamlit run app.py`` over ``root/audits``, timed in headless Chromium.

    One server, one browser, two ways of reaching each page:

    - ``reload``: the page's address is loaded ``visits`` times in a row (a new browser
      session each time: the front end starts, connects and draws; the first visit of the
      server's first page includes its imports);
    - ``click``: then, ``visits`` rounds through the sidebar, clicking each page's link in
      the running app (how a reviewer moves between pages).

    A row per visit: the seconds from navigation until the page's title shows and
    Streamlit has finished the script (:func:`tests._browser.time_until_idle`), whether the
    title and the audited model showed, and any exception shown. ``datasets`` defaults to
    ``$AUDITKIT_DATASETS`` (else ``../shared/datasets``). Needs Debian chromium and
    chromedriver.
    """
    import os

    if str(ROOT) not in sys.path:  # run as a script: tests/ is importable from the root
        sys.path.insert(0, str(ROOT))
    from tests._browser import chrome, streamlit_server, time_until_idle

    env = {"AUDITKIT_AUDITS": str(root / "audits"), "AUDITKIT_CACHE": str(root / "cache"),
           "AUDITKIT_DATASETS": str(datasets or os.environ.get(
               "AUDITKIT_DATASETS", ROOT.parent / "shared" / "datasets"))}
    rows = []

    def record(how: str, visit: int, name: str, seconds: float, body: str, title: str) -> None:
        errors = driver.find_elements("css selector", '[data-testid="stException"]')
        rows.append({"page": name, "how": how, "visit": visit, "seconds": round(seconds, 2),
                     "title_shown": title in body, "model_shown": MODEL in body,
                     "million_shown": "1,000,000" in body,
                     "exception": errors[0].text[:300] if errors else None})

    pages = dashboard_pages()
    with streamlit_server(env, log) as url, chrome() as driver:
        for name, path, title in pages:
            for visit in range(1, visits + 1):
                seconds, body = time_until_idle(driver, f"{url}/{path}", title)
                record("reload", visit, name, seconds, body, title)
        for visit in range(1, visits + 1):
            for name, path, title in [*pages[1:], pages[0]]:  # start away from the last page
                link = driver.find_element(
                    "css selector", '[data-testid="stSidebarNav"] a'
                    + (f'[href$="/{path}"]' if path else ""))
                seconds, body = time_until_idle(driver, "", title, click=link)
                record("click", visit, name, seconds, body, title)
    return rows


def print_browser_timings(rows: list[dict[str, Any]]) -> None:
    hows = list(dict.fromkeys(r["how"] for r in rows))
    visits = sorted({r["visit"] for r in rows})
    heads = [f"{how} {v}" for how in hows for v in visits]
    print(f"{'page':<24} " + " ".join(f"{h:>9}" for h in heads)
          + "  (seconds in headless Chromium from navigation until the script has finished;"
          " reload = the page's address loaded afresh, click = its sidebar link in the running"
          " app; target < 2 s)")
    by_page: dict[str, dict[tuple[str, int], dict[str, Any]]] = {}
    for r in rows:
        by_page.setdefault(r["page"], {})[(r["how"], r["visit"])] = r
    for page, cells in by_page.items():
        line = " ".join(f"{cells[(how, v)]['seconds']:9.2f}" if (how, v) in cells else
                        f"{'':>9}" for how in hows for v in visits)
        bad = [c for c in cells.values() if c["exception"] or not c["title_shown"]]
        flag = f"  PROBLEM: {bad[0]['exception'] or 'title not shown'}"[:100] if bad else ""
        print(f"{page:<24} {line}{flag}")
    for how in hows:  # the last visit: a running server, the page seen before
        last = [cells[(how, visits[-1])]["seconds"] for cells in by_page.values()
                if (how, visits[-1]) in cells]
        if last:
            print(f"slowest page, {how} (visit {visits[-1]}): {max(last):.2f} s; ratio to the "
                  f"2 s target: {max(last) / 2:.2f}")


def pages(n: int, *, browser: bool = False) -> None:
    import os

    os.environ.setdefault("AUDITKIT_DATASETS", str(ROOT.parent / "shared" / "datasets"))
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        folder = build_million_audit(Path(tmp), n)
        table = json.loads((folder / "audit.json").read_text())["evidence_files"]
        print(f"stored audit: {table['predictions']} (built in {time.perf_counter() - t:.0f} s)")
        files = [ROOT / "app.py", *sorted((ROOT / "pages").glob("*.py"))]
        print(f"{'page':<24} {'cold wall s':>12} {'warm wall s':>12} {'warm cpu s':>11}  "
              "(target < 2 s; warm = second run in the same process, as on a running server)")
        worst, worst_cpu = 0.0, 0.0
        for page in files:
            cold, _, errors = _time_page(page)
            warm, cpu, errors2 = _time_page(page)
            worst, worst_cpu = max(worst, warm), max(worst_cpu, cpu)
            flag = f"  EXCEPTION: {(errors or errors2)[0][:80]}" if errors or errors2 else ""
            print(f"{page.name:<24} {cold:12.2f} {warm:12.2f} {cpu:11.2f}{flag}")
        print(f"slowest page (warm): {worst:.2f} s wall, {worst_cpu:.2f} s cpu; ratio to the "
              f"2 s target: {worst / 2:.2f} (wall), {worst_cpu / 2:.2f} (cpu)")
        if browser:
            print_browser_timings(browser_timings(Path(tmp), Path(tmp) / "streamlit.log"))


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_one":
        n, n_boot = int(sys.argv[2]), int(sys.argv[3])
        result = _run_fairness(n, n_boot=n_boot, in_memory=sys.argv[4:] == ["in-memory"])
        print(json.dumps(result))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["checks", "match", "fairlearn", "pages"])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--n-boot", type=int, default=1000)
    parser.add_argument("--browser", action="store_true",
                        help="pages: also time every page in headless Chromium")
    args = parser.parse_args()
    if args.what == "checks":
        checks(args.sizes, args.n_boot)
    elif args.what == "match":
        match(args.sizes[0], args.n_boot)
    elif args.what == "fairlearn":
        versus_fairlearn()
    else:
        pages(args.sizes[-1], browser=args.browser)


if __name__ == "__main__":
    main()
