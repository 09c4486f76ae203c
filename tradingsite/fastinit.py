"""Model instances built without the generality of `Model.__init__`, for the hot models.

`Model.__init__` walks every field with checks for positional and keyword arguments, virtual
fields, deferred values and properties, and sends `pre_init` and `post_init` whether or not
anyone listens. Building the instances of a batch (orders, their events and fills, the
venue's orders and reports, each row read back) was a quarter of the worker's CPU and a sixth
of the web's in the batch phase (py-spy --gil). `FastInit`, first among a model's bases, does
the same work directly for the cases the order path uses:

- `Model(field=value, ...)`: every concrete field from its keyword (a foreign key by its name,
  an instance or None, or by its attname, an id) or its default, properties from the
  remaining keywords;
- `Model.from_db(db, names, values)` with a value for every concrete field: the values set
  as they are, the instance marked as loaded from `db`.

Anything else, or a model, field or project setting it was not written for, takes Django's
own path: positional arguments, deferred loading, a `pre_init` or `post_init` receiver,
database routers, one-to-one or multi-column relations, generated or virtual fields, a
field whose attribute is not Django's plain deferred attribute. tests/unit/test_fastinit.py
holds both paths equal, instance by instance.
"""

from __future__ import annotations

import datetime
import functools
import inspect
from collections.abc import Callable
from typing import Any, NamedTuple

from django.conf import settings
from django.core.exceptions import FieldDoesNotExist
from django.core.signals import setting_changed
from django.db import DEFAULT_DB_ALIAS
from django.db.models import Field
from django.db.models.base import ModelState
from django.db.models.fields.related_descriptors import ForeignKeyDeferredAttribute
from django.db.models.query_utils import DeferredAttribute
from django.db.models.signals import post_init, pre_init
from django.dispatch import receiver
from django.utils import timezone


class _Field(NamedTuple):
    name: str
    attname: str
    related: type | None  # a foreign key's model (set by instance or by id)
    target: str  # the related model's attribute the key holds
    default: Any  # the field's get_default


class _Plan(NamedTuple):
    fields: tuple[_Field, ...]
    attnames: tuple[str, ...]
    properties: frozenset[str]


@functools.cache
def _plan(model: type) -> _Plan | None:
    """How to build `model`'s instances directly, or None when Django's path must."""
    opts = model._meta
    if settings.DATABASE_ROUTERS or list(opts.fields) != list(opts.concrete_fields):
        return None
    fields = []
    for field in opts.concrete_fields:
        if field.column is None or getattr(field, "generated", False):
            return None
        descriptor = inspect.getattr_static(model, field.attname, None)
        if type(descriptor) not in (DeferredAttribute, ForeignKeyDeferredAttribute):
            return None
        related, target = None, ""
        if field.is_relation:
            if not field.many_to_one or len(field.related_fields) != 1:
                return None
            related = field.remote_field.model
            target = field.related_fields[0][1].attname
        fields.append(_Field(field.name, field.attname, related, target, _default(field)))
    return _Plan(tuple(fields), tuple(f.attname for f in fields), frozenset(opts._property_names))


_utc_now = functools.partial(datetime.datetime.now, datetime.UTC)


def _default(field: Field) -> Callable[[], Any]:
    """What makes the field's default: `timezone.now` as what it answers with USE_TZ (the
    venue's reports and the fills take it, one call per row, and its settings read was 4 % of a
    worker's CPU in the batch phase); else Django's `get_default`."""
    if field.default is timezone.now and settings.USE_TZ:
        return _utc_now
    return field.get_default


@receiver(setting_changed)
def _settings_changed(setting: str, **kwargs: Any) -> None:
    if setting in ("USE_TZ", "DATABASE_ROUTERS"):  # both decide a plan
        _plan.cache_clear()


def _signals_heard() -> bool:
    return bool(pre_init.receivers or post_init.receivers)


class FastInit:
    """A model mixin: `Model(...)` and `Model.from_db(...)` without `Model.__init__`'s
    generality where the order path's cases allow (see the module's docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        plan = _plan(type(self))
        if args or plan is None or _signals_heard():
            super().__init__(*args, **kwargs)
            return
        state = self._state = ModelState()
        values = self.__dict__
        for name, attname, related, target, default in plan.fields:
            if related is not None and name in kwargs:
                obj = kwargs.pop(name)
                if obj is None:
                    values[attname] = None
                else:
                    if not isinstance(obj, related):
                        setattr(self, name, obj)  # Django's descriptor raises its ValueError
                    values[attname] = getattr(obj, target)
                    # As the descriptor does, with the default router: both on one database.
                    state.db = DEFAULT_DB_ALIAS
                    if obj._state.db is None:
                        obj._state.db = DEFAULT_DB_ALIAS
                    elif obj._state.db != DEFAULT_DB_ALIAS:
                        setattr(self, name, obj)  # Django's descriptor decides
                state.fields_cache[name] = obj
            elif attname in kwargs:
                values[attname] = kwargs.pop(attname)
            else:
                values[attname] = default()
        if kwargs:  # properties, or a field named twice (by name and by attname)
            opts = self._meta  # type: ignore[attr-defined]
            unexpected = []
            for name in kwargs:
                if name not in plan.properties:
                    try:
                        opts.get_field(name)
                    except FieldDoesNotExist:
                        unexpected.append(name)
            if unexpected:
                names = ", ".join(repr(name) for name in unexpected)
                raise TypeError(
                    f"{type(self).__name__}() got unexpected keyword arguments: {names}"
                )
            for name, value in kwargs.items():
                setattr(self, name, value)

    @classmethod
    def from_db(cls, db: str | None, field_names: Any, values: Any) -> Any:
        plan = _plan(cls)
        if plan is None or len(values) != len(plan.attnames) or _signals_heard():
            return super().from_db(db, field_names, values)  # type: ignore[misc]
        new = cls.__new__(cls)
        state = ModelState()
        state.adding = False
        state.db = db
        attributes = new.__dict__
        attributes["_state"] = state
        attributes.update(zip(plan.attnames, values, strict=True))
        return new
