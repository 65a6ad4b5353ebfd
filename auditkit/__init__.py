"""auditkit: audit trained medical-imaging models for clinicians and ethics boards.

The library never imports streamlit; everything the dashboard shows can be produced
headless with the ``auditkit`` command or these functions::

    import auditkit
    model = auditkit.load_model("derm-lesion@v1")
    data = auditkit.load_dataset("fitzpatrick17k")
    audit = auditkit.run_audit(model=model, dataset=data, out_dir="audits/derm-v1")
"""

import sys
import types
from typing import TYPE_CHECKING, Any

from ._version import __version__
from .exceptions import (
    AuditKitError,
    ConfigError,
    DataError,
    DatasetNotFoundError,
    IntegrityError,
    ModelError,
    ModelNotFoundError,
    UnsafeModelError,
    UntrustedModelError,
)

# Public names of the heavy modules (torch, pandas) are imported on first use (PEP 562),
# so `import auditkit.store` or `auditkit users ...` never loads torch: the review store
# must run in a hospital's web tier without a GPU stack.
_LAZY = {
    "audit": ("CHECKS", "SCHEMA_VERSION", "AuditConfig", "CheckContext", "available_checks",
              "list_audits", "read_audit", "run_audit"),
    "data": ("ATTRIBUTE_KINDS", "AttributeSpec", "Dataset", "DatasetProblem", "DatasetSpec",
             "PixelScaling", "builtin_dataset_names", "dataset_names", "dataset_spec",
             "find_dataset", "load_dataset", "read_image", "read_pixels"),
    "models": ("LoadedModel", "ModelCard", "card_problems", "list_models", "load_model",
               "resolve_model", "select_device", "sha256_file"),
    "predict": ("Executor", "LocalExecutor", "Predictions", "predict"),
}
_WHERE = {name: module for module, names in _LAZY.items() for name in names}

if TYPE_CHECKING:  # pragma: no cover
    from .audit import (
        CHECKS,
        SCHEMA_VERSION,
        AuditConfig,
        CheckContext,
        available_checks,
        run_audit,
    )
    from .data import (
        ATTRIBUTE_KINDS,
        AttributeSpec,
        Dataset,
        DatasetProblem,
        DatasetSpec,
        PixelScaling,
        builtin_dataset_names,
        dataset_names,
        dataset_spec,
        find_dataset,
        load_dataset,
        read_image,
        read_pixels,
    )
    from .models import (
        LoadedModel,
        ModelCard,
        card_problems,
        list_models,
        load_model,
        resolve_model,
        select_device,
        sha256_file,
    )
    from .predict import Executor, LocalExecutor, Predictions, predict


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'auditkit' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_WHERE))


class _Package(types.ModuleType):
    """``auditkit.predict`` is the function, as it was before the imports became lazy.

    Importing the submodule ``auditkit.predict`` makes Python set the package attribute
    of the same name to the module, which would hide the function from
    ``from auditkit import predict``; this property keeps the public name the function
    (``from auditkit.predict import …`` still reads the module from ``sys.modules``).
    """

    @property
    def predict(self) -> Any:
        from .predict import predict

        return predict

    @predict.setter
    def predict(self, value: Any) -> None:  # the import system's binding of the submodule
        pass


sys.modules[__name__].__class__ = _Package


__all__ = [
    "ATTRIBUTE_KINDS",
    "CHECKS",
    "SCHEMA_VERSION",
    "AttributeSpec",
    "AuditConfig",
    "AuditKitError",
    "CheckContext",
    "ConfigError",
    "DataError",
    "Dataset",
    "DatasetNotFoundError",
    "DatasetProblem",
    "DatasetSpec",
    "Executor",
    "IntegrityError",
    "LoadedModel",
    "LocalExecutor",
    "ModelCard",
    "ModelError",
    "ModelNotFoundError",
    "PixelScaling",
    "Predictions",
    "UnsafeModelError",
    "UntrustedModelError",
    "__version__",
    "available_checks",
    "builtin_dataset_names",
    "card_problems",
    "dataset_names",
    "dataset_spec",
    "find_dataset",
    "list_audits",
    "list_models",
    "load_dataset",
    "load_model",
    "predict",
    "read_image",
    "read_pixels",
    "resolve_model",
    "read_audit",
    "run_audit",
    "select_device",
    "sha256_file",
]
