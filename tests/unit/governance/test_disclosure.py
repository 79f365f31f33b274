"""Exceptions leaving the API are redacted in place, chain included; identities are checked."""

from __future__ import annotations

import pytest

from master_sdk.errors import FieldError, FlowError, InputInvalid, ModelCallError
from master_sdk.governance.disclosure import redact_exception, redacting_errors
from master_sdk.governance.identities import MAX_IDENTITY_LENGTH, check_identity
from master_sdk.governance.redaction import Redactor

SECRET = "Zebra-Canary-Secret-9137"
REDACT = Redactor([SECRET]).value


def test_args_fields_and_chain_are_redacted_in_place() -> None:
    """The exception keeps its type and traceback; its text, its fields and the exceptions
    chained to it (cause and context) lose every secret."""
    try:
        try:
            raise ValueError(f"inner {SECRET}")
        except ValueError as inner:
            raise FlowError(
                f"bad {SECRET.lower()}", file="f.yaml", step=SECRET, hint="mail a@b.io"
            ) from inner
    except FlowError as exc:
        same = redact_exception(exc, REDACT)
        assert same is exc and exc.__traceback__ is not None
        assert SECRET.lower() not in str(exc).lower() and exc.step == "<SECRET>"
        assert exc.hint == "mail <EMAIL>" and exc.reason == "bad <SECRET>"
        assert str(exc.__cause__) == "inner <SECRET>"


def test_field_errors_and_raw_replies_are_redacted() -> None:
    """InputInvalid's field paths and messages, and a model error's raw reply."""
    exc = InputInvalid([FieldError(SECRET, f"is {SECRET}")])
    redact_exception(exc, REDACT)
    assert exc.errors == [FieldError("<SECRET>", "is <SECRET>")]
    model = ModelCallError("failed", kind="server", raw=f"echo {SECRET}")
    redact_exception(model, REDACT)
    assert model.raw == "echo <SECRET>"


def test_a_cyclic_chain_ends() -> None:
    """Exceptions that are each other's context do not loop."""
    a, b = ValueError(SECRET), ValueError(SECRET)
    a.__context__, b.__context__ = b, a
    redact_exception(a, REDACT)
    assert str(a) == str(b) == "<SECRET>"


def test_the_decorator_covers_methods_and_properties() -> None:
    """Every public method and property of a decorated class raises redacted errors;
    private ones are left alone."""

    @redacting_errors(lambda self: REDACT)
    class Api:
        def fail(self) -> None:
            raise RuntimeError(f"method {SECRET}")

        @property
        def value(self) -> str:
            raise KeyError(f"property {SECRET}")

        def _private(self) -> None:
            raise RuntimeError(SECRET)

    api = Api()
    with pytest.raises(RuntimeError, match="method <SECRET>"):
        api.fail()
    with pytest.raises(KeyError, match="property <SECRET>"):
        _ = api.value
    with pytest.raises(RuntimeError, match=SECRET):
        api._private()


@pytest.mark.parametrize("by", ["ana", "Ana López", "ops+bot", "a.b_c-d@corp", "x" * 128])
def test_identities_that_are_names_pass(by: str) -> None:
    """Letters of any script, digits, `._@+-` and single spaces, up to 128 characters."""
    assert check_identity(by, redact=REDACT) == by


@pytest.mark.parametrize(
    "by",
    [None, 3, "", " a", "a ", "a  b", "x" * (MAX_IDENTITY_LENGTH + 1), "a\tb", "a\u200bb",
     "\uff41", "<EMAIL>", "a;b", SECRET, SECRET.upper(), "bob@example.com", "-ana"],
)  # fmt: skip
def test_identities_that_are_not_names_are_refused(by: object) -> None:
    """Wrong type, empty, stray spaces, too long, control, invisible or full-width
    characters, punctuation, placeholders, secrets and personal data: InputInvalid on `by`,
    never repeating the value."""
    with pytest.raises(InputInvalid) as info:
        check_identity(by, redact=REDACT)
    assert info.value.errors[0].path == "by"
    assert SECRET.lower() not in str(info.value).lower()
