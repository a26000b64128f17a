"""talkplay-db JSONL export and import."""

from __future__ import annotations

import json

import pytest
from test_simulator import toy_dataset
from typer.testing import CliRunner

from talkplay.cli import app
from talkplay.data.conversations.common import ConversationShape
from talkplay.data.conversations.paper_json import import_jsonl
from talkplay.data.conversations.simulator import SimulatorConfig, simulate
from talkplay.data.dataset import read_dataset, write_dataset
from talkplay.data.errors import DataError


@pytest.fixture
def simulated(tmp_path):
    ds = toy_dataset()
    ds.conversations = simulate(ds.tracks, ds.playlists, SimulatorConfig(ConversationShape(reject_rate=0.4)))
    write_dataset(tmp_path / "d", ds, source="toy", split_rule="by hand")
    return tmp_path / "d"


def test_round_trip_through_cli(simulated, tmp_path):
    out = tmp_path / "convs.jsonl"
    runner = CliRunner()
    res = runner.invoke(app, ["data", "export-json", "--data", str(simulated), "--out", str(out)])
    assert res.exit_code == 0, res.output
    records = [json.loads(line) for line in out.open()]
    original = read_dataset(simulated)
    assert len(records) == len(original.conversations)
    assert set(records[0]) >= {"pid", "cid", "conversations"}
    assert records[0]["conversations"][1]["role"] == "music"
    # Import into a copy without conversations: everything comes back, rejections included.
    empty = toy_dataset()
    write_dataset(tmp_path / "e", empty, source="toy", split_rule="by hand")
    res = runner.invoke(app, ["data", "import-json", "--data", str(tmp_path / "e"), "--file", str(out)])
    assert res.exit_code == 0, res.output
    back = read_dataset(tmp_path / "e")
    assert sorted((c.id, c.split, c.playlist_id) for c in back.conversations) == sorted(
        (c.id, c.split, c.playlist_id) for c in original.conversations)
    assert {c.id: c.meta for c in back.conversations} == {c.id: c.meta for c in original.conversations}
    assert back.manifest["conversation_generators"][-1]["generator"] == "import-json"


def test_export_filters_splits(simulated, tmp_path):
    out = tmp_path / "test.jsonl"
    CliRunner().invoke(app, ["data", "export-json", "--data", str(simulated), "--out", str(out),
                             "--splits", "test"])
    assert {json.loads(line)["split"] for line in out.open()} == {"test"}


BAD = [
    ('{"pid": "p0", "cid": "x", "conversations": [{"role": "music", "content": "nope"}]}',
     "conversations[0].content: track 'nope' is not in the catalog"),
    ('{"pid": "p0", "cid": "x", "conversations": [{"role": "dj", "content": "a"}]}',
     "conversations[0].role: unknown role 'dj'"),
    ('{"pid": "p0", "conversations": [{"role": "user", "content": "a"}]}',
     "cid: required field is missing"),
    ('{"pid": "p0", "cid": "x", "conversations": []}', "conversations: conversation x has no messages"),
    ('{"pid": "zz", "cid": "x", "conversations": [{"role": "user", "content": "a"}]}',
     "pid: playlist 'zz' is not in the catalog dataset, so its split is unknown; pass --default-split"),
    ('{"pid": "zz", "cid": "x", "split": "dev", "conversations": [{"role": "user", "content": "a"}]}',
     "split: unknown split 'dev'"),
    ('{"pid": "p0", "cid": "x", "conversations": [{"role": "user", "content": 3}]}',
     "conversations[0].content: expected string, got integer"),
    ('{"pid": "p0", "cid": "x", "conversations": [{"role": "user", "content": "a"}], '
     '"meta": {"rejected": [0]}}', "meta.rejected[0]: rejected index 0 is not a music message"),
    ('{"pid": "p0", "cid": "x", "conversations": [{"role": "user", "content": "a"}], '
     '"meta": {"rejected": 0}}', "meta.rejected: expected list, got integer"),
    ('{"pid": "p0", "cid": ', "json: invalid JSON"),
]


def test_playlist_split_wins_over_record_split(tmp_path):
    """The architecture rule: a conversation takes its playlist's split when the playlist is
    in the dataset; the record's own split (or --default-split) only for unknown playlists."""
    ds = toy_dataset()
    split_of = {p.id: p.split for p in ds.playlists}
    known = next(p for p in ds.playlists if p.split == "train")
    path = tmp_path / "in.jsonl"
    recs = [{"pid": known.id, "cid": "a", "split": "test",
             "conversations": [{"role": "music", "content": known.track_ids[0]}]},
            {"pid": "elsewhere", "cid": "b", "split": "test",
             "conversations": [{"role": "user", "content": "hi"}]},
            {"pid": None, "cid": "c", "conversations": [{"role": "user", "content": "hi"}]}]
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    convs, _ = import_jsonl(ds, path, default_split="valid")
    assert {c.id: c.split for c in convs} == {"a": split_of[known.id], "b": "test", "c": "valid"}
    assert convs[2].playlist_id is None and convs[0].source == "talkplay-db"


@pytest.mark.parametrize("line,message", BAD)
def test_errors_name_file_line_field(tmp_path, line, message):
    ds = toy_dataset()
    path = tmp_path / "in.jsonl"
    good = '{"pid": "p0", "cid": "ok", "conversations": [{"role": "music", "content": "t0"}]}'
    path.write_text(good + "\n\n" + line + "\n")
    with pytest.raises(DataError) as err:
        import_jsonl(ds, path)
    assert str(err.value).startswith(f"{path}:3: ") and message in str(err.value)


def test_skip_invalid_and_cli_error(tmp_path):
    ds = toy_dataset()
    write_dataset(tmp_path / "d", ds, source="toy", split_rule="by hand")
    path = tmp_path / "in.jsonl"
    lines = ['{"pid": "p0", "cid": "a", "conversations": [{"role": "music", "content": "t0"}]}',
             BAD[0][0],
             '{"pid": "p0", "cid": "a", "conversations": [{"role": "music", "content": "t0"}]}']
    path.write_text("\n".join(lines) + "\n")
    runner = CliRunner()
    res = runner.invoke(app, ["data", "import-json", "--data", str(tmp_path / "d"), "--file", str(path)])
    flat = res.output.replace("\n", "")
    assert res.exit_code == 2 and f"{path}:2" in flat and "Traceback" not in flat
    assert read_dataset(tmp_path / "d").conversations == []
    res = runner.invoke(app, ["data", "import-json", "--data", str(tmp_path / "d"), "--file",
                              str(path), "--skip-invalid"])
    assert res.exit_code == 0, res.output
    assert "dropped 1" in res.output and "duplicate conversation id" in res.output
    back = read_dataset(tmp_path / "d")
    assert [c.id for c in back.conversations] == ["a"] and back.conversations[0].split == "train"
    # Records for playlists outside the dataset need --default-split.
    other = tmp_path / "other.jsonl"
    other.write_text('{"pid": "elsewhere", "cid": "b", "conversations": '
                     '[{"role": "music", "content": "t1"}]}\n')
    res = runner.invoke(app, ["data", "import-json", "--data", str(tmp_path / "d"), "--file",
                              str(other), "--default-split", "valid"])
    assert res.exit_code == 0, res.output
    assert {c.id: c.split for c in read_dataset(tmp_path / "d").conversations} == {"a": "train",
                                                                                  "b": "valid"}
    # Its old name, --split, still works for one release, with a note.
    res = runner.invoke(app, ["data", "import-json", "--data", str(tmp_path / "d"), "--file",
                              str(other), "--split", "test"])
    assert res.exit_code == 0, res.output
    assert "--split is now --default-split" in res.output.replace("\n", "")
    assert {c.id: c.split for c in read_dataset(tmp_path / "d").conversations}["b"] == "test"
