"""Helpers for the checkout: not part of the package."""
