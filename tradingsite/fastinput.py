"""A DRF serializer's checks of a well-formed body, without DRF's per-field machinery.

Checking an order body with `OrderInputSerializer.run_validation` was a quarter of the web's
CPU in the batch phase (py-spy --gil): for every field DRF looks the value up through
`get_value`, sorts out empty values, converts, then runs each validator in turn, with a
frame for each step. `FastValidation`, first among a serializer's bases, answers a body whose
every value is plainly right directly, and what it answers is what DRF answers: the same keys,
values, types and defaults. Any value it is not sure of (a missing required field, a null, a
string with surrounding blanks or outside printable ASCII, a wrong type), and every error,
goes to DRF's own `run_validation`, which therefore writes every error message.

A field is checked directly when its kind is one of these, with no validators beyond the ones
named (anything else takes the field's own `run_validation`, still without the serializer's
per-field overhead):

- `CharField` (and `RegexField`): a `str` of printable ASCII, not blank, without surrounding
  blanks (DRF would strip them), within `max_length` and matching each `RegexValidator`;
- `ChoiceField`: a `str` among the choices, answered as DRF maps it;
- `DecimalField` without min or max: a `str` or `int`, converted by the field's own
  `to_internal_value` (DRF's parsing, precision check and quantizing);
- `DictField` of unvalidated values: a `dict` with `str` keys, copied.

tests/unit/test_fastinput.py holds both paths equal on generated bodies, valid and not.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from django.core.validators import (
    MaxLengthValidator,
    ProhibitNullCharactersValidator,
    RegexValidator,
)
from rest_framework import fields, serializers
from rest_framework.fields import SkipField, empty
from rest_framework.validators import ProhibitSurrogateCharactersValidator

# A check: the field's value -> its validated value; raises _Unsure when DRF must decide.
Check = Callable[[Any], Any]


class _Unsure(Exception):
    pass


# Validators a plain ASCII string within the length already satisfies.
_TEXT_VALIDATORS = (
    MaxLengthValidator,
    ProhibitNullCharactersValidator,
    ProhibitSurrogateCharactersValidator,
)


def _text(field: fields.CharField) -> Check | None:
    patterns = []
    for validator in field.validators:
        if type(validator) is RegexValidator and not validator.inverse_match:
            patterns.append(validator.regex.search)
        elif not isinstance(validator, _TEXT_VALIDATORS):
            return None
    longest = field.max_length

    def check(value: Any) -> Any:
        if (
            type(value) is not str
            or not value
            or not (value.isascii() and value.isprintable())
            or value[0] == " "
            or value[-1] == " "
            or (longest is not None and len(value) > longest)
            or not all(search(value) for search in patterns)
        ):
            raise _Unsure
        return value

    return check


def _choice(field: fields.ChoiceField) -> Check | None:
    if field.validators:
        return None
    choices = field.choice_strings_to_values

    def check(value: Any) -> Any:
        if type(value) is not str or value not in choices:
            raise _Unsure
        return choices[value]

    return check


def _decimal(field: fields.DecimalField) -> Check | None:
    if field.validators:
        return None
    convert = field.to_internal_value

    def check(value: Any) -> Any:
        if type(value) is not str and type(value) is not int:
            raise _Unsure
        try:
            return convert(value)
        except serializers.ValidationError:
            raise _Unsure from None

    return check


def _mapping(field: fields.DictField) -> Check | None:
    if (
        field.validators
        or not field.allow_empty
        or type(field.child) is not fields._UnvalidatedField
    ):
        return None

    def check(value: Any) -> Any:
        if type(value) is not dict or not all(type(key) is str for key in value):
            raise _Unsure
        return dict(value)

    return check


def _general(field: fields.Field) -> Check:
    """The field's own run_validation (no fast check for its kind)."""
    run = field.run_validation

    def check(value: Any) -> Any:
        try:
            return run(value)
        except serializers.ValidationError:
            raise _Unsure from None

    return check


def _check(field: fields.Field) -> Check:
    kind = type(field)
    check: Check | None = None
    if kind in (fields.CharField, fields.RegexField):
        check = _text(field)  # type: ignore[arg-type]
    elif kind is fields.ChoiceField and not field.allow_blank:
        check = _choice(field)  # type: ignore[arg-type]
    elif kind is fields.DecimalField and not field.localize:
        check = _decimal(field)  # type: ignore[arg-type]
    elif kind is fields.DictField:
        check = _mapping(field)  # type: ignore[arg-type]
    return check or _general(field)


class _Plan:
    """Per serializer instance: each writable field's name, check, whether it is required,
    whether it takes null, and how it is defaulted when missing."""

    def __init__(self, serializer: serializers.Serializer) -> None:
        self.fields = []
        self.usable = not serializer.validators and not getattr(serializer, "partial", False)
        for field in serializer._writable_fields:
            if getattr(serializer, "validate_" + field.field_name, None) is not None:
                self.usable = False
            if field.source == "*" or len(field.source_attrs) != 1:
                self.usable = False
            # Missing: DRF's get_default raises SkipField for a field without a default.
            default = None if field.default is empty else field.get_default
            self.fields.append(
                (
                    field.field_name,
                    field.source_attrs[0],
                    _check(field),
                    field.required,
                    field.allow_null,
                    default,
                )  # fmt: skip
            )


class FastValidation:
    """A serializer mixin: `run_validation` answers a plainly valid body directly (see the
    module's docstring), anything else through DRF."""

    def run_validation(self, data: Any = empty) -> Any:
        validated = self.plain_validation(data)
        if validated is None:
            return super().run_validation(data)  # type: ignore[misc]
        return validated

    def plain_validation(self, data: Any) -> dict[str, Any] | None:
        """The validated body when every value is plainly right, else None (DRF decides)."""
        if type(data) is not dict:
            return None
        plan = self._fast_plan
        if not plan.usable:
            return None
        validated: dict[str, Any] = {}
        try:
            for name, attribute, check, required, nullable, default in plan.fields:
                value = data.get(name, empty)
                if value is empty:
                    if required:
                        return None
                    if default is not None:
                        validated[attribute] = default()
                elif value is None:
                    if not nullable:
                        return None
                    validated[attribute] = None
                else:
                    validated[attribute] = check(value)
            return self.validate(validated)  # type: ignore[attr-defined,no-any-return]
        except (_Unsure, SkipField, serializers.ValidationError):
            return None

    @functools.cached_property
    def _fast_plan(self) -> _Plan:
        return _Plan(self)  # type: ignore[arg-type]
