"""Folds of the event log into read models: the current view and audit entries.

One pure fold per read model; every driver (live, rebuild, replay) calls it.
"""
