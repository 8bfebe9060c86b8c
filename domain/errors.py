"""The error hierarchy every imageledger error derives from.

The domain raises the first four; the infrastructure adds StoreError and
IntegrityError; `imageledger.errors` is the public module that names them all.
"""

from __future__ import annotations


class ImageLedgerError(Exception):
    """Base class of every error imageledger raises on purpose."""


class InvalidArgument(ImageLedgerError, ValueError):
    """Bad input: a name, namespace, descriptor, label, filter or point in time.

    `field` names what was wrong (``"name"``, ``"target.digest"``, ...) and
    `rule` says which rule it broke, so callers can show or test either.
    """

    def __init__(self, field: str, rule: str) -> None:
        super().__init__(f"invalid {field}: {rule}")
        self.field = field
        self.rule = rule


class ImageNotFound(ImageLedgerError, LookupError):
    """The image name does not exist (never registered, or deleted)."""

    def __init__(self, name: str, namespace: str, detail: str = "") -> None:
        message = f'image "{name}" not found in namespace "{namespace}"'
        super().__init__(f"{message}: {detail}" if detail else message)
        self.name = name
        self.namespace = namespace


class Conflict(ImageLedgerError):
    """A conditional write found the image in another state than expected."""


def shown(value: object, limit: int = 40) -> str:
    """`value` as an error message shows it: bounded, whatever the caller passed.

    Texts are quoted and cut to `limit` characters, small numbers written out;
    anything else is named by its type, since its repr may be huge or recurse
    without end.
    """
    if isinstance(value, str):
        return repr(value if len(value) <= limit else value[:limit] + "...")
    if isinstance(value, int) and value.bit_length() > 64:
        return f"an integer of {value.bit_length()} bits"
    if value is None or isinstance(value, (bool, int, float)):
        return repr(value)
    return f"a {type(value).__name__}"
