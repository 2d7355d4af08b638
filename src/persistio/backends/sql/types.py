"""Logical column kinds -> SQLAlchemy types, shared by the SQL acid and SQLite amorphous tiers."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

from persistio.model.codec import Kind

WRITE_TS = "_pio_ts"  # the hidden column that holds each row's write timestamp
WRITE_ID = "_pio_wid"  # and its write id, which breaks a tie of equal timestamps


class UTCDateTime(sa.TypeDecorator[datetime]):
    """Timezone-aware in, timezone-aware out, also on SQLite (which has no time zones)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None or dialect.name == "postgresql":
            return value
        if value.tzinfo is None:
            return value
        # stored as naive UTC text: sortable, and equal instants compare equal
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None or value.tzinfo is not None or dialect.name == "postgresql":
            return value
        return value.replace(tzinfo=UTC)


class ExactDecimal(sa.TypeDecorator[Decimal]):
    """Decimals as numeric on PostgreSQL; as text on SQLite, whose REAL would round them."""

    impl = sa.Numeric(asdecimal=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: sa.Dialect) -> sa.types.TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(sa.Text())
        return dialect.type_descriptor(sa.Numeric(asdecimal=True))

    def process_bind_param(self, value: Decimal | None, dialect: sa.Dialect) -> Any:
        if value is None or dialect.name != "sqlite":
            return value
        return str(value)

    def process_result_value(self, value: Any, dialect: sa.Dialect) -> Decimal | None:
        if value is None or isinstance(value, Decimal):
            return value
        return Decimal(str(value))


def sa_type(kind: Kind) -> sa.types.TypeEngine[Any]:
    """The column type for a logical kind (dialect variants resolved by SQLAlchemy)."""
    match kind:
        case "int":
            return sa.BigInteger()
        case "str":
            return sa.Text()
        case "float":
            return sa.Double()
        case "bool":
            return sa.Boolean()
        case "datetime":
            return UTCDateTime()
        case "date":
            return sa.Date()
        case "uuid":
            return sa.Uuid()
        case "decimal":
            return ExactDecimal()
        case "bytes":
            return sa.LargeBinary()
        case "json":
            return sa.JSON().with_variant(JSONB(), "postgresql")
