"""Tests on a real PostgreSQL (found by conftest.py), and end to end through the CLI."""
