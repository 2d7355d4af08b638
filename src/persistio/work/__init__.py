"""Deferred work: the worker loop, consumers and what they are given, replay of spool and outbox,
dead letters, time-slice promises."""
