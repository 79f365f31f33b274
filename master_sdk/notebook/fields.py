"""Form fields: the widget for one property of a JSON Schema, and its value in JSON terms.

A :class:`Field` converts between its widget's state and a JSON value and shows an error
message under itself. It never decides whether a value is valid: the caller's validator does
(see :mod:`master_sdk.notebook.forms`, which also chooses the field for each schema).
An empty optional field reads as left out (:data:`MISSING`), or None when its schema allows
null; it is never ``0`` or ``""``.
"""

from __future__ import annotations

import datetime as dt
import enum
import json
import math
import re
from collections.abc import Mapping
from html import escape
from typing import Any

import ipywidgets as widgets

from master_sdk.errors import FieldError

__all__ = [
    "MISSING",
    "BooleanField",
    "ChoiceField",
    "DateField",
    "Field",
    "FieldParseError",
    "JsonField",
    "ListField",
    "MultiChoiceField",
    "NumberField",
    "ObjectField",
    "SpinnerField",
    "TextField",
    "humanise",
]

REQUIRED_MARK = " *"
_INT_LIMIT = 2**53 - 1  # the largest integer a browser's JavaScript number holds exactly
_FLOAT_LIMIT = 1.7976931348623157e308  # ipywidgets cannot send infinity as a bound
_ERROR_STYLE = "color:#b00020"
_HELP_STYLE = "color:#555;font-size:90%"


class _Marker(enum.Enum):
    MISSING = "MISSING"
    EMPTY = "EMPTY"


MISSING = _Marker.MISSING
"""Returned by :meth:`Field.collect` for a field whose value is left out of the data."""
_EMPTY = _Marker.EMPTY


class FieldParseError(ValueError):
    """The text in a field cannot be turned into a value of the field's type."""

    def __init__(self, path: str, message: str) -> None:
        self.path = path
        self.message = message
        super().__init__(f"{path or '(root)'}: {message}")


def humanise(name: str) -> str:
    """Turn a property name into a label: ``first_name`` / ``firstName`` -> ``First name``."""
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", name).replace("_", " ").replace("-", " ")
    words = " ".join(spaced.split()).lower()
    return words[:1].upper() + words[1:]


def _hidden() -> widgets.Layout:
    return widgets.Layout(display="none")


class Field:
    """One schema property and the widget that edits it.

    Attributes:
        name: the property name (``""`` for the root).
        path: dotted path from the root, as used in ``FieldError.path`` (``"address.city"``).
        schema: the property's schema after ``$ref`` / nullable unwrapping.
        required: listed in the parent's ``required``.
        nullable: the schema allows ``null``; an empty field then yields ``None``.
        label: the title (or the humanised name), with ``" *"`` when required.
        control: the input widget itself; ``widget`` is the box around it to display.
        fields: child fields by property name (empty except for objects).

    Example:
        >>> form.fields["age"].value = 42
        >>> form.fields["age"].value
        42
    """

    _own_label = True  # False for widgets that show the label themselves (Checkbox)

    def __init__(
        self,
        *,
        name: str,
        path: str,
        schema: Mapping[str, Any],
        required: bool,
        nullable: bool,
        control: Any,
    ) -> None:
        self.name = name
        self.path = path
        self.schema = schema
        self.required = required
        self.nullable = nullable
        self.control = control
        self.fields: dict[str, Field] = {}
        title = schema.get("title")
        text = title.strip() if isinstance(title, str) and title.strip() else humanise(name)
        self.label = text + (REQUIRED_MARK if required else "")
        description = schema.get("description")
        self.description = description if isinstance(description, str) else None
        self._error: str | None = None
        self._error_html = widgets.HTML(layout=_hidden())
        self.widget = widgets.VBox(self._parts())

    def _parts(self) -> list[Any]:
        parts: list[Any] = []
        if self._own_label:
            parts.append(widgets.HTML(f"<b>{escape(self.label)}</b>"))
        parts.append(self.control)
        if self.description:
            parts.append(
                widgets.HTML(f'<span style="{_HELP_STYLE}">{escape(self.description)}</span>')
            )
        parts.append(self._error_html)
        return parts

    @property
    def error(self) -> str | None:
        """The message shown under the field, or None; setting it shows or hides it."""
        return self._error

    @error.setter
    def error(self, message: str | None) -> None:
        self._error = message or None
        if self._error is None:
            self._error_html.value = ""
            self._error_html.layout.display = "none"
        else:
            self._error_html.value = f'<span style="{_ERROR_STYLE}">{escape(self._error)}</span>'
            self._error_html.layout.display = None

    @property
    def value(self) -> Any:
        """The value in JSON terms; None when empty.

        Raises:
            FieldParseError: the text cannot be converted (e.g. ``"abc"`` in an integer field).
        """
        got = self.read()
        return None if got is MISSING else got

    @value.setter
    def value(self, value: Any) -> None:
        if value is None:
            self.clear()
        else:
            self._write(value)

    def read(self) -> Any:
        """The value for the data: a JSON value, None, or :data:`MISSING` when left out.

        Raises:
            FieldParseError: the text cannot be converted.
        """
        got = self._read()
        if got is _EMPTY:
            return None if self.nullable else MISSING
        return got

    def collect(self, errors: list[FieldError]) -> Any:
        """Like :meth:`read`, but appends a conversion failure to ``errors`` (and gives MISSING)."""
        try:
            return self.read()
        except FieldParseError as exc:
            errors.append(FieldError(exc.path, exc.message))
            return MISSING

    def clear(self) -> None:
        """Put the widget back to its empty state."""
        raise NotImplementedError

    def set_disabled(self, disabled: bool) -> None:
        """Grey the field out (or back in)."""
        self.control.disabled = disabled

    def _read(self) -> Any:
        raise NotImplementedError

    def _write(self, value: Any) -> None:
        raise NotImplementedError

    def _bad(self, message: str) -> FieldParseError:
        return FieldParseError(self.path, message)

    def _refuse(self, value: Any, expected: str) -> ValueError:
        return ValueError(f"field '{self.path}': cannot show {value!r}, expected {expected}")

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.path or '(root)'!r}>"


class TextField(Field):
    """A string in a ``Text`` (or, for long text, a ``Textarea``); ``""`` counts as empty."""

    def __init__(self, *, multiline: bool, **kw: Any) -> None:
        schema: Mapping[str, Any] = kw["schema"]
        examples = schema.get("examples")
        # The property name when there is no example: it says which key the text becomes,
        # and gives the box an accessible name a browser test can find it by.
        placeholder = str(examples[0]) if isinstance(examples, list) and examples else kw["name"]
        control = (
            widgets.Textarea(placeholder=placeholder, rows=5, layout=widgets.Layout(width="95%"))
            if multiline
            else widgets.Text(placeholder=placeholder)
        )
        super().__init__(control=control, **kw)

    def _read(self) -> Any:
        text = str(self.control.value)
        return text if text else _EMPTY

    def _write(self, value: Any) -> None:
        if not isinstance(value, str):
            raise self._refuse(value, "a string")
        self.control.value = value

    def clear(self) -> None:
        self.control.value = ""


class DateField(Field):
    """A ``format: date`` string in a ``DatePicker``; accepts ``"YYYY-MM-DD"`` or a date."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(control=widgets.DatePicker(), **kw)

    def _read(self) -> Any:
        picked = self.control.value
        return picked.isoformat() if isinstance(picked, dt.date) else _EMPTY

    def _write(self, value: Any) -> None:
        if isinstance(value, dt.datetime):
            value = value.date()
        elif isinstance(value, str):
            try:
                value = dt.date.fromisoformat(value)
            except ValueError:
                raise self._refuse(value, "a date as YYYY-MM-DD") from None
        if not isinstance(value, dt.date):
            raise self._refuse(value, "a date or a YYYY-MM-DD string")
        self.control.value = value

    def clear(self) -> None:
        self.control.value = None


class BooleanField(Field):
    """A ``Checkbox``; it always has a value (an unticked box is ``False``)."""

    _own_label = False

    def __init__(self, **kw: Any) -> None:
        control = widgets.Checkbox(value=False, indent=False)
        super().__init__(control=control, **kw)
        control.description = self.label

    def _read(self) -> Any:
        return bool(self.control.value)

    def _write(self, value: Any) -> None:
        if not isinstance(value, bool):
            raise self._refuse(value, "true or false")
        self.control.value = value

    def clear(self) -> None:
        self.control.value = False


def _same(a: Any, b: Any) -> bool:
    """JSON equality: ``True`` is not ``1``."""
    return bool(a == b) and isinstance(a, bool) == isinstance(b, bool)


def _choice_label(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)


class ChoiceField(Field):
    """An ``enum`` in a ``Dropdown``; options are indices so any JSON value can be a choice."""

    _NONE = -1

    def __init__(self, *, choices: list[Any], **kw: Any) -> None:
        self.choices = choices
        schema: Mapping[str, Any] = kw["schema"]
        # A required choice with no default starts empty too: preselecting the first option
        # would submit an answer the user never gave.
        self.has_empty = not kw["required"] or not (
            "default" in schema and any(_same(c, schema["default"]) for c in choices)
        )
        options: list[tuple[str, int]] = [("—", self._NONE)] if self.has_empty else []
        options += [(_choice_label(c), i) for i, c in enumerate(choices)]
        control = widgets.Dropdown(options=options, value=options[0][1] if options else None)
        super().__init__(control=control, **kw)

    def _read(self) -> Any:
        index = self.control.value
        if index is None or index == self._NONE:
            return _EMPTY
        return self.choices[index]

    def _write(self, value: Any) -> None:
        for i, choice in enumerate(self.choices):
            if _same(choice, value):
                self.control.value = i
                return
        raise self._refuse(value, f"one of {self.choices!r}")

    def clear(self) -> None:
        self.control.value = self._NONE if self.has_empty else (0 if self.choices else None)


class MultiChoiceField(Field):
    """An array of ``enum`` items in a ``SelectMultiple``; values come back in enum order."""

    def __init__(self, *, choices: list[Any], **kw: Any) -> None:
        self.choices = choices
        control = widgets.SelectMultiple(
            options=[(_choice_label(c), i) for i, c in enumerate(choices)],
            rows=min(max(len(choices), 2), 8),
        )
        super().__init__(control=control, **kw)

    def _read(self) -> Any:
        picked = [self.choices[i] for i in sorted(self.control.value)]
        # An empty selection is an answer for a required list, and no answer for an optional one.
        return picked if picked or self.required else _EMPTY

    def _write(self, value: Any) -> None:
        if not isinstance(value, list | tuple):
            raise self._refuse(value, "a list")
        indices = []
        for item in value:
            found = [i for i, c in enumerate(self.choices) if _same(c, item)]
            if not found:
                raise self._refuse(item, f"items from {self.choices!r}")
            indices.append(found[0])
        self.control.value = tuple(indices)

    def clear(self) -> None:
        self.control.value = ()


_INTEGER_TEXT = re.compile(r"[+-]?\d+")


def _parse_number(text: str, *, integer: bool) -> int | float | None:
    """int or float from text, or None when it is not one (``inf``/``nan`` are not JSON)."""
    if _INTEGER_TEXT.fullmatch(text):
        return int(text)
    if integer:
        return None
    try:
        number = float(text)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _bound(schema: Mapping[str, Any], key: str) -> float | None:
    value = schema.get(key)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value
    return None


def _bounds_hint(schema: Mapping[str, Any], noun: str) -> str:
    parts = []
    for key, op in (("minimum", "≥"), ("exclusiveMinimum", ">")):
        if (b := _bound(schema, key)) is not None:
            parts.append(f"{op} {b:g}")
    for key, op in (("maximum", "≤"), ("exclusiveMaximum", "<")):
        if (b := _bound(schema, key)) is not None:
            parts.append(f"{op} {b:g}")
    return f"{noun} {', '.join(parts)}" if parts else noun


class NumberField(Field):
    """An integer or number typed into a ``Text``, so that it can be left empty.

    The placeholder shows the type and bounds; bounds are checked by the caller's validator,
    not here, so an out-of-range value gets the validator's message instead of a silent clamp.
    """

    def __init__(self, *, integer: bool, **kw: Any) -> None:
        self.integer = integer
        noun = "integer" if integer else "number"
        self._noun = noun
        super().__init__(control=widgets.Text(placeholder=_bounds_hint(kw["schema"], noun)), **kw)

    def _read(self) -> Any:
        text = str(self.control.value).strip()
        if not text:
            return _EMPTY
        number = _parse_number(text, integer=self.integer)
        if number is None:
            raise self._bad(f"must be an {self._noun}" if self.integer else "must be a number")
        return number

    def _write(self, value: Any) -> None:
        ok = int if self.integer else int | float
        if isinstance(value, bool) or not isinstance(value, ok):
            raise self._refuse(value, f"an {self._noun}" if self.integer else "a number")
        self.control.value = str(value)

    def clear(self) -> None:
        self.control.value = ""


class SpinnerField(Field):
    """A required integer or number with a default: ``IntText`` / ``FloatText``.

    ``BoundedIntText`` / ``BoundedFloatText`` when the schema gives bounds; an exclusive
    integer bound becomes the next integer inside it, an exclusive float bound is used as is
    (the validator rejects the bound itself).
    """

    def __init__(self, *, integer: bool, **kw: Any) -> None:
        self.integer = integer
        schema: Mapping[str, Any] = kw["schema"]
        low, high = self._limits(schema, integer)
        if low is None and high is None:
            control = widgets.IntText() if integer else widgets.FloatText()
        elif integer:
            control = widgets.BoundedIntText(
                min=-_INT_LIMIT if low is None else int(low),
                max=_INT_LIMIT if high is None else int(high),
            )
        else:
            control = widgets.BoundedFloatText(
                min=-_FLOAT_LIMIT if low is None else low,
                max=_FLOAT_LIMIT if high is None else high,
            )
        super().__init__(control=control, **kw)

    @staticmethod
    def _limits(schema: Mapping[str, Any], integer: bool) -> tuple[float | None, float | None]:
        low, high = _bound(schema, "minimum"), _bound(schema, "maximum")
        ex_low, ex_high = _bound(schema, "exclusiveMinimum"), _bound(schema, "exclusiveMaximum")
        if integer:
            low = None if low is None else math.ceil(low)
            high = None if high is None else math.floor(high)
            ex_low = None if ex_low is None else math.floor(ex_low) + 1
            ex_high = None if ex_high is None else math.ceil(ex_high) - 1
        lows = [b for b in (low, ex_low) if b is not None]
        highs = [b for b in (high, ex_high) if b is not None]
        return (max(lows) if lows else None), (min(highs) if highs else None)

    @staticmethod
    def fits(schema: Mapping[str, Any], integer: bool, value: Any) -> bool:
        """Whether ``value`` is a number the widget can hold without clamping it."""
        ok = int if integer else int | float
        if isinstance(value, bool) or not isinstance(value, ok):
            return False
        low, high = SpinnerField._limits(schema, integer)
        return (low is None or value >= low) and (high is None or value <= high)

    def _read(self) -> Any:
        return int(self.control.value) if self.integer else float(self.control.value)

    def _write(self, value: Any) -> None:
        if not self.fits(self.schema, self.integer, value):
            raise self._refuse(value, "a number within the field's bounds")
        self.control.value = value

    def clear(self) -> None:
        default = self.schema.get("default")
        if self.fits(self.schema, self.integer, default):
            self.control.value = default


class ListField(Field):
    """An array of strings, integers or numbers in a ``Textarea``, one item per line.

    Blank lines are skipped and each line is stripped, so an item cannot contain a line break
    or begin or end with spaces.
    """

    def __init__(self, *, item_type: str, **kw: Any) -> None:
        self.item_type = item_type
        hint = {"string": "one item per line", "integer": "one integer per line"}
        control = widgets.Textarea(
            placeholder=hint.get(item_type, "one number per line"),
            rows=4,
            layout=widgets.Layout(width="95%"),
        )
        super().__init__(control=control, **kw)

    def _read(self) -> Any:
        items: list[Any] = []
        lines = str(self.control.value).splitlines()
        for number, line in enumerate(lines, start=1):
            text = line.strip()
            if not text:
                continue
            if self.item_type == "string":
                items.append(text)
                continue
            parsed = _parse_number(text, integer=self.item_type == "integer")
            if parsed is None:
                noun = "an integer" if self.item_type == "integer" else "a number"
                # the message is shown in the form: it never repeats what was typed
                raise self._bad(f"line {number} must be {noun}")
            items.append(parsed)
        return items if items or self.required else _EMPTY

    def _write(self, value: Any) -> None:
        if not isinstance(value, list | tuple):
            raise self._refuse(value, "a list")
        self.control.value = "\n".join(
            item if isinstance(item, str) else json.dumps(item) for item in value
        )

    def clear(self) -> None:
        self.control.value = ""


class JsonField(Field):
    """Anything the mapper has no widget for, typed as JSON into a ``Textarea``."""

    def __init__(self, **kw: Any) -> None:
        control = widgets.Textarea(placeholder="JSON", rows=4, layout=widgets.Layout(width="95%"))
        super().__init__(control=control, **kw)

    def _read(self) -> Any:
        text = str(self.control.value)
        if not text.strip():
            return _EMPTY
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise self._bad(
                f"must be valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
            ) from None
        except RecursionError:
            raise self._bad("is nested too deeply (the limit is 64 levels)") from None

    def _write(self, value: Any) -> None:
        try:
            self.control.value = json.dumps(value, indent=2, ensure_ascii=False)
        except (TypeError, ValueError):
            raise self._refuse(value, "a JSON value") from None

    def clear(self) -> None:
        self.control.value = ""


class ObjectField(Field):
    """A nested object: a titled group holding one field per property.

    Its value is the dict of its fields' values; an optional object whose fields are all
    empty is left out. Setting ``value`` to a dict updates the fields it names and leaves
    the others alone; setting None clears them all.
    """

    def __init__(self, *, children: dict[str, Field], **kw: Any) -> None:
        self._children = children
        super().__init__(control=widgets.VBox([c.widget for c in children.values()]), **kw)
        self.fields = children
        if self.path:
            self.widget.layout = widgets.Layout(
                border_left="3px solid #ddd", padding="0 0 0 8px", margin="4px 0"
            )

    def _parts(self) -> list[Any]:
        if not self.path:  # the root: the form draws its own header
            return [self.control, self._error_html]
        return super()._parts()

    def collect(self, errors: list[FieldError]) -> Any:
        out: dict[str, Any] = {}
        for name, child in self._children.items():
            got = child.collect(errors)
            if got is not MISSING:
                out[name] = got
        if out or self.required:
            return out
        return None if self.nullable else MISSING

    def read(self) -> Any:
        errors: list[FieldError] = []
        got = self.collect(errors)
        if errors:
            raise self._bad("; ".join(f"{e.path}: {e.message}" for e in errors))
        return got

    def _write(self, value: Any) -> None:
        if not isinstance(value, Mapping):
            raise self._refuse(value, "a mapping")
        unknown = [k for k in value if k not in self._children]
        if unknown:
            raise ValueError(
                f"field '{self.path or '(root)'}': no field named {', '.join(map(repr, unknown))}"
                f"; fields are {', '.join(self._children)}"
            )
        for name, item in value.items():
            self._children[name].value = item

    def clear(self) -> None:
        for child in self._children.values():
            child.clear()

    def set_disabled(self, disabled: bool) -> None:
        for child in self._children.values():
            child.set_disabled(disabled)
