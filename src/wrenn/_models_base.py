"""The base of every wire model: forward-compatible enums, the response and request
Struct bases with the pydantic-style methods, and the error body both planes send.

Forward compatible by construction: unknown fields are ignored, and an enum value the
SDK does not know yet is kept as its raw string instead of failing the whole response.
The models themselves are in ``_models_control`` (the control plane: capsules,
templates, usage, events) and ``_models_data`` (a capsule's agent: commands, files);
``wrenn._models`` and ``wrenn.models`` export them all.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Collection, Mapping
from typing import Any, Literal, TypeVar

import msgspec

from ._exceptions import ModelValidationError

__all__ = ["Error", "Error1"]


class _OpenEnum(str, enum.Enum):
    """A string enum that keeps values it does not know instead of rejecting them.

    ``Status("migrating")`` returns a member-like value that equals the string
    ``"migrating"`` and differs from every known constant.
    """

    @classmethod
    def _missing_(cls, value: object) -> Any:
        if not isinstance(value, str):
            return None
        unknown = str.__new__(cls, value)
        unknown._name_ = value
        unknown._value_ = value
        return unknown

    def __str__(self) -> str:
        return str(self.value)


M = TypeVar("M", bound="_Model")
_FieldSelection = Collection[str] | Mapping[str, Any] | None
_FIELDS: dict[type, tuple[msgspec.structs.FieldInfo, ...]] = {}
_DECODERS: dict[tuple[type, bool], msgspec.json.Decoder[Any]] = {}


def _fields(cls: type) -> tuple[msgspec.structs.FieldInfo, ...]:
    fields = _FIELDS.get(cls)
    if fields is None:
        fields = _FIELDS[cls] = msgspec.structs.fields(cls)
    return fields


def _dump_value(value: Any, options: tuple[bool, bool, bool]) -> Any:
    if isinstance(value, _Model):
        return _dump_model(value, options, None, None)
    if isinstance(value, list):
        return [_dump_value(item, options) for item in value]
    if isinstance(value, dict):
        return {key: _dump_value(item, options) for key, item in value.items()}
    return value


def _dump_model(
    model: _Model,
    options: tuple[bool, bool, bool],
    include: _FieldSelection,
    exclude: _FieldSelection,
) -> dict[str, Any]:
    by_alias, exclude_none, exclude_defaults = options
    result: dict[str, Any] = {}
    for field in _fields(type(model)):
        name = field.name
        if (include is not None and name not in include) or (
            exclude is not None and name in exclude
        ):
            continue
        value = getattr(model, name)
        if exclude_none and value is None:
            continue
        if exclude_defaults and _is_default(field, value):
            continue
        result[field.encode_name if by_alias else name] = _dump_value(value, options)
    return result


def _is_default(field: msgspec.structs.FieldInfo, value: Any) -> bool:
    if field.default is not msgspec.NODEFAULT:
        return bool(value == field.default)
    factory: Callable[[], Any] | Any = field.default_factory
    if factory is not msgspec.NODEFAULT and callable(factory):
        return bool(value == factory())
    return False


def _invalid(cls: type, exc: msgspec.MsgspecError) -> ModelValidationError:
    return ModelValidationError(f"invalid {cls.__name__}: {exc}")


class _Model(msgspec.Struct, kw_only=True, frozen=True, gc=False):
    """Base of response models: keyword-only, immutable, cheap to allocate.

    Besides ``to_dict()``, the models offer the pydantic methods code written against
    the official SDK (whose models are pydantic's) calls: ``model_dump()``,
    ``model_dump_json()``, ``model_copy()``, ``model_validate()`` and
    ``model_validate_json()``.
    """

    def to_dict(self) -> dict[str, Any]:
        """Return the model as plain JSON-compatible Python data."""
        return msgspec.to_builtins(self)  # type: ignore[no-any-return]

    def model_dump(
        self,
        *,
        mode: Literal["python", "json"] | str = "python",
        include: _FieldSelection = None,
        exclude: _FieldSelection = None,
        by_alias: bool | None = None,
        exclude_unset: bool = False,
        exclude_defaults: bool = False,
        exclude_none: bool = False,
    ) -> dict[str, Any]:
        """The model as a dict keyed by field name, as pydantic's ``model_dump()``.

        ``mode="python"`` (the default) keeps datetimes, dates and enum members as they
        are; ``mode="json"`` gives only JSON types (ISO 8601 strings, enum values).
        ``by_alias=True`` uses the wire names (``from`` for ``UsageResponse.from_``).
        ``include``/``exclude`` select top-level fields. msgspec does not record which
        fields the server sent, so ``exclude_unset`` leaves out fields that hold their
        default, like ``exclude_defaults``.
        """
        if mode not in ("python", "json"):
            raise ValueError(f"mode must be 'python' or 'json', not {mode!r}")
        options = (bool(by_alias), exclude_none, exclude_defaults or exclude_unset)
        result = _dump_model(self, options, include, exclude)
        if mode == "json":
            return msgspec.to_builtins(result)  # type: ignore[no-any-return]
        return result

    def model_dump_json(
        self,
        *,
        indent: int | None = None,
        include: _FieldSelection = None,
        exclude: _FieldSelection = None,
        by_alias: bool | None = None,
        exclude_unset: bool = False,
        exclude_defaults: bool = False,
        exclude_none: bool = False,
    ) -> str:
        """The model as a JSON string, as pydantic's ``model_dump_json()``."""
        data = self.model_dump(
            mode="json",
            include=include,
            exclude=exclude,
            by_alias=by_alias,
            exclude_unset=exclude_unset,
            exclude_defaults=exclude_defaults,
            exclude_none=exclude_none,
        )
        encoded = msgspec.json.encode(data)
        if indent is not None:
            encoded = msgspec.json.format(encoded, indent=indent)
        return encoded.decode()

    def model_copy(self: M, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> M:
        """A copy with some fields replaced (models are immutable, so a copy is never needed to
        protect one; ``deep`` is accepted for pydantic compatibility)."""
        return msgspec.structs.replace(self, **dict(update or {}))

    @classmethod
    def model_validate(
        cls: type[M],
        obj: Any,
        *,
        strict: bool | None = None,
        from_attributes: bool | None = None,
        context: Any = None,
    ) -> M:
        """Build the model from a dict (wire names or field names), as pydantic's ``model_validate()``.

        Values are coerced as pydantic's lax mode does (``"2"`` for an int, an ISO 8601
        string for a datetime) unless ``strict=True``; ``from_attributes=True`` reads
        an object's attributes. ``context`` is accepted and unused. Raises
        ``ModelValidationError`` (a ``ValueError``).
        """
        if isinstance(obj, cls):
            return obj
        if isinstance(obj, Mapping):
            renamed = [f for f in _fields(cls) if f.name != f.encode_name]
            if renamed:
                obj = dict(obj)
                for field in renamed:
                    if field.name in obj and field.encode_name not in obj:
                        obj[field.encode_name] = obj.pop(field.name)
        try:
            return msgspec.convert(
                obj, cls, strict=bool(strict), from_attributes=bool(from_attributes)
            )
        except msgspec.MsgspecError as exc:
            raise _invalid(cls, exc) from exc

    @classmethod
    def model_validate_json(
        cls: type[M],
        json_data: str | bytes | bytearray,
        *,
        strict: bool | None = None,
        context: Any = None,
    ) -> M:
        """Build the model from JSON text, as pydantic's ``model_validate_json()``.

        Raises ``ModelValidationError`` (a ``ValueError``) for invalid JSON or data.
        """
        if any(f.name != f.encode_name for f in _fields(cls)):
            # A field renamed on the wire (``from_``/``from``): accept either name, so
            # ``model_validate_json(model.model_dump_json())`` round-trips.
            try:
                data = msgspec.json.decode(json_data)
            except msgspec.MsgspecError as exc:
                raise _invalid(cls, exc) from exc
            return cls.model_validate(data, strict=strict)
        key = (cls, bool(strict))
        decoder = _DECODERS.get(key)
        if decoder is None:
            decoder = _DECODERS[key] = msgspec.json.Decoder(cls, strict=bool(strict))
        try:
            result: M = decoder.decode(json_data)
        except msgspec.MsgspecError as exc:
            raise _invalid(cls, exc) from exc
        return result


class Error1(_Model, kw_only=True, frozen=True, gc=False):
    """The inner object of an error body (the official SDK's generated name)."""

    code: str | None = None
    message: str | None = None


class Error(_Model, kw_only=True, frozen=True, gc=False):
    """An error body, ``{"error": {"code", "message"}}`` (the official SDK's generated name)."""

    error: Error1 | None = None


# The base of request bodies: fields left unset are not sent.
class _Request(msgspec.Struct, kw_only=True, omit_defaults=True):
    pass


# One encoder for every request body, built once and reused.
json_encoder = msgspec.json.Encoder()
