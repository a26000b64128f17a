"""Resumable progress of an LLM generation run: append-only, fsync'd JSONL files.

```
WORK/run.json        the settings that shape the output (a resume must use the same)
WORK/progress.jsonl  one finished conversation per line, keyed "<playlist id>#<index>"
WORK/rejected.jsonl  one line per failed attempt: key, attempt, reason, raw output excerpt
```

A crash can leave at most a partial last line in ``progress.jsonl``; reading it back drops
that line (truncating the file), so the conversation is generated again, never twice.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

from talkplay.data.errors import DataError
from talkplay.data.schema import Conversation, Message
from talkplay.io import read_json, write_json

log = logging.getLogger(__name__)


def _append(path: Path, record: dict) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record, ensure_ascii=False) + "\n")
        f.flush()
        os.fsync(f.fileno())


class ProgressLog:
    """The work directory of one generation run.

    Args:
        work: directory for the progress files (created if needed).
        settings: the run's output-shaping settings; must equal those of an earlier run.
        restart: forget earlier progress instead of resuming.
    Raises:
        DataError: when earlier progress was made with other settings.
    """

    def __init__(self, work: str | Path, settings: dict, restart: bool = False):
        self.work = Path(work)
        self.work.mkdir(parents=True, exist_ok=True)
        self.progress = self.work / "progress.jsonl"
        self.rejected = self.work / "rejected.jsonl"
        run = self.work / "run.json"
        if restart:
            for p in (self.progress, self.rejected, run):
                p.unlink(missing_ok=True)
        if run.exists():
            old = read_json(run)
            diff = sorted(k for k in set(old) | set(settings) if old.get(k) != settings.get(k))
            if diff:
                raise DataError(f"earlier progress was made with other settings ({', '.join(diff)}); "
                                "use another work directory or --restart", file=str(run))
        else:
            write_json(run, settings)

    def load(self) -> dict[str, Conversation]:
        """Finished conversations by key, dropping a partial last line left by a crash."""
        done: dict[str, Conversation] = {}
        if not self.progress.exists():
            return done
        raw = self.progress.read_bytes()
        good = raw.rfind(b"\n") + 1
        if good < len(raw):
            log.warning("%s: dropping a partial last line (%d bytes)", self.progress, len(raw) - good)
            with open(self.progress, "r+b") as f:
                f.truncate(good)
                os.fsync(f.fileno())
        for n, line in enumerate(raw[:good].decode("utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                c = rec["conversation"]
                conv = Conversation(
                    id=c["id"], playlist_id=c["playlist_id"], source=c["source"], split=c["split"],
                    messages=[Message(m["role"], m["content"]) for m in c["messages"]], meta=c["meta"])
            except (json.JSONDecodeError, KeyError, TypeError) as e:
                raise DataError(f"corrupt progress record: {e}", file=str(self.progress), line=n,
                                field="conversation") from None
            done[rec["key"]] = conv  # a key seen twice (never expected) keeps one copy
        return done

    def add(self, key: str, conv: Conversation) -> None:
        """Durably record a finished conversation."""
        _append(self.progress, {"key": key, "conversation": {
            "id": conv.id, "playlist_id": conv.playlist_id, "source": conv.source,
            "split": conv.split, "meta": conv.meta,
            "messages": [{"role": m.role, "content": m.content} for m in conv.messages]}})

    def reject(self, key: str, attempt: int, reason: str, output: str | None = None) -> None:
        """Record a failed attempt (invalid output or transport error) with its reason."""
        _append(self.rejected, {"key": key, "attempt": attempt, "reason": reason,
                                "time": time.time(), "output": (output or "")[:4000]})
