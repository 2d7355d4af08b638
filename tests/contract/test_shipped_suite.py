"""The contract suite shipped in ``persistio.testing``, run against every backend set here
(the ``store`` fixture of this directory: embedded, then the real servers)."""

from __future__ import annotations

from persistio.testing import BackendContract


class TestShippedContract(BackendContract):
    pass
