"""RayExecutor: a model over a dataset on a Ray cluster, with Ray Data.

The pipeline, for a dataset of N images and ``batch_size`` B:

1. ``ray.data.from_items`` of the dataset's *batches*: one item ``{"start", "paths"}``
   per B consecutive images, cut exactly where :class:`~auditkit.predict.LocalExecutor`
   cuts them (images 0..B-1, B..2B-1, ...). A model's float32 output for an image can
   depend on which other images share its batch (the CPU and GPU libraries pick
   kernels by batch shape: ``cxr-covid@v1`` moves by 1.2e-7 between batches of 64 and
   37), and the promise is *identical* numbers, so the batches are the same ones.
2. ``map_batches(_decode_batch)`` in parallel tasks: every path through
   :func:`auditkit.predict.load_model_input`, the project's own reader, so pixel
   scaling is the same as in the local executor, to the bit.
3. ``map_batches(_ModelActor)`` on an actor pool: each actor loads the model *once*
   from its folder with :func:`auditkit.load_model` (sha256 checked, the same trust
   the caller gave: nothing is pickled across), sets ``torch.set_num_threads`` to its
   CPUs (at least 2: see :data:`MIN_ACTOR_THREADS`), takes one GPU when the actors run on CUDA, and runs
   :func:`auditkit.predict.forward_batch`, the local executor's own forward pass.
4. The driver streams the results and places each batch at its start index, so the
   outputs come back in ``dataset.records`` order whatever order the batches finish.

A segmentation model's outputs are its per-pixel logits ``(N, C, H, W)`` at the model's
output size (``mri-tumor-seg@v1``: ``(N, 1, 64, 64)``), exactly what the local executor
keeps; the masks at the reference size and the per-image rows are computed from them
afterwards by the checks, as for the local executor. The logits travel back batch by
batch and are copied into one preallocated array as they arrive: Ray Data's streaming
executor bounds the blocks in flight, so the object store never holds every mask at
once.

Errors inside the cluster (an unreadable image, a model that fails, a hash that does
not match) travel back as text and are raised here as the same auditkit exception, so
the CLI prints one line and exits 2 as it does with the local executor.

The cluster's workers must see the model folder and the images at the same paths as
this process (a shared filesystem on a multi-node cluster) and import the same
auditkit version (checked: a mismatch is refused).
"""

from __future__ import annotations

import logging
import math
import os
import socket
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import exceptions as _exceptions
from .._version import __version__
from ..data import Dataset, PixelScaling
from ..exceptions import AuditKitError, ConfigError, IntegrityError, ModelError
from ..models import LoadedModel, load_model
from ..predict import ProgressFn, _short_reason, forward_batch, load_model_input, resolve_precision

__all__ = ["RAY_INSTALL_HINT", "RayExecutor"]

RAY_INSTALL_HINT = "install the ray extra: pip install -e '.[ray]'"

#: auditkit settings read from the environment while decoding; passed to the workers,
#: whose environment is the cluster's, not this process's
_WORKER_ENV = ("AUDITKIT_MAX_PIXELS",)

_ERROR_SEP = "\x1f"

#: PyTorch's intra-op threads in a CPU model actor are never fewer than this. PyTorch
#: picks its convolution kernel by thread count: a 1x1, unstrided convolution on a
#: batch under 16 images runs the native kernel with one thread and oneDNN with more
#: (``use_mkldnn`` in aten/src/ATen/native/Convolution.cpp), and the two differ in the
#: last bits. SmallUNet's head is such a convolution, so a one-thread actor gave
#: ``mri-tumor-seg@v1`` logits 2e-6 away from the local executor's on a short last
#: batch. oneDNN's results did not depend on the number of threads (2, 3, 4 or 8 gave
#: the same bits on batches of 1 to 25 images), so actors with two or more threads match the local executor on any
#: machine with two or more cores, at the cost of a second thread on a one-CPU actor.
MIN_ACTOR_THREADS = 2


def _import_ray() -> Any:
    """``ray`` with ``ray.data``, or a ConfigError with the install hint."""
    try:
        import ray
        import ray.data  # noqa: F401  (Ray Data is a separate import)
    except ImportError as exc:
        raise ConfigError(
            f"The Ray executor needs the ray package, which is not installed; {RAY_INSTALL_HINT}"
            " (or use the local executor)."
        ) from exc
    return ray


def _encode_error(exc: BaseException) -> str:
    name = type(exc).__name__ if isinstance(exc, AuditKitError) else "ModelError"
    return f"{name}{_ERROR_SEP}{exc}"


def _decode_error(text: str) -> AuditKitError:
    name, _, message = text.partition(_ERROR_SEP)
    cls = getattr(_exceptions, name, ModelError)
    if not (isinstance(cls, type) and issubclass(cls, AuditKitError)):
        cls = ModelError
    return cls(message)


def _decode_batch(batch: dict[str, np.ndarray], *, input_size: list[int], channels: int,
                  scaling: PixelScaling, env: dict[str, str]) -> dict[str, np.ndarray]:
    """Ray Data task: one item ``{"start", "paths"}`` to ``{"start", "pixels", "error"}``.

    ``pixels`` is ``(1, B, C, H, W)`` float32 in [0, 1] (one row holding the batch), from
    :func:`load_model_input`; on failure ``(1, 0, C, H, W)`` and ``error`` says why.
    """
    os.environ.update(env)
    start = int(batch["start"][0])
    paths = [str(p) for p in batch["paths"][0]]
    height, width = int(input_size[0]), int(input_size[1])
    error = ""
    try:
        pixels = np.stack([load_model_input(p, input_size=input_size, channels=channels,
                                            scaling=scaling).numpy() for p in paths])
    except AuditKitError as exc:
        error = _encode_error(exc)
    except Exception as exc:  # noqa: BLE001 - a damaged file: say which batch, as DataError
        error = (f"DataError{_ERROR_SEP}Images {start + 1}-{start + len(paths)} could not be "
                 f"read for the model: {_short_reason(exc)}")
    if error:
        pixels = np.zeros((0, channels, height, width), dtype=np.float32)
    return {"start": np.array([start], dtype=np.int64), "pixels": pixels[None],
            "error": np.array([error])}


class _ModelActor:
    """Ray Data actor: loads the model once, then runs :func:`forward_batch` per batch.

    The model is loaded here, from its folder, with :func:`auditkit.load_model`: the
    weights' sha256 is checked against the card and against the caller's model, and
    code-carrying formats load only with the trust the caller gave.
    """

    def __init__(self, *, folder: str, sha256: str, trust_model_code: bool, device: str,
                 precision: str, threads: int, output_shape: list[int], dataset_name: str,
                 version: str, env: dict[str, str]) -> None:
        os.environ.update(env)
        torch.set_num_threads(max(MIN_ACTOR_THREADS, threads))
        self.precision = precision
        self.output_shape = tuple(int(v) for v in output_shape)
        self.dataset_name = dataset_name
        self.model: LoadedModel | None = None
        self.error = ""
        try:
            if version != __version__:
                raise ConfigError(
                    f"The Ray workers import auditkit {__version__}, this process {version}; "
                    "expected the same version on every node of the cluster."
                )
            model = load_model(folder, device=device, trust_model_code=trust_model_code)
            if model.sha256 != sha256:
                raise IntegrityError(
                    f"The Ray workers found a different model in {folder}: expected sha256 "
                    f"{sha256}, found {model.sha256}."
                )
            self.model = model
        except AuditKitError as exc:
            self.error = _encode_error(exc)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        start = int(batch["start"][0])
        error = str(batch["error"][0]) or self.error
        outputs = np.zeros((0, *self.output_shape), dtype=np.float32)
        if not error and self.model is not None:
            images = torch.from_numpy(np.asarray(batch["pixels"][0], dtype=np.float32))
            try:
                outputs = forward_batch(self.model, images, precision=self.precision,
                                        first=start, dataset_name=self.dataset_name)
            except AuditKitError as exc:
                error = _encode_error(exc)
        return {"start": np.array([start], dtype=np.int64), "outputs": outputs[None],
                "error": np.array([error])}


def _bf16_supported() -> bool:
    return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())


def _check_address(address: str) -> None:
    """Refuse a malformed or unreachable address before Ray waits on it for minutes."""
    expected = ("expected HOST:PORT of a running head node (`ray start --head` prints it), "
                "ray://HOST:PORT (Ray Client) or auto")
    if address == "auto":
        return
    hostport = address.removeprefix("ray://")
    host, sep, port_text = hostport.rpartition(":")
    if not sep or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ConfigError(f"The Ray address (--ray-address or $RAY_ADDRESS) must be "
                          f"{expected.removeprefix('expected ')}; "
                          f"got {address!r} instead.")
    try:
        with socket.create_connection((host.strip("[]"), int(port_text)), timeout=5):
            pass
    except OSError as exc:
        raise ConfigError(
            f"No Ray cluster answers at {address!r} ({exc.strerror or exc}); {expected}. "
            "Leave out --ray-address (and RAY_ADDRESS) to start a local cluster."
        ) from exc


class RayExecutor:
    """Batched inference on a Ray cluster, with the local executor's numbers.

    Parameters
    ----------
    address : str, optional
        The cluster: ``HOST:PORT`` of a head node started with ``ray start --head``,
        ``ray://HOST:PORT`` (Ray Client) or ``auto``. Default: ``$RAY_ADDRESS`` when
        set, else a local cluster is started on this machine for the run and shut
        down after it (:meth:`close`). When this process is already connected to Ray
        (``ray.init`` was called), that cluster is used and left running.
    batch_size : int
        Images per forward pass: the same batches as :class:`LocalExecutor` with the
        same ``batch_size``.
    precision : {"auto", "float32", "bf16", "fp16"}
        As for :class:`LocalExecutor`, resolved for the actors' device.
    device : {"auto", "cpu", "cuda"}
        Where the actors run the model: ``auto`` is one GPU per actor when the
        cluster has GPUs (this machine's for a local cluster), else the CPU.
    num_actors : int, optional
        Model actors (one model load each). Default: one per GPU on CUDA; on the CPU
        half the cluster's CPUs divided by ``cpus_per_actor`` (the other half decodes
        images), at least 1.
    cpus_per_actor : int
        CPUs each model actor reserves; also its ``torch.set_num_threads`` (at least
        :data:`MIN_ACTOR_THREADS`, so that PyTorch picks the local executor's kernels).
    num_cpus : int, optional
        CPUs of a local cluster (default: all of this machine's).
    object_store_memory : int, optional
        Object store bytes of a local cluster (default: Ray's).

    Examples
    --------
    >>> from auditkit.executors import RayExecutor
    >>> with RayExecutor(num_cpus=2) as ex:                       # doctest: +SKIP
    ...     preds = auditkit.predict(model, dataset, executor=ex)
    """

    def __init__(self, *, address: str | None = None, batch_size: int = 64,
                 precision: str = "auto", device: str = "auto", num_actors: int | None = None,
                 cpus_per_actor: int = 1, num_cpus: int | None = None,
                 object_store_memory: int | None = None) -> None:
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1; got {batch_size} instead.")
        if precision not in ("auto", "float32", "bf16", "fp16"):
            raise ConfigError(
                f"precision must be auto, float32, bf16 or fp16; got {precision!r} instead."
            )
        if device not in ("auto", "cpu", "cuda"):
            raise ConfigError(f"The Ray executor's device must be auto, cpu or cuda; got "
                              f"{device!r} instead.")
        if num_actors is not None and num_actors < 1:
            raise ConfigError(f"num_actors must be >= 1; got {num_actors} instead.")
        if cpus_per_actor < 1:
            raise ConfigError(f"cpus_per_actor must be >= 1; got {cpus_per_actor} instead.")
        _import_ray()  # the install hint now, not after the dataset has loaded
        if address or os.environ.get("RAY_ADDRESS"):
            _check_address(str(address or os.environ.get("RAY_ADDRESS")))
        self.address = address
        self.batch_size = batch_size
        self.precision = precision
        self.device = device
        self.num_actors = num_actors
        self.cpus_per_actor = cpus_per_actor
        self.num_cpus = num_cpus
        self.object_store_memory = object_store_memory
        self._owns_cluster = False
        self._connected_here = False
        self._resolved: dict[str, str] = {}
        self.last_run_: dict[str, Any] = {}

    # ------------------------------------------------------------------ the cluster

    def _target(self) -> str | None:
        return self.address or os.environ.get("RAY_ADDRESS") or None

    def _ensure_connected(self) -> Any:
        ray = _import_ray()
        if ray.is_initialized():
            return ray
        target = self._target()
        quiet = {"log_to_driver": False, "logging_level": logging.WARNING}
        # Ray announces its (default, wanted) token authentication on every start
        logging.getLogger("ray._private.authentication").setLevel(logging.ERROR)
        if target:
            _check_address(target)
            try:
                ray.init(address=target, **quiet)
            except Exception as exc:  # noqa: BLE001 - ConnectionError, RuntimeError, timeouts
                raise ConfigError(
                    f"Could not connect to the Ray cluster at {target!r}: {_short_reason(exc)}. "
                    "Expected a running cluster (`ray start --head`) of the same Ray version."
                ) from exc
        else:
            # the workers import the same auditkit as this process, whatever the install
            package_parent = str(Path(__file__).resolve().parents[2])
            python_path = os.pathsep.join(
                p for p in (package_parent, os.environ.get("PYTHONPATH", "")) if p)
            ray.init(address="local", num_cpus=self.num_cpus,
                     object_store_memory=self.object_store_memory, include_dashboard=False,
                     runtime_env={"env_vars": {"PYTHONPATH": python_path}}, **quiet)
            self._owns_cluster = True
        self._connected_here = True
        return ray

    def close(self) -> None:
        """Shut down the local cluster this executor started, or disconnect from a remote
        one it connected to; a connection made by the caller is left alone."""
        if not self._connected_here:
            return
        ray = _import_ray()
        if ray.is_initialized():
            ray.shutdown()
        self._connected_here = self._owns_cluster = False

    def __enter__(self) -> RayExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ settings

    def _actor_device(self) -> str:
        if "device" not in self._resolved:
            if self.device != "auto":
                device = self.device
            elif self._target() is None and not _import_ray().is_initialized():
                device = "cuda" if torch.cuda.is_available() else "cpu"  # this machine
            else:
                ray = self._ensure_connected()
                device = "cuda" if ray.cluster_resources().get("GPU", 0) >= 1 else "cpu"
            self._resolved["device"] = device
        return self._resolved["device"]

    def _actor_precision(self, device: str) -> str:
        if "precision" not in self._resolved:
            if device == "cpu" or self.precision != "auto":
                precision = resolve_precision(self.precision, torch.device(device))
            elif self._target() is None and torch.cuda.is_available():
                precision = resolve_precision("auto", torch.device("cuda"))
            else:  # ask a GPU worker of the cluster, as LocalExecutor asks its own GPU
                ray = self._ensure_connected()
                probe = ray.remote(num_gpus=1)(_bf16_supported)
                precision = "bf16" if ray.get(probe.remote()) else "fp16"
            self._resolved["precision"] = precision
        return self._resolved["precision"]

    def describe(self) -> dict[str, Any]:
        """The settings that may change the numbers (``precision``, resolved for the
        actors' device) and where the model ran, for the cache key and ``audit.json``."""
        device = self._actor_device()
        info: dict[str, Any] = {
            "executor": "ray", "batch_size": self.batch_size,
            "precision": self._actor_precision(device), "actor_device": device,
            "ray_cluster": self._target() or "local",
            "actors": self.num_actors if self.num_actors is not None else "auto",
            "cpus_per_actor": self.cpus_per_actor,
        }
        return info

    def _n_actors(self, ray: Any, device: str) -> int:
        if self.num_actors is not None:
            return self.num_actors
        resources = ray.cluster_resources()
        if device == "cuda":
            return max(1, int(resources.get("GPU", 0)))
        return max(1, int(resources.get("CPU", 1)) // (2 * self.cpus_per_actor))

    # ------------------------------------------------------------------ running

    def _pipeline(self, ray: Any, items: list[dict[str, Any]], *, blocks: int, card: Any,
                  model: LoadedModel, dataset: Dataset, device: str, precision: str,
                  n_actors: int, expected: tuple[int, ...], env: dict[str, str]) -> Any:
        """The Ray Data pipeline: batches -> decoding tasks -> model actors."""
        return (
            ray.data.from_items(items, override_num_blocks=blocks)
            .map_batches(_decode_batch, batch_size=1, batch_format="numpy", num_cpus=1,
                         fn_kwargs={"input_size": [int(v) for v in card.input_size],
                                    "channels": int(card.channels), "scaling": card.scaling,
                                    "env": env})
            # max_restarts=0: an actor that dies fails the run with a message rather than
            # being restarted; it also keeps the decoding tasks a separate stage (Ray Data
            # fuses stages with equal remote arguments), so images decode in parallel
            .map_batches(_ModelActor, batch_size=1, batch_format="numpy",
                         compute=ray.data.ActorPoolStrategy(size=n_actors),
                         num_cpus=self.cpus_per_actor, num_gpus=1 if device == "cuda" else 0,
                         max_restarts=0,
                         fn_constructor_kwargs={
                             "folder": str(model.folder), "sha256": model.sha256,
                             "trust_model_code": model.trust.get("trusted_by") == "user",
                             "device": device, "precision": precision,
                             "threads": self.cpus_per_actor, "output_shape": list(expected),
                             "dataset_name": dataset.name, "version": __version__, "env": env})
        )

    def outputs(self, model: LoadedModel, dataset: Dataset, *,
                progress: ProgressFn | None = None) -> np.ndarray:
        """Raw model outputs in ``dataset.records`` order, from the cluster.

        ``(N, K)`` float32 for a classifier; ``(N, C, H, W)`` float32 per-pixel logits for
        a segmentation model (``card.output_shape`` per image), as :class:`LocalExecutor`.

        Raises
        ------
        ConfigError
            Ray is not installed, the cluster cannot be reached, or the model was not
            loaded from a folder (the actors load it from there).
        DataError, ModelError
            As the local executor: an image cannot be read, the model fails.
        """
        card = model.card
        if model.folder is None:
            raise ConfigError(
                f"The Ray executor loads {card.ref} in each actor from its model folder, but "
                "this model was not loaded from one; expected a model from auditkit.load_model "
                "(or use the local executor)."
            )
        if progress and self._target() is None and not _import_ray().is_initialized():
            progress(0, len(dataset), "starting a local Ray cluster")
        ray = self._ensure_connected()
        device = self._actor_device()
        if device == "cuda" and ray.cluster_resources().get("GPU", 0) < 1:
            raise ConfigError("The Ray executor was asked for CUDA, but the cluster has no GPU; "
                              "use device cpu or auto.")
        precision = self._actor_precision(device)
        paths = dataset.records["path"].astype(str).tolist()
        n = len(paths)
        # per image: (K,) outputs of a classifier, (C, H, W) logits of a segmentation model
        expected = tuple(int(v) for v in card.output_shape)
        if n == 0:
            raise ModelError(f"{card.ref} produced no outputs for dataset {dataset.name!r}.")
        step = self.batch_size
        items = [{"start": s, "paths": paths[s:s + step]} for s in range(0, n, step)]
        n_actors = self._n_actors(ray, device)
        env = {k: os.environ[k] for k in _WORKER_ENV if k in os.environ}
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False  # ours is the progress line
        logging.getLogger("ray.data").setLevel(logging.ERROR)  # "progress bars disabled" etc.
        # blocks of one to four batches: enough to keep every worker busy and to stream
        # results (and progress) back as they come, few enough for little scheduling
        blocks = min(len(items), max(16 * n_actors, math.ceil(len(items) / 4)))
        with warnings.catch_warnings():
            # Ray 2.60 has no named parameter for max_restarts and flags every other
            # remote argument as deprecated (removal announced for 2.64; ray is pinned)
            warnings.filterwarnings("ignore", message="`ray_remote_args` is deprecated",
                                    category=DeprecationWarning)
            pipeline = self._pipeline(ray, items, blocks=blocks, card=card, model=model,
                                      dataset=dataset, device=device, precision=precision,
                                      n_actors=n_actors, expected=expected, env=env)
        # the whole result, as the local executor keeps it (a segmentation model's logits
        # at its output size, 64x64 for mri-tumor-seg: 16 KiB an image); filled batch by
        # batch as the stream delivers them, so the object store only ever holds the
        # blocks in flight, never every mask at once
        outputs = np.zeros((n, *expected), dtype=np.float32)
        filled = np.zeros(n, dtype=bool)
        done = 0
        message = f"running {card.ref} on Ray ({n_actors} actor{'s' if n_actors > 1 else ''})"
        if progress:
            progress(0, n, message)
        try:
            for batch in pipeline.iter_batches(batch_size=None, batch_format="numpy"):
                for start, rows, error in zip(batch["start"], batch["outputs"], batch["error"]):
                    if str(error):
                        raise _decode_error(str(error))
                    start = int(start)
                    arr = np.asarray(rows, dtype=np.float32)
                    size = len(items[start // step]["paths"])
                    if arr.shape != (size, *expected) or filled[start:start + size].any():
                        raise ModelError(
                            f"The Ray cluster returned outputs of shape {arr.shape} for images "
                            f"{start + 1}-{start + size}; expected {(size, *expected)}, once."
                        )
                    outputs[start:start + size] = arr
                    filled[start:start + size] = True
                    done += size
                    if progress:
                        progress(done, n, message)
        except ray.exceptions.RayError as exc:
            raise ModelError(f"The Ray cluster failed while running {card.ref}: "
                             f"{_short_reason(exc)}") from exc
        if not filled.all():
            raise ModelError(f"The Ray cluster returned outputs for {int(filled.sum())} of {n} "
                             f"images of {dataset.name!r}; expected all of them.")
        self.last_run_ = {"actors": n_actors, "actor_device": device, "precision": precision,
                          "batches": len(items), "blocks": blocks}
        return outputs
