"""The error hierarchy every imageledger error derives from.

The domain raises the first four and BrokenRule; the infrastructure adds StoreError and
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


class ImmutableImage(Conflict):
    """A write that would move or (without force) delete an immutable name.

    `digest` is what the name is bound to; `target` the digest the refused
    register asked for (None for a refused delete); both add the media type
    and size when the digests are equal and only those differ. `force` is how the
    caller says "force" in the hint: ``force=True``, or ``--force`` on the
    command line.
    """

    def __init__(
        self,
        name: str,
        namespace: str,
        digest: str,
        *,
        target: str | None = None,
        force: str = "force=True",
    ) -> None:
        refused = (
            f"delete it with {force}"
            if target is None
            else f"it cannot point at {target}"
        )
        super().__init__(
            f'image "{name}" in namespace "{namespace}" is immutable at {digest}; '
            + refused
        )
        self.name = name
        self.namespace = namespace
        self.digest = digest
        self.target = target

    def hinting(self, force: str) -> ImmutableImage:
        """The same refusal, naming the option that forces a delete as `force`."""
        return ImmutableImage(
            self.name, self.namespace, self.digest, target=self.target, force=force
        )


class BrokenRule(ImageLedgerError):
    """An event that a name's stream may not hold where it stands.

    Live writes never make one (their commands refuse first); a history file
    being imported, or a log being verified, may hold one. `field` names the
    part of the event that breaks the rule, `problem` says which rule.
    """

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


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


def shown_repr(value: object, limit: int = 80) -> str:
    """`value`'s repr as a message shows it, cut to `limit` characters (for
    values the store read itself, such as a view's column or a descriptor)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
