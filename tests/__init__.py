"""The test suite; a package so that shared test helpers import as ``tests.<name>``."""
