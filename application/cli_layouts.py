"""The commands on OCI image layouts: import-layout and export-layout."""

from __future__ import annotations

import click

from imageledger.cli_context import (
    ACTOR_HELP,
    Settings,
    echo_lines,
    flag_names,
    pass_settings,
)
from imageledger.cli_render import document, image_json, printable, table

IMPORT_COLUMNS = ("NAME", "DIGEST", "RESULT")


@click.command(name="import-layout")
@click.argument("layout", metavar="DIR")
@click.option(
    "--base-name",
    metavar="NAME",
    help="Join bare tags in org.opencontainers.image.ref.name to NAME "
    "(docker.io/library/app + 1.0 is docker.io/library/app:1.0).",
)
@click.option(
    "--no-blob-check",
    is_flag=True,
    help="Do not require each entry's blob in blobs/ (for metadata-only layouts, "
    "such as export-layout writes).",
)
@click.option("--actor", help=ACTOR_HELP)
@click.option("--reason", help="Why, for the audit log.")
@click.option(
    "--max-members",
    type=int,
    metavar="N",
    help="Refuse an oci-archive of more than N members.  [default: 100000]",
)
@click.option(
    "--max-header-bytes",
    type=int,
    metavar="N",
    help="Refuse a tar extended (PAX) header over N bytes.  [default: 1 MiB]",
)
@click.option(
    "--max-blob-bytes",
    type=int,
    metavar="N",
    help="Refuse an entry whose blob is over N bytes.  [default: 64 MiB]",
)
@click.option(
    "--max-total-bytes",
    type=int,
    metavar="N",
    help="Refuse a layout whose entries' blobs are over N bytes in all.  "
    "[default: 1 GiB]",
)
@pass_settings
def import_layout(
    settings: Settings,
    layout: str,
    base_name: str | None,
    no_blob_check: bool,
    actor: str | None,
    reason: str | None,
    max_members: int | None,
    max_header_bytes: int | None,
    max_blob_bytes: int | None,
    max_total_bytes: int | None,
) -> None:
    """Register the images of an OCI image layout (a directory or an oci-archive tar).

    Names each index.json entry as containerd's import does: its
    io.containerd.image.name annotation, else its
    org.opencontainers.image.ref.name (a bare tag joined to --base-name; a
    full reference as it is, if under --base-name). Entries without a name are
    skipped and counted. Each entry's blob must be in the layout with the
    entry's size and digest. All names are registered in one transaction,
    keeping their labels; importing the same layout again writes nothing.

    \b
    Examples:
      imageledger import-layout ./app-layout --base-name docker.io/library/app
      imageledger import-layout app.tar --reason "release 1.4.2"
      imageledger import-layout ./exported --no-blob-check
    """
    caps = {
        "max_members": max_members,
        "max_header_bytes": max_header_bytes,
        "max_blob_bytes": max_blob_bytes,
        "max_total_bytes": max_total_bytes,
    }
    flags = {"base_name": "--base-name"}
    flags |= {cap: "--" + cap.replace("_", "-") for cap in caps}
    with settings.store() as store, flag_names(flags):
        from imageledger import LayoutLimits  # heavy: only for this command

        given = {cap: value for cap, value in caps.items() if value is not None}
        result = store.import_layout(
            layout,
            namespace=settings.namespace,
            actor=actor,
            reason=reason,
            base_name=base_name,
            check_blobs=not no_blob_check,
            limits=LayoutLimits(**given),
        )
    if settings.json:
        click.echo(
            document(
                {
                    "registered": [image_json(i) for i in result.registered],
                    "unchanged": [image_json(i) for i in result.unchanged],
                    "skipped": result.skipped,
                }
            )
        )
        return
    rows = [[i.name, i.target.digest, "registered"] for i in result.registered]
    rows += [[i.name, i.target.digest, "unchanged"] for i in result.unchanged]
    if rows:
        echo_lines(table(IMPORT_COLUMNS, rows))
    summary = (
        f"{len(result.registered)} registered, {len(result.unchanged)} unchanged, "
        f"{result.skipped} skipped (no name)"
    )
    if result.skipped and base_name is None:
        summary += "; --base-name names entries that have only a tag"
    click.echo(summary)


@click.command(name="export-layout")
@click.argument("layout", metavar="DIR")
@click.argument("filters", nargs=-1, metavar="[FILTER]...")
@pass_settings
def export_layout(settings: Settings, layout: str, filters: tuple[str, ...]) -> None:
    """Write an OCI image layout of the images (those FILTER selects, as in list).

    DIR gets oci-layout, an empty blobs/ and index.json, whose entries are the
    images' descriptors with their names in the io.containerd.image.name and
    org.opencontainers.image.ref.name (the tag) annotations. No blobs: the
    layout is metadata only, as the store is; import-layout --no-blob-check
    reads it back. DIR must not exist (its parent must) or be empty: nothing
    is overwritten.

    \b
    Examples:
      imageledger export-layout ./snapshot
      imageledger -n prod export-layout /tmp/prod-images
    """
    with settings.store() as store:
        count = store.export_layout(layout, *filters, namespace=settings.namespace)
    if settings.json:
        click.echo(document({"path": layout, "images": count}))
    else:
        noun = "image" if count == 1 else "images"
        click.echo(
            f"exported {count} {noun} to {printable(layout)} "
            "(index.json only, no blobs)"
        )
