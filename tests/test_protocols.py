"""Paper and CPCD protocols: which turns are targets, their history, gold and excluded tracks."""

from __future__ import annotations

import pytest

from talkplay.data.dataset import Dataset
from talkplay.data.schema import Conversation, Message, Track
from talkplay.evaluate.protocols import (
    conversation_turns,
    cpcd_targets,
    paper_targets,
    resolve_protocol,
)
from talkplay.evaluate.run import evaluate
from talkplay.recommend.protocol import Recommendation, ScoredTrack

U, M, A = "user", "music", "assistant"


def _ds(convs, clusters=None, cold=()):
    ids = sorted({m.content for c in convs for m in c.messages if m.role == M}
                 | {t for c in convs for t in c.meta.get("goal_playlist", [])} | {"z1", "z2"})
    tracks = [Track(t, t.upper(), cluster_id=(clusters or {}).get(t), cold=t in cold) for t in ids]
    return Dataset(tracks=tracks, conversations=convs)


def _conv(cid, spec, **meta):
    return Conversation(cid, [Message(r, c) for r, c in spec], split="test", meta=meta)


def test_paper_targets_skip_rejected_and_exclude_history():
    conv = _conv("c", [(U, "jazz"), (M, "a"), (A, "here"), (U, "more"), (M, "b"), (A, "x"),
                       (U, "no, calmer"), (M, "c")], rejected=[4])
    targets = paper_targets(_ds([conv], cold={"c"}))
    assert [(t.turn_index, t.gold, t.position) for t in targets] == [(0, ["a"], 1), (2, ["c"], 7)]
    first, last = targets
    assert [m.content for m in first.history] == ["jazz"]
    assert first.exclude == set() and not first.cold
    assert len(last.history) == 7 and last.exclude == {"a", "b"} and last.cold
    assert last.docid == "c:7"
    # The rejected track stays in the history, marked; the accepted one is not.
    assert [(m.content, m.feedback) for m in last.history if m.role == M] == [
        ("a", None), ("b", "rejected")]
    kept = paper_targets(_ds([conv]), exclude_history=False)
    assert kept[1].exclude == set()


def test_paper_drops_assistant_text_that_names_the_next_target():
    # An LLM-written reply announcing the next track (by title "B" -> "Blue Train"; by id "c").
    conv = _conv("c", [(U, "jazz"), (M, "a"), (A, "Next up: Blue Train!"), (U, "ok"), (M, "b"),
                       (A, "then track c"), (U, "more"), (M, "c")])
    ds = _ds([conv])
    ds.track_index()["b"].title = "Blue Train"
    targets = paper_targets(ds)
    second, third = targets[1], targets[2]
    assert [m.content for m in second.history] == ["jazz", "a", "ok"]
    assert second.dropped_assistant == 1
    assert "then track c" not in [m.content for m in third.history]
    assert "Next up: Blue Train!" in [m.content for m in third.history]  # b is not the target
    assert third.dropped_assistant == 1
    res = evaluate(ds, {"fixed": FixedRanking(["a", "b", "c"])}, protocol="paper")
    assert res["dropped_assistant_messages"] == 2


def test_paper_skips_replayed_gold_and_other_splits():
    conv = _conv("c", [(U, "q"), (M, "a"), (U, "again"), (M, "a")])
    other = Conversation("t", [Message(U, "q"), Message(M, "b")], split="train")
    ds = _ds([conv, other])
    assert [t.gold for t in paper_targets(ds)] == [["a"]]
    assert len(paper_targets(ds, exclude_history=False)) == 2


GOAL = ["a", "b", "c", "d", "e", "f"]
SPEC = [(U, "party"), (A, "genre?"), (U, "upbeat"), (M, "a"), (M, "b"), (M, "c"), (M, "d"),
        (A, "added"), (U, "more"), (M, "e"), (A, "ok"), (U, "last"), (M, "f"), (A, "done")]
TURNS = [{"user_index": 0, "liked": [], "disliked": []},
         {"user_index": 2, "liked": ["a", "b", "c", "d"], "disliked": ["z1"]},
         {"user_index": 8, "liked": ["e"], "disliked": []},
         {"user_index": 11, "liked": ["f"], "disliked": []}]


@pytest.mark.parametrize("with_meta", [True, False])
def test_cpcd_seeds_gold_and_history(with_meta):
    meta = {"turns": TURNS, "goal_playlist": GOAL} if with_meta else {"goal_playlist": GOAL}
    conv = _conv("d", SPEC, **meta)
    if with_meta:
        assert conversation_turns(conv)[1]["liked"] == ["a", "b", "c", "d"]
    else:
        assert [t["liked"] for t in conversation_turns(conv)] == [[], ["a", "b", "c", "d"], ["e"], ["f"]]
    targets = cpcd_targets(_ds([conv]))
    # Turns 0 and 1 have no seeds; turn 2's seeds are the first 3 liked of turn 1; turn 3 adds e.
    assert [t.turn_index for t in targets] == [0, 1, 2, 3]
    assert [t.gold for t in targets] == [GOAL, GOAL, ["d", "e", "f"], ["d", "f"]]
    assert [t.exclude for t in targets] == [set(), set(), {"a", "b", "c"}, {"a", "b", "c", "e"}]
    # The history ends at the turn's user query and shows only seed tracks (d is gold: hidden).
    assert [m.content for m in targets[2].history] == [
        "party", "genre?", "upbeat", "a", "b", "c", "added", "more"]
    assert targets[0].docid == "d:0" and targets[3].docid == "d:3"


def test_cpcd_clusters_remove_seed_recordings_from_gold():
    conv = _conv("d", SPEC, turns=TURNS, goal_playlist=GOAL + ["a_live"])
    targets = cpcd_targets(_ds([conv], clusters={"a": "A", "a_live": "A"}))
    assert "a_live" in targets[1].gold and "a_live" not in targets[2].gold


def test_cpcd_turn_without_gold_is_skipped():
    conv = _conv("d", [(U, "q"), (M, "a"), (U, "more"), (M, "b"), (U, "thanks")],
                 goal_playlist=["a", "b"])
    targets = cpcd_targets(_ds([conv]))
    # Turn 2's seeds are a and b: nothing left to find, so it is not scored.
    assert [(t.turn_index, t.gold) for t in targets] == [(0, ["a", "b"]), (1, ["b"])]


def test_resolve_protocol():
    ds = _ds([_conv("c", [(U, "q"), (M, "a")])])
    assert resolve_protocol(ds, "auto") == "paper"
    ds.manifest = {"source": "cpcd:/x/cpcd_v1.dialogs.dev.train.jsonl"}
    assert resolve_protocol(ds, "auto") == "cpcd"
    assert resolve_protocol(ds, "paper") == "paper"
    with pytest.raises(ValueError, match="unknown protocol"):
        resolve_protocol(ds, "nope")


class FixedRanking:
    """Returns the same ranking for every history (minus excluded tracks)."""

    name = "fixed"

    def __init__(self, ranking, info=None):
        self.ranking = ranking
        self.info = info or {}

    def recommend(self, history, k=10, exclude=None):
        ids = [t for t in self.ranking if t not in (exclude or set())][:k]
        return Recommendation([ScoredTrack(t, -i) for i, t in enumerate(ids)], info=self.info)


def test_evaluate_cpcd_hand_computed(tmp_path):
    conv = _conv("d", SPEC, turns=TURNS, goal_playlist=GOAL)
    ds = _ds([conv])
    # Ranking z1, a, e, ...: turns 0-1 hit a at rank 2; turn 2 (a excluded): e at rank 2;
    # turn 3 (a, e excluded): z1, z2, then d at rank 3.
    res = evaluate(ds, {"fixed": FixedRanking(["z1", "a", "e", "z2", "d"])}, protocol="cpcd",
                   ks=(1, 2, 5), out_dir=tmp_path)
    r = res["systems"]["fixed"]
    assert r["micro"]["mrr"] == pytest.approx((0.5 + 0.5 + 0.5 + 1 / 3) / 4)
    assert r["micro"]["hit@2"] == pytest.approx(0.75)
    assert r["by_turn"]["3"]["mrr"] == pytest.approx(1 / 3)
    lines = (tmp_path / "fixed.cpcd.jsonl").read_text().splitlines()
    assert lines[2] == '{"docid": "d:2", "neighbor": [{"docid": "z1"}, {"docid": "e"}, ' \
                       '{"docid": "z2"}, {"docid": "d"}]}'


def test_evaluate_paper_reports_token_matching(tmp_path):
    conv = _conv("c", [(U, "q"), (M, "a"), (U, "more"), (M, "b")])
    info = {"codes": [[1, 2, 3, 4, 5]], "exact_match": [True], "matched_ids": ["a"]}
    res = evaluate(_ds([conv]), {"tp": FixedRanking(["b", "a"], info), "fixed": FixedRanking(["a"])},
                   protocol="paper", ks=(1, 10), out_dir=tmp_path)
    assert res["protocol"] == "paper" and res["targets"] == 2
    assert res["systems"]["tp"]["token_matching"]["exact_share"] == 1.0
    assert "token_matching" not in res["systems"]["fixed"]
    # Target 1 (gold a): ranking b, a -> 0.5; target 2 (gold b, a excluded): b first -> 1.
    assert res["systems"]["tp"]["micro"]["mrr"] == pytest.approx(0.75)
    md = (tmp_path / "results.md").read_text()
    assert "## Token matching" in md and "| tp | 2 | 1.0000 |" in md
    assert (tmp_path / "tp.predictions.jsonl").exists()
