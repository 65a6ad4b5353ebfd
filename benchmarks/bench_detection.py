"""Detection power: does each check find the defect planted in its control model?

    python benchmarks/bench_detection.py [--permutations 100] [--n-boot 500] [--out DIR]

Audits the committed control models (``models/controls``; nothing is trained) with
the check built for each defect, on held-out data, and prints per control: found or
missed, the effect size, its 95% interval and what "no defect" would read. Then the
null control: control-reference@v1 audited ``--permutations`` times with its group
labels randomly permuted (predictions computed once; only the attributes move); the
share of permutations in which the fairness check calls any gap real is the
false-alarm rate, printed with its Wilson interval against the nominal 5% plus Monte
Carlo error. The table in docs/validation.md is this script's output. Writes
``DIR/detection.json`` and every audit under ``DIR``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from auditkit.controls import validate_controls
from auditkit.wording import detection_verdict, fmt_interval, fmt_number, fmt_pct


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--permutations", type=int, default=100)
    parser.add_argument("--n-boot", type=int, default=500)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--data-root", default=None)
    args = parser.parse_args(argv)
    out = args.out or Path(tempfile.mkdtemp(prefix="auditkit-detection-"))
    started = time.perf_counter()

    def progress(done: int, total: int, message: str) -> None:
        print(f"[{done}/{total}] {message} ({time.perf_counter() - started:.0f} s)",
              file=sys.stderr, flush=True)

    res = validate_controls(out, data_root=args.data_root, n_permutations=args.permutations,
                            n_boot=args.n_boot, progress=progress)
    (out / "detection.json").write_text(json.dumps(res, indent=2, default=str) + "\n")

    print("| control | check | measure | effect (95% interval) | no defect | n | planted defect |")
    print("|---|---|---|---|---|---|---|")
    for d in res["detections"]:
        pct = d["check"] != "privacy"
        no_defect = fmt_pct(d["no_defect"]) if pct else fmt_number(d["no_defect"], 2)
        print(f"| {d['control']} | {d['check']} | {d['measure']} | "
              f"{fmt_interval(d['effect'], d['ci'], pct=pct)} | {no_defect} | "
              f"{d['n']} | {detection_verdict(d['found'])} |")
    print()
    for d in res["detections"]:
        print(f"- {d['control']} ({d['check']}): {d['detail']}")
    null = res["null_control"]
    if null:
        bound = null["nominal"] + 2 * null["monte_carlo_se"]
        print()
        print(f"Null control (control-reference@v1, group labels permuted): "
              f"{null['false_alarms']} false alarm(s) in {null['n_permutations']} permutations "
              f"= {fmt_interval(null['rate'], null['ci'], digits=1)}; nominal family-wise "
              f"level 5%, + 2 Monte Carlo SE = {100 * bound:.1f}%. "
              f"{null['gaps_called_real']} of "
              f"{int(null['gaps_per_permutation'] * null['n_permutations'])} gap tests called "
              f"real. Within nominal + MC error: {'yes' if null['rate'] <= bound else 'NO'}.")
    print(f"\nAll audits under {out}; {time.perf_counter() - started:.0f} s in all.")
    return 0 if all(d["found"] for d in res["detections"]) else 1


if __name__ == "__main__":
    raise SystemExit(main())
