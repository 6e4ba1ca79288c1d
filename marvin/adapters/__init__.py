"""Adapters to the outside world: one Protocol per kind, implementations chosen by config."""
