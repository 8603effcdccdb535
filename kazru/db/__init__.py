"""PostgreSQL: ORM models, engine/session factory, Alembic migrations, job queries."""
