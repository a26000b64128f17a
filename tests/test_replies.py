"""Baselines served through chat/serve answer in words, from their first track's own facts."""

from __future__ import annotations

from talkplay.data.schema import Message, Track
from talkplay.recommend.replies import TemplateReplies, template_reply
from talkplay.serve.loading import load_recommender
from talkplay.train.toy import toy_dataset


def test_a_template_reply_names_the_track_and_only_its_facts():
    jazz = Track(id="j1", title="Blue Hour", artists=["Ann Lee", "Bo Ray"], album="Night",
                 release_date="1965-02-01", tags=["jazz", "mellow"])
    text = template_reply(jazz)
    assert text.startswith("Here is Blue Hour by Ann Lee, Bo Ray: ")
    assert text == template_reply(jazz)  # seeded by the track
    for wrong in ("rock", "70s", "80s", "90s", "upbeat", "2000s"):
        assert wrong not in text
    bare = template_reply(Track(id="x", title="", artists=[]))
    assert bare.startswith("Here is this track: ")


def test_a_served_baseline_replies_about_its_first_track(tmp_path):
    data = toy_dataset(tmp_path / "data", seed=0)
    rec, ds = load_recommender(system="bm25", data=data)
    assert isinstance(rec, TemplateReplies) and rec.name == "bm25"
    out = rec.recommend([Message("user", "calm jazz piano please")], k=5)
    first = {t.id: t for t in ds.tracks}[out.tracks[0].track_id]
    assert out.reply == template_reply(first) and first.title in out.reply
