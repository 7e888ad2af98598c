"""Alembic environment: runs on the connection handed over by :mod:`runyard.db.migrate`.

``target_metadata`` (needed only to autogenerate a revision) is passed in the same way by
``runyard.schema``, so this package imports no feature.
"""

from alembic import context

config = context.config
connection = config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=config.attributes.get("target_metadata"),
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
