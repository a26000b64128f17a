"""Reading untrusted JSON / JSONL with errors that name the file, line and field.

Importers walk third-party records (MPD slices, CPCD dialogs, TalkPlay conversations) through
``Loc`` objects: a ``Loc`` knows the file, the JSONL line (1-based) and the JSON path inside
the record, so every check can raise a ``DataError`` that says exactly where the input is bad.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from talkplay.data.errors import DataError

_TYPE_NAMES = {str: "string", int: "integer", float: "number", list: "list", dict: "object",
               bool: "boolean"}
_INT64 = (-(2**63), 2**63 - 1)


class Loc:
    """Where a value sits: file, JSONL line (None for whole-file JSON) and JSON path.

    The path string is only built when an error needs it: importers create a ``Loc`` for every
    field they read (hundreds of thousands per MPD slice), so ``at`` must stay cheap.
    """

    __slots__ = ("file", "line", "_parent", "_step")

    def __init__(self, file: str, line: int | None = None, *, _parent: Loc | None = None,
                 _step: str | int | None = None):
        self.file, self.line, self._parent, self._step = file, line, _parent, _step

    def at(self, key: str | int) -> Loc:
        """The location of a child: ``playlists`` -> ``playlists[3]`` -> ``playlists[3].pid``."""
        return Loc(self.file, self.line, _parent=self, _step=key)

    def key(self, key: str) -> Loc:
        """The location of a dict entry whose key is data (a track id): ``tracks['abc']``."""
        return Loc(self.file, self.line, _parent=self, _step=f"[{key!r}]")

    @property
    def path(self) -> str:
        steps: list[str | int] = []
        node: Loc | None = self
        while node is not None and node._parent is not None:
            steps.append(node._step)
            node = node._parent
        out = ""
        for step in reversed(steps):
            if isinstance(step, int):
                out += f"[{step}]"
            elif step.startswith("["):
                out += step
            else:
                out += f".{step}" if out else step
        return out

    def error(self, reason: str) -> DataError:
        root = "record" if self.line is not None else "document"
        return DataError(reason, file=self.file, line=self.line, field=self.path or root)


def _type_name(value: Any) -> str:
    return "null" if value is None else _TYPE_NAMES.get(type(value), type(value).__name__)


def _check(value: Any, kind: type, loc: Loc) -> Any:
    # bool is an int subclass in Python but never a valid count or id in these formats.
    if kind is int:
        if isinstance(value, float) and value.is_integer():
            return int(value)
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif kind is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        value = float(value) if ok else value
    else:
        ok = isinstance(value, kind)
    if not ok:
        raise loc.error(f"expected {_TYPE_NAMES.get(kind, kind.__name__)}, got {_type_name(value)}")
    if kind is int and not _INT64[0] <= value <= _INT64[1]:
        raise loc.error(f"integer {value} does not fit in 64 bits")
    if kind is str:
        check_text(value, loc)
    return value


def check_text(value: str, loc: Loc) -> str:
    """Reject strings that cannot be stored as UTF-8 (JSON allows lone surrogates like \\ud800)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:
        raise loc.error(f"text is not valid Unicode (character {e.start})") from None
    return value


def expect(value: Any, kind: type, loc: Loc) -> Any:
    """Check the type of ``value`` (ints may arrive as integral floats). Raises DataError."""
    return _check(value, kind, loc)


def field(obj: dict, key: str, kind: type, loc: Loc, *, required: bool = True,
          default: Any = None) -> Any:
    """Read ``obj[key]`` with a type check; a missing or null optional field gives ``default``.

    Args:
        obj: the JSON object (already checked to be a dict).
        key: field name.
        kind: str, int, float, list, dict or bool.
        loc: location of ``obj``.
        required: raise when the field is missing or null.
        default: value for an absent optional field.
    Returns:
        The value (ints converted from integral floats, floats from ints).
    """
    if key not in obj or obj[key] is None:
        if required:
            raise loc.at(key).error("required field is missing" if key not in obj
                                    else "required field is null")
        return default
    return _check(obj[key], kind, loc.at(key))


def str_list(obj: dict, key: str, loc: Loc, *, required: bool = True) -> list[str]:
    """A list of strings; a bare string is accepted as a one-element list."""
    value = field(obj, key, object, loc, required=required, default=[])
    if isinstance(value, str):
        return [check_text(value, loc.at(key))]
    value = _check(value, list, loc.at(key))
    return [_check(v, str, loc.at(key).at(i)) for i, v in enumerate(value)]


def id_value(obj: dict, key: str, loc: Loc) -> str:
    """An identifier that may be written as a string or an integer; returned as a non-empty string."""
    value = field(obj, key, object, loc)
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise loc.at(key).error(f"expected string or integer id, got {_type_name(value)}")
    text = check_text(str(value), loc.at(key))
    if not text.strip():
        raise loc.at(key).error("empty id")
    return text


def _decode(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"not UTF-8 text (byte {e.start})", file=str(path)) from None
    except OSError as e:
        raise DataError(f"cannot read: {e.strerror}", file=str(path)) from None


def read_json(path: str | Path) -> Any:
    """Parse one JSON document. Raises DataError with the line of a syntax error."""
    path = Path(path)
    try:
        return json.loads(_decode(path))
    except json.JSONDecodeError as e:
        raise DataError(f"invalid JSON: {e.msg} (column {e.colno})", file=str(path),
                        line=e.lineno, field="json") from None
    except RecursionError:
        raise DataError("invalid JSON: nested too deeply", file=str(path), field="json") from None


def iter_jsonl(path: str | Path) -> Iterator[tuple[Loc, Any]]:
    """Yield ``(loc, record)`` for each non-blank line; a line that is not JSON yields
    ``(loc, DataError)`` instead so that the caller decides whether to raise or skip it."""
    path = Path(path)
    for lineno, text in enumerate(_decode(path).splitlines(), start=1):
        if not text.strip():
            continue
        loc = Loc(str(path), lineno)
        try:
            yield loc, json.loads(text)
        except json.JSONDecodeError as e:
            yield loc, DataError(f"invalid JSON: {e.msg} (column {e.colno})", file=str(path),
                                 line=lineno, field="json")
        except RecursionError:
            yield loc, DataError("invalid JSON: nested too deeply", file=str(path),
                                 line=lineno, field="json")


def is_jsonl(path: str | Path) -> bool:
    """True for ``.jsonl`` / ``.ndjson`` files (one record per line)."""
    return Path(path).suffix.lower() in (".jsonl", ".ndjson")
