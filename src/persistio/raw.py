"""Reading persistio's data with the stores' own clients (cqlsh, redis-cli, other languages).

- acid rows are plain columns (plus the hidden ``_pio_ts`` and ``_pio_wid``);
- an amorphous row's ``object`` blob is a 17-byte write id stamp then the msgpack payload:
  ``document(blob)`` is the payload, ``decode_document(blob, Model)`` the object;
- a volatile value is the hash ``pio:v:<intent>:<key>`` with ``p`` (msgpack), ``ts``, ``w``;
- a stream entry has ``d`` (write id and intent), ``p`` (msgpack) and ``t`` (enqueue time).
"""

from __future__ import annotations

from typing import TypeVar

import msgspec

from persistio.backends.stamps import unstamped

T = TypeVar("T")


def document(blob: bytes) -> bytes:
    """The msgpack payload of an amorphous row's ``object`` blob, without its write id stamp."""
    return unstamped(bytes(blob))


def decode_document(blob: bytes, model: type[T]) -> T:
    """The object an amorphous row's ``object`` blob holds, as ``model``."""
    return msgspec.msgpack.decode(document(blob), type=model)
