"""The typed records read and write exactly the JSON on disk, and name what is wrong in one line."""

import json

import pytest

from userlm.io import UserError
from userlm.records import AdapterManifest, Example, RunInfo, Transcript, read_adapter_manifest

# A line as `simulate` writes it (keys in its order), an opening assistant turn and a cut-off user turn.
TRANSCRIPT = {
    "scenario_id": "s", "sample": 0, "seed": 7, "stop_reason": "max_turns", "n_user_turns": 1,
    "turns": [{"role": "assistant", "text": "Hi!", "tokens": 0, "latency_s": 0.0},
              {"role": "user", "text": "Bonjour", "tokens": 160, "latency_s": 1.25, "truncated": True},
              {"role": "assistant", "text": "Salut", "tokens": 3, "latency_s": 0.5}],
    "scenario_intent": "", "user_told_intent": False, "user_model": "m", "user_kind": "base",
    "assistant_model": "a", "user_adapter_manifest_sha256": None,
}
EXAMPLE = {"id": "t:2", "tree_id": "t", "source": "sharegpt", "lang": "und",
           "messages": [{"role": "user", "content": "hello", "target": True},
                        {"role": "assistant", "content": "hi", "target": False}],
           "ends_conversation": True, "end_recorded": True}
RUN = {"kind": "userlm-simulation-run", "identity": {"config": {}}, "config": {"user": "u", "assistant": "a"},
       "user_kind": "base", "total_conversations": 2, "started_at": "x", "finished_at": "y", "seconds": 1.5}


@pytest.mark.parametrize("cls, record", [(Transcript, TRANSCRIPT), (Example, EXAMPLE), (RunInfo, RUN)])
def test_records_round_trip_byte_for_byte(cls, record):
    typed = cls.from_dict(json.loads(json.dumps(record)))
    assert json.dumps(typed.to_dict(), ensure_ascii=False) == json.dumps(record, ensure_ascii=False)


def test_records_name_text_the_same_in_python():
    transcript, example = Transcript.from_dict(TRANSCRIPT), Example.from_dict(EXAMPLE)
    assert transcript.user_turns == ["Bonjour"] and transcript.turns[1].truncated is True
    assert transcript.turns[0].truncated is None and "truncated" not in transcript.turns[0].to_dict()
    assert [m.text for m in example.messages] == ["hello", "hi"]
    assert RunInfo.from_dict(RUN).finished


def test_adapter_manifest_is_read_in_one_place(tmp_path):
    with pytest.raises(UserError, match="no manifest.json; not a finished `userlm train` output"):
        read_adapter_manifest(tmp_path)
    raw = {"kind": "userlm-adapter", "base_model": "embedded:smollm2-135m-instruct", "system_prompt": "s",
           "trained_with_intent": True, "final_eval_loss": 2.5, "global_step": 3}
    (tmp_path / "manifest.json").write_text(json.dumps(raw))
    manifest = read_adapter_manifest(tmp_path)
    assert (manifest.base_model, manifest.system_prompt, manifest.trained_with_intent) == (raw["base_model"], "s", True)
    assert manifest.to_dict() == raw and list(manifest.to_dict()) == list(raw)
    (tmp_path / "manifest.json").write_text(json.dumps({"kind": "userlm-adapter"}))
    with pytest.raises(UserError, match="field 'base_model' must be str"):
        read_adapter_manifest(tmp_path)
    assert AdapterManifest("b").to_dict()["base_model"] == "b"


def test_transcript_errors_name_the_field():
    with pytest.raises(UserError, match="field 'sample' must be int"):
        Transcript.from_dict({**TRANSCRIPT, "sample": "0"}, "t.jsonl: record 1")
    with pytest.raises(UserError, match=r"field 'turns\[0\]' needs a string 'role' and 'text'"):
        Transcript.from_dict({**TRANSCRIPT, "turns": [{"role": "user"}]}, "t.jsonl: record 1")
