"""Notebook forms for paused runs: a user-input form built from JSON Schema, and an approval form.

Both are thin views. They collect what the user entered and hand it to a callback supplied by
the caller (``run.submit`` / ``run.approve`` / ``run.reject``); validation belongs to that
callback, which raises :class:`~master_sdk.errors.InputInvalid` and the form shows each
message next to its field. Nothing is printed: every outcome is rendered in the form itself,
so forms behave the same in JupyterLab, under nbval and when a test clicks their buttons.

Which widget a property gets:

========================================  ==================================================
schema                                    widget
========================================  ==================================================
``enum`` / ``const`` (any type)           ``Dropdown``, with an empty choice unless required
                                          with a default
``string``                                ``Text``; ``Textarea`` if ``maxLength > 200`` or
                                          ``format: textarea``
``string`` + ``format: date``             ``DatePicker`` (values are ``"YYYY-MM-DD"``)
``boolean``                               ``Checkbox``
``integer`` / ``number``                  ``Text`` parsed to int / float, so it can be empty;
                                          ``IntText`` / ``FloatText`` (``Bounded*`` with
                                          ``minimum``/``maximum``) when required with a default
``array`` of ``enum`` items               ``SelectMultiple``
``array`` of strings / numbers            ``Textarea``, one item per line
``object`` with ``properties``            a titled group holding its own fields
anything else (``oneOf``, ``$ref``, ...)  ``Textarea`` holding JSON
========================================  ==================================================

``{"type": ["string", "null"]}``, ``anyOf: [X, {"type": "null"}]`` (pydantic's ``Optional``)
and local ``$ref`` to ``#/$defs/...`` are understood.

Example:
    >>> form = SchemaForm(step_schema, on_submit=run.submit, prompt="Who is the summary for?")
    >>> form                                  # displays itself in a notebook
    >>> form.fields["audience"].value = "the board"
    >>> form.submit_button.click()
    >>> form.status
    'submitted'
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Callable, Mapping
from html import escape
from typing import Any

import ipywidgets as widgets

from master_sdk.errors import FieldError, InputInvalid, MasterError
from master_sdk.notebook.fields import (
    MISSING,
    BooleanField,
    ChoiceField,
    DateField,
    Field,
    JsonField,
    ListField,
    MultiChoiceField,
    NumberField,
    ObjectField,
    SpinnerField,
    TextField,
)

__all__ = ["ApprovalForm", "Field", "HandledElsewhere", "SchemaForm", "build_field"]


class HandledElsewhere(Exception):
    """Raised by a form's callback when its caller has shown the outcome itself (e.g. the
    run view offering to continue on a changed flow): the form shows nothing and stays
    usable."""


# jsonschema reports a missing property on the object that lacks it, with this message.
_REQUIRED_MESSAGE = re.compile(r"'(?P<name>[^']*)' is a required property")
_STATUS_STYLE = {"ok": "color:#1b5e20", "bad": "color:#b00020"}
_TEXTAREA_MIN_LENGTH = 200


def _resolve(
    schema: Any, root: Mapping[str, Any], seen: frozenset[str]
) -> tuple[Any, bool, frozenset[str]]:
    """Unwrap local ``$ref``, single-branch ``allOf`` and nullable forms.

    Returns the schema to map, whether it allows null, and ``seen`` plus the ``$ref``
    pointers expanded on the way (so a recursive schema stops at a JSON field). Anything
    not understood is returned as is, to become a JSON field.
    """
    if not isinstance(schema, Mapping):
        return {}, False, seen
    ref = schema.get("$ref")
    if isinstance(ref, str):
        target = _pointer(root, ref) if ref not in seen else None
        if target is None:
            return schema, False, seen
        notes = {k: schema[k] for k in ("title", "description", "default") if k in schema}
        inner, nullable, seen = _resolve(target, root, seen | {ref})
        return {**inner, **notes}, nullable, seen
    all_of = schema.get("allOf")
    if isinstance(all_of, list) and len(all_of) == 1:
        rest = {k: v for k, v in schema.items() if k != "allOf"}
        inner, nullable, seen = _resolve(all_of[0], root, seen)
        return {**inner, **rest}, nullable, seen
    for key in ("anyOf", "oneOf"):
        branches = schema.get(key)
        if not isinstance(branches, list):
            continue
        real = [b for b in branches if not (isinstance(b, Mapping) and b.get("type") == "null")]
        if len(real) == 1 and len(real) < len(branches):
            rest = {k: v for k, v in schema.items() if k != key}
            inner, _, seen = _resolve(real[0], root, seen)
            return {**inner, **rest}, True, seen
        return schema, False, seen
    kind = schema.get("type")
    if isinstance(kind, list):
        real_types = [t for t in kind if t != "null"]
        nullable = len(real_types) < len(kind)
        if len(real_types) == 1:
            return {**schema, "type": real_types[0]}, nullable, seen
        return schema, nullable, seen
    choices = schema.get("enum")
    return schema, isinstance(choices, list) and None in choices, seen


def _pointer(root: Mapping[str, Any], ref: str) -> Any:
    """The subschema a local JSON pointer (``#/$defs/Name``) names, or None."""
    if not ref.startswith("#"):
        return None
    node: Any = root
    for raw in ref[1:].split("/")[1:] if ref != "#" else []:
        key = raw.replace("~1", "/").replace("~0", "~")
        if not isinstance(node, Mapping) or key not in node:
            return None
        node = node[key]
    return node if isinstance(node, Mapping) else None


def build_field(
    schema: Any,
    *,
    name: str = "",
    path: str = "",
    required: bool = True,
    root: Mapping[str, Any] | None = None,
    seen: frozenset[str] = frozenset(),
) -> Field:
    """Map a JSON Schema to a :class:`Field` (objects recursively), applying defaults.

    Never fails on a schema: a construct with no widget becomes a :class:`JsonField`, and a
    ``default`` the widget cannot hold is ignored.

    Args:
        schema: the property's schema.
        name: the property name; ``""`` for the root.
        path: dotted path of the property from the root.
        required: whether the parent lists the property as required.
        root: the whole schema, against which ``$ref`` pointers are resolved.
        seen: ``$ref`` pointers already being expanded (stops recursive schemas).
    """
    top = root if root is not None else (schema if isinstance(schema, Mapping) else {})
    resolved, nullable, seen = _resolve(schema, top, seen)
    kw: dict[str, Any] = {
        "name": name,
        "path": path,
        "schema": resolved,
        "required": required,
        "nullable": nullable,
    }
    field = _make(resolved, kw, top, seen)
    if "default" in resolved:
        # A schema's own default that the widget cannot hold is not worth failing the form on.
        with contextlib.suppress(ValueError):
            field.value = resolved["default"]
    return field


def _make(
    schema: Mapping[str, Any], kw: dict[str, Any], root: Mapping[str, Any], seen: frozenset[str]
) -> Field:
    if "$ref" in schema:
        return JsonField(**kw)
    choices = schema.get("enum")
    if "const" in schema:
        choices = [schema["const"]]
    if isinstance(choices, list) and choices:
        return ChoiceField(choices=choices, **kw)
    kind = schema.get("type")
    if kind is None and isinstance(schema.get("properties"), Mapping):
        kind = "object"
    if kind == "string":
        if schema.get("format") == "date":
            return DateField(**kw)
        max_length = schema.get("maxLength")
        long_text = isinstance(max_length, int) and max_length > _TEXTAREA_MIN_LENGTH
        return TextField(multiline=long_text or schema.get("format") == "textarea", **kw)
    if kind == "boolean":
        return BooleanField(**kw)
    if kind in ("integer", "number"):
        integer = kind == "integer"
        default = schema.get("default")
        if kw["required"] and SpinnerField.fits(schema, integer, default):
            return SpinnerField(integer=integer, **kw)
        return NumberField(integer=integer, **kw)
    if kind == "array":
        return _make_array(schema, kw, root, seen)
    properties = schema.get("properties")
    if kind == "object" and isinstance(properties, Mapping) and properties:
        required = schema.get("required")
        needed = set(required) if isinstance(required, list) else set()
        children = {
            str(key): build_field(
                sub,
                name=str(key),
                path=f"{kw['path']}.{key}" if kw["path"] else str(key),
                required=key in needed,
                root=root,
                seen=seen,
            )
            for key, sub in properties.items()
        }
        return ObjectField(children=children, **kw)
    return JsonField(**kw)


def _make_array(
    schema: Mapping[str, Any], kw: dict[str, Any], root: Mapping[str, Any], seen: frozenset[str]
) -> Field:
    items, _, _ = _resolve(schema.get("items"), root, seen)
    if not isinstance(items, Mapping) or "$ref" in items:
        return JsonField(**kw)
    choices = items.get("enum")
    if isinstance(choices, list) and choices:
        return MultiChoiceField(choices=choices, **kw)
    item_type = items.get("type")
    if item_type in ("string", "integer", "number") and "format" not in items:
        return ListField(item_type=item_type, **kw)
    return JsonField(**kw)


class _StatusLine:
    """The one-line outcome under a form's buttons, hidden while there is nothing to say."""

    def __init__(self) -> None:
        self.widget = widgets.HTML(layout=widgets.Layout(display="none"))

    def show(self, text: str, *, ok: bool, details: list[str] | None = None) -> None:
        if not text:
            self.widget.value = ""
            self.widget.layout.display = "none"
            return
        body = escape(text)
        if details:
            body += "<ul>" + "".join(f"<li>{escape(d)}</li>" for d in details) + "</ul>"
        style = _STATUS_STYLE["ok" if ok else "bad"]
        self.widget.value = f'<div style="{style}">{body}</div>'
        self.widget.layout.display = None


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _heading(title: str | None, prompt: str | None) -> list[Any]:
    parts: list[Any] = []
    if title:
        parts.append(widgets.HTML(f"<h4 style='margin:4px 0'>{escape(title)}</h4>"))
    if prompt:
        parts.append(widgets.HTML(f"<p style='margin:4px 0'>{escape(prompt)}</p>"))
    return parts


class SchemaForm:
    """A user-input form built from a JSON Schema (type ``object`` with ``properties``).

    Clicking Submit collects :meth:`data` and calls ``on_submit(data)``. Values that cannot
    be converted (``"abc"`` in an integer field, broken JSON) are shown under their fields
    and ``on_submit`` is not called. If ``on_submit`` raises
    :class:`~master_sdk.errors.InputInvalid`, each ``FieldError`` is shown under the field
    its dotted path names (``"address.city"``; ``"tags.1"`` goes to ``tags``; errors about
    the whole input go to the status line). On success the errors are cleared, ``status``
    becomes ``"submitted"`` and the form is disabled; any other exception is shown in the
    status line and the form stays usable.

    Attributes:
        fields: top-level property name -> :class:`Field`; an object field has its own
            ``fields`` (``form.fields["address"].fields["city"].value = "Oslo"``).
        root: the field for the whole schema (an object field unless the schema has no
            ``properties``, in which case it is a JSON field and ``fields`` is empty).
        submit_button: the Submit button; ``submit_button.click()`` submits from code.
        widget: the container to display.
        errors: path -> message for every error currently shown (``""``: the status line).
        status: ``""``, ``"submitted"``, ``"invalid"`` or ``"error: <type>: <message>"``.

    Example:
        >>> schema = {"type": "object", "properties": {"audience": {"type": "string"}},
        ...           "required": ["audience"]}
        >>> form = SchemaForm(schema, on_submit=run.submit, prompt="Who is it for?")
        >>> form.fields["audience"].value = "the board"
        >>> form.submit_button.click()
    """

    def __init__(
        self,
        schema: Mapping[str, Any],
        *,
        on_submit: Callable[[dict[str, Any]], object],
        title: str | None = None,
        prompt: str | None = None,
        initial: Mapping[str, Any] | None = None,
    ) -> None:
        self._on_submit = on_submit
        self.root: Field = build_field(schema, root=schema if isinstance(schema, Mapping) else {})
        self.fields: dict[str, Field] = self.root.fields
        if initial:
            self.root.value = dict(initial)
        self.errors: dict[str, str] = {}
        self.status = ""
        self._done = False
        self._busy = False
        self._status_line = _StatusLine()
        self.submit_button = widgets.Button(
            description="Submit", button_style="primary", icon="check"
        )
        self.submit_button.on_click(self._clicked)
        schema_title = schema.get("title") if isinstance(schema, Mapping) else None
        notes = schema.get("description") if isinstance(schema, Mapping) else None
        parts = _heading(title or (schema_title if isinstance(schema_title, str) else None), prompt)
        if isinstance(notes, str) and notes and notes != prompt:
            parts.append(widgets.HTML(f"<p style='margin:4px 0;color:#555'>{escape(notes)}</p>"))
        self.widget = widgets.VBox(
            [*parts, self.root.widget, self.submit_button, self._status_line.widget]
        )

    def data(self) -> dict[str, Any]:
        """The values entered, as JSON types; empty optional fields are left out.

        An empty optional field is omitted, or None when its schema allows null; an empty
        required field is omitted too, so the validator reports it as missing.

        Raises:
            InputInvalid: some text cannot be converted; ``errors`` names each field.
        """
        problems: list[FieldError] = []
        got = self.root.collect(problems)
        if problems:
            raise InputInvalid(problems, what="form input")
        if got is MISSING:
            return {}
        if not isinstance(got, dict):
            raise InputInvalid([FieldError("", "must be a JSON object")], what="form input")
        return got

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        from master_sdk.notebook.summary import form_text

        bundle = self.widget._repr_mimebundle_(**kwargs)
        if isinstance(bundle, dict):  # a stable text/plain instead of the widget's repr
            bundle["text/plain"] = form_text(self)
        return bundle

    def _clicked(self, _button: Any) -> None:
        # A disabled button still runs its handlers when clicked from code, and a slow
        # on_submit can receive a second click from the browser: both are ignored here.
        if self._done or self._busy:
            return
        self._busy = True
        self.submit_button.disabled = True
        try:
            self._submit()
        finally:
            self._busy = False
            self.submit_button.disabled = self._done

    def _submit(self) -> None:
        try:
            data = self.data()
        except InputInvalid as exc:
            self._show_invalid(exc)
            return
        try:
            self._on_submit(data)
        except InputInvalid as exc:
            self._show_invalid(exc)
            return
        except HandledElsewhere:
            self._show_errors({})
            self._set_status("", ok=True)
            return
        except Exception as exc:  # any failure must reach the user, not a log they never see
            self._show_errors({})
            self._set_status(f"error: {_describe(exc)}", ok=False)
            return
        self._show_errors({})
        self._done = True
        self.root.set_disabled(True)
        self._set_status("submitted", ok=True)

    def _show_invalid(self, exc: InputInvalid) -> None:
        found = exc.errors or [FieldError("", str(exc))]
        shown: dict[str, list[str]] = {}
        for error in found:
            field = self._field_for(error)
            key = field.path if field is not None else ""
            shown.setdefault(key, []).append(error.message)
        self._show_errors({path: "; ".join(messages) for path, messages in shown.items()})
        self._set_status("invalid", ok=False)

    def _field_for(self, error: FieldError) -> Field | None:
        """The field an error's dotted path points at; None for the status line."""
        node = self.root
        for part in error.path.split(".") if error.path else []:
            child = node.fields.get(part)
            if child is None:
                break  # "tags.1" or an unknown key: the deepest field found takes it
            node = child
        if isinstance(node, ObjectField):
            missing = _REQUIRED_MESSAGE.fullmatch(error.message)
            if missing and missing["name"] in node.fields:
                node = node.fields[missing["name"]]
        if node is self.root and isinstance(node, ObjectField):
            return None
        return node

    def _show_errors(self, errors: dict[str, str]) -> None:
        self.errors = errors
        for field in _walk(self.root):
            # The root object's messages belong to the status line, not under the whole form.
            own = not (field is self.root and isinstance(field, ObjectField))
            field.error = errors.get(field.path) if own else None

    def _set_status(self, status: str, *, ok: bool) -> None:
        self.status = status
        if status == "submitted":
            self._status_line.show("Submitted.", ok=True)
        elif status == "invalid":
            general = self.errors.get("") if isinstance(self.root, ObjectField) else None
            self._status_line.show(
                "Please correct the fields marked above.",
                ok=False,
                details=[general] if general else None,
            )
        else:
            self._status_line.show(status, ok=ok)


def _walk(field: Field) -> list[Field]:
    found = [field]
    for child in field.fields.values():
        found.extend(_walk(child))
    return found


def _render_shown(shown: Any) -> str:
    if isinstance(shown, str):
        text = shown
    else:
        try:
            text = json.dumps(shown, indent=2, ensure_ascii=False, default=str)
        except (TypeError, ValueError):  # circular structures
            text = repr(shown)
    return (
        "<pre style='max-height:24em;overflow:auto;white-space:pre-wrap;"
        f"background:#f6f8fa;padding:6px;margin:4px 0'>{escape(text)}</pre>"
    )


class ApprovalForm:
    """Approve or reject a paused step: what is at stake, a comment box and two buttons.

    ``shown`` must already be redacted; it is displayed as pretty JSON (a string as is),
    HTML-escaped; None (a step without ``show:``) displays nothing. A click passes the
    comment text to ``on_approve`` / ``on_reject``. After a decision goes through, the
    buttons are disabled and further clicks do nothing; if the callback raises, its message
    is shown and the buttons stay enabled.

    The decider's name is in ``user`` (prefilled with ``default_user``); the callbacks take
    only the comment, so a caller that records who decided reads it from there.

    Attributes:
        comment: the comment ``Textarea``.
        user: a ``Text`` with the decider's name.
        approve_button: the Approve button.
        reject_button: the Reject button.
        widget: the container to display.
        status: ``""``, ``"approved"``, ``"rejected"`` or ``"error: <message>"``.

    Example:
        >>> form = ApprovalForm(
        ...     prompt="Send this text?", shown={"text": "hello"}, default_user="ana",
        ...     on_approve=lambda c: run.approve(comment=c, by=form.user.value or None),
        ...     on_reject=lambda c: run.reject(comment=c, by=form.user.value or None))
    """

    def __init__(
        self,
        *,
        prompt: str,
        shown: Any,
        on_approve: Callable[[str], object],
        on_reject: Callable[[str], object],
        default_user: str | None = None,
    ) -> None:
        self.status = ""
        self._decided = False
        self._busy = False
        self._status_line = _StatusLine()
        # A step without ``show:`` has nothing to display beyond its prompt.
        self.shown_html = widgets.HTML(
            _render_shown(shown) if shown is not None else "",
            layout=widgets.Layout(display="none") if shown is None else widgets.Layout(),
        )
        self.user = widgets.Text(value=default_user or "", description="By", placeholder="name")
        self.comment = widgets.Textarea(
            description="Comment",
            placeholder="optional",
            rows=3,
            layout=widgets.Layout(width="95%"),
        )
        self.approve_button = widgets.Button(
            description="Approve", button_style="success", icon="check"
        )
        self.reject_button = widgets.Button(
            description="Reject", button_style="danger", icon="times"
        )
        self.approve_button.on_click(lambda _b: self._decide("approved", on_approve))
        self.reject_button.on_click(lambda _b: self._decide("rejected", on_reject))
        self.widget = widgets.VBox(
            [
                *_heading(None, prompt),
                self.shown_html,
                self.user,
                self.comment,
                widgets.HBox([self.approve_button, self.reject_button]),
                self._status_line.widget,
            ]
        )

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        from master_sdk.notebook.summary import form_text

        bundle = self.widget._repr_mimebundle_(**kwargs)
        if isinstance(bundle, dict):  # a stable text/plain instead of the widget's repr
            bundle["text/plain"] = form_text(self)
        return bundle

    def _decide(self, decision: str, callback: Callable[[str], object]) -> None:
        if self._decided or self._busy:
            return
        self._busy = True
        self._enable(False)
        try:
            callback(str(self.comment.value))
        except HandledElsewhere:
            self._set_status("", ok=True)
        except MasterError as exc:
            self._set_status(f"error: {exc}", ok=False)
        except Exception as exc:  # any failure must reach the user, not a log they never see
            self._set_status(f"error: {_describe(exc)}", ok=False)
        else:
            self._decided = True
            self.comment.disabled = True
            self.user.disabled = True
            self._set_status(decision, ok=True)
        finally:
            self._busy = False
            self._enable(not self._decided)

    def _enable(self, enabled: bool) -> None:
        self.approve_button.disabled = not enabled
        self.reject_button.disabled = not enabled

    def _set_status(self, status: str, *, ok: bool) -> None:
        self.status = status
        text = status[:1].upper() + status[1:] + ("." if ok and status else "")
        self._status_line.show(text, ok=ok)
