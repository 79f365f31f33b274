"""The one exception hierarchy of master_sdk.

Every error a user can see derives from :class:`MasterError`. Load-time problems
(config files, products, flows) are :class:`ConfigError` / :class:`FlowError`;
problems while a run executes or is resumed are :class:`RunError`. Messages name
the file, flow, step and field involved and say what to do.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


class MasterError(Exception):
    """Base of every master_sdk error."""


class ConfigError(MasterError):
    """A settings, policy, model or secrets file (or variable) is invalid."""

    def __init__(self, message: str, *, file: str | None = None, key: str | None = None) -> None:
        self.file = file
        self.key = key
        where = ", ".join(p for p in (file, f"key '{key}'" if key else None) if p)
        super().__init__(f"{where}: {message}" if where else message)


class FlowError(MasterError):
    """A product, manifest or flow is invalid; raised when it is loaded, never mid-run."""

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        flow: str | None = None,
        step: str | None = None,
        field: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.file = file
        self.flow = flow
        self.step = step
        self.field = field
        self.hint = hint
        self.reason = message
        parts = [
            file,
            f"flow '{flow}'" if flow else None,
            f"step '{step}'" if step else None,
            f"field '{field}'" if field else None,
        ]
        where = ", ".join(p for p in parts if p)
        text = f"{where}: {message}" if where else message
        if hint:
            text = f"{text} ({hint})"
        super().__init__(text)


class NotFound(MasterError, LookupError):
    """A product, flow or run that does not exist was asked for."""


class RunError(MasterError):
    """A run could not do what was asked; the stored run is left as it was."""

    def __init__(self, message: str, *, run_id: str | None = None, step: str | None = None) -> None:
        self.run_id = run_id
        self.step = step
        super().__init__(message)


class NotWaiting(RunError):
    """approve/reject/submit/retry was called on a run that is not paused for it."""


class AlreadyResumed(NotWaiting):
    """Another process (or kernel) resumed this pause first; nothing was changed here."""


class FlowChanged(RunError):
    """The flow or product changed since the run started; resume needs allow_flow_change=True.

    ``changes`` says what changed in a few words; ``diff`` is a short unified diff of the
    flow file (``""`` when only the product's code, manifest or config changed).
    """

    def __init__(
        self,
        message: str,
        *,
        run_id: str | None = None,
        step: str | None = None,
        changes: str = "",
        diff: str = "",
    ) -> None:
        self.changes = changes
        self.diff = diff
        super().__init__(message, run_id=run_id, step=step)


@dataclass(frozen=True, slots=True)
class FieldError:
    """One failing field of a user input: a JSON path like ``address.city`` and why."""

    path: str
    message: str


class InputInvalid(RunError, ValueError):
    """Inputs or user input failed validation; ``errors`` lists every failing field."""

    def __init__(
        self,
        errors: list[FieldError],
        *,
        what: str = "input",
        run_id: str | None = None,
        step: str | None = None,
    ) -> None:
        self.errors = errors
        listed = "; ".join(f"{e.path or '(root)'}: {e.message}" for e in errors)
        super().__init__(f"invalid {what}: {listed}", run_id=run_id, step=step)


class PolicyViolation(RunError):
    """A governance rule stopped something before it happened."""

    def __init__(
        self,
        rule: str,
        *,
        limit: Any = None,
        value: Any = None,
        message: str | None = None,
        run_id: str | None = None,
        step: str | None = None,
    ) -> None:
        self.rule = rule
        self.limit = limit
        self.value = value
        text = message or f"policy '{rule}' refused value {value!r} (limit {limit!r})"
        if step:
            text = f"step '{step}': {text}"
        super().__init__(text, run_id=run_id, step=step)


class DecisionRefused(PolicyViolation):
    """A decision broke a team rule (``rule``: ``approvers``, ``four_eyes``,
    ``reservation`` or ``max_reservation_minutes``); nothing was decided. The message says
    who, which rule and what to do."""


class ModelCallError(MasterError):
    """A model provider call failed.

    ``kind`` is one of ``rate_limit``, ``server``, ``timeout``, ``connection``, ``auth``,
    ``bad_request``, ``invalid_response``, ``replay_miss``. ``retryable`` says whether a
    retry could help (policy decides whether one happens).
    """

    def __init__(
        self,
        message: str,
        *,
        kind: str,
        retryable: bool = False,
        retry_after_s: float | None = None,
        status: int | None = None,
        raw: str | None = None,
    ) -> None:
        self.kind = kind
        self.retryable = retryable
        self.retry_after_s = retry_after_s
        self.status = status
        self.raw = raw
        super().__init__(message)


class StoreError(MasterError):
    """The run store could not be opened or written."""


class StoreBusy(StoreError):
    """Another process held the store locked beyond the busy timeout; retrying is safe."""

    retryable = True


class CollectionError(MasterError):
    """A vector memory collection is unknown, or what was given to it does not fit its
    declaration (texts, metadata fields and types, ids, a ``where`` filter)."""
