"""Surviving a down backend: the circuit breaker per backend and the local spool."""
