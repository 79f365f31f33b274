"""OpenAIProvider against a real OpenAI-compatible HTTP server on 127.0.0.1.

Nothing is mocked: the official SDK sends real requests over a loopback socket to
``tests.support.openai_server.FakeOpenAIServer``, which records what it received.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from pydantic import BaseModel, Field

from master_sdk.errors import ConfigError, ModelCallError
from master_sdk.models.providers.openai import (
    PLACEHOLDER_API_KEY,
    OpenAIProvider,
    strict_json_schema,
)
from master_sdk.models.types import Message, ModelRequest, ModelResponse
from tests.support.openai_server import FakeOpenAIServer, Reply

REPO_ROOT = Path(__file__).resolve().parents[2]
API_KEY = "sk-test-0123456789abcdefSECRET"
MODEL = "gpt-4o-mini"

MakeProvider = Callable[..., OpenAIProvider]


@pytest.fixture(scope="module")
def shared_server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as srv:
        yield srv


@pytest.fixture
def server(shared_server: FakeOpenAIServer) -> Iterator[FakeOpenAIServer]:
    """The module's server, emptied for this test; an unconsumed scripted reply fails it."""
    shared_server.reset()
    yield shared_server
    assert shared_server.pending == 0, f"{shared_server.pending} scripted replies never requested"


@pytest.fixture(scope="module")
def shared_provider(shared_server: FakeOpenAIServer) -> Iterator[OpenAIProvider]:
    # One SDK client for the module: building one loads the CA bundle (~0.1 s each).
    provider = OpenAIProvider(base_url=shared_server.base_url, api_key=API_KEY, model=MODEL)
    yield provider
    provider.close()


@pytest.fixture
def provider(server: FakeOpenAIServer, shared_provider: OpenAIProvider) -> OpenAIProvider:
    """The default provider (configured key and model) talking to ``server``."""
    return shared_provider


@pytest.fixture
def make_provider(server: FakeOpenAIServer) -> Iterator[MakeProvider]:
    """Providers with their own settings (defaults pointed at ``server``), closed after."""
    made: list[OpenAIProvider] = []

    def make(**kwargs: Any) -> OpenAIProvider:
        options: dict[str, Any] = {"base_url": server.base_url, "api_key": API_KEY, "model": MODEL}
        options.update(kwargs)
        provider = OpenAIProvider(**options)
        made.append(provider)
        return provider

    yield make
    for provider in made:
        provider.close()


def ask(text: str = "Say hello", **kwargs: Any) -> ModelRequest:
    return ModelRequest(model=MODEL, messages=(Message("user", text),), **kwargs)


def call_error(provider: OpenAIProvider, request: ModelRequest | None = None) -> ModelCallError:
    with pytest.raises(ModelCallError) as info:
        provider.complete(request or ask())
    return info.value


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Address(BaseModel):
    city: str = Field(description="city name")
    postcode: str | None = None


class Contact(BaseModel):
    name: str
    tags: list[str] = Field(default_factory=list)
    address: Address = Field(description="where the contact lives")


# --- success ---------------------------------------------------------------------------


def test_text_reply_returns_text_usage_and_json_able_raw(
    server: FakeOpenAIServer, provider: OpenAIProvider
) -> None:
    """A plain reply comes back as text with the server's usage, finish reason and raw dict."""
    server.script(Reply.text("Hello there", prompt_tokens=12, completion_tokens=3))

    response = provider.complete(ask(max_tokens=64, temperature=0.2))

    assert isinstance(response, ModelResponse)
    assert response.text == "Hello there"
    assert (response.usage.tokens_in, response.usage.tokens_out) == (12, 3)
    assert response.usage.cached_tokens == 0
    assert response.usage.reported is True
    assert response.model == MODEL
    assert response.finish_reason == "stop"
    assert response.raw is not None
    assert json.loads(json.dumps(response.raw))["choices"][0]["message"]["content"] == "Hello there"
    [sent] = server.completions
    assert sent.body == {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Say hello"}],
        "max_tokens": 64,
        "temperature": 0.2,
    }


def test_cached_prompt_tokens_are_reported(
    server: FakeOpenAIServer, provider: OpenAIProvider
) -> None:
    """prompt_tokens_details.cached_tokens becomes Usage.cached_tokens."""
    server.script(Reply.text("ok", prompt_tokens=2048, completion_tokens=5, cached_tokens=1920))

    usage = provider.complete(ask()).usage

    assert (usage.tokens_in, usage.tokens_out, usage.cached_tokens) == (2048, 5, 1920)
    assert usage.reported is True


def test_missing_usage_is_estimated_nonzero_and_marked_unreported(
    server: FakeOpenAIServer, provider: OpenAIProvider
) -> None:
    """Without a usage block the provider estimates generously and says it did."""
    prompt = "Summarise the quarterly figures for the board in three sentences, please."
    reply = "Revenue rose; costs fell; margins improved."
    server.script(Reply.no_usage(reply))

    response = provider.complete(ask(prompt))

    assert response.text == reply
    assert response.usage.reported is False
    # At least one token per four characters: an estimate must not under-count a budget.
    assert response.usage.tokens_in >= len(prompt) / 4
    assert response.usage.tokens_out >= len(reply) / 4
    assert "usage" not in server.completions[0].body  # the request itself is unchanged


# --- structured output -----------------------------------------------------------------


def test_structured_output_sends_strict_schema_and_reply_parses(
    server: FakeOpenAIServer, provider: OpenAIProvider
) -> None:
    """output_schema goes out as a strict json_schema response_format; the text validates."""
    schema = strict_json_schema(Contact)
    answer = {"name": "Ana", "tags": ["vip"], "address": {"city": "Lisbon", "postcode": None}}
    server.script(Reply.json(answer))

    response = provider.complete(ask(output_schema=schema, output_name="Contact"))

    assert Contact.model_validate_json(response.text) == Contact.model_validate(answer)
    response_format = server.completions[0].body["response_format"]
    assert response_format == {
        "type": "json_schema",
        "json_schema": {"name": "Contact", "schema": schema, "strict": True},
    }
    sent = response_format["json_schema"]["schema"]
    assert sent["additionalProperties"] is False
    assert sent["required"] == ["name", "tags", "address"]
    address = sent["properties"]["address"]  # a $ref with a description is inlined
    assert "$ref" not in address
    assert address["additionalProperties"] is False
    assert address["required"] == ["city", "postcode"]
    assert "default" not in json.dumps(sent)
    jsonschema.validate(answer, sent)


def test_default_structured_reply_satisfies_the_requested_schema(
    server: FakeOpenAIServer, provider: OpenAIProvider
) -> None:
    """An unscripted structured call gets JSON that validates, so flows can run unscripted."""
    response = provider.complete(
        ask("Find Ana", output_schema=strict_json_schema(Contact), output_name="Contact")
    )

    contact = Contact.model_validate_json(response.text)
    assert contact.name == "echo: Find Ana"


def test_schema_name_is_made_acceptable_to_the_api(
    server: FakeOpenAIServer, provider: OpenAIProvider
) -> None:
    """output_name is cut to the characters and length the API allows; absent, 'output'."""
    schema = strict_json_schema(Contact)

    provider.complete(ask(output_schema=schema, output_name="contact card: v2" + "x" * 80))
    provider.complete(ask(output_schema=schema))

    names = [r.body["response_format"]["json_schema"]["name"] for r in server.completions]
    assert names == [("contact_card__v2" + "x" * 80)[:64], "output"]


def test_strict_schema_refuses_open_mappings() -> None:
    """A dict field cannot be expressed in strict mode: the helper says where, before a call."""

    class Loose(BaseModel):
        scores: dict[str, int]

    with pytest.raises(ValueError, match=r"#/properties/scores: .*open mapping"):
        strict_json_schema(Loose)


def test_refusal_is_an_invalid_response(server: FakeOpenAIServer, provider: OpenAIProvider) -> None:
    """A refusal is not a reply: it raises invalid_response, not retryable, naming the reason."""
    server.script(Reply.refused("I can't help with that."))

    error = call_error(provider, ask(output_schema=strict_json_schema(Contact)))

    assert error.kind == "invalid_response"
    assert error.retryable is False
    assert "refused: I can't help with that." in str(error)


# --- what the SDK sends ----------------------------------------------------------------


def test_authorization_and_organization_headers_carry_config(
    server: FakeOpenAIServer, provider: OpenAIProvider, make_provider: MakeProvider
) -> None:
    """The configured key is the bearer token; the organization header appears when given."""
    make_provider(organization="org-config").complete(ask())
    provider.complete(ask())

    with_org, without_org = server.completions
    assert with_org.headers["authorization"] == f"Bearer {API_KEY}"
    assert with_org.headers["openai-organization"] == "org-config"
    assert without_org.headers["authorization"] == f"Bearer {API_KEY}"
    assert "openai-organization" not in without_org.headers


def test_keyless_provider_sends_the_placeholder_key(
    server: FakeOpenAIServer, make_provider: MakeProvider
) -> None:
    """api_key=None (a local server) still satisfies the SDK, with a visible placeholder."""
    make_provider(api_key=None).complete(ask())

    assert server.completions[0].headers["authorization"] == f"Bearer {PLACEHOLDER_API_KEY}"


def test_openai_environment_variables_do_not_override_config(
    server: FakeOpenAIServer, make_provider: MakeProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    """OPENAI_* variables read by the SDK never replace or add to what config gave."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-environment")
    monkeypatch.setenv("OPENAI_BASE_URL", f"http://127.0.0.1:{closed_port()}/v1")
    monkeypatch.setenv("OPENAI_ORG_ID", "org-from-environment")
    monkeypatch.setenv("OPENAI_PROJECT_ID", "proj-from-environment")
    monkeypatch.setenv("OPENAI_CUSTOM_HEADERS", "X-From-Environment: yes")

    make_provider(api_key=None, default_headers={"X-Configured": "1"}).complete(ask())

    [sent] = server.completions  # it reached the configured server, not OPENAI_BASE_URL
    assert sent.headers["authorization"] == f"Bearer {PLACEHOLDER_API_KEY}"
    assert sent.headers["x-configured"] == "1"
    assert "openai-organization" not in sent.headers
    assert "openai-project" not in sent.headers
    assert "x-from-environment" not in sent.headers


def test_default_and_request_params_reach_the_body(
    server: FakeOpenAIServer, make_provider: MakeProvider
) -> None:
    """default_params and request.params (which win) are sent, SDK-unknown names included."""
    provider = make_provider(default_params={"seed": 7, "top_k": 40, "top_p": 0.9})

    provider.complete(ask(params={"seed": 8, "stop": ["\n\n"]}))

    body = server.completions[0].body
    assert body["seed"] == 8
    assert body["top_k"] == 40
    assert body["top_p"] == 0.9
    assert body["stop"] == ["\n\n"]


def test_max_completion_tokens_field_can_be_chosen(
    server: FakeOpenAIServer, make_provider: MakeProvider
) -> None:
    """With max_tokens_field='max_completion_tokens' the limit travels under that name only."""
    make_provider(max_tokens_field="max_completion_tokens").complete(ask(max_tokens=32))

    body = server.completions[0].body
    assert body["max_completion_tokens"] == 32
    assert "max_tokens" not in body


def test_reserved_params_are_refused_before_any_request(
    server: FakeOpenAIServer, provider: OpenAIProvider, make_provider: MakeProvider
) -> None:
    """Params may not replace the model, the messages or the transport settings."""
    with pytest.raises(ConfigError, match="stream"):
        make_provider(default_params={"stream": True})

    error = call_error(provider, ask(params={"model": "other"}))

    assert error.kind == "bad_request"
    assert server.requests == []


# --- failures --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Retry-After": "7"}, 7.0),
        ({"Retry-After": "7", "retry-after-ms": "1500"}, 1.5),
    ],
    ids=["seconds", "milliseconds"],
)
def test_rate_limit_carries_retry_after_and_is_sent_once(
    server: FakeOpenAIServer,
    provider: OpenAIProvider,
    headers: dict[str, str],
    expected: float,
) -> None:
    """429 maps to a retryable rate_limit with the server's wait; the provider never retries."""
    server.script(Reply.error(429, "Rate limit reached", headers=headers))

    error = call_error(provider)

    assert (error.kind, error.retryable, error.status) == ("rate_limit", True, 429)
    assert error.retry_after_s == expected
    assert len(server.completions) == 1
    assert MODEL in str(error)
    assert server.base_url in str(error)


def test_rate_limit_retry_after_as_http_date(
    server: FakeOpenAIServer, provider: OpenAIProvider
) -> None:
    """A Retry-After HTTP date becomes the seconds from now until then."""
    when = datetime.now(UTC) + timedelta(seconds=30)
    server.script(Reply.error(429, headers={"Retry-After": format_datetime(when, usegmt=True)}))

    error = call_error(provider)

    assert error.retry_after_s is not None
    assert 25 <= error.retry_after_s <= 31


def test_exhausted_quota_is_a_rate_limit_not_worth_retrying(
    server: FakeOpenAIServer, provider: OpenAIProvider
) -> None:
    """429 insufficient_quota will not clear by waiting, so it is not retryable."""
    server.script(Reply.error(429, "You exceeded your current quota", code="insufficient_quota"))

    error = call_error(provider)

    assert (error.kind, error.retryable) == ("rate_limit", False)


@pytest.mark.parametrize("status", [500, 503])
def test_server_error_is_retryable_and_sent_once(
    server: FakeOpenAIServer, provider: OpenAIProvider, status: int
) -> None:
    """5xx maps to a retryable server error; exactly one request reached the server."""
    server.script(Reply.error(status, "The server had an error"))

    error = call_error(provider)

    assert (error.kind, error.retryable, error.status) == ("server", True, status)
    assert "The server had an error" in str(error)
    assert len(server.completions) == 1


@pytest.mark.parametrize("status", [401, 403])
def test_auth_error_is_final_and_never_shows_the_key(
    server: FakeOpenAIServer, provider: OpenAIProvider, status: int
) -> None:
    """401/403 map to auth, not retryable; a key echoed by the server is scrubbed everywhere."""
    server.script(Reply.error(status, f"Incorrect API key provided: {API_KEY}."))

    error = call_error(provider)

    assert (error.kind, error.retryable, error.status) == ("auth", False, status)
    assert "Incorrect API key provided: <SECRET>." in str(error)
    assert API_KEY not in str(error)
    assert error.raw is not None
    assert API_KEY not in error.raw
    assert error.__cause__ is None  # the SDK's exception, which holds the body, is not chained
    assert error.__suppress_context__ is True


@pytest.mark.parametrize("status", [400, 404, 422])
def test_rejected_request_is_a_bad_request(
    server: FakeOpenAIServer, provider: OpenAIProvider, status: int
) -> None:
    """400/404/422 map to bad_request, not retryable, with the server's message."""
    server.script(Reply.error(status, "Invalid value for 'temperature'"))

    error = call_error(provider)

    assert (error.kind, error.retryable, error.status) == ("bad_request", False, status)
    assert "Invalid value for 'temperature'" in str(error)


def test_slow_server_times_out_without_blocking_shutdown(make_provider: MakeProvider) -> None:
    """A reply slower than timeout_s raises a retryable timeout promptly; the server still
    stops at once although its handler is parked in the delay."""
    with FakeOpenAIServer() as slow:
        slow.script(Reply.slow(2.0))
        provider = make_provider(base_url=slow.base_url, timeout_s=0.3)
        started = time.monotonic()

        error = call_error(provider)

        waited = time.monotonic() - started
        stopping = time.monotonic()
    stopped_in = time.monotonic() - stopping

    assert (error.kind, error.retryable) == ("timeout", True)
    assert "0.3s" in str(error)
    assert waited < 1.5
    assert stopped_in < 1.0
    assert len(slow.completions) == 1


def test_connection_refused_is_a_retryable_connection_error(make_provider: MakeProvider) -> None:
    """Nothing listening on the port maps to a retryable connection error naming the URL."""
    base_url = f"http://127.0.0.1:{closed_port()}/v1"

    error = call_error(make_provider(base_url=base_url))

    assert (error.kind, error.retryable) == ("connection", True)
    assert base_url in str(error)
    assert API_KEY not in str(error)


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        (Reply.raw(b'{"id": "chatcmpl-1", "choices": [{"ind'), "not valid JSON"),
        (Reply.raw(b'{"id": "chatcmpl-1", "object": "chat.completion"}'), "no choices"),
        (Reply.raw(b'{"id": "chatcmpl-1", "choices": []}'), "no choices"),
        (Reply.raw(b"<html>busy</html>", content_type="text/html"), "not a JSON object"),
        (
            Reply.raw(b'{"error": {"message": "upstream overloaded"}}'),
            "answered with an error: upstream overloaded",
        ),
    ],
    ids=["malformed-json", "missing-choices", "empty-choices", "html", "error-with-200"],
)
def test_unusable_reply_is_an_invalid_response(
    server: FakeOpenAIServer, provider: OpenAIProvider, reply: Reply, reason: str
) -> None:
    """A 200 whose body is not a chat completion maps to invalid_response with the body."""
    server.script(reply)

    error = call_error(provider)

    assert (error.kind, error.retryable) == ("invalid_response", False)
    assert reason in str(error)
    assert reply.body is not None
    assert error.raw == reply.body.decode()


# --- packaging -------------------------------------------------------------------------


def test_openai_is_imported_only_when_a_call_is_made(server: FakeOpenAIServer) -> None:
    """Importing the module and building a provider leave the SDK unimported; a call loads it."""
    code = f"""
import sys
from master_sdk.models.providers.openai import OpenAIProvider
from master_sdk.models.types import Message, ModelRequest
provider = OpenAIProvider(base_url={server.base_url!r}, api_key="k")
print("before", "openai" in sys.modules)
provider.complete(ModelRequest(model="m", messages=(Message("user", "hi"),)))
print("after", "openai" in sys.modules)
"""
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO_ROOT,
        env={"PYTHONPATH": str(REPO_ROOT), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["before", "False", "after", "True"]


def test_server_runs_as_a_module_and_prints_its_url() -> None:
    """`python -m tests.support.openai_server` serves on the printed base URL."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.support.openai_server", "--port", "0", "--model", "m-1"],
        cwd=REPO_ROOT,
        env={"PYTHONPATH": str(REPO_ROOT), "PATH": "/usr/bin:/bin"},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        base_url = proc.stdout.readline().strip()
        with urllib.request.urlopen(f"{base_url}/models", timeout=5) as reply:  # noqa: S310 - loopback URL printed by the server
            listing = json.load(reply)
    finally:
        proc.terminate()
        proc.wait(timeout=5)

    assert base_url.startswith("http://127.0.0.1:")
    assert base_url.endswith("/v1")
    assert [m["id"] for m in listing["data"]] == ["m-1"]
