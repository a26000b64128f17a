"""Conversations and playlists -> token ids and a loss mask. The only place that decides what is
trained on.

Layout of one rendered conversation (the model's own chat template, paper's system prompt)::

    <system> SYSTEM_PROMPT
    <user> text
    <assistant> <start_of_music><|playlist-3|>...<|audio-7|><end_of_music> text <end-of-turn>
    ...

With grounded replies (``facts`` given; not in the paper) each music block is followed by the
track's catalog facts as text (``lm.facts``), never trained on, so the reply that follows can
talk about the track it follows::

    <assistant> <start_of_music>...<end_of_music>(Title by Artist; album A; 1994, the 90s; tags) text

Music blocks come BEFORE the assistant's text in each assistant turn (the paper's order), and
they are built as ids from the codebook, never by tokenising text: text from people is encoded
with special-token parsing disabled, so typing ``<|audio-5|>`` yields plain text pieces.
Trained on (mask 1): assistant text, music blocks, and the end-of-turn token that closes each
assistant turn (so the model learns to stop). Not trained on: system, user, template markup,
and music blocks listed in ``conv.meta["rejected"]`` (shown as context, never as a target).

The template is applied to placeholder contents and split at the placeholders, so any chat
template works (ChatML for SmolLM2, Llama-3 headers for the paper's model); markup comes from
the template and is parsed normally, content never is.
"""

from __future__ import annotations

import re
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field

from transformers import PreTrainedTokenizerBase

from talkplay.data.schema import Conversation, Message
from talkplay.lm.vocab import MusicVocab
from talkplay.tokenize.codebook import Codebook
from talkplay.tokenize.grammar import MISSING

SYSTEM_PROMPT = ("You are a music expert. Your task is conversational retrieval: Predict the next "
                 "music item based on the given chat history.")
"""The paper's system prompt."""
PLAYLIST_PROMPT = "Continue this playlist:"
"""Instruction of playlist-continuation samples (the track sequence follows as music tokens)."""
_PH = re.compile("\ue000(\\d+)\ue001")


@dataclass
class Turn:
    """One chat-template message with content already as ids. ``mask`` aligns with ``ids``."""

    role: str
    ids: list[int] = field(default_factory=list)
    mask: list[int] = field(default_factory=list)

    def add(self, ids: list[int], trained: bool) -> None:
        self.ids += ids
        self.mask += [int(trained)] * len(ids)


@dataclass
class Rendered:
    """A rendered sequence: ``ids`` and ``mask`` (1 = a label) of equal length."""

    ids: list[int]
    mask: list[int]
    truncated: bool = False
    """True when turns or tokens had to be dropped to fit the context length."""


def encode_text(tokenizer: PreTrainedTokenizerBase, text: str) -> list[int]:
    """Encode text written by people: special and music tokens are NOT recognised in it."""
    if not text:
        return []
    return tokenizer(text, add_special_tokens=False, split_special_tokens=True)["input_ids"]


def _markup(tokenizer: PreTrainedTokenizerBase, text: str) -> list[int]:
    """Encode chat-template markup (trusted): special tokens ARE parsed."""
    return tokenizer(text, add_special_tokens=False)["input_ids"] if text else []


_LAYOUTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
"""tokenizer -> {(chat template, roles, add_generation_prompt): layout} (``_layout``)."""


def _layout(tokenizer: PreTrainedTokenizerBase, roles: tuple[str, ...],
            add_generation_prompt: bool) -> tuple:
    """The chat template's markup around turns of these roles: (markup ids, turn index,
    markup ids, ..., markup ids). The template sees a placeholder per turn, never the content,
    so the layout depends on the template and the roles alone and is computed once per role
    sequence (a template render and a tokenisation per piece cost milliseconds a sequence)."""
    key = (tokenizer.chat_template, roles, add_generation_prompt)
    try:
        known = _LAYOUTS.setdefault(tokenizer, {})
    except TypeError:  # a tokenizer that cannot be weakly referenced: no cache
        known = {}
    if key not in known:
        msgs = [{"role": role, "content": f"\ue000{i}\ue001"} for i, role in enumerate(roles)]
        text = tokenizer.apply_chat_template(msgs, tokenize=False,
                                             add_generation_prompt=add_generation_prompt)
        pieces = _PH.split(text)  # markup, idx, markup, idx, ..., markup
        known[key] = tuple(tuple(_markup(tokenizer, p)) if j % 2 == 0 else p
                           for j, p in enumerate(pieces))  # tuples: shared, never changed
    return known[key]


def render_turns(turns: list[Turn], tokenizer: PreTrainedTokenizerBase,
                 add_generation_prompt: bool = False) -> Rendered:
    """Lay out content ids with the tokenizer's chat template.

    Args:
        turns: messages with content ids (first is normally the system turn).
        tokenizer: tokenizer with a chat template.
        add_generation_prompt: end with the assistant header (for generation).
    Returns:
        ids and mask; the first markup token after each trained assistant turn (its
        end-of-turn token) is labelled too.
    """
    pieces = _layout(tokenizer, tuple(t.role for t in turns), add_generation_prompt)
    ids: list[int] = []
    mask: list[int] = []
    prev: Turn | None = None
    for j, piece in enumerate(pieces):
        if j % 2 == 0:
            m = piece
            ids += m
            # Close-of-turn token after an assistant message that had any label.
            stop = int(prev is not None and prev.role == "assistant" and any(prev.mask))
            mask += [stop] * min(1, len(m)) + [0] * max(0, len(m) - 1)
        else:
            prev = turns[int(piece)]
            ids += prev.ids
            mask += prev.mask
    return Rendered(ids, mask)


def _groups(conv: Conversation, tokenizer: PreTrainedTokenizerBase, codebook: Codebook,
            vocab: MusicVocab, hide_playlist: frozenset[int] = frozenset(),
            facts: Callable[[str], str] | None = None) -> list[Turn]:
    """Messages -> turns; music messages join the assistant turn of their exchange (before text).

    An exchange is everything between two user messages: its music blocks (in order, each
    followed by its track's facts when ``facts`` is given) then its assistant texts (joined by
    a newline) form one assistant turn.
    """
    rejected = {int(i) for i in conv.meta.get("rejected", [])}
    turns: list[Turn] = []
    music: list[tuple[list[int], bool, str]] = []
    texts: list[str] = []

    def flush() -> None:
        if not music and not texts:
            return
        t = Turn("assistant")
        for ids, trained, track_id in music:
            t.add(ids, trained)
            if facts is not None:
                t.add(facts_ids(tokenizer, facts, track_id), False)
        t.add(encode_text(tokenizer, "\n".join(texts)), True)
        turns.append(t)
        music.clear()
        texts.clear()

    for i, msg in enumerate(conv.messages):
        if msg.role == "system":
            continue  # the paper's system prompt replaces any stored one
        if msg.role == "user":
            flush()
            t = Turn("user")
            t.add(encode_text(tokenizer, msg.content), False)
            turns.append(t)
        elif msg.role == "music":
            if msg.content not in codebook.row:
                raise KeyError(f"conversation {conv.id!r} message {i}: track {msg.content!r} "
                               "is not in the codebook")
            codes = shown_codes(codebook, msg.content, i in hide_playlist)
            music.append((vocab.ids(codes), i not in rejected, msg.content))
        elif msg.role == "assistant":
            texts.append(msg.content)
    flush()
    return turns


def shown_codes(codebook: Codebook, track_id: str, hide_playlist: bool = False
                ) -> tuple[int, ...]:
    """The five codes a track's music block shows (the playlist code as ``none`` when hidden)."""
    codes = codebook.codes_of(track_id)
    return (MISSING, *codes[1:]) if hide_playlist else codes


def facts_ids(tokenizer: PreTrainedTokenizerBase, facts: Callable[[str], str],
              track_id: str) -> list[int]:
    """The ids of one track's facts line as it follows its music block (plain text)."""
    return encode_text(tokenizer, facts(track_id))


def _system(tokenizer: PreTrainedTokenizerBase, system_prompt: str) -> Turn:
    t = Turn("system")
    t.add(encode_text(tokenizer, system_prompt), False)
    return t


def _fit(system: Turn, turns: list[Turn], tokenizer: PreTrainedTokenizerBase, limit: int,
         add_generation_prompt: bool) -> tuple[Rendered, int]:
    """Render system + the longest suffix of ``turns`` that fits ``limit`` (at least one turn).

    Returns the rendering and the index of the first turn kept.
    """
    lo = 0
    while True:
        r = render_turns([system] + turns[lo:], tokenizer, add_generation_prompt)
        if len(r.ids) <= limit or lo >= len(turns) - 1:
            return r, lo
        # Drop the oldest turn; keep a window starting at a user turn where possible.
        lo += 1
        while lo < len(turns) - 1 and turns[lo].role != "user":
            lo += 1


def render_conversation(conv: Conversation, tokenizer: PreTrainedTokenizerBase,
                        codebook: Codebook, vocab: MusicVocab,
                        system_prompt: str = SYSTEM_PROMPT,
                        context_length: int = 1024,
                        hide_playlist: frozenset[int] = frozenset(),
                        facts: Callable[[str], str] | None = None) -> list[Rendered]:
    """Render one conversation for training, split into windows that fit ``context_length``.

    A conversation that fits is one sequence. A longer one becomes several windows, each with
    the system prompt, that partition its turns (newest window first is built from the end), so
    every assistant turn is trained on exactly once; later windows lose the oldest history.
    A single exchange longer than the context is cut at the end. ``truncated`` marks both cases.

    Args:
        conv: the conversation (music messages hold track ids of ``codebook``).
        tokenizer: tokenizer with music tokens (see ``expand_vocabulary``).
        codebook: codes per track.
        vocab: music-token ids (``music_token_table``).
        system_prompt: system message (default: the paper's).
        context_length: maximum tokens per sequence.
        hide_playlist: message indices whose music block shows ``<|playlist-none|>`` instead of
            the track's playlist code (modality dropout: cold tracks carry that token, so the
            model must learn to emit and score it).
        facts: track id -> its facts line (grounded replies; ``lm.facts``), or None.
    Returns:
        One or more ``Rendered`` sequences (ids, mask).
    """
    system = _system(tokenizer, system_prompt)
    turns = _groups(conv, tokenizer, codebook, vocab, hide_playlist, facts)
    out: list[Rendered] = []
    end = len(turns)
    while end > 0:
        r, lo = _fit(system, turns[:end], tokenizer, context_length, False)
        if len(r.ids) > context_length:
            r = Rendered(r.ids[:context_length], r.mask[:context_length], truncated=True)
        r.truncated = r.truncated or lo > 0 or end < len(turns)
        if any(r.mask):
            out.append(r)
        end = lo
    return out[::-1]


def render_prompt(history: list[Message], tokenizer: PreTrainedTokenizerBase, codebook: Codebook,
                  vocab: MusicVocab, system_prompt: str = SYSTEM_PROMPT,
                  context_length: int = 1024, reserve: int = 64,
                  facts: Callable[[str], str] | None = None) -> list[int]:
    """The generation prompt for a chat history: ids ending where the assistant's music block
    starts (right after the assistant header; the next token to generate is ``<start_of_music>``).

    Shares the training layout exactly (``render_turns``). Oldest exchanges are dropped when the
    prompt would exceed ``context_length - reserve``.

    Args:
        history: messages so far (user/assistant/music; normally ending with a user message).
        tokenizer, codebook, vocab: as for ``render_conversation``.
        system_prompt: system message (default: the paper's).
        context_length: the model's training context.
        reserve: tokens kept free for the music block and the reply.
        facts: as for ``render_conversation`` (the run's training choice).
    Returns:
        Prompt token ids.
    """
    return fit_prompt(history, tokenizer, codebook, vocab, system_prompt, context_length,
                      reserve, facts)[0]


def fit_prompt(history: list[Message], tokenizer: PreTrainedTokenizerBase, codebook: Codebook,
               vocab: MusicVocab, system_prompt: str = SYSTEM_PROMPT,
               context_length: int = 1024, reserve: int = 64,
               facts: Callable[[str], str] | None = None) -> tuple[list[int], int]:
    """``render_prompt`` that also says how many of the history's turns were dropped to fit.

    Returns:
        (prompt ids, number of chat-template turns dropped from the start; 0 = nothing cut).
    """
    conv = Conversation(id="prompt", messages=list(history))
    turns = _groups(conv, tokenizer, codebook, vocab, facts=facts)
    r, first = _fit(_system(tokenizer, system_prompt), turns, tokenizer,
                    max(1, context_length - reserve), True)
    return r.ids, first


def playlist_fit(n_inputs: int, n_targets: int, room: int, block: int) -> tuple[int, int]:
    """How many input and target music blocks a playlist sample keeps (``render_playlist``):
    ``room`` tokens beside its fixed part, ``block`` tokens a block; targets first, at least
    one of each (the sample is then cut at the context length)."""
    n_target = max(1, min(n_targets, room // block - 1))
    return max(1, min(n_inputs, room // block - n_target)), n_target


def render_playlist(track_ids: list[str], cut: int, tokenizer: PreTrainedTokenizerBase,
                    codebook: Codebook, vocab: MusicVocab, system_prompt: str = SYSTEM_PROMPT,
                    context_length: int = 1024, max_target: int = 16) -> Rendered:
    """A playlist-continuation sample: given ``track_ids[:cut]``, predict the next tracks.

    The user turn is ``PLAYLIST_PROMPT`` followed by the input tracks' music blocks; the
    assistant turn (trained) is the next ``max_target`` tracks' music blocks. When it does not
    fit, the oldest input tracks are dropped first (``truncated`` is set), then target tracks.

    Args:
        track_ids: one playlist, in order (all in ``codebook``).
        cut: 1 <= cut < len(track_ids).
        tokenizer, codebook, vocab: as for ``render_conversation``.
        system_prompt: system message.
        context_length: maximum tokens.
        max_target: most tracks to predict.
    Returns:
        ``Rendered`` (ids, mask).
    """
    if not 1 <= cut < len(track_ids):
        raise ValueError(f"cut {cut} outside 1..{len(track_ids) - 1}")
    blocks = [vocab.ids(codebook.codes_of(t)) for t in track_ids]
    target = blocks[cut:cut + max_target]
    inputs = blocks[:cut]
    head = _system(tokenizer, system_prompt)
    text = encode_text(tokenizer, PLAYLIST_PROMPT + "\n")
    base = render_turns([head, Turn("user", text, [0] * len(text)), Turn("assistant")], tokenizer)
    block = len(blocks[0])
    n_in, n_target = playlist_fit(len(inputs), len(target), context_length - len(base.ids), block)
    user = Turn("user")
    user.add(text + [i for b in inputs[-n_in:] for i in b], False)
    asst = Turn("assistant")
    asst.add([i for b in target[:n_target] for i in b], True)
    r = render_turns([head, user, asst], tokenizer)
    r.truncated = n_in < len(inputs) or n_target < len(target)
    if len(r.ids) > context_length:
        r = Rendered(r.ids[:context_length], r.mask[:context_length], True)
    return r
