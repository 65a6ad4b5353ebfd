"""A hospital's own model and data, built from docs/models.md and docs/datasets.md only.

The card and the dataset description are the docs' own examples (their fenced blocks),
with only the sha256 and the data folder filled in, so the docs cannot drift from what
works.

- ``make_hospital_dicoms``: real covid_cxr chest X-rays as 12-bit DICOM files whose
  PatientSex and PatientAge live in the headers only (the table has no such columns).
- ``make_hospital_model``: a TorchScript single-logit model with its own normalization,
  registered as ``<registry>/cxr-hospital/v1/card.json``.
- ``describe_hospital_dataset``: a TOML description in a dataset registry folder, its
  ``root`` pointing at the data.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image

from auditkit.models import sha256_file
from tests.test_dicom import write_dicom

N_HOSPITAL = 40
REPO = Path(__file__).resolve().parents[1]


def doc_block(doc: str, heading: str, lang: str) -> str:
    """The first fenced ``lang`` block after ``heading`` in ``docs/<doc>``."""
    text = (REPO / "docs" / doc).read_text(encoding="utf-8")
    after = text[text.index(heading):]
    start = after.index(f"```{lang}\n") + len(lang) + 4
    return after[start:after.index("```", start)]


class MeanLogit(torch.nn.Module):
    """One logit from the mean normalized intensity: ``3 * mean(x) + 0.5``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 3.0 * x.mean(dim=(1, 2, 3)).unsqueeze(1) + 0.5


def make_hospital_dicoms(data_root: Path, folder: Path, n: int = N_HOSPITAL) -> Path:
    """``n`` covid_cxr X-rays as 12-bit DICOM with sex/age in the headers; returns the table."""
    table = pd.read_csv(data_root / "covid_cxr" / "metadata.csv", dtype=str,
                        keep_default_na=False).head(n)
    (folder / "dicom").mkdir(parents=True, exist_ok=True)
    rows = []
    for i, row in enumerate(table.itertuples()):
        v = np.asarray(Image.open(data_root / "covid_cxr" / row.image).convert("L"), dtype=np.int64)
        age = f"{int(float(row.age)):03d}Y" if row.age else ""
        write_dicom(folder / "dicom" / f"{i:03d}.dcm", v * 16, bits_stored=12,
                    PatientSex=row.sex or "", PatientAge=age)
        rows.append({"file": f"dicom/{i:03d}.dcm", "finding": row.label_covid,
                     "patient": f"P{row.patient_id}"})
    pd.DataFrame(rows).to_csv(folder / "table.csv", index=False)
    return folder / "table.csv"


def describe_hospital_dataset(registry: Path, data_folder: Path) -> Path:
    """The dataset description, as docs/datasets.md shows it, in the dataset registry."""
    registry.mkdir(parents=True, exist_ok=True)
    toml = registry / "hospital_cxr.toml"
    text = doc_block("datasets.md", "## DICOM images", "toml")
    toml.write_text(text.replace('root = "/data/pacs_export"', f'root = "{data_folder}"'))
    return toml


def make_hospital_model(registry: Path, *, name: str = "cxr-hospital",
                        version: str = "v1") -> Path:
    """A TorchScript single-logit model and its card.json, as docs/models.md shows them."""
    folder = registry / name / version
    folder.mkdir(parents=True, exist_ok=True)
    scripted = torch.jit.script(MeanLogit())
    torch.jit.save(scripted, str(folder / "model.torchscript.pt"))
    card = json.loads(doc_block("models.md", "## Worked example", "json").replace(
        "<output of: sha256sum model.torchscript.pt>", sha256_file(folder / "model.torchscript.pt")))
    card.update(name=name, version=version)
    (folder / "card.json").write_text(json.dumps(card, indent=2))
    return folder


def expected_covid_probability(dicom: Path) -> float:
    """The model's probability computed independently: pydicom pixels, card, forward."""
    import pydicom
    from pydicom.pixels import apply_modality_lut

    ds = pydicom.dcmread(dicom)
    x = apply_modality_lut(ds.pixel_array, ds) / (2**ds.BitsStored - 1)
    logit = 3.0 * ((x - 0.5) / 0.25).mean() + 0.5
    return float(1 / (1 + np.exp(-logit)))
