"""Rebuilding values this store validated before, without validating them again.

The read path turns each view row back into an `Image` and its `Descriptor`.
Those rows were written from validated events, so checking them again would
only repeat work; pydantic's `model_construct` skips validation but still looks
up every field's default, which was most of a `get`. `rebuild` takes every
field by name and sets exactly what `model_construct` sets.
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel

Model = TypeVar("Model", bound=BaseModel)


def rebuild(cls: type[Model], fields: dict[str, Any]) -> Model:
    """`cls` holding `fields` (all of its fields, by name), unvalidated."""
    model = cls.__new__(cls)
    object.__setattr__(model, "__dict__", fields)
    object.__setattr__(
        model,
        "__pydantic_fields_set__",
        {k for k, v in fields.items() if v is not None},
    )
    object.__setattr__(model, "__pydantic_extra__", None)
    object.__setattr__(model, "__pydantic_private__", None)
    return model
