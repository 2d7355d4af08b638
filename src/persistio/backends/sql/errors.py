"""Driver errors of the SQL backends, mapped into persistio's tree in one place."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy.exc as sa_exc

from persistio.errors import BackendUnavailable, Busy, PersistioError, ValidationError


@contextmanager
def mapped_errors(tier: str, where: str) -> Iterator[None]:
    """Re-raise SQLAlchemy/DBAPI errors as BackendUnavailable, ValidationError or PersistioError."""
    try:
        yield
    except sa_exc.TimeoutError as exc:  # the pool's wait for a free connection ran out
        raise Busy(
            f"{tier} backend {where}: every pooled connection stayed busy", tier=tier
        ) from exc
    except (sa_exc.OperationalError, sa_exc.InterfaceError) as exc:
        raise BackendUnavailable(f"{tier} backend {where}: {_short(exc)}", tier=tier) from exc
    except sa_exc.DBAPIError as exc:
        if exc.connection_invalidated:
            raise BackendUnavailable(f"{tier} backend {where}: {_short(exc)}", tier=tier) from exc
        if isinstance(exc, sa_exc.DataError | sa_exc.IntegrityError):
            raise ValidationError(f"{tier} backend {where}: {_short(exc)}") from exc
        raise PersistioError(f"{tier} backend {where}: {_short(exc)}") from exc


def _short(exc: sa_exc.SQLAlchemyError) -> str:
    # The first line of the driver's message; never the statement's bound parameters.
    orig = getattr(exc, "orig", None)
    text = str(orig if orig is not None else exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
