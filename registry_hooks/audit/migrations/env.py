"""Alembic environment for the gatekeeper tables, with their own version table.

The version table is ``alembic_version_gatekeeper`` so MLflow's ``mlflow db upgrade`` (which owns
``alembic_version``) and basic-auth (``alembic_version_auth``) never see our revisions.
"""

from alembic import context
from sqlalchemy import engine_from_config, pool

from registry_hooks.audit.models import Base
from registry_hooks.contract import AUDIT_VERSION_TABLE

config = context.config


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is None:
        engine = engine_from_config(
            config.get_section(config.config_ini_section, {}), prefix="sqlalchemy.", poolclass=pool.NullPool
        )
        with engine.connect() as connection:
            _run(connection)
    else:
        _run(connection)


def _run(connection) -> None:
    context.configure(connection=connection, target_metadata=Base.metadata, version_table=AUDIT_VERSION_TABLE)
    with context.begin_transaction():
        context.run_migrations()


run_migrations_online()
