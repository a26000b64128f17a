"""TalkPlayRecommender on a tiny trained run: both ranking modes, exclusion, determinism."""

from __future__ import annotations

from pathlib import Path

import pytest

from talkplay.config import GenerateConfig, profile
from talkplay.data.schema import Message
from talkplay.tokenize.grammar import parse_items


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    from talkplay.train.loop import train
    from talkplay.train.toy import toy_dataset

    root = tmp_path_factory.mktemp("rec")
    prof = profile("tiny")
    prof.train.max_steps, prof.train.eval_every, prof.train.save_every = 4, 4, 4
    train(toy_dataset(root / "data", seed=0), root / "run", prof)
    return root / "run"


HISTORY = [Message("user", "calm jazz piano please"), Message("music", "t3"),
           Message("assistant", "here is one"), Message("user", "more like that")]


@pytest.mark.parametrize("mode", ["paper", "beam"])
def test_rankings_are_full_distinct_and_exclude_seen(run, mode):
    from talkplay.recommend.recommender import TalkPlayRecommender

    rec = TalkPlayRecommender.from_run(run, GenerateConfig(max_reply_tokens=4), mode=mode)
    out = rec.recommend(HISTORY, k=20, exclude={"t5"})
    ids = [t.track_id for t in out.tracks]
    assert len(ids) == 20 and len(set(ids)) == 20
    assert "t3" not in ids and "t5" not in ids  # seen in history / excluded by caller
    scores = [t.score for t in out.tracks]
    assert scores == sorted(scores, reverse=True)
    # Each track carries its own well-formed music block; the generated tuple is reported.
    assert all(len(parse_items(t.tokens)) == 1 for t in out.tracks)
    assert len(out.info["codes"]) == 1 and len(out.info["codes"][0]) == 5
    if mode == "beam":  # beam tuples are catalog tuples: the first track is an exact match
        assert out.info["exact_match"] == [True]
        assert parse_items(out.tracks[0].tokens)[0] == tuple(out.info["codes"][0])


def test_same_history_same_answer_and_seed_matters(run):
    from talkplay.recommend.recommender import TalkPlayRecommender

    rec = TalkPlayRecommender.from_run(run, GenerateConfig(max_reply_tokens=6), mode="paper")
    a = rec.recommend(HISTORY, k=5)
    rec.recommend([Message("user", "something else entirely")], k=5)
    b = rec.recommend(HISTORY, k=5)
    assert [t.track_id for t in a.tracks] == [t.track_id for t in b.tracks]
    assert a.reply == b.reply
    codes = {tuple(TalkPlayRecommender.from_run(run, GenerateConfig(seed=s, max_reply_tokens=0),
                                                mode="paper").recommend(HISTORY, 5).info["codes"][0])
             for s in range(6)}
    assert len(codes) > 1  # sampling at temperature 1 with different seeds explores


def test_keep_seen_tracks_when_asked(run):
    from talkplay.recommend.recommender import TalkPlayRecommender

    rec = TalkPlayRecommender.from_run(run, GenerateConfig(exclude_seen=False, max_reply_tokens=0),
                                       mode="beam", with_reply=False)
    ids = [t.track_id for t in rec.recommend(HISTORY, k=60).tracks]
    assert "t3" in ids and rec.recommend(HISTORY, k=3).reply == ""


def test_load_talkplay_reads_the_saved_config_and_applies_overrides(run):
    from talkplay.recommend.recommender import load_talkplay

    rec = load_talkplay(run, mode="beam", with_reply=False, exclude_seen=False)
    assert rec.mode == "beam" and rec.with_reply is False and rec.cfg.exclude_seen is False
    assert rec.cfg.num_beams == profile("tiny").generate.num_beams  # the rest is the saved config


def test_load_talkplay_errors_are_data_errors(run, tmp_path):
    import json
    import shutil

    from talkplay.data.errors import DataError
    from talkplay.recommend.recommender import load_talkplay

    with pytest.raises(DataError, match="not a TalkPlay run"):
        load_talkplay(tmp_path / "missing")
    broken = tmp_path / "broken"
    shutil.copytree(run, broken)
    (broken / "config.json").write_text("{not json")
    with pytest.raises(DataError, match="config.json: generate: unreadable"):
        load_talkplay(broken)
    (broken / "config.json").write_text(json.dumps({"generate": {"mode": "nope"}}))
    with pytest.raises(DataError, match="unknown mode 'nope'"):
        load_talkplay(broken)


def test_unknown_history_track_is_a_clear_error(run):
    from talkplay.data.errors import DataError
    from talkplay.recommend.recommender import load_talkplay

    rec = load_talkplay(run, with_reply=False)
    with pytest.raises(DataError, match="track 'zz9' is not in this run's catalog") as err:
        rec.recommend([Message("user", "hi"), Message("music", "zz9"), Message("user", "more")])
    assert err.value.file == str(run)
