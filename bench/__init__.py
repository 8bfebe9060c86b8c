"""Benchmarks: imageledger against raw SQLite doing the same work, in one run."""
