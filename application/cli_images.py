"""The commands on image names: register, get, list, delete, history."""

from __future__ import annotations

import json
import sys
from typing import Any, Literal

import click

from imageledger.cli_context import (
    ACTOR_HELP,
    EXIT_CONFLICT,
    EXIT_NOT_FOUND,
    GET_COLUMNS,
    HISTORY_COLUMNS,
    LIST_COLUMNS,
    AlreadyReported,
    Settings,
    document,
    echo_lines,
    entry_json,
    error_line,
    flag_names,
    history_row,
    image_json,
    image_row,
    json_line,
    pairs,
    pass_settings,
    stored_history_row,
    stored_image_row,
    table,
)
from imageledger.errors import ImageNotFound, ImmutableImage, InvalidArgument

DESCRIPTOR_FLAGS = {
    "target.digest": "--digest",
    "target.mediaType": "--media-type",
    "target.size": "--size",
}


@click.command()
@click.argument("name")
@click.option("--digest", metavar="DIGEST", help="The target's digest (algorithm:hex).")
@click.option("--media-type", metavar="TYPE", help="The target's media type.")
@click.option("--size", metavar="BYTES", type=int, help="The target's size in bytes.")
@click.option(
    "--descriptor",
    metavar="FILE",
    help="Read the whole target descriptor as OCI JSON from FILE ('-' is stdin).",
)
@click.option(
    "--label",
    "labels",
    metavar="KEY=VALUE",
    multiple=True,
    help="A label; KEY= (no value) leaves it unset, as in containerd.",
)
@click.option(
    "--annotation",
    "annotations",
    metavar="KEY=VALUE",
    multiple=True,
    help="An annotation on the target descriptor (with --digest).",
)
@click.option("--actor", help=ACTOR_HELP)
@click.option("--reason", help="Why, for the audit log.")
@click.option("--if-absent", is_flag=True, help="Only create: fail if the name exists.")
@click.option(
    "--if-version",
    metavar="N",
    type=click.IntRange(min=0),
    help="Only write if the name is at version N (compare-and-swap).",
)
@click.option(
    "--immutable",
    is_flag=True,
    help="Make NAME write-once: bound to this digest for ever (cannot be undone).",
)
@pass_settings
def register(
    settings: Settings,
    name: str,
    digest: str | None,
    media_type: str | None,
    size: int | None,
    descriptor: str | None,
    labels: tuple[str, ...],
    annotations: tuple[str, ...],
    actor: str | None,
    reason: str | None,
    if_absent: bool,
    if_version: int | None,
    immutable: bool,
) -> None:
    """Point NAME at a descriptor.

    An upsert: registering the target and labels NAME already has writes
    nothing. Prints the name, its digest and the version this call left.

    An immutable name can be registered again at its digest (labels and
    annotations may change), never at another one, even after a delete:
    that exits 4.

    \b
    Examples:
      imageledger register docker.io/library/alpine:3.20 \\
        --media-type application/vnd.oci.image.index.v1+json --size 9218 \\
        --digest sha256:beefdbd8a1da6d2915566fde36db9db0b524eb737fc57cd1367effd16dc0d06d
      imageledger register app:1.0 --descriptor desc.json --label team=web --if-absent
      cat desc.json | imageledger register app:1.0 --descriptor -
      imageledger register app:1.4.2 --descriptor desc.json --immutable
    """
    target = _target(digest, media_type, size, descriptor, annotations)
    if if_absent and if_version is not None:
        raise click.UsageError("give --if-absent or --if-version, not both")
    expect: Literal["absent"] | int | None = "absent" if if_absent else if_version
    flags = DESCRIPTOR_FLAGS if descriptor is None else {}
    with settings.store() as store, flag_names(flags):
        image = store.register(
            name,
            target,
            pairs("--label", labels),
            namespace=settings.namespace,
            actor=actor,
            reason=reason,
            expect=expect,
            immutable=immutable,
        )
    if settings.json:
        click.echo(document(image_json(image)))
    else:
        bound = "  immutable" if image.immutable else ""
        click.echo(
            f"{image.name}  {image.target.digest}  version {image.version}{bound}"
        )


@click.command()
@click.argument("name")
@pass_settings
def get(settings: Settings, name: str) -> None:
    """Show the image NAME points at now.

    \b
    Examples:
      imageledger get docker.io/library/alpine:3.20
      imageledger --json get app:prod | jq -r .target.digest
    """
    if not settings.json:  # a table needs no Image: print the stored row
        with settings.reads() as reads:
            if reads is not None:
                stored = reads.get(name, namespace=settings.namespace)
                echo_lines(
                    table(GET_COLUMNS, [stored_image_row(stored, detailed=True)])
                )
                return
    with settings.store() as store:
        image = store.get(name, namespace=settings.namespace)
    if settings.json:
        click.echo(document(image_json(image)))
    else:
        echo_lines(table(GET_COLUMNS, [image_row(image, detailed=True)]))


@click.command(name="list")
@click.argument("filters", nargs=-1, metavar="[FILTER]...")
@click.option("-q", "--quiet", is_flag=True, help="Print names only.")
@pass_settings
def list_images(settings: Settings, filters: tuple[str, ...], quiet: bool) -> None:
    """List the images of the namespace, sorted by name.

    FILTERs are containerd's (as in `ctr images ls`): an image is listed when
    it matches any FILTER, and matches a FILTER when it matches every one of
    its comma-separated selectors, FIELD, FIELD==VALUE, FIELD!=VALUE or
    FIELD~=REGEX. FIELD is name, target.digest, target.mediatype,
    labels.KEY or annotations.KEY (the target's annotations); FIELD alone
    means it is present, != also holds when it is absent, ~= searches
    anywhere in it (Go's regular expressions, as containerd: RE2 syntax,
    linear time; one that does not compile is an error). Quote a field part or a
    value with "..." (backslash escapes as in Go), a REGEX also with /.../
    or |...| (needed for a REGEX with commas or spaces; inside quotes a
    backslash is doubled: \\\\. for \\.). Keys with dots
    need no quotes: labels.com.example.team.

    \b
    Examples:
      imageledger list
      imageledger -n prod ls -q
      imageledger --json list > images.jsonl
      imageledger list name==app:prod name==app:stage
      imageledger list 'labels.team==web,target.mediatype~=index'
      imageledger list 'annotations."org.opencontainers.image.ref.name"'
      imageledger ls -q 'name~=^registry\\.example/' labels.team!=web
      imageledger ls -q 'name~=/^app:1\\\\.[0-9]{1,2}$/'
    """
    if not filters and not settings.json:  # print the stored rows as they are
        with settings.reads() as reads:
            if reads is not None:
                stored = reads.list(namespace=settings.namespace)
                if quiet:
                    echo_lines(image["name"] for image in stored)
                else:
                    echo_lines(table(LIST_COLUMNS, map(stored_image_row, stored)))
                return
    from imageledger.domain.filters import parse

    parse(*filters)  # a malformed filter is refused before the store is opened
    with settings.store() as store:
        images = store.list(*filters, namespace=settings.namespace)
        if quiet:
            echo_lines(image.name for image in images)
        elif settings.json:
            echo_lines(json_line(image_json(image)) for image in images)
        else:
            echo_lines(table(LIST_COLUMNS, (image_row(i) for i in images)))


@click.command()
@click.argument("names", nargs=-1, required=True, metavar="NAME...")
@click.option(
    "--if-digest",
    metavar="DIGEST",
    help="Delete only while the name points at DIGEST.",
)
@click.option(
    "--force",
    is_flag=True,
    help="Also delete immutable names (recorded; they stay bound to their digest).",
)
@click.option("--actor", help=ACTOR_HELP)
@click.option("--reason", help="Why, for the audit log.")
@pass_settings
def delete(
    settings: Settings,
    names: tuple[str, ...],
    if_digest: str | None,
    force: bool,
    actor: str | None,
    reason: str | None,
) -> None:
    """Delete one or more names (their history stays in the log).

    Every name is checked for syntax before anything is deleted. A name that does not
    exist is reported and the others are still deleted; the exit code is then 3.
    An immutable name without --force is reported the same way, with exit code 4
    (the first name reported decides the code).

    \b
    Examples:
      imageledger rm app:old app:older --reason "superseded by 2.0"
      imageledger delete app:prod --if-digest \\
        sha256:9c1e2d3f4a5b6c7d8e9f0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f
      imageledger delete app:1.4.2 --force --reason "pulled: CVE-2026-1234"
    """
    from imageledger.domain.names import validate_name

    for name in names:
        validate_name(name)
    failed: int | None = None  # the exit code of the first name reported
    with settings.store() as store, flag_names({"if_digest": "--if-digest"}):
        for name in names:
            try:
                store.delete(
                    name,
                    namespace=settings.namespace,
                    actor=actor,
                    reason=reason,
                    if_digest=if_digest,
                    force=force,
                )
            except ImageNotFound as e:
                error_line(str(e))
                failed = failed or EXIT_NOT_FOUND
                continue
            except ImmutableImage as e:
                error_line(str(e.hinting("--force")))
                failed = failed or EXIT_CONFLICT
                continue
            if settings.json:
                click.echo(json_line({"namespace": settings.namespace, "name": name}))
            else:
                click.echo(name)
    if failed is not None:
        raise AlreadyReported(failed)


@click.command()
@click.argument("name")
@pass_settings
def history(settings: Settings, name: str) -> None:
    """Show every change to NAME, oldest first (who, when, what, why).

    \b
    Examples:
      imageledger history app:prod
      imageledger --json history app:prod | jq -r 'select(.actor=="ci") | .reason'
    """
    if not settings.json:  # a table needs no AuditEntry: print the stored rows
        with settings.reads() as reads:
            if reads is not None:
                stored = reads.history(name, namespace=settings.namespace)
                echo_lines(table(HISTORY_COLUMNS, map(stored_history_row, stored)))
                return
    with settings.store() as store:
        entries = store.history(name, namespace=settings.namespace)
    if settings.json:
        echo_lines(json_line(entry_json(entry)) for entry in entries)
    else:
        echo_lines(table(HISTORY_COLUMNS, (history_row(e) for e in entries)))


def _target(
    digest: str | None,
    media_type: str | None,
    size: int | None,
    descriptor: str | None,
    annotations: tuple[str, ...],
) -> dict[str, Any]:
    parts = {"--digest": digest, "--media-type": media_type, "--size": size}
    if descriptor is not None:
        given = [flag for flag, value in parts.items() if value is not None]
        if given or annotations:
            extra = ", ".join([*given, *(["--annotation"] if annotations else [])])
            raise click.UsageError(f"--descriptor cannot be combined with {extra}")
        return _read_descriptor(descriptor)
    missing = [flag for flag, value in parts.items() if value is None]
    if missing:
        raise click.UsageError(
            f"missing {', '.join(missing)}: give --digest, --media-type and --size, "
            "or --descriptor FILE"
        )
    target: dict[str, Any] = {"mediaType": media_type, "digest": digest, "size": size}
    if annotations:
        target["annotations"] = pairs("--annotation", annotations)
    return target


def _read_descriptor(source: str) -> dict[str, Any]:
    from imageledger.domain.descriptor import MAX_DESCRIPTOR_BYTES

    where = "standard input" if source == "-" else repr(source)
    try:
        if source == "-":
            raw = sys.stdin.buffer.read(MAX_DESCRIPTOR_BYTES + 1)
        else:
            with open(source, "rb") as f:
                raw = f.read(MAX_DESCRIPTOR_BYTES + 1)
    except OSError as e:
        problem = f"cannot read {where}: {e.strerror}"
        raise InvalidArgument("--descriptor", problem) from e
    if len(raw) > MAX_DESCRIPTOR_BYTES:
        raise InvalidArgument(
            "--descriptor", f"{where} is over {MAX_DESCRIPTOR_BYTES} bytes"
        )
    try:
        data = json.loads(raw.decode("utf-8"), object_pairs_hook=_unique_keys)
    except UnicodeDecodeError:
        raise InvalidArgument("--descriptor", f"{where} is not UTF-8 text") from None
    except json.JSONDecodeError as e:
        raise InvalidArgument(
            "--descriptor",
            f"{where} is not JSON ({e.msg} at line {e.lineno}, " f"column {e.colno})",
        ) from None
    except (RecursionError, ValueError) as e:
        raise InvalidArgument("--descriptor", f"{where}: {e}") from None
    if not isinstance(data, dict):
        raise InvalidArgument(
            "--descriptor",
            f"{where} must hold a JSON object, not {type(data).__name__}",
        )
    return data


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for key, value in pairs:
        if key in data:
            raise ValueError(f"key {key!r} appears twice")
        data[key] = value
    return data
