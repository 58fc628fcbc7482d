"""The deterministic simulation of issue 8: see :mod:`tests.simulation.world`."""
