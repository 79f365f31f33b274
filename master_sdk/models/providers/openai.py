"""The ``openai`` provider: Chat Completions through the official ``openai`` SDK.

This is the only module of master_sdk that imports ``openai``, and it does so lazily, the
first time a call is made: importing the SDK costs about a second, which a notebook that
only uses the fake provider should never pay.

Choices worth knowing:

- **One attempt per call.** The SDK client is built with ``max_retries=0``; the router
  above retries as policy allows and traces every attempt, so nothing is retried silently.
- **Configuration wins over the environment.** The SDK falls back to ``OPENAI_API_KEY``,
  ``OPENAI_BASE_URL``, ``OPENAI_ORG_ID``, ``OPENAI_PROJECT_ID``, ``OPENAI_ADMIN_KEY`` and
  ``OPENAI_CUSTOM_HEADERS`` when an argument is missing. Every value is passed explicitly
  and the environment-derived ones are reset after construction, so only what the config
  loader resolved reaches the wire (law 1: only ``config/loader.py`` reads the environment).
- **Keyless local servers.** Ollama, vLLM or llama.cpp need no key, but the SDK refuses to
  start without one, so ``api_key=None`` sends the placeholder :data:`PLACEHOLDER_API_KEY`.
- **``max_tokens`` on the wire.** ``request.max_tokens`` is sent as ``max_tokens``, which
  every OpenAI-compatible server understands. OpenAI's reasoning models accept only
  ``max_completion_tokens``: choose it with ``max_tokens_field="max_completion_tokens"``.
- **Parameters.** ``default_params`` then ``request.params`` (the latter wins) are sent
  with the call; names the SDK does not know (``top_k`` for a local server) travel in the
  JSON body unchanged.
"""

from __future__ import annotations

import email.utils
import inspect
import json
import math
import re
import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, TypeVar
from urllib.parse import urlsplit, urlunsplit

from master_sdk.errors import ConfigError, ModelCallError
from master_sdk.models.network import check_network
from master_sdk.models.schemas import strict_json_schema
from master_sdk.models.tokens import estimate_prompt_tokens, estimate_tokens
from master_sdk.models.types import (
    EmbedRequest,
    EmbedResponse,
    ModelRequest,
    ModelResponse,
    Usage,
)

if TYPE_CHECKING:
    import openai

__all__ = [
    "DEFAULT_BASE_URL",
    "PLACEHOLDER_API_KEY",
    "OpenAIProvider",
    "retry_after_seconds",
    "strict_json_schema",
]

DEFAULT_BASE_URL = "https://api.openai.com/v1"
PLACEHOLDER_API_KEY = "not-needed"

# Keys a params mapping may not set: they are the request itself, or they would change
# transport behaviour that config owns (timeout) or the reply shape (stream).
_RESERVED_PARAMS = frozenset(
    {"model", "messages", "stream", "timeout", "extra_headers", "extra_query", "extra_body"}
)
T = TypeVar("T")
_MAX_RAW_CHARS = 4000
_MIN_SCRUB_LEN = 8
# The API accepts json_schema names of at most 64 of these characters.
_SCHEMA_NAME_CHARS = re.compile(r"[^A-Za-z0-9_-]")


def retry_after_seconds(headers: Mapping[str, str], *, now: datetime | None = None) -> float | None:
    """Seconds to wait according to ``retry-after-ms`` or ``Retry-After`` (seconds or an
    HTTP date), or None when neither is present and valid. Never negative."""
    lowered = {k.lower(): v for k, v in headers.items()}
    millis = lowered.get("retry-after-ms")
    if millis is not None:
        try:
            value = float(millis) / 1000
        except ValueError:
            value = math.nan
        if math.isfinite(value):
            return max(0.0, value)
    header = lowered.get("retry-after")
    if header is None:
        return None
    try:
        value = float(header)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(header)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:  # an HTTP date is GMT by definition
            when = when.replace(tzinfo=UTC)
        value = (when - (now or datetime.now(UTC))).total_seconds()
    return max(0.0, value) if math.isfinite(value) else None


def _display_url(url: str) -> str:
    # A base_url may carry user:password@; messages show the host only.
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


class OpenAIProvider:
    """A :class:`~master_sdk.models.types.Provider` for OpenAI and OpenAI-compatible servers.

    Args:
        model: model name used when a request carries none (``request.model`` wins).
        base_url: the server, e.g. ``http://127.0.0.1:11434/v1`` for Ollama; default
            :data:`DEFAULT_BASE_URL`.
        api_key: the resolved key (the config loader reads it from the secrets file);
            None for keyless local servers, which then receive :data:`PLACEHOLDER_API_KEY`.
        organization: sent as the ``OpenAI-Organization`` header when given.
        timeout_s: seconds allowed for connecting and for each read or write.
        default_params: extra Chat Completions parameters sent with every call
            (``seed``, ``top_p``, server-specific ones such as ``top_k``).
        default_headers: extra HTTP headers sent with every call.
        max_tokens_field: the body field carrying ``request.max_tokens``.

    Raises:
        ConfigError: ``default_params`` sets a reserved key or ``timeout_s`` is not positive.

    Example:
        >>> provider = OpenAIProvider(base_url="http://127.0.0.1:11434/v1", model="llama3.2")
        >>> provider.name
        'openai'
    """

    name = "openai"

    def __init__(
        self,
        *,
        model: str | None = None,
        base_url: str | None = None,
        api_key: str | None = None,
        organization: str | None = None,
        timeout_s: float = 60.0,
        default_params: Mapping[str, Any] | None = None,
        default_headers: Mapping[str, str] | None = None,
        max_tokens_field: Literal["max_tokens", "max_completion_tokens"] = "max_tokens",
    ) -> None:
        if not timeout_s > 0:
            raise ConfigError(f"timeout_s must be a positive number, got {timeout_s!r}")
        reserved = _RESERVED_PARAMS & set(default_params or {})
        if reserved:
            raise ConfigError(
                f"default_params may not set {sorted(reserved)}: the provider sends them itself",
                key="default_params",
            )
        self.model = model
        self.base_url = (base_url or DEFAULT_BASE_URL).rstrip("/")
        self.organization = organization
        self.timeout_s = float(timeout_s)
        self.default_params: dict[str, Any] = dict(default_params or {})
        self.default_headers: dict[str, str] = dict(default_headers or {})
        self.max_tokens_field = max_tokens_field
        self._api_key = api_key
        self._lock = threading.Lock()
        self._client: openai.OpenAI | None = None
        self._known_params: frozenset[str] = frozenset()

    def __repr__(self) -> str:
        return f"OpenAIProvider(model={self.model!r}, base_url={_display_url(self.base_url)!r})"

    # client ---------------------------------------------------------------------------

    def _get_client(self) -> openai.OpenAI:
        with self._lock:
            if self._client is None:
                self._client = self._build_client()
            return self._client

    def _build_client(self) -> openai.OpenAI:
        import openai  # deferred: costs about a second; paid only when a call is made

        client = openai.OpenAI(
            api_key=self._api_key or PLACEHOLDER_API_KEY,
            organization=self.organization,
            base_url=self.base_url,
            timeout=self.timeout_s,
            max_retries=0,
            default_headers=self.default_headers,
        )
        # The constructor filled what we left None from OPENAI_* variables: undo that.
        client.organization = self.organization
        client.project = None
        client.admin_api_key = None
        client.webhook_secret = None
        # OPENAI_CUSTOM_HEADERS lands in this private mapping and has no public switch;
        # tests/integration/test_openai_provider.py proves it stays empty of them.
        client._custom_headers = dict(self.default_headers)
        self._known_params = frozenset(inspect.signature(client.chat.completions.create).parameters)
        return client

    def close(self) -> None:
        """Close the HTTP connection pool. The provider reconnects if used again."""
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    # calls ----------------------------------------------------------------------------

    def complete(self, request: ModelRequest) -> ModelResponse:
        """Make exactly one Chat Completions call.

        Returns:
            The reply text (JSON text when ``request.output_schema`` is set; the caller
            parses and validates it), usage and the response as a JSON-able dict.

        Raises:
            ModelCallError: with ``kind`` ``rate_limit``, ``server``, ``timeout``,
                ``connection`` (retryable) or ``auth``, ``bad_request``,
                ``invalid_response`` (not retryable).
            NetworkModelCallBlocked: network model calls are blocked (in a test) and
                ``base_url`` is not a loopback address; nothing was sent.
        """
        check_network(_display_url(self.base_url), provider=self.name)
        model = request.model or self.model
        if not model:
            raise ModelCallError(
                f"openai provider at {_display_url(self.base_url)}: no model name "
                "(set 'model' for this entry in configs/models.yaml)",
                kind="bad_request",
            )
        client = self._get_client()
        kwargs = self._call_kwargs(request, model)
        raw = self._send(lambda: client.chat.completions.with_raw_response.create(**kwargs), model)
        body = raw.http_response.text
        try:
            parsed = raw.parse()
        except ValueError:
            raise self._invalid(model, "the reply is not valid JSON", body) from None
        return self._response(request, model, parsed, body)

    def embed(self, request: EmbedRequest) -> EmbedResponse:
        """Make exactly one embeddings call for a batch of texts.

        Vectors come back as floats (``encoding_format="float"``, which every
        OpenAI-compatible server understands) and are put in request order by their
        ``index``. Raises :class:`ModelCallError` like :meth:`complete`, and with kind
        ``invalid_response`` when the reply's vectors do not match the texts sent.
        """
        check_network(_display_url(self.base_url), provider=self.name)
        import numpy as np

        model = request.model or self.model
        if not model:
            raise ModelCallError(
                f"openai provider at {_display_url(self.base_url)}: no model name "
                "(set 'model' for this entry in configs/models.yaml)",
                kind="bad_request",
            )
        client = self._get_client()
        kwargs: dict[str, Any] = {
            "model": model,
            "input": list(request.texts),
            "encoding_format": "float",
        }
        if request.dimensions is not None:
            kwargs["dimensions"] = request.dimensions
        extra = {**self.default_params, **request.params}
        if extra:
            kwargs["extra_body"] = extra
        raw = self._send(lambda: client.embeddings.with_raw_response.create(**kwargs), model)
        body = raw.http_response.text
        try:
            data = json.loads(body)
        except ValueError:
            raise self._invalid(model, "the reply is not valid JSON", body) from None
        items = data.get("data") if isinstance(data, dict) else None
        if not isinstance(items, list) or len(items) != len(request.texts):
            got = len(items) if isinstance(items, list) else "no"
            raise self._invalid(
                model, f"the reply has {got} embeddings for {len(request.texts)} texts", body
            )
        try:
            ordered = sorted(items, key=lambda item: int(item["index"]))
            vectors = np.asarray([item["embedding"] for item in ordered], dtype=np.float32)
        except (KeyError, TypeError, ValueError):
            raise self._invalid(
                model, "the reply's embeddings are not lists of numbers", body
            ) from None
        if vectors.ndim != 2:
            raise self._invalid(model, "the reply's embeddings differ in length", body)
        usage = data.get("usage")
        tokens = usage.get("prompt_tokens") if isinstance(usage, dict) else None
        if isinstance(tokens, int) and not isinstance(tokens, bool):
            used = Usage(tokens_in=tokens, tokens_out=0)
        else:
            used = Usage(
                tokens_in=sum(estimate_tokens(text) for text in request.texts),
                tokens_out=0,
                reported=False,
            )
        reported_model = data.get("model")
        return EmbedResponse(
            vectors=vectors,
            usage=used,
            model=reported_model if isinstance(reported_model, str) else model,
        )

    def _send(self, call: Callable[[], T], model: str) -> T:
        """Make one SDK call, turning the SDK's exceptions into :class:`ModelCallError`."""
        import openai  # deferred, see _build_client

        try:
            return call()
        except openai.APIStatusError as exc:
            raise self._status_error(exc, model) from None
        except openai.APITimeoutError:
            raise ModelCallError(
                f"{self._where(model)}: no reply within {self.timeout_s:g}s "
                "(raise timeout_s for this model if it is slow)",
                kind="timeout",
                retryable=True,
            ) from None
        except openai.APIConnectionError as exc:
            cause = exc.__cause__ or exc
            raise ModelCallError(
                f"{self._where(model)}: cannot connect ({self._scrub(str(cause))}); "
                "check that the server is running and base_url is right",
                kind="connection",
                retryable=True,
            ) from None
        except openai.OpenAIError as exc:
            raise ModelCallError(
                f"{self._where(model)}: the request failed ({type(exc).__name__}: "
                f"{self._scrub(str(exc))})",
                kind="bad_request",
            ) from None

    def _call_kwargs(self, request: ModelRequest, model: str) -> dict[str, Any]:
        params = {**self.default_params, **request.params}
        reserved = set(_RESERVED_PARAMS & set(request.params))
        if request.output_schema is not None and "response_format" in params:
            reserved.add("response_format")
        if reserved:
            raise ModelCallError(
                f"{self._where(model)}: request params may not set {sorted(reserved)}",
                kind="bad_request",
            )
        kwargs: dict[str, Any] = {
            "model": model,
            "messages": [{"role": m.role, "content": m.content} for m in request.messages],
        }
        if request.max_tokens is not None:
            kwargs[self.max_tokens_field] = request.max_tokens
        if request.temperature is not None:
            kwargs["temperature"] = request.temperature
        if request.output_schema is not None:
            name = _SCHEMA_NAME_CHARS.sub("_", request.output_name or "")[:64] or "output"
            kwargs["response_format"] = {
                "type": "json_schema",
                "json_schema": {
                    "name": name,
                    "schema": dict(request.output_schema),
                    "strict": True,
                },
            }
        extra_body: dict[str, Any] = {}
        for key, value in params.items():
            if key in self._known_params:
                kwargs[key] = value
            else:
                extra_body[key] = value
        if extra_body:
            kwargs["extra_body"] = extra_body
        return kwargs

    def _response(self, request: ModelRequest, model: str, parsed: Any, body: str) -> ModelResponse:
        dump = getattr(parsed, "model_dump", None)
        if not callable(dump):
            raise self._invalid(model, "the reply is not a JSON object", body)
        data: dict[str, Any] = dump(mode="json", exclude_unset=True, warnings=False)
        choices = data.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            error = data.get("error")
            if isinstance(error, dict) and isinstance(error.get("message"), str):
                # some proxies answer 200 with an OpenAI-style error body
                what = f"the server answered with an error: {error['message']}"
                raise self._invalid(model, what, body)
            raise self._invalid(model, "the reply has no choices", body)
        choice = choices[0]
        message = choice.get("message")
        if not isinstance(message, dict):
            raise self._invalid(model, "the reply's first choice has no message", body)
        refusal = message.get("refusal")
        if isinstance(refusal, str) and refusal:
            raise self._invalid(model, f"the model refused: {refusal}", body)
        content = message.get("content")
        if not isinstance(content, str):
            raise self._invalid(model, "the reply's message has no text content", body)
        finish = choice.get("finish_reason")
        return ModelResponse(
            text=content,
            usage=self._usage(request, data.get("usage"), content),
            model=data["model"] if isinstance(data.get("model"), str) else model,
            finish_reason=finish if isinstance(finish, str) else None,
            raw=data,
        )

    @staticmethod
    def _usage(request: ModelRequest, usage: Any, text: str) -> Usage:
        if isinstance(usage, dict):
            tokens_in = usage.get("prompt_tokens")
            tokens_out = usage.get("completion_tokens")
            if isinstance(tokens_in, int) and isinstance(tokens_out, int):
                details = usage.get("prompt_tokens_details")
                cached = details.get("cached_tokens") if isinstance(details, dict) else None
                return Usage(
                    tokens_in=tokens_in,
                    tokens_out=tokens_out,
                    cached_tokens=cached if isinstance(cached, int) else 0,
                    reported=True,
                )
        return Usage(
            tokens_in=estimate_prompt_tokens(request.messages, request.output_schema),
            tokens_out=estimate_tokens(text),
            reported=False,
        )

    # errors ---------------------------------------------------------------------------

    def _where(self, model: str) -> str:
        return f"openai model '{model}' at {_display_url(self.base_url)}"

    def _scrub(self, text: str) -> str:
        # Servers echo keys in 401 bodies. A key too short to be a real secret (a local
        # server's "x") is left alone: replacing it would garble every message.
        key = self._api_key
        return text.replace(key, "<SECRET>") if key and len(key) >= _MIN_SCRUB_LEN else text

    def _invalid(self, model: str, what: str, body: str) -> ModelCallError:
        return ModelCallError(
            f"{self._where(model)}: {self._scrub(what)}",
            kind="invalid_response",
            raw=self._scrub(body[:_MAX_RAW_CHARS]),
        )

    def _status_error(self, exc: openai.APIStatusError, model: str) -> ModelCallError:
        status = exc.status_code
        try:
            body = exc.response.text
        except Exception:  # a body that cannot be read is simply not shown
            body = ""
        detail = exc.body.get("message") if isinstance(exc.body, dict) else None
        if not isinstance(detail, str) or not detail:
            detail = body[:300] or "no details"
        retry_after = retry_after_seconds(exc.response.headers)
        hint = None
        if status == 429:
            # insufficient_quota also comes as 429, but waiting does not refill a quota.
            quota = exc.code == "insufficient_quota"
            kind, retryable = "rate_limit", not quota
            what = "out of quota" if quota else "rate limited"
            if quota:
                hint = "check the plan and billing of this API key"
        elif status >= 500:
            kind, retryable, what = "server", True, "server error"
        elif status == 408:
            kind, retryable, what = "timeout", True, "the server timed out"
        elif status in (401, 403):
            kind, retryable, what = "auth", False, "not authorised"
            hint = "check the API key (api_key_ref) and organization for this model"
        else:
            kind, retryable, what = "bad_request", False, "request rejected"
            if status == 404:
                what, hint = "not found", "check the model name and base_url"
        message = f"{self._where(model)}: {what} (HTTP {status}): {detail}"
        if retry_after is not None:
            message += f"; retry after {retry_after:g}s"
        if hint:
            message += f" ({hint})"
        return ModelCallError(
            self._scrub(message),
            kind=kind,
            retryable=retryable,
            retry_after_s=retry_after,
            status=status,
            raw=self._scrub(body[:_MAX_RAW_CHARS]),
        )
