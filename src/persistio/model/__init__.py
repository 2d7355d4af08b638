"""What a model declares and what a save becomes: intents, @persist, codec, catalog, limits,
counts, partitions, the write clock and the task format. No I/O, no driver."""
