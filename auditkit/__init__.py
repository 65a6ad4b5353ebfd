"""auditkit: audit trained medical-imaging models for clinicians and ethics boards.

The library never imports streamlit; everything the dashboard shows can be produced
headless with the ``auditkit`` command or these functions::

    import auditkit
    model = auditkit.load_model("derm-lesion@v1")
    data = auditkit.load_dataset("fitzpatrick17k")
    audit = auditkit.run_audit(model=model, dataset=data, out_dir="audits/derm-v1")
"""

from ._version import __version__
from .audit import CHECKS, SCHEMA_VERSION, AuditConfig, CheckContext, available_checks, run_audit
from .data import (
    ATTRIBUTE_KINDS,
    AttributeSpec,
    Dataset,
    DatasetProblem,
    DatasetSpec,
    builtin_dataset_names,
    find_dataset,
    load_dataset,
    read_image,
)
from .exceptions import (
    AuditKitError,
    ConfigError,
    DataError,
    DatasetNotFoundError,
    IntegrityError,
    ModelError,
    ModelNotFoundError,
    UnsafeModelError,
)
from .models import (
    LoadedModel,
    ModelCard,
    list_models,
    load_model,
    resolve_model,
    select_device,
    sha256_file,
)
from .predict import Executor, LocalExecutor, Predictions, predict

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
    "Predictions",
    "UnsafeModelError",
    "__version__",
    "available_checks",
    "builtin_dataset_names",
    "find_dataset",
    "list_models",
    "load_dataset",
    "load_model",
    "predict",
    "read_image",
    "resolve_model",
    "run_audit",
    "select_device",
    "sha256_file",
]
