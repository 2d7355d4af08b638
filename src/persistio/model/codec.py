"""msgspec encoding, validation, and the mapping from a model's fields to typed columns.

Backends never see model types: they get ``Column`` specs with a logical ``kind`` and plain
Python values, and map both to their own engine's types.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

import msgspec
import msgspec.inspect as mi

from persistio.errors import ValidationError

Kind = Literal[
    "int", "str", "float", "bool", "datetime", "date", "uuid", "decimal", "bytes", "json"
]
KEY_KINDS: frozenset[Kind] = frozenset(
    {"int", "str", "bool", "datetime", "date", "uuid", "decimal", "bytes"}
)
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

_SCALARS: dict[type[mi.Type], Kind] = {
    mi.IntType: "int",
    mi.StrType: "str",
    mi.FloatType: "float",
    mi.BoolType: "bool",
    mi.DateTimeType: "datetime",
    mi.DateType: "date",
    mi.UUIDType: "uuid",
    mi.DecimalType: "decimal",
    mi.BytesType: "bytes",
}


@dataclass(frozen=True)
class Column:
    """One stored field: its name, its logical kind, and whether it may be None."""

    name: str
    kind: Kind
    nullable: bool


def _kind_of(t: mi.Type) -> tuple[Kind, bool]:
    if isinstance(t, mi.UnionType):
        rest = [u for u in t.types if not isinstance(u, mi.NoneType)]
        nullable = len(rest) != len(t.types)
        if len(rest) == 1:
            return _kind_of(rest[0])[0], nullable
        return "json", nullable
    return _SCALARS.get(type(t), "json"), False


def fields_of(model: type) -> list[mi.Field] | None:
    """The model's fields, or None when msgspec cannot treat it as a record type."""
    try:
        info = mi.type_info(model)
    except (TypeError, ValueError):
        return None
    if isinstance(info, mi.StructType | mi.DataclassType):
        return list(info.fields)
    return None


def columns_of(model: type) -> list[Column]:
    """One ``Column`` per field of ``model`` (a msgspec Struct or a dataclass)."""
    found = fields_of(model)
    if found is None:
        raise TypeError(f"{model!r} is not a msgspec.Struct or dataclass")
    return [Column(f.name, *_kind_of(f.type)) for f in found]


def normal_key(value: Any) -> Any:
    """One form for numbers the stores treat as one key: Decimal 1.0, 1.00 and 1 are 1.

    (PostgreSQL's numeric compares them equal, but Cassandra and Redis key by their bytes.)
    """
    if isinstance(value, Decimal) and value.is_finite():
        value = value.normalize()
        return Decimal(0) if value == 0 else value
    return value


_JSON_STARTS = (b"{", b"[")


class Codec:
    """Encodes, decodes and validates one model type; built once per stored type.

    ``encoding`` is what it writes: msgpack, or JSON (a volatile or transitory intent's
    ``encoding="json"``: readable with redis-cli and by services in other languages). It reads
    both, so an intent whose encoding changed still reads what was written before.
    """

    def __init__(self, model: type, encoding: str = "msgpack") -> None:
        self.model = model
        self.encoding = encoding
        self.columns = columns_of(model)
        self._by_name = {c.name: c for c in self.columns}
        fields = fields_of(model) or []
        self._encode_names = {f.name: f.encode_name for f in fields}
        self._hints = typing.get_type_hints(model)
        self._encoder: msgspec.msgpack.Encoder | msgspec.json.Encoder = msgspec.msgpack.Encoder()
        self._decoder: msgspec.msgpack.Decoder[Any] = msgspec.msgpack.Decoder(model)
        self._json_decoder: msgspec.json.Decoder[Any] = msgspec.json.Decoder(model)
        # what validate() decodes its own encoding with
        self._check: msgspec.msgpack.Decoder[Any] | msgspec.json.Decoder[Any] = self._decoder
        if encoding == "json":
            self._encoder = msgspec.json.Encoder()
            self._check = self._json_decoder
        self._json_columns = tuple(c.name for c in self.columns if c.kind == "json")
        self._datetimes = tuple(c.name for c in self.columns if c.kind == "datetime")
        self._decimals = frozenset(c.name for c in self.columns if c.kind == "decimal")
        # required fields with a default: a NULL there is a row older than the field
        self._defaulted = frozenset(
            f.name for f in fields if not f.required and not self._by_name[f.name].nullable
        )

    def encode(self, obj: Any) -> bytes:
        return self._encoder.encode(obj)

    def decode(self, data: bytes) -> Any:
        # a struct's msgpack starts with a map or array marker, never with "{" or "[" (which
        # msgpack reads as the bare integers 123 and 91): the first byte tells them apart
        if data[:1] in _JSON_STARTS:
            return self._json_decoder.decode(data)
        return self._decoder.decode(data)

    def validate(self, obj: Any, where: str) -> bytes:
        """Check ``obj`` against its annotations; return its msgpack encoding.

        msgspec does not validate on construction, so the object is checked by decoding its own
        encoding with the type: that is the one check that covers nested fields too.
        """
        if not isinstance(obj, self.model):
            raise ValidationError(
                f"{where}: expected a {self.model.__qualname__}, got {type(obj).__qualname__}"
            )
        for name in self._datetimes:
            value = getattr(obj, name)
            if value is not None and value.tzinfo is None:
                # the tiers would disagree about it (one reads it back aware, another naive)
                raise ValidationError(
                    f"{where}: field {name!r} is a naive datetime ({value.isoformat()}); "
                    "persistio stores instants: use an aware one, e.g. datetime.now(UTC)"
                )
        try:
            data = self._encoder.encode(obj)
            self._check.decode(data)
        except (msgspec.ValidationError, msgspec.EncodeError, TypeError, OverflowError) as exc:
            raise ValidationError(f"{where}: {exc}") from exc
        return data

    def validate_for(self, obj: Any, where: str, intent: str) -> bytes:
        """``validate`` for an intent's derived object; the error names the intent."""
        try:
            return self.validate(obj, "")
        except ValidationError as exc:
            raise ValidationError(f"{where}, intent {intent!r}{exc}") from exc.__cause__

    def to_row(self, obj: Any) -> dict[str, Any]:
        """Column name -> value; nested values become JSON-ready builtins."""
        row = {c.name: getattr(obj, c.name) for c in self.columns}
        for name in self._json_columns:
            row[name] = msgspec.to_builtins(row[name])
        return row

    def from_row(self, row: dict[str, Any]) -> Any:
        """The object of a row; a NULL in a required field that has a default (the row predates
        the field) reads as that default."""
        encoded = {
            self._encode_names[k]: v
            for k, v in row.items()
            if k in self._by_name and not (v is None and k in self._defaulted)
        }
        return msgspec.convert(encoded, self.model, strict=False)

    def key_values(self, obj: Any, fields: tuple[str, ...]) -> tuple[Any, ...]:
        """The key of ``obj``: Decimals normalized (1.0 and 1.00 are one key in every store)."""
        if not self._decimals:
            return tuple(getattr(obj, f) for f in fields)
        return tuple(normal_key(getattr(obj, f)) for f in fields)

    def check_key(
        self, given: dict[str, Any], fields: tuple[str, ...], where: str
    ) -> tuple[Any, ...]:
        """Validate keyword key values given to get()/query(); return them in field order."""
        if set(given) != set(fields):
            raise ValidationError(
                f"{where} takes exactly the key fields {fields}; got {tuple(sorted(given))}"
            )
        out = []
        for name in fields:
            try:
                value = msgspec.convert(given[name], self._hints[name], strict=False)
            except msgspec.ValidationError as exc:
                raise ValidationError(f"{where}: key field {name!r}: {exc}") from exc
            if isinstance(value, datetime) and value.tzinfo is None:
                raise ValidationError(
                    f"{where}: key field {name!r} is a naive datetime; use an aware one"
                )
            out.append(normal_key(value))
        return tuple(out)

    def to_key_row(self, obj: Any, key: tuple[str, ...]) -> dict[str, Any]:
        """``to_row`` with the key's Decimals normalized, as ``key_values`` does."""
        row = self.to_row(obj)
        for name in key:
            if name in self._decimals:
                row[name] = normal_key(row[name])
        return row
