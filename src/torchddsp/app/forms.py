"""The page's values, checked: JSON bodies, settings dataclasses, optional numbers.

Everything the page sends is untrusted: wrong types, unknown names and values
out of range become one-sentence UserErrors; the ranges are the library's own
(its dataclasses check them), so the page and the command line agree.
"""

from __future__ import annotations

import json
from dataclasses import fields

from starlette.requests import Request

from ..errors import UserError
from .uploads import TooLarge, check_declared_size

JSON_BYTES = 64 * 1024


async def read_json(request: Request) -> dict:
    """The request's JSON object, at most JSON_BYTES long."""
    check_declared_size("the request", request.headers.get("content-length"), JSON_BYTES)
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > JSON_BYTES:
            raise TooLarge("the request is too large")
    try:
        parsed = json.loads(body)
    except ValueError:
        raise UserError("the request is not valid JSON") from None
    if not isinstance(parsed, dict):
        raise UserError("the request must be a JSON object")
    return parsed


def settings_from(cls, values: object, what: str):
    """An instance of the settings dataclass ``cls`` from the page's values (missing ones
    default); unknown names, wrong types and out-of-range values give a UserError."""
    values = {} if values is None else values
    if not isinstance(values, dict):
        raise UserError(f"the {what} settings must be a JSON object")
    defaults = {f.name: getattr(cls(), f.name) for f in fields(cls)}
    for key, value in values.items():
        if key not in defaults:
            raise UserError(f"unknown {what} setting {str(key)[:40]!r}")
        if not _same_kind(value, defaults[key]):
            raise UserError(f"{key} must be {_kind_word(defaults[key])}, found {value!r}")
    try:
        return cls(**{**defaults, **values})
    except ValueError as err:  # the library's own range checks, written for people
        raise UserError(str(err)) from None


def _same_kind(value: object, default: object) -> bool:
    if isinstance(default, bool | str):
        return type(value) is type(default)
    return isinstance(value, int | float) and not isinstance(value, bool) and value == value


def _kind_word(default: object) -> str:
    return {bool: "true or false", str: "a word"}.get(type(default), "a number")


def optional_number(body: dict, key: str, low: float, high: float) -> float | None:
    value = body.get(key)
    if value is None:
        return None
    if not _same_kind(value, 0.0) or not low <= value <= high:
        raise UserError(f"{key} must be a number within {low:g} .. {high:g}")
    return value
