"""Marvin: a ChatOps bot that guards production from the #production channel."""

__version__ = "0.1.0"
