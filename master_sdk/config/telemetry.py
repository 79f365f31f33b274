"""Typed telemetry settings: ``configs/telemetry.yaml`` (OpenTelemetry export, off by default).

Only :mod:`master_sdk.config.loader` reads the file, the ``MASTER_TELEMETRY__*`` variables
and the secrets that header values refer to; everything else receives these settings.

Example ``configs/telemetry.yaml``::

    telemetry:
      enabled: true
      endpoint: http://127.0.0.1:4318/v1/traces   # OTLP/HTTP (protobuf) traces endpoint
      headers_ref: {Authorization: otel.authorization}   # header -> dotted path in secrets.yaml
      service_name: master-sdk
      sample_ratio: 1.0
      capture_content: false
      semconv: latest
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

SemconvMode = Literal["latest", "legacy", "both"]


class TelemetrySettings(BaseModel):
    """OpenTelemetry export of runs, steps, tool calls and model calls (``tracing/otel``)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(
        default=False,
        description="Export spans over OTLP/HTTP. Needs `pip install 'master-sdk[otel]'`.",
    )
    endpoint: str = Field(
        default="http://127.0.0.1:4318/v1/traces",
        description="The collector's OTLP/HTTP traces URL (protobuf), signal path included.",
    )
    headers: dict[str, str] = Field(
        default_factory=dict, description="Plain request headers (no secrets here)."
    )
    headers_ref: dict[str, str] = Field(
        default_factory=dict,
        description="Secret headers: header name -> dotted path into secrets/secrets.yaml "
        "(or MASTER_SECRET__A__B), e.g. {Authorization: otel.authorization}.",
    )
    service_name: str = Field(default="master-sdk", min_length=1)
    sample_ratio: float = Field(
        default=1.0,
        ge=0.0,
        le=1.0,
        description="Share of runs exported, decided from the trace id (so every process "
        "agrees on a run: all of its spans or none).",
    )
    capture_content: bool = Field(
        default=False,
        description="Add run inputs and outputs and step outputs to spans, redacted. Off: "
        "ids, names, models, tokens, cost, timings, statuses and (redacted) error messages.",
    )
    semconv: SemconvMode = Field(
        default="latest",
        description="GenAI attribute set: latest (gen_ai.provider.name, ...), legacy "
        "(gen_ai.system, gen_ai.usage.prompt_tokens, ...) or both.",
    )
    timeout_s: float = Field(
        default=2.0, gt=0, le=60, description="Budget for one export request, retries included."
    )
    max_queue: int = Field(
        default=4096,
        ge=1,
        description="Spans held while the collector is slow or down; beyond it spans are "
        "dropped and counted (wb.telemetry_status()).",
    )
    batch_size: int = Field(
        default=2048,
        ge=1,
        description="Most spans per export request (about 1 MB; each request costs the process "
        "~0.6 ms of CPU whatever its size, so fewer, larger ones).",
    )
    flush_interval_s: float = Field(
        default=0.5, gt=0, description="Longest a finished span waits before it is sent."
    )
    # filled in by the loader from headers_ref, never read from files
    secret_headers: dict[str, SecretStr] = Field(default_factory=dict, exclude=True)

    def all_headers(self) -> dict[str, str]:
        """Plain and secret headers together, as sent."""
        merged = dict(self.headers)
        merged.update({k: v.get_secret_value() for k, v in self.secret_headers.items()})
        return merged
