"""RayExecutor: the same numbers as the local executor, on a local Ray cluster.

One local cluster (2 CPUs, small object store, no dashboard) is shared by the tests of
this file and shut down at the end of the session. The CLI tests run ``auditkit audit
--executor ray`` in a subprocess against that cluster (``--ray-address``), on a seeded
sample of each real dataset, for all four demo classifiers and the segmentation model
``mri-tumor-seg@v1``; one runs a whole dataset with a cluster the CLI starts itself, and
checks that no process of it is left behind; one runs ``auditkit compare --models …
--executor ray`` on covid_cxr.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import auditkit
from auditkit.cli import main
from auditkit.exceptions import ConfigError, DataError
from auditkit.predict import LocalExecutor, predict

REPO = Path(__file__).resolve().parents[1]

#: the demo models and their datasets (models/<name>/<version>/card.json)
DEMO_MODELS = [("derm-lesion@v1", "fitzpatrick17k"), ("derm-lesion@v2", "fitzpatrick17k"),
               ("cxr-covid@v1", "covid_cxr"), ("mri-tumor@v1", "lgg_mri")]
SAMPLE_SIZE = 150  # with batch 64: batches of 64, 64 and 22, as the local executor cuts them


@pytest.fixture(scope="session")
def ray_cluster() -> str:
    """A local 2-CPU cluster shared by every test here; its address; shut down at the end."""
    ray = pytest.importorskip("ray", reason="install the ray extra: pip install -e '.[ray]'")
    logging.getLogger("ray._private.authentication").setLevel(logging.ERROR)
    ray.init(address="local", num_cpus=2, include_dashboard=False,
             object_store_memory=200 * 1024 ** 2, log_to_driver=False,
             logging_level=logging.WARNING,
             runtime_env={"env_vars": {"PYTHONPATH": str(REPO)}})  # workers import this tree
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


def _cli_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    return env


def _sample_dataset(folder: Path, data_root: Path, name: str, *, n: int, seed: int) -> Path:
    """A dataset description of ``n`` images of a built-in dataset drawn with ``seed``,
    in the drawn (not the table's) order; the images stay where they are."""
    from auditkit.data import dataset_spec

    spec_file = Path(auditkit.__file__).parent / "datasets" / f"{name}.toml"
    source = data_root / name
    table = pd.read_csv(source / dataset_spec(name).table, dtype=str, keep_default_na=False)
    rows = np.random.default_rng(seed).choice(len(table), size=min(n, len(table)), replace=False)
    sample = table.iloc[rows].copy()
    image_column = dataset_spec(name).image_column
    sample[image_column] = [str(source / p) for p in sample[image_column]]
    for column in ("mask",):  # lgg_mri's masks, resolved the same way
        if column in sample:
            sample[column] = [str(source / p) for p in sample[column]]
    folder.mkdir(parents=True, exist_ok=True)
    sample.to_csv(folder / "table.csv", index=False)
    text = spec_file.read_text(encoding="utf-8")  # the top-level keys come first
    text = text.replace(f'name = "{name}"', f'name = "{name}_sample"\n'
                        f'image_roots = [{json.dumps(str(source))}]', 1)
    text = text.replace('table = "metadata.csv"', 'table = "table.csv"', 1)
    (folder / "auditkit.toml").write_text(text, encoding="utf-8")
    return folder / "auditkit.toml"


def _cached_outputs(cache_dir: Path) -> tuple[np.ndarray, list[str]]:
    entries = list((cache_dir / "predictions").glob("*.npz"))
    assert len(entries) == 1, entries
    with np.load(entries[0], allow_pickle=False) as npz:
        return np.asarray(npz["outputs"]), npz["images"].tolist()


def _run_cli(args: list[str], tmp_path: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "auditkit.cli", *args], cwd=tmp_path,
                          env=_cli_env(tmp_path), capture_output=True, text=True,
                          timeout=timeout)


# ---------------------------------------------------------------------- without a cluster


def test_missing_ray_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    from auditkit.executors import RayExecutor

    monkeypatch.setitem(sys.modules, "ray", None)  # as if ray were not installed
    with pytest.raises(ConfigError, match=r"install the ray extra: pip install -e '\.\[ray\]'"):
        RayExecutor()


def test_auditkit_imports_without_ray() -> None:
    code = ("import sys; sys.modules['ray'] = None; import auditkit, auditkit.cli, "
            "auditkit.executors; from auditkit.executors import RayExecutor; print('ok')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


#: the two commands that run models: ``audit``, and ``compare --models`` (its missing audits)
RUNS_MODELS = {
    "audit": ["audit", "--model", "cxr-covid@v1", "--dataset", "covid_cxr"],
    "compare": ["compare", "--models", "cxr-covid@v1,cxr-covid@v2", "--dataset", "covid_cxr"],
}


@pytest.mark.parametrize("command", sorted(RUNS_MODELS))
@pytest.mark.parametrize(("address", "message"), [
    ("not-an-address", r"must be HOST:PORT of a running head node .*got 'not-an-address'"),
    ("127.0.0.1:1", r"No Ray cluster answers at '127\.0\.0\.1:1' \(.*refused.*\); expected "
                    r"HOST:PORT of a running head node"),
])
def test_bad_ray_address_exits_2(command: str, address: str, message: str, tmp_path: Path,
                                 monkeypatch: pytest.MonkeyPatch,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    """Refused before any work: no model loaded, no dataset read, nothing written."""
    pytest.importorskip("ray", reason="install the ray extra: pip install -e '.[ray]'")
    monkeypatch.setenv("AUDITKIT_AUDITS", str(tmp_path / "audits"))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    import auditkit.models

    def no_model(*args: object, **kwargs: object) -> None:
        raise AssertionError("a model was looked up before the address was checked")

    monkeypatch.setattr(auditkit.models, "resolve_model", no_model)
    monkeypatch.setattr(auditkit.models, "load_model", no_model)
    code = main([*RUNS_MODELS[command], "--executor", "ray", "--ray-address", address,
                 "--cache-dir", str(tmp_path / "cache")])
    assert code == 2
    assert __import__("re").search(message, capsys.readouterr().err)
    assert not list(tmp_path.iterdir())  # no audit folder, no cache


@pytest.mark.parametrize("command", sorted(RUNS_MODELS))
def test_ray_address_needs_ray_executor(command: str,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    code = main([*RUNS_MODELS[command], "--ray-address", "127.0.0.1:6379"])
    assert code == 2
    assert ("--ray-address 127.0.0.1:6379 needs --executor ray; got --executor local."
            in capsys.readouterr().err)


def test_compare_of_audit_folders_refuses_the_ray_executor(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Two stored audits run no model: --executor ray there is a mistake, said so."""
    code = main(["compare", str(tmp_path / "a"), str(tmp_path / "b"), "--executor", "ray"])
    assert code == 2
    assert ("--executor ray runs the audits of --models NAME@A,NAME@B --dataset D on a Ray "
            "cluster; two audit folders are compared from their stored predictions, with no "
            "model run. Expected --models, or no --executor; got 2 audit folder(s)."
            ) in capsys.readouterr().err


def test_settings_are_checked() -> None:
    pytest.importorskip("ray", reason="install the ray extra: pip install -e '.[ray]'")
    from auditkit.executors import RayExecutor

    with pytest.raises(ConfigError, match="batch_size must be >= 1; got 0 instead"):
        RayExecutor(batch_size=0)
    with pytest.raises(ConfigError, match="device must be auto, cpu or cuda; got 'tpu'"):
        RayExecutor(device="tpu")
    with pytest.raises(ConfigError, match="precision 'bf16' needs a GPU"):
        RayExecutor(device="cpu", precision="bf16").describe()


# ---------------------------------------------------------------------- on the shared cluster


@pytest.mark.slow
def test_identical_to_local_on_ragged_batches(ray_cluster: str, tiny_dataset_dir: Path,
                                              brightness_model_dir: Path) -> None:
    from auditkit.executors import RayExecutor

    model = auditkit.load_model(brightness_model_dir, device="cpu")
    ds = auditkit.load_dataset(tiny_dataset_dir / "auditkit.toml")
    local = predict(model, ds, executor=LocalExecutor(batch_size=5), cache=False)
    seen: list[tuple[int, int, str]] = []
    ex = RayExecutor(batch_size=5, device="cpu")
    ray_preds = predict(model, ds, executor=ex, cache=False,
                        progress=lambda d, n, m: seen.append((d, n, m)))
    assert np.array_equal(ray_preds.outputs, local.outputs)  # bit for bit, in table order
    assert ray_preds.outputs.dtype == np.float32 and ray_preds.outputs.shape == (24, 2)
    assert ray_preds.settings == {"executor": "ray", "batch_size": 5, "precision": "float32",
                                  "actor_device": "cpu", "ray_cluster": "local",
                                  "actors": "auto", "cpus_per_actor": 1}
    assert ex.last_run_["batches"] == 5 and ex.last_run_["actors"] == 1
    assert seen[-1][:2] == (24, 24) and "on Ray (1 actor)" in seen[-1][2]
    assert [d for d, _, _ in seen] == sorted(d for d, _, _ in seen)
    ex.close()  # the caller's cluster is left running
    import ray

    assert ray.is_initialized()


@pytest.mark.slow
def test_unreadable_image_is_a_data_error(ray_cluster: str, tiny_dataset_dir: Path,
                                          brightness_model_dir: Path) -> None:
    from auditkit.executors import RayExecutor

    model = auditkit.load_model(brightness_model_dir, device="cpu")
    ds = auditkit.load_dataset(tiny_dataset_dir / "auditkit.toml")
    Path(ds.records["path"].iloc[7]).write_bytes(b"not an image")  # damaged after loading
    with pytest.raises(DataError, match=r"Images 6-10 could not be read for the model"):
        RayExecutor(batch_size=5, device="cpu").outputs(model, ds)


@pytest.mark.slow
def test_changed_weights_are_refused_in_the_actor(ray_cluster: str, tiny_dataset_dir: Path,
                                                  brightness_model_dir: Path) -> None:
    from auditkit.exceptions import IntegrityError
    from auditkit.executors import RayExecutor

    model = auditkit.load_model(brightness_model_dir, device="cpu")
    ds = auditkit.load_dataset(tiny_dataset_dir / "auditkit.toml")
    weights = brightness_model_dir / model.card.weights
    weights.write_bytes(weights.read_bytes() + b"\0")  # replaced after the driver loaded it
    with pytest.raises(IntegrityError, match="do not match the model card"):
        RayExecutor(batch_size=8, device="cpu").outputs(model, ds)


@pytest.mark.slow
@pytest.mark.parametrize(("ref", "dataset"), DEMO_MODELS)
def test_cli_ray_matches_local_on_a_seeded_sample(ref: str, dataset: str, ray_cluster: str,
                                                  data_root: Path, tmp_path: Path) -> None:
    """``auditkit audit --executor ray`` on 150 seeded images of the model's dataset."""
    toml = _sample_dataset(tmp_path / "data", data_root, dataset, n=SAMPLE_SIZE, seed=17)
    cache = tmp_path / "cache"
    done = _run_cli(["audit", "--model", ref, "--dataset", str(toml), "--evaluate-on", "all",
                     "--executor", "ray", "--ray-address", ray_cluster, "--device", "cpu",
                     "--out", str(tmp_path / "audit"), "--cache-dir", str(cache)], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"running {ref} on Ray (1 actor): {SAMPLE_SIZE}/{SAMPLE_SIZE} (100%)" in done.stderr
    audit = json.loads((tmp_path / "audit" / "audit.json").read_text())
    assert audit["execution"]["executor"] == "ray"
    assert audit["execution"]["ray_cluster"] == ray_cluster
    assert audit["execution"]["predictions_from_cache"] is False
    ray_outputs, images = _cached_outputs(cache)

    model = auditkit.load_model(ref, device="cpu")
    ds = auditkit.load_dataset(toml)
    local = predict(model, ds, executor=LocalExecutor(), cache=False)
    assert images == local.images  # the drawn order, kept
    assert ray_outputs.dtype == np.float32
    assert np.array_equal(ray_outputs, local.outputs)


def _cxr_covid_versions(registry: Path) -> None:
    """``cxr-covid@v1`` (the demo model, copied) and a stand-in ``cxr-covid@v2``: the same
    network with its output bias moved by +0.5 (other weights, other sha256, same split),
    so that both versions really run rather than one reading the other's cache entry."""
    from safetensors.torch import save_file

    source = REPO / "models" / "cxr-covid" / "v1"
    shutil.copytree(source, registry / "cxr-covid" / "v1")
    v2 = registry / "cxr-covid" / "v2"
    shutil.copytree(source, v2)
    state = {k: v.detach().clone().contiguous()
             for k, v in auditkit.load_model(source, device="cpu").module.state_dict().items()}
    bias = [k for k, v in state.items() if k.endswith("bias") and v.shape == (1,)][-1]
    state[bias] += 0.5
    (v2 / "weights.pt").unlink()
    save_file(state, v2 / "weights.safetensors")
    card = json.loads((v2 / "card.json").read_text(encoding="utf-8"))
    card.update(version="v2", weights="weights.safetensors",
                sha256=auditkit.models.sha256_file(v2 / "weights.safetensors"))
    (v2 / "card.json").write_text(json.dumps(card, indent=2), encoding="utf-8")


@pytest.mark.slow
def test_cli_compare_runs_its_audits_on_ray(ray_cluster: str, data_root: Path,
                                            tmp_path: Path) -> None:
    """``auditkit compare --models … --executor ray`` on covid_cxr: both audits it has to
    run are run on the cluster, with the local executor's numbers."""
    registry, cache, audits = tmp_path / "reg", tmp_path / "cache", tmp_path / "audits"
    _cxr_covid_versions(registry)
    env_audits = {"AUDITKIT_AUDITS": str(audits)}
    done = subprocess.run(
        [sys.executable, "-m", "auditkit.cli", "compare", "--models",
         "cxr-covid@v1,cxr-covid@v2", "--dataset", "covid_cxr", "--registry", str(registry),
         "--data-root", str(data_root), "--executor", "ray", "--ray-address", ray_cluster,
         "--device", "cpu", "--n-boot", "100", "--out", str(tmp_path / "cmp"),
         "--cache-dir", str(cache)],
        cwd=tmp_path, env={**_cli_env(tmp_path), **env_audits}, capture_output=True,
        text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    for version in ("v1", "v2"):
        assert f"running cxr-covid@{version} on Ray (1 actor): 318/318 (100%)" in done.stderr
    doc = json.loads((tmp_path / "cmp" / "comparison.json").read_text())
    assert doc["images"]["shared"] == 61  # the test split both versions hold out

    ds = auditkit.load_dataset("covid_cxr", data_root=data_root)
    entries = {}
    for path in (cache / "predictions").glob("*.npz"):
        with np.load(path, allow_pickle=False) as npz:
            entries[path.stem] = np.asarray(npz["outputs"])
    assert len(entries) == 2  # one run per version, no cache shared between them
    for side in ("a", "b"):
        audit = json.loads((Path(doc[side]["audit"]) / "audit.json").read_text())
        assert audit["execution"]["executor"] == "ray"
        assert audit["execution"]["ray_cluster"] == ray_cluster
        assert audit["execution"]["predictions_from_cache"] is False
        model = auditkit.load_model(registry / "cxr-covid" / doc[side]["version"], device="cpu")
        local = predict(model, ds, executor=LocalExecutor(), cache=False)
        ray_outputs = entries[audit["execution"]["prediction_cache_key"]]
        assert np.array_equal(ray_outputs, local.outputs)  # bit for bit
    assert not np.array_equal(*entries.values())  # two different versions really ran


SEG_SAMPLE_SIZE = 48  # with batch 20: batches of 20, 20 and 8


@pytest.mark.slow
def test_cli_segmentation_model_matches_local_bit_for_bit(ray_cluster: str, data_root: Path,
                                                          tmp_path: Path) -> None:
    """``auditkit audit --executor ray`` of ``mri-tumor-seg@v1`` (SmallUNet) on 48 seeded
    lgg_mri slices: the same logits, per-image rows, masks and metrics as a local audit.

    The last batch holds 8 slices: under 16, PyTorch's single-threaded kernel for the
    UNet's 1x1 head differs from its multi-threaded one, so this fails if the actors run
    one thread (``MIN_ACTOR_THREADS``)."""
    from auditkit._local import SECRET_FILE
    from auditkit.segmentation import MASKS_FILE, read_masks_file

    toml = _sample_dataset(tmp_path / "data", data_root, "lgg_mri", n=SEG_SAMPLE_SIZE, seed=17)
    common = ["audit", "--model", "mri-tumor-seg@v1", "--dataset", str(toml), "--evaluate-on",
              "all", "--device", "cpu", "--batch-size", "20", "--n-boot", "200"]
    done = _run_cli([*common, "--executor", "ray", "--ray-address", ray_cluster,
                     "--out", str(tmp_path / "ray"), "--cache-dir", str(tmp_path / "c-ray")],
                    tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (f"running mri-tumor-seg@v1 on Ray (1 actor): {SEG_SAMPLE_SIZE}/{SEG_SAMPLE_SIZE} "
            "(100%)") in done.stderr
    (tmp_path / "c-local").mkdir()  # the same installation secret, so the same image keys
    shutil.copy2(tmp_path / "c-ray" / SECRET_FILE, tmp_path / "c-local" / SECRET_FILE)
    assert main([*common, "--out", str(tmp_path / "local"),
                 "--cache-dir", str(tmp_path / "c-local")]) == 0

    ray_outputs, ray_images = _cached_outputs(tmp_path / "c-ray")
    local_outputs, local_images = _cached_outputs(tmp_path / "c-local")
    assert ray_outputs.shape == (SEG_SAMPLE_SIZE, 1, 64, 64)  # logits at the model's size
    assert ray_outputs.dtype == np.float32 and ray_images == local_images
    assert np.array_equal(ray_outputs, local_outputs)  # bit for bit, in table order
    audits = {side: json.loads((tmp_path / side / "audit.json").read_text())
              for side in ("ray", "local")}
    assert audits["ray"]["execution"]["executor"] == "ray"
    assert audits["ray"]["execution"]["batch_size"] == 20
    # the per-image rows (areas, Dice, IoU, HD95, missed / false lesion) in predictions.csv
    rows = {side: pd.read_csv(tmp_path / side / "predictions.csv") for side in audits}
    assert {"dice", "hd95_px"} <= set(rows["ray"].columns)
    pd.testing.assert_frame_equal(rows["ray"], rows["local"], check_exact=True)
    keys, masks = read_masks_file(tmp_path / "ray" / MASKS_FILE)  # at the reference size
    keys_local, masks_local = read_masks_file(tmp_path / "local" / MASKS_FILE)
    assert keys == keys_local and np.array_equal(masks, masks_local) and masks.any()
    assert (audits["ray"]["results"]["performance"]["metrics"]
            == audits["local"]["results"]["performance"]["metrics"])


def _descendants(pid: int) -> set[int]:
    """Every living process below ``pid`` (Linux /proc)."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            parents[int(stat.parent.name)] = int(fields[1])
        except (OSError, IndexError, ValueError):
            continue
    found, frontier = set(), {pid}
    while frontier:
        frontier = {p for p, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


@pytest.mark.slow
def test_cli_whole_dataset_on_its_own_local_cluster(ray_cluster: str, data_root: Path,
                                                    tmp_path: Path) -> None:
    """The smallest dataset, whole, with the cluster the CLI starts and shuts down itself."""
    if not Path("/proc/self/stat").exists():
        pytest.skip("needs Linux /proc to follow the cluster's processes")
    cache = tmp_path / "cache"
    args = [sys.executable, "-m", "auditkit.cli", "audit", "--model", "cxr-covid@v1",
            "--dataset", "covid_cxr", "--executor", "ray", "--device", "cpu",
            "--out", str(tmp_path / "audit"), "--cache-dir", str(cache)]
    proc = subprocess.Popen(args, cwd=tmp_path, env=_cli_env(tmp_path),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    started: set[int] = set()
    deadline = time.monotonic() + 300
    while proc.poll() is None and time.monotonic() < deadline:
        started |= _descendants(proc.pid)  # gcs_server, raylet, workers, ...
        time.sleep(0.5)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr[-3000:]
    assert "starting a local Ray cluster" in stderr
    assert len(started) >= 2  # the cluster's processes were seen
    for _ in range(40):  # ray.shutdown() ends them; give the last ones a moment
        left = sorted(p for p in started if _alive(p))
        if not left:
            break
        time.sleep(0.5)
    assert not left, f"Ray left processes behind: {left}"

    audit = json.loads((tmp_path / "audit" / "audit.json").read_text())
    assert audit["execution"]["ray_cluster"] == "local"
    assert audit["dataset"]["n_images"] == 318
    ray_outputs, images = _cached_outputs(cache)
    model = auditkit.load_model("cxr-covid@v1", device="cpu")
    ds = auditkit.load_dataset("covid_cxr")
    local = predict(model, ds, executor=LocalExecutor(), cache=False)
    assert images == local.images
    assert np.array_equal(ray_outputs, local.outputs)
    assert "wrote" in stdout


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_actors_match_the_local_gpu(ray_cluster: str, tiny_dataset_dir: Path,
                                        small_resnet_dir: Path) -> None:
    """Actors on the GPU give the local executor's GPU numbers (same batches, precision)."""
    from auditkit.executors import RayExecutor

    ds = auditkit.load_dataset(tiny_dataset_dir / "auditkit.toml")
    model = auditkit.load_model(small_resnet_dir, device="cuda")
    local = predict(model, ds, executor=LocalExecutor(batch_size=8), cache=False)
    ex = RayExecutor(batch_size=8, device="cuda")
    remote = predict(model, ds, executor=ex, cache=False)
    assert remote.settings["actor_device"] == "cuda"
    assert remote.settings["precision"] == local.settings["precision"]
    np.testing.assert_array_equal(remote.outputs, local.outputs)


def test_ci_runs_the_readme_test_command_with_the_ray_extra() -> None:
    """CI installs Ray, so the tests above run there; .ci/run and the README agree."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    command = next(ln for ln in readme.splitlines() if ln.startswith("pip install")
                   and "pytest" in ln)
    assert '".[test,ray]"' in command
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert ci[-1] == command.replace("pip install ", "pip install -q ", 1)
