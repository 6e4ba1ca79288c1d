"""Persistence: SQLAlchemy 2.0 async over SQLite (default) or PostgreSQL."""
