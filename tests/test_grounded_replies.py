"""Grounded replies: each music block is followed by its track's facts (context, not a target),
in training and in prompts alike; and the claim checker that measures reply faithfulness."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from talkplay.cli import app
from talkplay.config import profile
from talkplay.data.dataset import read_dataset
from talkplay.data.schema import Message, Track
from talkplay.evaluate.replies import ClaimChecker
from talkplay.lm.facts import facts_lookup, track_facts
from talkplay.lm.render import encode_text, render_conversation, render_prompt
from talkplay.tokenize.codebook import Codebook
from talkplay.train.toy import toy_dataset

runner = CliRunner()
BLUE = Track(id="b", title="Blue Hour", artists=["Ann Lee"], album="Night Songs",
             release_date="1994-03-01", tags=["jazz", "mellow"],
             lyrics="Rain on the window, rain in the night")
OTHER = Track(id="o", title="Thunder Road", artists=["Max Power"], album="Loud",
              release_date="1981", tags=["rock", "upbeat", "blue", "80s", "female vocals"])
SELF_TITLED = Track(id="s", title="Intro", artists=["Someone"], album="Ann Lee", tags=["90s"])
HERE = Track(id="h", title="Here", artists=["Mozart"], album="For You")  # plain-word names


def test_facts_line_says_what_the_catalog_says():
    assert track_facts(BLUE) == ("(Blue Hour by Ann Lee; album Night Songs; 1994, the 90s; "
                                 "jazz, mellow; lyrics: rain, window, night)")
    assert track_facts(Track(id="x", title="Solo")) == "(Solo)"
    # Past the first tags, what the singing is stays on the line; tempo and key follow the tags.
    moon = Track(id="m", title="Electric Moon", artists=["Otis"], tempo=176.8, key="C minor",
                 tags=["jazz", "swing", "piano", "upright bass", "drums", "instrumental"])
    assert track_facts(moon) == ("(Electric Moon by Otis; jazz, swing, piano, upright bass, "
                                 "instrumental; 177 BPM, C minor)")
    assert track_facts(Track(id="k", title="K", key="D major")) == "(K; D major)"


@pytest.mark.parametrize("reply, false", [
    ("A laid-back track around 92 BPM.", []),
    ("Around 93 bpm, it moves.", []),
    ("It runs at 131 BPM.", ["tempo: 131 BPM"]),
])
def test_tempo_claims_are_checked_within_a_tolerance(reply, false):
    blue = Track(id="b2", title="Blue Hour", artists=["Ann Lee"], tempo=91.6)
    assert ClaimChecker([blue]).check(reply, blue).false_claims == false
    assert ClaimChecker([HERE]).check("About 90 BPM.", HERE).false_claims == ["tempo: 90 BPM"]


@pytest.mark.parametrize("reply, false", [
    ("Here is Blue Hour by Ann Lee, a mellow jazz song from the 90s.", []),
    ("Blue Hour is from 1994, on Night Songs.", []),
    ("Try Blue Hour, an upbeat rock song from the 80s.", ["tag: upbeat", "tag: rock", "decade: 80s"]),
    ("Blue Hour by Max Power, released in 1981.", ["artist: max power", "year: 1981"]),
    ("You will like Thunder Road.", ["title: thunder road"]),
    ("A 1990s classic.", []),
    ("A song from the 90s by Ann Lee.", []),  # an era tag is a decade; the artist is no album
    ("From the 80s, on Loud.", ["decade: 80s", "album: loud"]),
    ("Here is one for you, I like it.", []),  # "Here" and "For You" are names, but plain words
    ("A piece in the style of Mozart.", ["artist: mozart"]),
    ("Happy to change it up. Blue Hour it is.", []),  # the speaker's mood, not a tag claim
    ("It is upbeat to the end.", ["tag: upbeat"]),  # ... only when it opens the sentence
    ('The lyrics keep coming back to "rain".', []),
    ('The lyrics keep coming back to "rock".', ["lyric: rock"]),  # a lyric, checked as one
    ('Its lyrics mention "the night".', []),
    ("A song from the 2000s.", ["decade: 2000s"]),
    ("A song from the 80's, with female vocal.", ["decade: 80s", "tag: female vocal"]),
])
def test_claims_are_checked_against_the_recommended_track(reply, false):
    got = ClaimChecker([BLUE, OTHER, SELF_TITLED, HERE]).check(reply, BLUE)
    assert sorted(got.false_claims) == sorted(false)
    assert got.words == len(reply.split())


def test_the_tracks_own_name_claims_no_tag():
    check = ClaimChecker([BLUE, OTHER]).check("Blue Hour it is.", BLUE)  # "blue" is a tag
    assert check.false_claims == [] and check.names_track


@pytest.fixture(scope="module")
def pieces(tmp_path_factory):
    from talkplay.lm.base import load_base
    from talkplay.lm.vocab import expand_vocabulary
    from talkplay.tokenize import grammar

    data = toy_dataset(tmp_path_factory.mktemp("grounded") / "data", seed=0)
    model, tok = load_base(profile("tiny").model)
    cb = Codebook.load(data / "tokenizer")
    vocab = expand_vocabulary(model, tok, grammar.vocabulary(cb.k), seed=0)
    return data, tok, cb, vocab


def test_facts_follow_each_block_untrained_and_prompts_share_the_layout(pieces):
    data, tok, cb, vocab = pieces
    ds = read_dataset(data)
    facts = facts_lookup(ds.tracks)
    conv = next(c for c in ds.conversations if not c.meta.get("rejected"))
    (r,) = render_conversation(conv, tok, cb, vocab, facts=facts)
    (plain,) = render_conversation(conv, tok, cb, vocab)
    first = next(m.content for m in conv.messages if m.role == "music")
    line = encode_text(tok, facts(first))
    end = r.ids.index(vocab.end)
    assert r.ids[end + 1:end + 1 + len(line)] == line
    assert r.mask[end + 1:end + 1 + len(line)] == [0] * len(line)  # context, not a target
    assert r.mask[end + 1 + len(line)] == 1  # the reply after it is trained
    assert len(r.ids) - len(plain.ids) == sum(len(encode_text(tok, facts(m.content)))
                                              for m in conv.messages if m.role == "music")
    assert sum(r.mask) == sum(plain.mask)  # the same targets
    # A prompt from the history before the second user turn is a prefix of the training layout.
    cut = [i for i, m in enumerate(conv.messages) if m.role == "user"][1]
    prompt = render_prompt(conv.messages[:cut + 1], tok, cb, vocab, facts=facts)
    assert r.ids[:len(prompt) - 3] == prompt[:-3]  # up to the assistant header


def test_a_grounded_run_shows_facts_in_prompts_and_before_its_reply(pieces, tmp_path, monkeypatch):
    from talkplay.recommend import recommender as R
    from talkplay.recommend.recommender import load_talkplay
    from talkplay.train.loop import train

    data = pieces[0]
    prof = profile("tiny")
    prof.train.max_steps, prof.train.eval_every, prof.train.save_every = 2, 2, 2
    prof.train.grounded_replies = True
    train(data, tmp_path / "run", prof)
    rec = load_talkplay(tmp_path / "run", mode="beam", max_reply_tokens=4)
    ds = read_dataset(data)
    facts = facts_lookup(ds.tracks)
    played = ds.conversations[0].messages[1].content
    history = [Message("user", "calm jazz"), Message("music", played), Message("user", "more")]
    line = encode_text(rec.tokenizer, facts(played))
    prompt = rec.prompt_ids(history)
    assert any(prompt[i:i + len(line)] == line for i in range(len(prompt)))
    fed = []
    real = R.extend
    monkeypatch.setattr(R, "extend", lambda model, state, ids: fed.append(list(ids)) or real(model, state, ids))
    out = rec.recommend(history, k=3)
    chosen = encode_text(rec.tokenizer, facts(out.tracks[0].track_id))
    assert fed and fed[-1][-len(chosen):] == chosen  # the reply is written after the facts


def test_evaluate_checks_replies_of_talkplay_and_of_the_template_baselines(pieces, tmp_path):
    from talkplay.train.loop import train

    data = pieces[0]
    prof = profile("tiny")
    prof.train.max_steps, prof.train.eval_every, prof.train.save_every = 2, 2, 2
    train(data, tmp_path / "run", prof)
    res = runner.invoke(app, ["evaluate", "--data", str(data), "--run", str(tmp_path / "run"),
                              "--systems", "talkplay-beam,bm25", "--split", "valid", "--limit", "2",
                              "--ks", "1,10", "--replies", "3", "--out", str(tmp_path / "o")])
    assert res.exit_code == 0, res.output
    report = json.loads((tmp_path / "o" / "replies.json").read_text())
    assert set(report) == {"talkplay-beam", "bm25"}
    assert report["bm25"]["replies"] == 3 and report["bm25"]["no_false_claim"] == 1.0
    assert report["bm25"]["names_track"] == 1.0
    assert report["talkplay-beam"]["replies"] == 3
    assert report["talkplay-beam"]["reply_guard"] is True and report["bm25"]["reply_guard"] is None
    assert "| bm25 | template | 3 | 100.0% |" in (tmp_path / "o" / "replies.md").read_text()
    res = runner.invoke(app, ["evaluate", "--data", str(data), "--run", str(tmp_path / "run"),
                              "--systems", "talkplay-beam", "--split", "valid", "--limit", "2",
                              "--replies", "2", "--no-reply-guard", "--out", str(tmp_path / "o2")])
    assert res.exit_code == 0, res.output
    report = json.loads((tmp_path / "o2" / "replies.json").read_text())
    assert report["talkplay-beam"]["reply_guard"] is False
