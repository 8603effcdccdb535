"""PostgreSQL: ORM models, engine/session factory, Alembic migrations, and the repositories that own the
rows: services hand them domain values and never build a row or open a session themselves
(`job_repository` for ingest, the worker and the janitor; `owned_jobs` for the gateway)."""
