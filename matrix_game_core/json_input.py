"""Reading JSON that a user (or a browser) sends: bounded, with one clear error.

Python's ``json`` module turns hostile input into exceptions that are not ``ValueError``
(``RecursionError`` for ``[[[[...`` nested thousands deep, ``UnicodeDecodeError`` for binary files)
or into values that break later arithmetic (an integer with thousands of digits overflows
``float()``; past 4300 digits ``int()`` itself refuses). :func:`loads` refuses all of these up
front with a :class:`~matrix_game_core.errors.MatrixGameError` that names the problem:

* text must be UTF-8 (a ``bytes`` input is decoded strictly; a leading BOM is allowed);
* containers (lists / objects) may nest at most ``max_depth`` levels (default :data:`MAX_DEPTH`);
* an integer literal may have at most :data:`MAX_INT_DIGITS` digits (larger values are not a
  frame number, a key state or a mouse motion of any track);
* ``NaN`` / ``Infinity`` literals are read as floats (the callers refuse non-finite values with a
  message that says where they are).
"""
from __future__ import annotations

import json
from typing import Any, Union

from .errors import MatrixGameError

#: Deepest accepted nesting of lists / objects (an action track needs 4; ``meta`` gets the rest).
MAX_DEPTH = 64
#: Most digits accepted in an integer literal (2**64 has 20).
MAX_INT_DIGITS = 30


class _TooLarge(ValueError):
    pass


def _parse_int(text: str) -> int:
    digits = len(text) - (text[0] == "-")
    if digits > MAX_INT_DIGITS:
        raise _TooLarge(f"an integer with {digits} digits (at most {MAX_INT_DIGITS} are accepted)")
    return int(text)


def depth(value: Any) -> int:
    """Nesting depth of decoded JSON: 0 for a scalar, 1 for ``[]`` / ``{}``, ... (iterative)."""
    best, stack = 0, [(value, 1)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, dict):
            v = v.values()
        elif not isinstance(v, list):
            continue
        best = max(best, d)
        stack.extend((x, d + 1) for x in v if isinstance(x, (list, dict)))
    return best


def loads(text: Union[str, bytes, bytearray], what: str = "JSON", max_depth: int = MAX_DEPTH) -> Any:
    """Decode JSON text from an untrusted source.

    Args:
        text: ``str``, or ``bytes`` holding UTF-8 (a UTF-8 BOM is skipped).
        what: what the text is, for the message (``"action track JSON"``).
        max_depth: deepest accepted nesting of lists / objects.
    Returns:
        the decoded value (dict, list, str, int, float, bool or None).
    Raises:
        MatrixGameError: not UTF-8 (with the byte offset), not JSON (line and column), nested deeper
            than ``max_depth``, or an integer longer than :data:`MAX_INT_DIGITS` digits.
    """
    if isinstance(text, (bytes, bytearray)):
        try:
            text = bytes(text).decode("utf-8-sig")
        except UnicodeDecodeError as e:
            raise MatrixGameError(f"{what} is not UTF-8 text (byte {e.start} is 0x{e.object[e.start]:02x}); "
                                  f"save it as UTF-8 JSON, not a binary file.") from None
    if not isinstance(text, str):
        raise MatrixGameError(f"{what} must be text (got {type(text).__name__}).")
    try:
        value = json.loads(text, parse_int=_parse_int)
    except _TooLarge as e:
        raise MatrixGameError(f"{what} holds {e}; use ordinary numbers.") from None
    except RecursionError:
        raise MatrixGameError(f"{what} is nested too deeply (more than {max_depth} levels of lists/objects).") from None
    except json.JSONDecodeError as e:
        raise MatrixGameError(f"{what} is not valid JSON: {e.msg} at line {e.lineno}, column {e.colno}; fix the "
                              f"syntax (quotes around names, no trailing commas).") from None
    except ValueError as e:   # e.g. the interpreter's own integer-size limit
        raise MatrixGameError(f"{what} cannot be read: {e}.") from None
    if depth(value) > max_depth:
        raise MatrixGameError(f"{what} is nested too deeply (more than {max_depth} levels of lists/objects).")
    return value


def read_file(path: str, what: str = "JSON file", max_bytes: int = 256 * 1024 * 1024,
              max_depth: int = MAX_DEPTH) -> Any:
    """Read and decode a JSON file with :func:`loads` (bytes, so a binary file gives a clear error).

    Raises:
        MatrixGameError: the file cannot be read, is larger than ``max_bytes``, or :func:`loads` refuses it.
    """
    try:
        with open(path, "rb") as f:
            data = f.read(max_bytes + 1)
    except OSError as e:
        raise MatrixGameError(f"cannot read {what} {path!r}: {e.strerror or e}.") from e
    if len(data) > max_bytes:
        raise MatrixGameError(f"{what} {path!r} is larger than {max_bytes // (1024 * 1024)} MiB.")
    return loads(data, f"{what} {path!r}", max_depth=max_depth)
