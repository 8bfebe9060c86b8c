"""Rebuilding values this store validated before, without validating them again.

The read path turns each view row back into an `Image` and its `Descriptor`.
Those rows were written from validated events, so checking them again would
only repeat work; pydantic's `model_construct` skips validation but still looks
up every field's default, which dominated a `get`. `unvalidated` takes every
field by name and sets exactly what `model_construct` sets.
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel

Model = TypeVar("Model", bound=BaseModel)


def unvalidated(
    cls: type[Model],
    fields: dict[str, Any],
    fields_set: set[str] | None = None,
    *,
    extra: dict[str, Any] | None = None,
) -> Model:
    """`cls` holding `fields` (all of its fields, by name), unvalidated.

    `fields_set` names the fields that are not None, when the caller knows
    them already (computing it is costly). `extra` is what a
    model that allows extra fields holds besides its own (`{}` when none, as
    validation leaves it; None for a model that forbids them).
    """
    model = _new(cls)
    _set_dict(model, fields)
    if fields_set is None:
        fields_set = {k for k, v in fields.items() if v is not None}
    if extra:  # validation counts every extra field as set
        fields_set = fields_set | extra.keys()
    _set_fields_set(model, fields_set)
    _set_extra(model, extra)
    _set_private(model, None)
    return model


# BaseModel's four slots, set through their descriptors: the cheapest way in
# Python (cheaper than object.__setattr__ by name), and exactly the
# attributes model_construct sets. BaseModel does not override __new__.
_new = object.__new__
_set_dict = BaseModel.__dict__["__dict__"].__set__
_set_fields_set = BaseModel.__dict__["__pydantic_fields_set__"].__set__
_set_extra = BaseModel.__dict__["__pydantic_extra__"].__set__
_set_private = BaseModel.__dict__["__pydantic_private__"].__set__
