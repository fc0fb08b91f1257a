"""A measurement dataclass as plain JSON data and back, for the recorder.

Written once over the dataclass's fields and their type hints, so a value class only says
``to_record = records.to_record`` and ``from_record = classmethod(records.from_record)``:
``Segment`` lists become lists of dicts (without the captured frames), ``bytes`` become
base64 text, tuples become lists and come back as tuples; everything else is kept.
"""

from __future__ import annotations

import base64
import dataclasses
import types
import typing
from typing import Any, TypeVar

from ...base.lab import Segment

__all__ = ["to_record", "from_record", "Recorded"]

T = TypeVar("T")


def _plain(value: Any) -> Any:
    if isinstance(value, Segment):
        return value.to_record()
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _typed(hint: Any, value: Any) -> Any:
    if value is None:
        return None
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is bytes:
        return base64.b64decode(value)
    if hint is Segment:
        return Segment(**value)
    if origin in (list, tuple) and args:
        items = [_typed(args[0], v) for v in value]
        return tuple(items) if origin is tuple else items
    if origin is tuple:
        return tuple(value)
    if origin in (typing.Union, types.UnionType):
        for arg in args:
            if arg is not type(None):
                return _typed(arg, value)
    return value


def to_record(obj: Any) -> dict:
    """``obj`` (a dataclass instance) as plain JSON-able data, field by field."""
    return {f.name: _plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}


def from_record(cls: type[T], record: dict, arguments: dict | None = None) -> T:
    """A ``cls`` rebuilt from ``to_record``'s data (``arguments``, the recorded call's, are
    not needed: the record holds every field)."""
    hints = typing.get_type_hints(cls)
    return cls(**{f.name: _typed(hints[f.name], record[f.name]) for f in dataclasses.fields(cls)
                  if f.name in record})



class Recorded:
    """A mixin for measurement dataclasses: ``to_record()``/``from_record()`` written over
    the fields (above)."""

    to_record = to_record
    from_record = classmethod(from_record)
