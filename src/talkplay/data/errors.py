"""Input errors that name the file, line and field, and the tally kept by ``--skip-invalid``."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


class DataError(ValueError):
    """Bad input. ``str(err)`` reads "file:line: field: reason"."""

    def __init__(self, reason: str, *, file: str | None = None, line: int | None = None,
                 field: str | None = None):
        self.reason, self.file, self.line, self.field = reason, file, line, field
        where = ""
        if file:
            where = f"{file}:{line}" if line is not None else str(file)
        parts = [p for p in (where, field) if p]
        super().__init__(": ".join([*parts, reason]))


@dataclass
class Dropped:
    """Counts of records skipped under ``--skip-invalid``, by reason, with the first examples."""

    counts: Counter = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)

    def add(self, kind: str, err: DataError) -> None:
        self.counts[f"{kind}: {err.reason}"] += 1
        if len(self.examples) < 20:
            self.examples.append(str(err))

    @property
    def total(self) -> int:
        return sum(self.counts.values())


class Collector:
    """Raise on the first error, or (``skip_invalid``) record it and carry on."""

    def __init__(self, skip_invalid: bool = False):
        self.skip_invalid = skip_invalid
        self.dropped = Dropped()

    def error(self, kind: str, err: DataError) -> None:
        if not self.skip_invalid:
            raise err
        self.dropped.add(kind, err)
