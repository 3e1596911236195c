"""The records read in one place: an adapter's manifest as on disk, and one-line errors naming what is wrong."""

import json

import pytest

from userlm.io import UserError
from userlm.records import AdapterManifest, check_transcript, read_adapter_manifest

# A line as `simulate` writes it (keys in its order), an opening assistant turn and a cut-off user turn.
TRANSCRIPT = {
    "scenario_id": "s", "sample": 0, "seed": 7, "stop_reason": "max_turns", "n_user_turns": 1,
    "turns": [{"role": "assistant", "text": "Hi!", "tokens": 0, "latency_s": 0.0},
              {"role": "user", "text": "Bonjour", "tokens": 160, "latency_s": 1.25, "truncated": True},
              {"role": "assistant", "text": "Salut", "tokens": 3, "latency_s": 0.5}],
    "scenario_intent": "", "user_told_intent": False, "user_model": "m", "user_kind": "base",
    "assistant_model": "a", "user_adapter_manifest_sha256": None,
}


def test_adapter_manifest_is_read_in_one_place(tmp_path):
    with pytest.raises(UserError, match="no manifest.json; not a finished `userlm train` output"):
        read_adapter_manifest(tmp_path)
    raw = {"kind": "userlm-adapter", "base_model": "embedded:smollm2-135m-instruct", "system_prompt": "s",
           "trained_with_intent": True, "final_eval_loss": 2.5, "global_step": 3}
    (tmp_path / "manifest.json").write_text(json.dumps(raw))
    manifest = read_adapter_manifest(tmp_path)
    assert (manifest.base_model, manifest.system_prompt, manifest.trained_with_intent) == (raw["base_model"], "s", True)
    assert manifest.extra == {"kind": "userlm-adapter", "global_step": 3}
    assert manifest.to_dict() == raw and list(manifest.to_dict()) == list(raw)
    (tmp_path / "manifest.json").write_text(json.dumps({"kind": "userlm-adapter"}))
    with pytest.raises(UserError, match="manifest.json: adapter manifest field 'base_model' is missing"):
        read_adapter_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({"base_model": 3}))
    with pytest.raises(UserError, match="field 'base_model' must be str"):
        read_adapter_manifest(tmp_path)
    assert AdapterManifest("b").to_dict()["base_model"] == "b"


def test_transcript_errors_name_the_field():
    assert check_transcript(TRANSCRIPT, "t.jsonl: record 1") is TRANSCRIPT
    with pytest.raises(UserError, match="t.jsonl: record 1: field 'sample' must be int"):
        check_transcript({**TRANSCRIPT, "sample": "0"}, "t.jsonl: record 1")
    with pytest.raises(UserError, match=r"field 'turns\[0\]' needs a string 'role' and 'text'"):
        check_transcript({**TRANSCRIPT, "turns": [{"role": "user"}]}, "t.jsonl: record 1")


def test_run_json_errors_name_the_file_and_field(tmp_path):
    from userlm.records import load_run

    (tmp_path / "transcripts.jsonl").write_text(json.dumps(TRANSCRIPT) + "\n")
    (tmp_path / "run.json").write_text(json.dumps({"config": {"user": "u"}, "finished_at": "y"}))
    with pytest.raises(UserError, match=r"run.json: field 'config.assistant' must be a string"):
        load_run(tmp_path)
    (tmp_path / "run.json").write_text(json.dumps({"config": "u"}))
    with pytest.raises(UserError, match=r"run.json: run.json field 'config' must be dict"):
        load_run(tmp_path)
    (tmp_path / "run.json").write_text(json.dumps({"config": {"user": "u", "assistant": "a"}, "finished_at": "y",
                                                   "total_conversations": 1}))
    info, records = load_run(tmp_path)
    assert info["config"]["user"] == "u" and records == [TRANSCRIPT]
