"""The append-only audit log of every gate decision, in the plugin's own tables.

Shaped like MLflow's basic-auth store: declarative models (``models.py``), Alembic migrations with
their own version table (``migrations/``), and a small repository (``log.py``) that only ever
inserts and reads. Nothing in the product updates or deletes an audit row; ``chain.py`` hash-chains
the rows with the server secret, so an edit made around the product is visible too.
"""
