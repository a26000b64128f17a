"""In-memory sessions, each bound to the client token handed out when it was created.

Ids and tokens come from ``secrets.token_urlsafe`` (unguessable); a session answers only to
the matching token (constant-time comparison), and an unknown id and a wrong token look the
same to the caller, so one client cannot even learn whether another's session exists. The
store is bounded: sessions idle past the TTL and the least recently used beyond
``max_sessions`` are dropped. With a ``replica`` name (several servers behind one address),
every id starts with "NAME." so a proxy can send a session's calls to the server that holds it
(README, "Several replicas").
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass, field

from talkplay.serve.session import ChatSession


@dataclass
class Entry:
    token: str
    session: ChatSession
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    """Held while a turn of this session is prepared, generated and committed."""
    used: float = field(default_factory=time.monotonic)


class SessionStore:
    def __init__(self, max_sessions: int, ttl_s: float, max_turns: int,
                 replica: str | None = None):
        self.replica = replica
        self.max_sessions = max_sessions
        self.ttl_s = ttl_s
        self.max_turns = max_turns
        self._entries: OrderedDict[str, Entry] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def create(self) -> tuple[str, Entry]:
        """A new session; returns ``(session id, entry)`` (the entry holds the client token)."""
        self._expire()
        while len(self._entries) >= self.max_sessions:
            self._entries.popitem(last=False)
        sid = secrets.token_urlsafe(24)
        if self.replica:
            sid = f"{self.replica}.{sid}"
        entry = Entry(secrets.token_urlsafe(32), ChatSession(max_turns=self.max_turns))
        self._entries[sid] = entry
        return sid, entry

    def get(self, sid: str, token: str | None) -> Entry | None:
        """The session if it exists, is fresh and ``token`` is its client token; else None."""
        self._expire()
        entry = self._entries.get(sid)
        if entry is None or token is None or not secrets.compare_digest(
                entry.token.encode(), token.encode("utf-8", "surrogateescape")):
            return None
        entry.used = time.monotonic()
        self._entries.move_to_end(sid)
        return entry

    def delete(self, sid: str) -> None:
        self._entries.pop(sid, None)

    def _expire(self) -> None:
        cutoff = time.monotonic() - self.ttl_s
        while self._entries:
            sid, oldest = next(iter(self._entries.items()))
            if oldest.used >= cutoff:
                break
            del self._entries[sid]
