"""Persistence: the eventsourcing wiring, the SQLite recorder and views, the mapper."""
