"""Shared helpers for tests and vm-tests (fixtures that make real test material)."""
