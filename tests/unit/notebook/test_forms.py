"""The notebook forms: JSON Schema -> widgets, submit/approve behaviour, error display."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

import ipywidgets as widgets
import pytest
from jsonschema import Draft202012Validator

from master_sdk.errors import FieldError, InputInvalid, NotWaiting
from master_sdk.notebook.fields import (
    BooleanField,
    ChoiceField,
    DateField,
    JsonField,
    ListField,
    MultiChoiceField,
    NumberField,
    ObjectField,
    SpinnerField,
    TextField,
)
from master_sdk.notebook.forms import ApprovalForm, SchemaForm


class Validating:
    """A stand-in for ``run.submit``: validates with jsonschema, records accepted data.

    Errors are reported as jsonschema gives them: a dotted ``absolute_path``, so a missing
    property is reported on the object that lacks it.
    """

    def __init__(self, schema: Mapping[str, Any]) -> None:
        self.validator = Draft202012Validator(schema)
        self.calls: list[dict[str, Any]] = []
        self.accepted: list[dict[str, Any]] = []

    def __call__(self, data: dict[str, Any]) -> None:
        self.calls.append(data)
        errors = [
            FieldError(".".join(str(p) for p in e.absolute_path), e.message)
            for e in self.validator.iter_errors(data)
        ]
        if errors:
            raise InputInvalid(errors, what="user input", step="audience")
        self.accepted.append(data)


class Scripted:
    """A callback that raises the scripted exceptions in turn, then accepts."""

    def __init__(self, *failures: BaseException) -> None:
        self.failures = list(failures)
        self.calls: list[Any] = []

    def __call__(self, value: Any) -> None:
        self.calls.append(value)
        if self.failures:
            raise self.failures.pop(0)


def obj(properties: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": required or []}


PROFILE = obj(
    {
        "name": {"type": "string", "minLength": 1, "title": "Full name"},
        "age": {"type": "integer", "minimum": 0, "maximum": 150},
        "score": {"type": "number", "exclusiveMinimum": 0},
        "born": {"type": "string", "format": "date"},
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 5}},
        "address": obj(
            {
                "city": {"type": "string", "minLength": 2},
                "zip": {"type": "integer", "maximum": 9999},
            },
            ["city"],
        ),
    },
    ["name", "address"],
)


# --- mapping --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prop", "field_class", "widget_class"),
    [
        ({"type": "string"}, TextField, widgets.Text),
        ({"type": "string", "format": "email"}, TextField, widgets.Text),
        ({"type": "string", "maxLength": 200}, TextField, widgets.Text),
        ({"type": "string", "maxLength": 201}, TextField, widgets.Textarea),
        ({"type": "string", "format": "textarea"}, TextField, widgets.Textarea),
        ({"type": "string", "format": "date"}, DateField, widgets.DatePicker),
        ({"type": "string", "enum": ["a", "b"]}, ChoiceField, widgets.Dropdown),
        ({"enum": [1, 2, 3]}, ChoiceField, widgets.Dropdown),
        ({"const": "only"}, ChoiceField, widgets.Dropdown),
        ({"type": "boolean"}, BooleanField, widgets.Checkbox),
        ({"type": "integer"}, NumberField, widgets.Text),
        ({"type": "integer", "minimum": 1, "maximum": 9}, NumberField, widgets.Text),
        ({"type": "number"}, NumberField, widgets.Text),
        (
            {"type": "array", "items": {"enum": ["x", "y"]}},
            MultiChoiceField,
            widgets.SelectMultiple,
        ),
        ({"type": "array", "items": {"type": "string"}}, ListField, widgets.Textarea),
        ({"type": "array", "items": {"type": "integer"}}, ListField, widgets.Textarea),
        ({"type": "array", "items": {"type": "object"}}, JsonField, widgets.Textarea),
        (obj({"a": {"type": "string"}}), ObjectField, widgets.VBox),
        ({"type": "object"}, JsonField, widgets.Textarea),
        ({"oneOf": [{"type": "string"}, {"type": "integer"}]}, JsonField, widgets.Textarea),
        ({"$ref": "#/$defs/missing"}, JsonField, widgets.Textarea),
        ({"type": ["string", "integer"]}, JsonField, widgets.Textarea),
    ],
)
def test_each_schema_type_maps_to_its_widget(
    prop: dict[str, Any], field_class: type, widget_class: type
) -> None:
    """Each kind of optional property becomes the documented field and widget class."""
    form = SchemaForm(obj({"p": prop}), on_submit=Scripted())
    field = form.fields["p"]
    assert type(field) is field_class
    assert type(field.control) is widget_class


@pytest.mark.parametrize(
    ("prop", "widget_class", "low", "high"),
    [
        ({"type": "integer", "default": 5}, widgets.IntText, None, None),
        ({"type": "number", "default": 0.5}, widgets.FloatText, None, None),
        (
            {"type": "integer", "default": 5, "minimum": 1, "maximum": 9},
            widgets.BoundedIntText,
            1,
            9,
        ),
        (
            {"type": "integer", "default": 5, "exclusiveMinimum": 0, "exclusiveMaximum": 10},
            widgets.BoundedIntText,
            1,
            9,
        ),
        (
            {"type": "number", "default": 1, "minimum": 0.5, "maximum": 2.5},
            widgets.BoundedFloatText,
            0.5,
            2.5,
        ),
    ],
)
def test_required_number_with_default_gets_a_numeric_widget_with_schema_bounds(
    prop: dict[str, Any], widget_class: type, low: float | None, high: float | None
) -> None:
    """A required number that always has a value uses a numeric widget bounded by the schema."""
    form = SchemaForm(obj({"n": prop}, ["n"]), on_submit=Scripted())
    field = form.fields["n"]
    assert type(field) is SpinnerField
    assert type(field.control) is widget_class
    if low is not None:
        assert (field.control.min, field.control.max) == (low, high)
    assert form.data() == {"n": prop["default"]}


def test_required_fields_are_marked_and_optional_ones_are_not() -> None:
    """A required property's label ends with ' *', an optional one's does not."""
    form = SchemaForm(PROFILE, on_submit=Scripted())
    assert form.fields["name"].label == "Full name *"
    assert form.fields["name"].required
    assert form.fields["age"].label == "Age"
    assert form.fields["address"].fields["city"].label == "City *"
    assert "Full name *" in form.fields["name"].widget.children[0].value


def test_labels_fall_back_to_humanised_names_and_descriptions_are_shown() -> None:
    """Without a title the property name is humanised; a description is shown under the field."""
    schema = obj(
        {
            "first_name": {"type": "string", "description": "As on <your> passport"},
            "dueDate": {"type": "string", "format": "date"},
        }
    )
    form = SchemaForm(schema, on_submit=Scripted())
    assert form.fields["first_name"].label == "First name"
    assert form.fields["dueDate"].label == "Due date"
    html = [
        w.value for w in form.fields["first_name"].widget.children if isinstance(w, widgets.HTML)
    ]
    assert any("As on &lt;your&gt; passport" in h for h in html)


def test_defaults_fill_fields_and_initial_overrides_them() -> None:
    """Schema defaults are the starting values, and `initial` wins over them, nested too."""
    schema = obj(
        {
            "tone": {"enum": ["formal", "casual"], "default": "casual"},
            "words": {"type": "integer", "default": 100},
            "notify": {"type": "boolean", "default": True},
            "when": {"type": "string", "format": "date", "default": "2024-01-31"},
            "meta": obj(
                {"owner": {"type": "string", "default": "ops"}, "level": {"type": "integer"}}
            ),
        }
    )
    form = SchemaForm(schema, on_submit=Scripted())
    assert form.data() == {
        "tone": "casual",
        "words": 100,
        "notify": True,
        "when": "2024-01-31",
        "meta": {"owner": "ops"},
    }
    form = SchemaForm(
        schema,
        on_submit=Scripted(),
        initial={"tone": "formal", "when": dt.date(2025, 5, 6), "meta": {"level": 3}},
    )
    assert form.data() == {
        "tone": "formal",
        "words": 100,
        "notify": True,
        "when": "2025-05-06",
        "meta": {"owner": "ops", "level": 3},
    }


def test_a_default_the_widget_cannot_hold_is_ignored() -> None:
    """A schema default outside the enum or not a date does not break the form."""
    schema = obj(
        {
            "tone": {"enum": ["a", "b"], "default": "zzz"},
            "when": {"type": "string", "format": "date", "default": "soon"},
        }
    )
    form = SchemaForm(schema, on_submit=Scripted())
    assert form.data() == {}


def test_initial_naming_an_unknown_field_is_refused() -> None:
    """`initial` with a key the schema does not have fails loudly, naming the key."""
    with pytest.raises(ValueError, match="'nope'"):
        SchemaForm(PROFILE, on_submit=Scripted(), initial={"nope": 1})


def test_untouched_optional_numbers_are_omitted_not_zero() -> None:
    """Optional integers and numbers left empty are absent from the data (never 0 or a bound)."""
    form = SchemaForm(PROFILE, on_submit=Scripted())
    data = form.data()
    assert "age" not in data
    assert "score" not in data
    assert form.fields["age"].value is None
    assert "zip" not in data["address"]


def test_empty_optional_field_gives_none_when_the_schema_allows_null() -> None:
    """An empty field whose schema allows null yields None instead of being left out."""
    schema = obj(
        {
            "a": {"type": ["integer", "null"]},
            "b": {"anyOf": [{"type": "string"}, {"type": "null"}]},
            "c": {"type": "string"},
            "d": {"enum": ["x", None]},
        }
    )
    form = SchemaForm(schema, on_submit=Scripted())
    assert form.data() == {"a": None, "b": None, "d": None}


def test_numbers_typed_as_text_are_parsed() -> None:
    """Integer and number fields turn their text into int and float."""
    form = SchemaForm(PROFILE, on_submit=Scripted())
    form.fields["age"].control.value = " 42 "
    form.fields["score"].control.value = "2.5e-1"
    assert form.data()["age"] == 42
    assert form.data()["score"] == 0.25
    form.fields["score"].value = 3
    assert form.data()["score"] == 3


def test_date_field_round_trips_strings_and_dates() -> None:
    """A date field accepts "YYYY-MM-DD" or a date and gives back "YYYY-MM-DD"."""
    form = SchemaForm(PROFILE, on_submit=Scripted())
    born = form.fields["born"]
    born.value = "2024-02-29"
    assert born.control.value == dt.date(2024, 2, 29)
    assert born.value == "2024-02-29"
    born.value = dt.date(1999, 12, 31)
    assert form.data()["born"] == "1999-12-31"
    born.value = None
    assert "born" not in form.data()
    with pytest.raises(ValueError, match="YYYY-MM-DD"):
        born.value = "31/12/1999"


def test_select_multiple_gives_enum_values_in_enum_order() -> None:
    """An array of enum items gives the picked values, in the schema's order."""
    schema = obj(
        {
            "days": {"type": "array", "items": {"enum": ["mon", "tue", "wed"]}},
            "sizes": {"type": "array", "items": {"type": "integer", "enum": [1, 2, 3]}},
        }
    )
    form = SchemaForm(schema, on_submit=Scripted())
    assert form.data() == {}
    form.fields["days"].value = ["wed", "mon"]
    form.fields["sizes"].control.value = (2,)
    assert form.data() == {"days": ["mon", "wed"], "sizes": [3]}
    with pytest.raises(ValueError, match="'fri'"):
        form.fields["days"].value = ["fri"]


def test_list_of_strings_is_one_item_per_line() -> None:
    """A string array reads one item per non-blank line, stripped."""
    form = SchemaForm(PROFILE, on_submit=Scripted())
    form.fields["tags"].control.value = "red\n\n  blue \n"
    assert form.data()["tags"] == ["red", "blue"]
    form.fields["tags"].value = ["a", "b c"]
    assert form.fields["tags"].control.value == "a\nb c"


def test_dropdown_has_an_empty_choice_unless_required_with_a_default() -> None:
    """Optional enums and required enums without a default start on an empty choice."""
    schema = obj(
        {
            "opt": {"enum": ["a", "b"]},
            "req": {"enum": ["a", "b"]},
            "req_default": {"enum": ["a", "b"], "default": "b"},
            "num": {"enum": [1, 2, True]},
        },
        ["req", "req_default"],
    )
    form = SchemaForm(schema, on_submit=Scripted())
    labels = {name: [label for label, _ in f.control.options] for name, f in form.fields.items()}
    assert labels["opt"] == ["—", "a", "b"]
    assert labels["req"] == ["—", "a", "b"]
    assert labels["req_default"] == ["a", "b"]
    assert form.data() == {"req_default": "b"}
    form.fields["num"].value = True
    assert form.data()["num"] is True
    form.fields["num"].value = 1
    assert form.data()["num"] == 1
    assert form.data()["num"] is not True


def test_nested_object_data_is_a_nested_dict() -> None:
    """Fields of a nested object are set through `.fields` and come back as a nested dict."""
    form = SchemaForm(PROFILE, on_submit=Scripted())
    form.fields["name"].value = "Ana"
    form.fields["address"].fields["city"].value = "Oslo"
    form.fields["address"].fields["zip"].value = 150
    assert form.data() == {"name": "Ana", "address": {"city": "Oslo", "zip": 150}}
    form.fields["address"].value = {"city": "Bergen"}
    assert form.data()["address"] == {"city": "Bergen", "zip": 150}


def test_optional_nested_object_left_empty_is_omitted() -> None:
    """An optional object none of whose fields is filled is left out of the data."""
    schema = obj({"extra": obj({"note": {"type": "string"}, "n": {"type": "number"}})})
    form = SchemaForm(schema, on_submit=Scripted())
    assert form.data() == {}
    form.fields["extra"].fields["n"].control.value = "1.5"
    assert form.data() == {"extra": {"n": 1.5}}


def test_local_refs_and_pydantic_optionals_are_followed() -> None:
    """`$ref` into `$defs` and `anyOf [X, null]` (pydantic's shapes) map to real fields."""
    schema = {
        "$defs": {
            "Place": obj({"city": {"type": "string"}}, ["city"]),
            "Node": obj({"label": {"type": "string"}, "child": {"$ref": "#/$defs/Node"}}),
        },
        "type": "object",
        "properties": {
            "home": {"$ref": "#/$defs/Place"},
            "work": {"anyOf": [{"$ref": "#/$defs/Place"}, {"type": "null"}], "default": None},
            "tree": {"$ref": "#/$defs/Node"},
        },
    }
    form = SchemaForm(schema, on_submit=Scripted())
    assert type(form.fields["home"].fields["city"]) is TextField
    assert form.fields["work"].nullable
    assert type(form.fields["tree"].fields["child"]) is JsonField  # recursion stops
    form.fields["home"].fields["city"].value = "Oslo"
    assert form.data() == {"home": {"city": "Oslo"}, "work": None}


@pytest.mark.parametrize(
    "schema",
    [
        {},
        {"type": "object"},
        {"type": "object", "properties": {}},
        {"type": "object", "properties": {"a": True, "b": None, "c": {"items": 3}}},
        {"type": "object", "properties": {"a": {"type": "array", "items": [{"type": "string"}]}}},
        {"type": "object", "properties": {"a": {"enum": []}, "b": {"not": {}}}},
        {"type": "object", "properties": {"a": {"$ref": "http://example.com/x.json"}}},
        {"type": "object", "properties": {"a": {"allOf": [{"type": "string"}, {"minLength": 2}]}}},
        {"$ref": "#"},
        {"oneOf": [{"type": "object"}, {"type": "array"}]},
        {"type": "object", "properties": "nonsense", "required": "nonsense"},
    ],
)
def test_any_schema_builds_a_form(schema: dict[str, Any]) -> None:
    """Odd or unsupported schemas never crash: they fall back to JSON fields."""
    form = SchemaForm(schema, on_submit=Scripted())
    assert isinstance(form.widget, widgets.VBox)
    assert form.data() == {}


def test_schema_without_properties_takes_a_json_object() -> None:
    """A schema with no properties is one JSON box whose text must be a JSON object."""
    callback = Scripted()
    form = SchemaForm({"type": "object"}, on_submit=callback)
    assert form.fields == {}
    form.root.control.value = "[1, 2]"
    form.submit_button.click()
    assert callback.calls == []
    assert form.root.error == "must be a JSON object"
    form.root.control.value = '{"k": [1, 2]}'
    form.submit_button.click()
    assert callback.calls == [{"k": [1, 2]}]


# --- submitting -----------------------------------------------------------------------------


def test_callback_errors_appear_next_to_the_right_nested_field() -> None:
    """Errors from the validator show under the fields their paths name; nothing is submitted."""
    callback = Validating(PROFILE)
    form = SchemaForm(PROFILE, on_submit=callback)
    form.fields["name"].value = "Ana"
    form.fields["address"].fields["zip"].value = 12345
    form.submit_button.click()
    assert callback.calls == [{"name": "Ana", "address": {"zip": 12345}}]
    assert callback.accepted == []
    city = form.fields["address"].fields["city"]
    zip_field = form.fields["address"].fields["zip"]
    assert city.error == "'city' is a required property"
    assert zip_field.error == "12345 is greater than the maximum of 9999"
    assert form.errors == {"address.city": city.error, "address.zip": zip_field.error}
    assert form.fields["name"].error is None
    assert form.status == "invalid"
    assert not form.submit_button.disabled
    assert "greater than the maximum" in zip_field.widget.children[-1].value
    assert zip_field.widget.children[-1].layout.display is None


def test_missing_top_level_field_error_goes_to_that_field() -> None:
    """A required top-level property left empty gets its 'required' message under itself."""
    callback = Validating(PROFILE)
    form = SchemaForm(PROFILE, on_submit=callback)
    form.fields["address"].fields["city"].value = "Oslo"
    form.submit_button.click()
    assert form.fields["name"].error == "'name' is a required property"
    assert form.errors == {"name": "'name' is a required property"}


def test_error_on_an_array_item_goes_to_the_array_field() -> None:
    """A path like 'tags.1' is shown under the 'tags' field."""
    callback = Validating(PROFILE)
    form = SchemaForm(
        PROFILE, on_submit=callback, initial={"name": "Ana", "address": {"city": "Oslo"}}
    )
    form.fields["tags"].value = ["ok", "far too long"]
    form.submit_button.click()
    assert form.fields["tags"].error == "'far too long' is too long"
    assert form.errors == {"tags": "'far too long' is too long"}


def test_root_and_unknown_paths_go_to_the_status_line() -> None:
    """Errors about the whole input or about unknown fields are listed in the status line."""
    callback = Scripted(
        InputInvalid([FieldError("", "too many answers"), FieldError("ghost.x", "what?")])
    )
    form = SchemaForm(PROFILE, on_submit=callback)
    form.submit_button.click()
    assert form.errors == {"": "too many answers; what?"}
    assert form.status == "invalid"
    status_html = form.widget.children[-1]
    assert "too many answers; what?" in status_html.value
    assert status_html.layout.display is None
    assert all(f.error is None for f in form.fields.values())


def test_messages_are_html_escaped_under_fields() -> None:
    """An error message echoing user text is shown literally, not as HTML."""
    callback = Scripted(InputInvalid([FieldError("name", "<b>bad</b> value")]))
    form = SchemaForm(PROFILE, on_submit=callback)
    form.submit_button.click()
    shown = form.fields["name"].widget.children[-1].value
    assert "<b>bad</b>" not in shown
    assert "&lt;b&gt;bad&lt;/b&gt; value" in shown


def test_unparseable_number_is_reported_without_calling_the_callback() -> None:
    """Text that is not an integer gets 'must be an integer' and on_submit is not called."""
    callback = Scripted()
    form = SchemaForm(PROFILE, on_submit=callback)
    form.fields["age"].control.value = "forty"
    form.fields["address"].fields["zip"].control.value = "12.5"
    form.fields["score"].control.value = "nan"
    form.submit_button.click()
    assert callback.calls == []
    assert form.fields["age"].error == "must be an integer"
    assert form.fields["address"].fields["zip"].error == "must be an integer"
    assert form.fields["score"].error == "must be a number"
    assert form.status == "invalid"
    with pytest.raises(InputInvalid) as raised:
        form.data()
    assert [e.path for e in raised.value.errors] == ["age", "score", "address.zip"]


def test_broken_json_in_a_fallback_field_is_reported_without_calling_the_callback() -> None:
    """A JSON field whose text is not JSON shows why, and on_submit is not called."""
    callback = Scripted()
    form = SchemaForm(
        obj({"any": {"oneOf": [{"type": "string"}, {"type": "integer"}]}}), on_submit=callback
    )
    form.fields["any"].control.value = "{oops"
    form.submit_button.click()
    assert callback.calls == []
    assert (form.fields["any"].error or "").startswith("must be valid JSON (line 1, column 2")
    form.fields["any"].control.value = '"fine"'
    form.submit_button.click()
    assert callback.calls == [{"any": "fine"}]


def test_bad_list_item_names_its_line() -> None:
    """An integer list with a non-integer line reports that line."""
    callback = Scripted()
    form = SchemaForm(
        obj({"ids": {"type": "array", "items": {"type": "integer"}}}), on_submit=callback
    )
    form.fields["ids"].control.value = "1\n2\nthree"
    form.submit_button.click()
    assert callback.calls == []
    assert form.fields["ids"].error == "line 3 must be an integer"  # the typed text is not echoed


def test_successful_submit_clears_errors_and_disables_the_form() -> None:
    """After a valid submit: errors cleared, status 'submitted', button and fields disabled."""
    callback = Validating(PROFILE)
    form = SchemaForm(PROFILE, on_submit=callback)
    form.submit_button.click()
    assert form.status == "invalid"
    form.fields["name"].value = "Ana"
    form.fields["address"].fields["city"].value = "Oslo"
    form.submit_button.click()
    assert callback.accepted == [{"name": "Ana", "address": {"city": "Oslo"}}]
    assert form.errors == {}
    assert all(f.error is None for f in form.fields.values())
    city = form.fields["address"].fields["city"]
    assert city.error is None
    assert city.widget.children[-1].layout.display == "none"
    assert form.status == "submitted"
    assert form.submit_button.disabled
    assert city.control.disabled
    assert "Submitted." in form.widget.children[-1].value


def test_second_click_after_success_does_not_submit_again() -> None:
    """Once submitted, clicking Submit again (even from code) does not call on_submit."""
    callback = Scripted()
    form = SchemaForm(PROFILE, on_submit=callback)
    form.submit_button.click()
    form.submit_button.click()
    assert len(callback.calls) == 1


def test_click_during_a_slow_submit_is_ignored() -> None:
    """A click that arrives while on_submit is still running does not submit twice."""
    calls: list[dict[str, Any]] = []

    def submit(data: dict[str, Any]) -> None:
        calls.append(data)
        assert form.submit_button.disabled
        form.submit_button.click()

    form = SchemaForm(PROFILE, on_submit=submit)
    form.submit_button.click()
    assert len(calls) == 1
    assert form.status == "submitted"


def test_other_exceptions_are_shown_and_the_form_stays_usable() -> None:
    """A non-validation failure shows its type and message; a later submit can succeed."""
    callback = Scripted(NotWaiting("run r1 is not waiting for input"), RuntimeError("disk full"))
    form = SchemaForm(PROFILE, on_submit=callback)
    form.submit_button.click()
    assert form.status == "error: NotWaiting: run r1 is not waiting for input"
    assert "run r1 is not waiting for input" in form.widget.children[-1].value
    assert not form.submit_button.disabled
    form.submit_button.click()
    assert form.status == "error: RuntimeError: disk full"
    form.submit_button.click()
    assert form.status == "submitted"
    assert len(callback.calls) == 3


def test_handlers_print_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    """Clicks render their outcome in widgets and write nothing to stdout or stderr."""
    form = SchemaForm(PROFILE, on_submit=Scripted(RuntimeError("boom")))
    form.fields["age"].control.value = "x"
    form.submit_button.click()
    form.fields["age"].control.value = ""
    form.submit_button.click()
    approval = ApprovalForm(
        prompt="?", shown={}, on_approve=Scripted(RuntimeError("no")), on_reject=Scripted()
    )
    approval.approve_button.click()
    assert (form.status, approval.status) == (
        "error: RuntimeError: boom",
        "error: RuntimeError: no",
    )
    assert capsys.readouterr() == ("", "")


def test_title_and_prompt_are_shown_escaped() -> None:
    """The form shows its title and prompt as text, not HTML."""
    form = SchemaForm(PROFILE, on_submit=Scripted(), title="Profile <1>", prompt="Tell us & more")
    html = " ".join(w.value for w in form.widget.children if isinstance(w, widgets.HTML))
    assert "Profile &lt;1&gt;" in html
    assert "Tell us &amp; more" in html


def test_forms_display_themselves() -> None:
    """Both forms give Jupyter a widget view when displayed."""
    form = SchemaForm(PROFILE, on_submit=Scripted())
    approval = ApprovalForm(prompt="ok?", shown="x", on_approve=Scripted(), on_reject=Scripted())
    for shown in (form, approval):
        bundle = shown._repr_mimebundle_()
        assert (
            bundle["application/vnd.jupyter.widget-view+json"]["model_id"] == shown.widget.model_id
        )


# --- approval -------------------------------------------------------------------------------


def make_approval(**kw: Any) -> tuple[ApprovalForm, Scripted, Scripted]:
    on_approve, on_reject = kw.pop("on_approve", Scripted()), kw.pop("on_reject", Scripted())
    kw.setdefault("prompt", "Send this text to the summariser?")
    kw.setdefault("shown", {"text": "Hello"})
    return ApprovalForm(on_approve=on_approve, on_reject=on_reject, **kw), on_approve, on_reject


def test_approve_passes_the_comment_and_closes_the_form() -> None:
    """Approve calls on_approve with the comment, then both buttons are disabled."""
    form, on_approve, on_reject = make_approval(default_user="ana")
    assert form.user.value == "ana"
    form.comment.value = "looks fine"
    form.approve_button.click()
    assert on_approve.calls == ["looks fine"]
    assert on_reject.calls == []
    assert form.status == "approved"
    assert form.approve_button.disabled and form.reject_button.disabled
    assert form.comment.disabled


def test_reject_passes_the_comment() -> None:
    """Reject calls on_reject with the comment (empty when none was typed)."""
    form, on_approve, on_reject = make_approval()
    form.reject_button.click()
    assert on_reject.calls == [""]
    assert on_approve.calls == []
    assert form.status == "rejected"


def test_second_decision_click_is_ignored() -> None:
    """After a decision, neither button calls anything again."""
    form, on_approve, on_reject = make_approval()
    form.approve_button.click()
    form.approve_button.click()
    form.reject_button.click()
    assert on_approve.calls == [""]
    assert on_reject.calls == []
    assert form.status == "approved"


def test_shown_value_is_pretty_json_with_html_escaped() -> None:
    """The shown data is pretty JSON in a <pre>, and markup in it is displayed literally."""
    form, _, _ = make_approval(shown={"text": "<script>alert(1)</script>", "n": [1, 2]})
    html = form.shown_html.value
    assert html.startswith("<pre")
    assert "<script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "  &quot;n&quot;: [\n    1," in html


def test_shown_string_is_displayed_as_is_and_escaped() -> None:
    """A string is shown as text, without JSON quotes, and escaped."""
    form, _, _ = make_approval(shown="a < b & <i>c</i>", prompt="<b>Approve?</b>")
    assert "a &lt; b &amp; &lt;i&gt;c&lt;/i&gt;" in form.shown_html.value
    html = " ".join(w.value for w in form.widget.children if isinstance(w, widgets.HTML))
    assert "&lt;b&gt;Approve?&lt;/b&gt;" in html


def test_callback_error_is_shown_and_buttons_stay_enabled() -> None:
    """A MasterError from the callback is shown in the form; the user can decide again."""
    failing = Scripted(NotWaiting("run r1 was already approved by bo"))
    form, _, on_reject = make_approval(on_approve=failing)
    form.comment.value = "ok"
    form.approve_button.click()
    assert form.status == "error: run r1 was already approved by bo"
    assert "run r1 was already approved by bo" in form.widget.children[-1].value
    assert not form.approve_button.disabled and not form.reject_button.disabled
    form.reject_button.click()
    assert on_reject.calls == ["ok"]
    assert form.status == "rejected"
    assert failing.calls == ["ok"]
