"""The write id stamp at the head of an amorphous row's ``object`` blob (no driver imported).

Cassandra resolves two writes with equal timestamps by the larger cell value: with the write id
first, the larger write id wins, as in every other store. ``persistio.raw`` strips it for
readers using the stores' own clients.
"""

from __future__ import annotations

import uuid

from persistio.backends.base import Document

STAMP = b"\x01"  # a msgpack object never starts with it: blobs without it predate the stamp


def stamped(op: Document) -> bytes:
    """The blob: a stamp byte and the write id's 16 bytes before the payload.

    Cassandra resolves two writes with equal timestamps by the larger value: with the write id
    first, the larger write id wins, as in every other store.
    """
    if not op.wid:
        return op.payload
    return STAMP + uuid.UUID(op.wid).bytes + op.payload


def unstamped(blob: bytes) -> bytes:
    return blob[17:] if blob[:1] == STAMP else blob
