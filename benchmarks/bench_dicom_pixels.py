"""What the pixel declaration changes: the cxr-covid demo model on covid_cxr as 12-bit DICOM.

    python benchmarks/bench_dicom_pixels.py [--n 318]

Converts the real chest X-rays (8-bit PNG, value v) to 12-bit DICOM (stored 16 v), then
runs the demo model on the PNGs (its training format: v / 255) and on the DICOMs under
three declarations: ``range [0, 4080]`` (exactly v / 255 again), the default
``bit_depth`` (16 v / 4095) and ``minmax`` (each image stretched to its own range — what
auditkit did to every DICOM before the declaration existed). Prints, for each, the largest
change of the covid probability against the PNGs, how many predictions change class, and
accuracy on all images; the last line is the ratio of class changes, minmax over range.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

import auditkit
from auditkit.data import DatasetSpec, load_dataset
from auditkit.predict import LocalExecutor, predict

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.test_dicom import write_dicom  # noqa: E402 - the tests' DICOM writer


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=318)
    args = parser.parse_args()
    png_data = auditkit.load_dataset("covid_cxr")
    records = png_data.records.head(args.n)
    png_data = png_data.subset(np.arange(len(png_data.records)) < args.n)
    model = auditkit.load_model("cxr-covid@v1", device="cpu")
    executor = LocalExecutor(batch_size=64)
    base = predict(model, png_data, executor=executor, cache=False).probabilities[:, 1]
    labels = (records["label"] == "covid").to_numpy()
    print(f"PNG (v / 255): accuracy {np.mean((base >= 0.5) == labels):.3f} on {len(records)} "
          "images")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        files = []
        for i, path in enumerate(records["path"]):
            v = np.asarray(Image.open(path).convert("L"), dtype=np.int64)
            write_dicom(folder / f"{i:04d}.dcm", v * 16, bits_stored=12)
            files.append(f"{i:04d}.dcm")
        pd.DataFrame({"file": files, "y": records["label"]}).to_csv(folder / "t.csv",
                                                                   index=False)
        spec = DatasetSpec(name="covid_dicom", table="t.csv", image_column="file",
                           label_column="y", classes=("not_covid", "covid"))
        dicoms = load_dataset(spec, root=folder)
        flips = {}
        for name, scaling in [("range [0, 4080]", {"method": "range", "range": [0, 4080]}),
                              ("bit_depth (default)", None),
                              ("minmax (old behaviour)", {"method": "minmax"})]:
            card = dataclasses.replace(model.card, input_scaling=scaling)
            m = dataclasses.replace(model, card=card, _norm_cache={})
            p = predict(m, dicoms, executor=executor, cache=False).probabilities[:, 1]
            flips[name] = int(((p >= 0.5) != (base >= 0.5)).sum())
            print(f"DICOM, {name:24}: max |dp| {np.abs(p - base).max():.4f}, median |dp| "
                  f"{np.median(np.abs(p - base)):.4f}, class changes {flips[name]}/{len(p)}, "
                  f"accuracy {np.mean((p >= 0.5) == labels):.3f}")
    print(f"class changes, minmax / range: {flips['minmax (old behaviour)']} / "
          f"{flips['range [0, 4080]']}")


if __name__ == "__main__":
    main()
