"""The `serve` transcripts of the README and of docs/serve.md are what a real run
prints: the server runs on a free port (the transcripts say 8080), and every
other step runs in a shell, as the reader would."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from test_docs import README, _code_blocks, _doc, _shell, _steps, _timeless

from serving import serving

SHOWN = "127.0.0.1:8080"


def _transcripts() -> list[tuple[str, str]]:
    found = [
        (where, block)
        for where, text in (("README.md", README), ("docs/serve.md", _doc("serve.md")))
        for block in _code_blocks(text)
        if block.startswith("$ cat tokens")
    ]
    assert [where for where, _ in found] == ["README.md", "docs/serve.md"]
    return found


@pytest.mark.parametrize(
    ("where", "transcript"), _transcripts(), ids=["readme", "docs"]
)
def test_the_serve_transcript_is_what_a_real_run_prints(
    tmp_path: Path, where: str, transcript: str
) -> None:
    steps = _steps(transcript)
    assert steps[1][0] == "imageledger serve --token-file tokens &"
    (tmp_path / "tokens").write_text(steps[0][1])
    variables = ""
    with serving(
        str(tmp_path / "imageledger.db"), token_file=tmp_path / "tokens"
    ) as server:
        actual = f"{server.host}:{server.port}"
        assert f"Listening on http://{SHOWN}\n" == steps[1][1]
        for command, shown in steps[2:]:
            if re.fullmatch(r"[A-Z]='[^']*'( [A-Z]='[^']*')*", command):
                variables = command
                continue
            if command.startswith("cat "):
                (tmp_path / command.split()[1]).write_text(shown)
                continue
            result = _shell(f"{variables}; {command.replace(SHOWN, actual)}", tmp_path)
            printed = (result.stdout + result.stderr).replace(actual, SHOWN)
            assert _timeless(printed) == _timeless(shown), command
