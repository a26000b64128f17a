"""Conversation synthesis from playlists (paper section 3.2, appendix A.1).

- ``simulator``: rule-based, offline, deterministic per seed (the default generator).
- ``llm``: any OpenAI-compatible chat-completions endpoint, resumable (``progress``).
- ``prompt``: the LLM prompt and the validation of its answers.
- ``paper_json``: the released talkplay-db JSONL format, export and import.
- ``common``: the shape both generators share (``ConversationShape``), negative sets,
  statistics, adding conversations to a dataset.

Every conversation alternates ``user -> music -> assistant`` with one track per assistant
turn; ``meta["rejected"]`` lists the indices of music messages the user turned down and
``meta["feedback"]`` labels each user message ("start", "accept", "reject", "direction";
"unlabelled" where a generator cannot tell).
"""

from talkplay.data.conversations.common import (
    ConversationShape,
    NegativeSampler,
    add_conversations,
    conversation_stats,
    playlists_to_use,
    save_with_generator,
)
from talkplay.data.conversations.llm import LLMConfig, RunResult, generate
from talkplay.data.conversations.paper_json import export_jsonl, import_jsonl
from talkplay.data.conversations.simulator import SimulatorConfig, simulate, simulate_playlist

__all__ = [
    "ConversationShape", "LLMConfig", "NegativeSampler", "RunResult", "SimulatorConfig", "add_conversations",
    "conversation_stats", "export_jsonl", "generate", "import_jsonl", "playlists_to_use",
    "save_with_generator", "simulate", "simulate_playlist",
]
