"""End to end: `import-layout` and `export-layout` through the installed console
script, on both backends. Each test asserts the exit code, stdout and stderr."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from test_layouts import FIXTURES, IMAGE_NAME, REF_NAME, UMOCI_1_0, UMOCI_1_1, entry

from conftest import INDEX, Rows, Run, descriptor, ok
from imageledger import ImageStore

UMOCI = str(FIXTURES / "umoci-layout")
SKOPEO = str(FIXTURES / "skopeo-app-1.1.tar")
BASE = "docker.io/library/app"


UMOCI_TABLE = (
    f"NAME                          {'DIGEST':71}  RESULT\n"
    f"docker.io/library/app:1.0     {UMOCI_1_0}  {{0}}\n"
    f"docker.io/library/app:1.1     {UMOCI_1_1}  {{0}}\n"
    f"docker.io/library/app:latest  {UMOCI_1_0}  {{0}}\n"
)


def test_import_layout_prints_each_name_and_what_it_did(
    run: Run, log_rows: Rows
) -> None:
    out = ok(run("import-layout", UMOCI, "--base-name", BASE, "--reason", "umoci"))
    summary = "3 registered, 0 unchanged, 0 skipped (no name)\n"
    assert out == UMOCI_TABLE.format("registered") + summary
    rows = log_rows()
    assert len(rows) == 3
    again = ok(run("import-layout", UMOCI, "--base-name", BASE))
    summary = "0 registered, 3 unchanged, 0 skipped (no name)\n"
    assert again == UMOCI_TABLE.format("unchanged") + summary
    assert log_rows() == rows


def test_import_layout_counts_unnamed_entries_and_hints_at_base_name(
    run: Run, log_rows: Rows
) -> None:
    out = ok(run("import-layout", UMOCI))
    assert out == (
        "0 registered, 0 unchanged, 3 skipped (no name); "
        "--base-name names entries that have only a tag\n"
    )
    assert log_rows() == []


def test_import_layout_reads_an_oci_archive(run: Run, location: str) -> None:
    out = ok(run("-n", "prod", "import-layout", SKOPEO, "--actor", "ci"))
    assert out == (
        f"NAME                       {'DIGEST':71}  RESULT\n"
        f"docker.io/library/app:1.1  {UMOCI_1_1}  registered\n"
        "1 registered, 0 unchanged, 0 skipped (no name)\n"
    )
    with ImageStore.open(location) as store:
        [entry_] = store.history("docker.io/library/app:1.1", namespace="prod")
    assert (entry_.actor, entry_.reason) == ("ci", None)


def test_import_layout_json_is_one_document_with_the_descriptors_as_written(
    run: Run,
) -> None:
    ok(run("import-layout", UMOCI, "--base-name", BASE))
    document = json.loads(
        ok(run("--json", "import-layout", UMOCI, "--base-name", BASE))
    )
    assert list(document) == ["registered", "unchanged", "skipped"]
    assert (document["registered"], document["skipped"]) == ([], 0)
    written = json.loads((FIXTURES / "umoci-layout" / "index.json").read_bytes())
    assert [i["target"] for i in document["unchanged"]] == written["manifests"]
    assert [i["name"] for i in document["unchanged"]] == [
        f"{BASE}:1.0",
        f"{BASE}:1.1",
        f"{BASE}:latest",
    ]
    assert document["unchanged"][0]["version"] == 1


def test_import_layout_refuses_a_missing_blob_with_one_line_and_exit_2(
    run: Run, tmp_path: Path, log_rows: Rows
) -> None:
    layout = tmp_path / "layout"
    shutil.copytree(UMOCI, layout)
    hex_ = UMOCI_1_1.removeprefix("sha256:")
    (layout / "blobs" / "sha256" / hex_).unlink()
    result = run("import-layout", str(layout), "--base-name", BASE)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == (
        f"Error: invalid index.json manifests[1]: its blob blobs/sha256/{hex_} is missing\n"
    )
    assert log_rows() == []


def test_import_layout_errors_are_one_line_with_exit_2(
    run: Run, log_rows: Rows
) -> None:
    cases = [
        (["import-layout", "nope"], "Error: invalid layout: 'nope' does not exist\n"),
        (
            ["import-layout", UMOCI, "--base-name", "app:1"],
            "Error: invalid --base-name: 'app:1' has a tag or digest; "
            "give a repository name, like docker.io/library/app\n",
        ),
        (
            ["import-layout"],
            "Error: Missing argument 'DIR'. (see 'imageledger import-layout --help')\n",
        ),
    ]
    for args, stderr in cases:
        result = run(*args)
        assert (result.returncode, result.stdout, result.stderr) == (2, "", stderr)
    assert log_rows() == []


def test_export_layout_writes_the_index_and_refuses_to_overwrite_it(
    run: Run, tmp_path: Path, location: str
) -> None:
    with ImageStore.open(location) as store:
        store.register("app:1", descriptor(1))
        store.register("app:2", descriptor(2, annotations={"k": "v"}))
    assert ok(run("export-layout", "snap")) == (
        "exported 2 images to snap (index.json only, no blobs)\n"
    )
    index = json.loads((tmp_path / "snap" / "index.json").read_bytes())
    assert index == {
        "schemaVersion": 2,
        "mediaType": INDEX,
        "manifests": [
            {**descriptor(1), "annotations": {REF_NAME: "1", IMAGE_NAME: "app:1"}},
            {
                **descriptor(2),
                "annotations": {"k": "v", REF_NAME: "2", IMAGE_NAME: "app:2"},
            },
        ],
    }
    again = run("export-layout", "snap")
    assert (again.returncode, again.stdout) == (2, "")
    assert again.stderr == (
        "Error: invalid layout: 'snap' already exists and is not an empty directory "
        "(give a new or empty one: nothing is overwritten)\n"
    )
    assert json.loads(ok(run("--json", "-n", "none", "export-layout", "empty"))) == {
        "path": "empty",
        "images": 0,
    }


def test_an_exported_layout_imports_back_with_no_blob_check(
    run: Run, tmp_path: Path
) -> None:
    ok(run("import-layout", UMOCI, "--base-name", BASE))
    ok(run("export-layout", "snap"))
    refused = run("-n", "copy", "import-layout", "snap")
    assert refused.returncode == 2
    assert refused.stderr.startswith("Error: invalid index.json manifests[0]: its blob")
    out = ok(run("-n", "copy", "import-layout", "snap", "--no-blob-check"))
    assert out.endswith("3 registered, 0 unchanged, 0 skipped (no name)\n")
    assert ok(run("-n", "copy", "list", "-q")) == ok(run("list", "-q"))


def test_the_layout_commands_help_shows_examples(run: Run) -> None:
    for command in ("import-layout", "export-layout"):
        assert "Examples:\n    imageledger " in ok(run(command, "--help"))
    assert "metadata only" in ok(run("export-layout", "--help"))


def test_import_layout_names_entries_by_the_containerd_annotation(
    run: Run, tmp_path: Path
) -> None:
    layout = tmp_path / "layout"
    raw = entry(layout, 1, annotations={IMAGE_NAME: "quay.io/x/y:2"})
    (layout / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    (layout / "index.json").write_text(
        json.dumps({"schemaVersion": 2, "manifests": [raw]})
    )
    ok(run("import-layout", "layout"))
    assert json.loads(ok(run("--json", "get", "quay.io/x/y:2")))["target"] == raw


def test_the_docs_layout_commands_print_what_the_docs_show(
    tmp_path: Path,
) -> None:
    page = (Path(__file__).resolve().parent.parent / "docs" / "layouts.md").read_text()
    [block] = re.findall(
        r"```\n(\$ imageledger import-layout tests/.*?)```", page, re.S
    )
    steps = re.findall(r"^\$ (.*)\n((?:(?!\$ ).*\n)*)", block, flags=re.MULTILINE)
    assert len(steps) == 7
    shutil.copytree(FIXTURES, tmp_path / "tests" / "fixtures")
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMAGELEDGER_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    code = 0
    for command, shown in steps:
        if command == "echo $?":
            assert f"{code}\n" == shown
            continue
        result = subprocess.run(
            ["bash", "-c", command],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        code = result.returncode
        assert result.stdout + result.stderr == shown, command
