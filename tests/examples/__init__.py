"""Tests of the reference apps under examples/."""
