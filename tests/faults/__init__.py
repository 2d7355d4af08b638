"""Fault tests (issue 5): servers killed, stopped or frozen under load; nothing acked is lost."""
