"""The embedded tiers on SQLite: the transitory queue, amorphous documents and counts."""
