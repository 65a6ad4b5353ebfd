"""Executors beyond the local one, behind the :class:`auditkit.predict.Executor` seam.

:class:`RayExecutor` runs a model over a dataset on a Ray cluster (Ray Data: images
decoded in parallel tasks, the model in an actor pool). Ray is an optional extra::

    pip install -e ".[ray]"

and is imported only when a :class:`RayExecutor` first needs it, so ``import auditkit``
works without it. The local executor stays :class:`auditkit.predict.LocalExecutor`.
"""

from __future__ import annotations

from ._ray import RAY_INSTALL_HINT, RayExecutor

__all__ = ["RAY_INSTALL_HINT", "RayExecutor"]
