"""The replay provider and its cassette file, on their own (no workbench, no network)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from master_sdk.errors import ConfigError, ModelCallError
from master_sdk.models.providers.replay import (
    ReplayProvider,
    normalized_request,
    request_key,
)
from master_sdk.models.types import Message, ModelRequest, ModelResponse, Usage
from master_sdk.testing import ScriptedModel


def ask(text: str = "Summarise: hello", **kwargs: Any) -> ModelRequest:
    return ModelRequest(
        model="gpt-4o-mini",
        messages=(Message("system", "Be brief."), Message("user", text)),
        **kwargs,
    )


def reply(text: str, **usage: Any) -> ModelResponse:
    return ModelResponse(
        text=text,
        usage=Usage(tokens_in=usage.get("tokens_in", 12), tokens_out=usage.get("tokens_out", 3)),
        model="gpt-4o-mini-2024-07-18",
        finish_reason="stop",
    )


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def record(path: Path, *pairs: tuple[ModelRequest, ModelResponse], **kwargs: Any) -> None:
    wrapped = ScriptedModel([response for _, response in pairs])
    recorder = ReplayProvider(cassette=path, mode="record", wrapped=wrapped, **kwargs)
    for request, _ in pairs:
        recorder.complete(request)
    wrapped.assert_consumed()


def test_recording_writes_one_json_line_per_request_with_a_normalised_request(
    tmp_path: Path,
) -> None:
    """Each recorded call is one line: key (SHA-256 of the request), the request with
    sorted keys and no volatile fields, the response (text, usage, model, finish reason)
    and recorded_at."""
    path = tmp_path / "c.jsonl"
    request = ask(max_tokens=64, temperature=0.2)
    record(path, (request, reply("Short.", tokens_in=20, tokens_out=2)), params={"seed": 7})

    [entry] = lines(path)
    assert list(entry) == ["key", "request", "response", "recorded_at"]
    assert entry["request"] == {
        "max_tokens": 64,
        "messages": [
            {"content": "Be brief.", "role": "system"},
            {"content": "Summarise: hello", "role": "user"},
        ],
        "model": "gpt-4o-mini",
        "params": {"seed": 7},
        "temperature": 0.2,
    }
    assert list(entry["request"]) == sorted(entry["request"])
    assert entry["key"] == request_key(entry["request"])
    assert entry["response"] == {
        "text": "Short.",
        "usage": {"tokens_in": 20, "tokens_out": 2, "cached_tokens": 0, "reported": True},
        "model": "gpt-4o-mini-2024-07-18",
        "finish_reason": "stop",
    }
    assert entry["recorded_at"].endswith("Z")


def test_replay_answers_byte_for_byte_without_calling_anything(tmp_path: Path) -> None:
    """A replayed reply is exactly the recorded one — awkward characters included — and
    replay mode has no wrapped provider to call."""
    path = tmp_path / "c.jsonl"
    tricky = 'line one\r\nline two  \n\ttab "quoted" \\ \u2028 é 漢字 🙂 \x00 end '
    request = ask()
    record(path, (request, reply(tricky, tokens_in=7, tokens_out=30)))

    player = ReplayProvider(cassette=path, mode="replay")
    response = player.complete(request)

    assert response.text == tricky
    assert response.usage == Usage(tokens_in=7, tokens_out=30, cached_tokens=0, reported=True)
    assert response.model == "gpt-4o-mini-2024-07-18"
    assert response.finish_reason == "stop"
    assert player.wrapped is None


def test_structured_output_schema_is_part_of_the_request_key(tmp_path: Path) -> None:
    """Two requests that differ only in their output schema are two recordings."""
    path = tmp_path / "c.jsonl"
    schema_a = {"type": "object", "properties": {"a": {"type": "string"}}}
    schema_b = {"type": "object", "properties": {"b": {"type": "string"}}}
    first = ask(output_schema=schema_a, output_name="A")
    second = ask(output_schema=schema_b, output_name="B")
    record(path, (first, reply('{"a": "x"}')), (second, reply('{"b": "y"}')))

    player = ReplayProvider(cassette=path, mode="replay")

    assert player.complete(first).text == '{"a": "x"}'
    assert player.complete(second).text == '{"b": "y"}'
    assert len(lines(path)) == 2


def test_a_miss_names_the_cassette_and_shows_the_closest_recorded_request(
    tmp_path: Path,
) -> None:
    """A request not in the cassette raises replay_miss (not retryable) with a diff
    against the most similar recording, the changed words visible."""
    path = tmp_path / "c.jsonl"
    record(
        path,
        (ask("Summarise for the board: quarterly numbers"), reply("A")),
        (ask("Translate to French: good morning"), reply("B")),
    )
    player = ReplayProvider(cassette=path, mode="replay", label="cassettes/c.jsonl")

    with pytest.raises(ModelCallError) as info:
        player.complete(ask("Summarise for the team: quarterly numbers"))

    error = info.value
    assert error.kind == "replay_miss"
    assert error.retryable is False
    message = str(error)
    assert "cassette 'cassettes/c.jsonl' (2 recorded)" in message
    assert "- recorded / + requested" in message
    assert '-messages[1].content: "Summarise for the board: quarterly numbers"' in message
    assert '+messages[1].content: "Summarise for the team: quarterly numbers"' in message
    assert "Translate" not in message


def test_a_miss_on_a_missing_cassette_says_to_record_it(tmp_path: Path) -> None:
    """Replaying from a cassette that was never recorded says so and how to fix it."""
    player = ReplayProvider(cassette=tmp_path / "none.jsonl", mode="replay", label="none.jsonl")

    with pytest.raises(ModelCallError) as info:
        player.complete(ask())

    assert info.value.kind == "replay_miss"
    assert "cassette 'none.jsonl' does not exist yet" in str(info.value)
    assert "mode: record" in str(info.value)


def test_recording_a_request_again_replaces_its_entry(tmp_path: Path) -> None:
    """One entry per request: a new reply for a recorded request replaces the old line in
    place; the same reply again leaves the file byte for byte as it was."""
    path = tmp_path / "c.jsonl"
    first, second = ask("one"), ask("two")
    record(path, (first, reply("1")), (second, reply("2")))
    record(path, (first, reply("1 again")))

    entries = lines(path)
    assert [e["response"]["text"] for e in entries] == ["1 again", "2"]
    before = path.read_bytes()

    record(path, (first, reply("1 again")))

    assert path.read_bytes() == before


def test_redaction_applies_before_writing_and_replay_still_matches(tmp_path: Path) -> None:
    """A secret in the prompt or the reply is never written; the key is computed on the
    redacted request, so the same (unredacted) request still replays."""
    path = tmp_path / "c.jsonl"
    secret = "sk-live-abcdefghijklmnop"

    def scrub(value: Any) -> Any:
        if isinstance(value, str):
            return value.replace(secret, "<SECRET>")
        if isinstance(value, dict):
            return {k: scrub(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [scrub(v) for v in value]
        return value

    request = ask(f"Check this key: {secret}")
    record(path, (request, reply(f"The key {secret} looks valid")), scrub=scrub)

    text = path.read_text(encoding="utf-8")
    assert secret not in text
    assert "<SECRET>" in text
    player = ReplayProvider(cassette=path, mode="replay", scrub=scrub)
    assert player.complete(request).text == "The key <SECRET> looks valid"


def test_configured_params_are_part_of_the_key(tmp_path: Path) -> None:
    """Changing the model's configured params (a seed) is a different request."""
    path = tmp_path / "c.jsonl"
    record(path, (ask(), reply("seeded")), params={"seed": 1})

    with pytest.raises(ModelCallError) as info:
        ReplayProvider(cassette=path, mode="replay", params={"seed": 2}).complete(ask())

    assert "-params.seed: 1" in str(info.value)
    assert "+params.seed: 2" in str(info.value)


def test_a_hand_edited_request_is_matched_by_its_new_content(tmp_path: Path) -> None:
    """Keys are recomputed when the file is read: editing a recorded prompt by hand (and
    leaving the old key) makes the new prompt replay."""
    path = tmp_path / "c.jsonl"
    record(path, (ask("old prompt"), reply("answer")))
    path.write_text(path.read_text(encoding="utf-8").replace("old prompt", "new prompt"))

    assert ReplayProvider(cassette=path, mode="replay").complete(ask("new prompt")).text == (
        "answer"
    )


def test_a_malformed_line_is_a_config_error_naming_file_and_line(tmp_path: Path) -> None:
    """A cassette line that is not JSON, or not a recorded call, is reported with the
    cassette's name and the line number."""
    path = tmp_path / "c.jsonl"
    record(path, (ask(), reply("ok")))
    with path.open("a", encoding="utf-8") as handle:
        handle.write('{"request": {"model": "m", "messages": []}, "response": {}}\n')

    with pytest.raises(ConfigError) as info:
        ReplayProvider(cassette=path, mode="replay", label="c.jsonl").complete(ask())
    assert "c.jsonl: line 2: 'response' must be an object with a 'text' string" in str(info.value)

    path.write_text("not json\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="line 1 is not valid JSON"):
        ReplayProvider(cassette=path, mode="replay").complete(ask())


def test_recording_passes_errors_on_and_writes_nothing_for_them(tmp_path: Path) -> None:
    """A failed call while recording reaches the caller unchanged (the router decides on
    retries); the cassette gains no entry for it."""
    path = tmp_path / "c.jsonl"
    failure = ModelCallError("rate limited", kind="rate_limit", retryable=True)
    recorder = ReplayProvider(cassette=path, mode="record", wrapped=ScriptedModel([failure]))

    with pytest.raises(ModelCallError) as info:
        recorder.complete(ask())

    assert info.value is failure
    assert not path.exists()


def test_record_mode_needs_a_wrapped_model_and_modes_are_checked() -> None:
    """Recording without a model to record, or an unknown mode, is a ConfigError."""
    with pytest.raises(ConfigError, match="needs a model to record"):
        ReplayProvider(cassette="c.jsonl", mode="record")
    with pytest.raises(ConfigError, match="mode must be one of record, replay"):
        ReplayProvider(cassette="c.jsonl", mode="once")


def test_normalised_request_merges_params_with_the_request_winning() -> None:
    """Request params override configured ones, as on the wire; tuples become lists."""
    request = ModelRequest(
        model="m", messages=(Message("user", "x"),), params={"seed": 2, "top_p": 0.5}
    )

    assert normalized_request(request, {"seed": 1, "top_k": 3}) == {
        "messages": [{"content": "x", "role": "user"}],
        "model": "m",
        "params": {"seed": 2, "top_k": 3, "top_p": 0.5},
    }


def test_a_miss_diff_of_a_long_prompt_shows_only_the_changed_sentence(tmp_path: Path) -> None:
    """Long prompts are cut at sentences and words for the diff, so one changed word
    shows as one changed piece rather than every line after it."""
    path = tmp_path / "c.jsonl"
    body = " ".join(
        f"Sentence number {i} talks about the quarterly numbers at length." for i in range(8)
    )
    record(path, (ask(f"Summarise for the board. {body}"), reply("A")))

    with pytest.raises(ModelCallError) as info:
        ReplayProvider(cassette=path, mode="replay").complete(
            ask(f"Summarise for the team. {body}")
        )

    changed = [ln for ln in str(info.value).splitlines() if ln[:1] in "+-" and "|" in ln]
    assert changed == [
        "-messages[1].content | Summarise for the board.",
        "+messages[1].content | Summarise for the team.",
    ]
