"""Reference applications built on persistio's public API (``python -m examples.<app>``)."""
