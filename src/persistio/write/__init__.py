"""The save path: dispatching a save's tasks, group commit, lanes, backpressure, clock sync and
the probes around them."""
