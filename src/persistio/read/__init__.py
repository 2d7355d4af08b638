"""Reads: point reads with read-through rebuild, lookups by index and range, pages."""
