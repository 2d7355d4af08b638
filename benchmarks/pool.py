"""The harness's side of the agents: start them, ask them, stop them."""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import time
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from .agents import Failure, LoadResult, LoadSpec, WorkResult, agent_main
from .settings import Endpoints

REPLY_TIMEOUT = 600.0


class AgentError(Exception):
    """An agent failed a request, died, or did not answer in time.

    ``fatal``: the agent is gone or out of step with its pipe, so no later run can be trusted.
    """

    def __init__(self, message: str, *, fatal: bool) -> None:
        super().__init__(message)
        self.fatal = fatal


@dataclass
class AgentHandle:
    tag: str
    process: BaseProcess
    conn: Connection


class AgentPool:
    """``loaders`` load-generating processes and ``workers`` worker processes."""

    def __init__(self, endpoints: Endpoints, loaders: int, workers: int) -> None:
        ctx = mp.get_context("spawn")  # nothing (driver threads, sockets) leaks into agents
        self.loaders: list[AgentHandle] = []
        self.workers: list[AgentHandle] = []
        self._working: list[AgentHandle] = []
        for tags, into in (
            ([f"load{i}" for i in range(loaders)], self.loaders),
            ([f"work{i}" for i in range(workers)], self.workers),
        ):
            for tag in tags:
                ours, theirs = ctx.Pipe()
                process = ctx.Process(
                    target=agent_main, args=(endpoints, tag, theirs), name=f"bench-{tag}"
                )
                process.start()
                theirs.close()
                into.append(AgentHandle(tag, process, ours))

    def ask(
        self, agents: Sequence[AgentHandle], messages: Sequence[Any], timeout: float
    ) -> list[Any]:
        """Send each agent its message, then collect every reply (they work in parallel)."""
        for agent, message in zip(agents, messages, strict=True):
            agent.conn.send(message)
        replies: list[Any] = []
        failures: list[str] = []
        for agent in agents:  # every reply is read, so the pipes stay in step after a failure
            if not agent.conn.poll(timeout):
                raise AgentError(
                    f"agent {agent.tag} did not answer within {timeout:.0f}s", fatal=True
                )
            try:
                reply = agent.conn.recv()
            except EOFError:
                code = agent.process.exitcode
                raise AgentError(f"agent {agent.tag} died (exit code {code})", fatal=True) from None
            if isinstance(reply, Failure):
                failures.append(f"agent {agent.tag}: {reply.message}")
            replies.append(reply)
        if failures:
            raise AgentError(failures[0], fatal=False)
        return replies

    def warm(self, arm: str, workload: str, seq: int, threads: int) -> int:
        """Open and warm ``arm``'s clients in every load agent (``threads`` of them in the first,
        which runs the in-process concurrency runs); returns saves written."""
        agents = self.loaders
        messages = [
            ("warm", arm, workload, seq + i * 10_000_000, threads if i == 0 else 1)
            for i in range(len(agents))
        ]
        return sum(int(n) for n in self.ask(agents, messages, REPLY_TIMEOUT))

    def load(self, specs: Sequence[LoadSpec], timeout: float) -> list[LoadResult]:
        agents = self.loaders[: len(specs)]
        return list(self.ask(agents, [("load", s) for s in specs], timeout))

    def start_work(self, arm: str, workload: str, n: int) -> None:
        self._working = self.workers[:n]
        self.ask(self._working, [("work", arm, workload)] * n, REPLY_TIMEOUT)

    def progress(self) -> tuple[int, int]:
        """(notifications delivered, work held locally) over the running workers."""
        replies = self.ask(self._working, [("progress",)] * len(self._working), REPLY_TIMEOUT)
        return sum(r[0] for r in replies), sum(r[1] for r in replies)

    def stop_work(self) -> list[WorkResult]:
        working, self._working = self._working, []
        return list(self.ask(working, [("stop",)] * len(working), REPLY_TIMEOUT))

    def alive(self) -> bool:
        return all(a.process.is_alive() for a in (*self.loaders, *self.workers))

    def close(self, grace: float = 30.0) -> None:
        """Ask every agent to finish; one still busy after ``grace`` seconds (a load loop the
        harness abandoned on ^C or SIGTERM) is ended by its own handle."""
        agents = (*self.loaders, *self.workers)
        for agent in agents:
            with contextlib.suppress(OSError):  # it is gone already
                agent.conn.send(None)
        deadline = time.monotonic() + grace
        for agent in agents:
            agent.process.join(timeout=max(0.0, deadline - time.monotonic()))
            if agent.process.is_alive():  # one of ours, stuck: end it by its own handle
                agent.process.terminate()
                agent.process.join(timeout=10)
            agent.conn.close()
