"""The backends of one store, one per tier: chosen from URLs by the registry, held as a set, and
the op builder that turns planned work into their operations."""
