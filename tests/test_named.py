"""The hybrid's named-artist evidence: whole-word matching, recency, ordinary words learned."""

from __future__ import annotations

import numpy as np
import pytest

from talkplay.data.schema import Message
from talkplay.evaluate.named import NamedArtists, normalize

IDS = ["t0", "t1", "t2", "t3", "t4", "t5"]
ARTISTS = [["Toad the Wet Sprocket"], ["Candlebox"], ["Nas"], ["Beyoncé", "Jay-Z"], ["Next"],
           ["Candlebox"]]


def _user(text):
    return Message("user", text)


def test_normalize_folds_accents_case_and_punctuation():
    assert normalize("Beyoncé") == "beyonce"
    assert normalize("  Jay-Z!! ") == "jay z"
    assert normalize(None) == ""


def test_names_match_whole_words_only():
    named = NamedArtists(IDS, ARTISTS)
    assert named.names_in("can you find TOAD the wet sprocket?") == {"toad the wet sprocket"}
    assert named.names_in("a dynasty of sprockets") == set()  # "nas" inside a word: no
    assert named.names_in("nas and beyonce, jay-z too") == {"nas", "beyonce", "jay z"}


def test_scores_mark_every_track_of_a_named_artist_by_recency():
    named = NamedArtists(IDS, ARTISTS, decay=0.5)
    history = [_user("something like candlebox"), Message("music", "t1"),
               Message("assistant", "here"), _user("now toad the wet sprocket")]
    s = named.scores(history)
    assert s.tolist() == [1.0, 0.5, 0.0, 0.0, 0.0, 0.5]
    # Named again later: the most recent mention counts.
    s = named.scores([*history, _user("back to candlebox")])
    assert s[[1, 5]].tolist() == [1.0, 1.0] and s[0] == 0.5
    assert named.scores([]).tolist() == [0.0] * len(IDS)


def test_ordinary_words_are_learned_from_training_requests():
    # "next" is said in three requests, none answered with a track of the artist Next;
    # "candlebox" is named three times and answered with Candlebox each time.
    training = []
    for i in range(3):
        training.append([_user("next please"), Message("music", "t0")])
        training.append([_user("more candlebox"), Message("music", "t5" if i else "t1")])
    named = NamedArtists(IDS, ARTISTS, training)
    assert named.ignored == {"next": (3, 0)}
    assert named.names_in("next, more candlebox") == {"candlebox"}
    assert named.scores([_user("next")]).sum() == 0.0
    assert "1 ignored" in named.description
    # Below min_mentions nothing is judged: one mention is no evidence either way.
    assert NamedArtists(IDS, ARTISTS, training[:2]).ignored == {}


@pytest.mark.parametrize("decay", [1.0, 0.25])
def test_decay_applies_per_user_turn(decay):
    named = NamedArtists(IDS, ARTISTS, decay=decay)
    history = [_user("nas"), _user("hm"), _user("ok")]
    assert named.scores(history)[2] == pytest.approx(decay ** 2)
    assert np.count_nonzero(named.scores(history)) == 1


def test_a_hybrid_fit_before_named_existed_loads_without_it(tmp_path):
    import json

    from talkplay.evaluate.hybrid import HYBRID_FILE, load_config, save_config

    old = {"weights": {"lm": 0.05, "bm25": 1.0, "dense": 3.0, "cooc": 0.0, "head": 0.0},
           "pool": 20, "without": [], "fitted": {"split": "valid"}}
    (tmp_path / HYBRID_FILE).write_text(json.dumps({"talkplay-hybrid": old}))
    cfg = load_config(tmp_path, "talkplay-hybrid")
    # Components newer than the fit (no weight saved) stay out: named and the text score.
    assert cfg.without == ["text", "named"] and cfg.weights == old["weights"]
    cfg.weights["named"], cfg.without = 5.0, []
    save_config(tmp_path, "talkplay-hybrid", cfg)
    assert load_config(tmp_path, "talkplay-hybrid").without == ["text"]
