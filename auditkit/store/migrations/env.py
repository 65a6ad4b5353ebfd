"""Alembic environment of the review store (run by :func:`auditkit.store.upgrade`).

The caller passes an open SQLAlchemy connection in ``config.attributes["connection"]``;
there is no ``alembic.ini`` to edit and no URL is read from the environment here.
"""

from __future__ import annotations

from alembic import context

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=None,
                  render_as_batch=connection.dialect.name == "sqlite")
with context.begin_transaction():
    context.run_migrations()
