"""Alembic environment: the URL comes from the caller's config, else from Settings."""

from alembic import context
from sqlalchemy import pool

from booking.db import make_engine
from booking.models import Base
from booking.settings import get_settings

config = context.config
target_metadata = Base.metadata


def run_migrations_online() -> None:
    url = config.get_main_option("sqlalchemy.url") or get_settings().database_url
    engine = make_engine(url)
    engine.pool = pool.NullPool(engine.pool._creator)
    with engine.connect() as connection:
        # The swapped-in pool lacks create_engine's first-connect hook that learns the server's
        # version, which reflecting a table (a batch migration on SQLite) needs.
        if connection.dialect.server_version_info is None:
            connection.dialect.initialize(connection)
            connection.commit()  # its queries began a transaction the migrations must not share
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()


def run_migrations_offline() -> None:
    context.configure(
        url=config.get_main_option("sqlalchemy.url") or get_settings().database_url,
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
