"""Shared fixtures: tiny models built in code, tiny image datasets on disk, real data."""

from __future__ import annotations

import os
from pathlib import Path

# Idle OpenMP threads sleep instead of spinning: beside another CPU-heavy process, a
# 2-thread training step otherwise waits on a descheduled spinning peer (tens of times
# slower). The numbers do not change: only how idle threads wait (set before torch loads).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from auditkit.architectures import SmallResNet  # noqa: E402
from auditkit.data import dataset_search_paths  # noqa: E402
from auditkit.models import ModelCard, sha256_file  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    """Every test gets its own prediction cache and audits folder."""
    monkeypatch.setenv("AUDITKIT_CACHE", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.setenv("AUDITKIT_AUDITS", str(tmp_path_factory.mktemp("audits")))
    # TorchScript / torch.export models built by the tests are code the tests wrote, so
    # they are trusted here (they still pass the static checks); the safe default
    # (trust off) is exercised in tests/test_model_security.py, which unsets this.
    monkeypatch.setenv("AUDITKIT_TRUST_MODEL_CODE", "1")
    torch.manual_seed(0)


def real_data_root() -> Path | None:
    for root in dataset_search_paths():
        if (root / "fitzpatrick17k" / "metadata.csv").is_file():
            return root
    return None


@pytest.fixture(scope="session")
def data_root() -> Path:
    root = real_data_root()
    if root is None:
        pytest.skip("real datasets not found (expected ../shared/datasets or $AUDITKIT_DATASETS)")
    return root


def make_image_dataset(folder: Path, *, n: int = 24, seed: int = 0, size: int = 16,
                       mode: str = "RGB") -> Path:
    """A small dataset on disk: images whose brightness carries the label, with attributes.

    Class ``malignant`` images are bright, ``benign`` dark; columns: image, label,
    patient_id, sex, age, skin (Fitzpatrick 1-6), site. Returns the TOML description.
    """
    rng = np.random.default_rng(seed)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        label = "malignant" if i % 2 else "benign"
        base = 190 if label == "malignant" else 60
        shape = (size, size, 3) if mode == "RGB" else (size, size)
        arr = np.clip(rng.normal(base, 25, size=shape), 0, 255).astype(np.uint8)
        name = f"images/img_{i:03d}.png"
        Image.fromarray(arr, mode=None).save(folder / name)
        rows.append({
            "image": name, "label": label, "patient_id": f"p{i // 2}",
            "sex": "F" if (i // 2) % 2 else "M", "age": str(20 + 3 * i),
            "skin": str(1 + i % 6), "site": "a" if i < n // 2 else "b",
        })
    pd.DataFrame(rows).to_csv(folder / "table.csv", index=False)
    toml = folder / "auditkit.toml"
    toml.write_text(
        'name = "tiny"\ntable = "table.csv"\nimage_column = "image"\nlabel_column = "label"\n'
        'classes = ["benign", "malignant"]\npatient_column = "patient_id"\n'
        '[[attributes]]\nname = "sex"\ncolumn = "sex"\nkind = "sex"\n'
        '[[attributes]]\nname = "age"\ncolumn = "age"\nkind = "age"\n'
        '[[attributes]]\nname = "skin"\ncolumn = "skin"\nkind = "skin_tone"\nscale = "fitzpatrick"\n'
        '[[attributes]]\nname = "site"\ncolumn = "site"\nkind = "categorical"\n'
    )
    return toml


@pytest.fixture
def tiny_dataset_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "tiny"
    make_image_dataset(folder)
    return folder


class BrightnessNet(torch.nn.Module):
    """Logits from mean brightness: a model whose answer is known in closed form."""

    def __init__(self, n_out: int = 2, scale: float = 4.0) -> None:
        super().__init__()
        self.n_out = n_out
        self.weight = torch.nn.Parameter(torch.linspace(-scale, scale, n_out) if n_out > 1
                                         else torch.tensor([scale]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = x.mean(dim=(1, 2, 3)).unsqueeze(1)
        return m * self.weight


def dicom_skeleton():  # noqa: ANN201 (pydicom is imported lazily)
    """An uncompressed secondary-capture DX DICOM dataset with fresh UIDs, no pixels yet."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "DX"
    return ds


def write_tiny_covid(root: Path) -> list[str]:
    """A seeded 40-image stand-in for covid_cxr at ``root`` (8x8 grey PNGs and a metadata.csv
    with label, patient, sex, age and view); returns the image paths in table order."""
    (root / "images").mkdir(parents=True)
    rng = np.random.default_rng(0)
    rows = []
    for i in range(40):
        covid = i % 2 == 1
        arr = np.clip(rng.normal(140 if covid else 115, 20, (8, 8)), 0, 255).astype(np.uint8)
        Image.fromarray(arr).save(root / "images" / f"{i}.png")
        rows.append({"image": f"images/{i}.png",
                     "label_covid": "COVID-19" if covid else "No Finding",
                     "patient_id": f"pat_{i:03d}", "sex": "F" if (i // 2) % 2 else "M",
                     "age": str(30 + i % 40), "view": "PA" if i < 34 else "AP"})
    pd.DataFrame(rows).to_csv(root / "metadata.csv", index=False)
    return [row["image"] for row in rows]


def write_model(folder: Path, module: torch.nn.Module, *, fmt: str, output: str = "softmax",
                class_names: list[str] | None = None, channels: int = 3, size: int = 16,
                architecture: str | None = None, architecture_kwargs: dict | None = None,
                name: str = "tiny", version: str = "v1") -> Path:
    """Save ``module`` in ``fmt`` with a valid card; returns the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    classes = class_names or ["benign", "malignant"]
    example = torch.zeros(2, channels, size, size)
    module.eval()
    if fmt == "torchscript":
        path = folder / "weights.torchscript.pt"
        torch.jit.save(torch.jit.trace(module, example), str(path))
    elif fmt == "export":
        path = folder / "weights.pt2"
        batch = torch.export.Dim("batch", min=1, max=1024)
        torch.export.save(torch.export.export(module, (example,), dynamic_shapes=({0: batch},)),
                          str(path))
    elif fmt == "safetensors":
        from safetensors.torch import save_file

        path = folder / "weights.safetensors"
        save_file({k: v.contiguous() for k, v in module.state_dict().items()}, str(path))
    elif fmt == "pt":
        path = folder / "weights.pt"
        torch.save(module.state_dict(), str(path))
    else:
        raise ValueError(fmt)
    card = ModelCard(
        name=name, version=version, task="tiny test model", class_names=classes,
        positive_class=classes[-1], output=output, input_size=[size, size], channels=channels,
        normalization={"mean": [0.5] * channels, "std": [0.25] * channels},
        format="state_dict" if fmt in ("safetensors", "pt") else fmt,
        weights=path.name, sha256=sha256_file(path), architecture=architecture,
        architecture_kwargs=architecture_kwargs or {},
    )
    card.save(folder)
    return folder


@pytest.fixture
def brightness_model_dir(tmp_path: Path) -> Path:
    """A TorchScript binary softmax model that calls bright images malignant."""
    return write_model(tmp_path / "registry" / "tiny" / "v1", BrightnessNet(2), fmt="torchscript")


@pytest.fixture
def small_resnet_dir(tmp_path: Path) -> Path:
    """A randomly initialised SmallResNet saved as a safetensors state dict."""
    kwargs = {"in_channels": 3, "num_outputs": 2, "widths": [4, 8, 8, 8]}
    torch.manual_seed(0)
    return write_model(tmp_path / "registry" / "resnet" / "v1", SmallResNet(**kwargs),
                       fmt="safetensors", architecture="small_resnet", architecture_kwargs=kwargs,
                       name="resnet")


def demo_models_present() -> bool:
    return (REPO / "models" / "derm-lesion" / "v1" / "card.json").is_file()


os.environ.setdefault("PYTHONHASHSEED", "0")


# --------------------------------------------------------------------------- browser
# One streamlit server and one Chromium for the whole session, shared by the browser
# tests that need no special environment (tests/test_browser*.py; the review and New
# audit journeys start their own, with their databases and registries, through the same
# helper, tests/_browser.py).

#: Every demo model and its dataset, audited once per session for the page walk.
DEMO_MODELS = [("derm-lesion@v1", "fitzpatrick17k"), ("derm-lesion@v2", "fitzpatrick17k"),
               ("cxr-covid@v1", "covid_cxr"), ("mri-tumor@v1", "lgg_mri")]
#: The pages' fast defaults, made smaller still: the walk checks what is shown, not the
#: numbers (each check's own tests do that).
FAST_CHECK_OPTIONS = ('{"robustness": {"n_images": 16, "n_images_corruptions": 16, '
                      '"attacks": ["fgsm"]}, "explain": {"n_per_group": 1, "n_samples": 4, '
                      '"sanity_images": 0}}')


@pytest.fixture(scope="session")
def browser_workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("browser")


@pytest.fixture(scope="session")
def demo_server(browser_workdir: Path):
    """``streamlit run app.py`` on an audits folder of its own (session-wide)."""
    from tests._browser import streamlit_server

    env = {"AUDITKIT_AUDITS": str(browser_workdir / "audits"),
           "AUDITKIT_CACHE": str(browser_workdir / "cache")}
    root = real_data_root()
    if root is not None:
        env["AUDITKIT_DATASETS"] = str(root)
    with streamlit_server(env, browser_workdir / "streamlit.log") as url:
        yield url


@pytest.fixture(scope="session")
def demo_audits(browser_workdir: Path):
    """``audit(ref)``: the folder of one audit of demo model ``ref`` with every check (fast
    settings) in the server's audits folder, written on first use; predictions are cached
    across the session."""
    from auditkit.cli import main

    root = real_data_root()
    if root is None:
        pytest.skip("real datasets not found (expected ../shared/datasets or $AUDITKIT_DATASETS)")
    datasets = dict(DEMO_MODELS)

    def audit(ref: str) -> Path:
        folder = browser_workdir / "audits" / f"{ref}__{datasets[ref]}__walk"
        if not (folder / "audit.json").is_file():
            assert main(["audit", "--model", ref, "--dataset", datasets[ref], "--checks",
                         "fairness,explain,robustness,privacy", "--n-boot", "100",
                         "--device", "cpu", "--data-root", str(root), "--out", str(folder),
                         "--cache-dir", str(browser_workdir / "cache"),
                         "--options", FAST_CHECK_OPTIONS]) == 0
        return folder

    return audit


@pytest.fixture(scope="session")
def browser():
    """Headless Chromium for the session (tests/_browser.py)."""
    from tests._browser import chrome

    with chrome() as driver:
        yield driver
