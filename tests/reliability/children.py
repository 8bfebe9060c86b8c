"""Child processes of the reliability suite: start, read, release, kill.

A child is `reliability_worker.py MODE ...` on real pipes. Lines are read with
a deadline (select on the raw pipe), so a stuck child fails its test instead of
hanging the run; the deadline is a safety net, never a measurement.
"""

from __future__ import annotations

import json
import select
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

WORKER = Path(__file__).resolve().with_name("reliability_worker.py")
DEADLINE = 120.0  # seconds a child may take to print its next line
READY = "READY"


class Child:
    """One running worker, with its stdout read line by line."""

    def __init__(self, *args: str | Path, **popen: Any) -> None:
        self.command = [sys.executable, str(WORKER), *map(str, args)]
        self.process = subprocess.Popen(
            self.command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            bufsize=0,  # raw pipes: nothing read ahead of the line asked for
            **popen,
        )
        self._buffer = b""

    def line(self, deadline: float = DEADLINE) -> str | None:
        """The next complete line, or None at end of file."""
        assert self.process.stdout is not None
        until = time.monotonic() + deadline
        while b"\n" not in self._buffer:
            left = until - time.monotonic()
            readable, _, _ = select.select([self.process.stdout], [], [], max(left, 0))
            if not readable:
                self.kill()
                pytest.fail(f"{self.command} printed nothing for {deadline} s")
            chunk = self.process.stdout.read(65536)
            if not chunk:
                return None
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line.decode()

    def wait_ready(self) -> None:
        line = self.line()
        if line != READY:
            pytest.fail(f"{self.command} said {line!r}, not {READY}:\n{self.stderr()}")

    def send(self, text: str = "go") -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(f"{text}\n".encode())

    def kill(self) -> None:
        """SIGKILL, and wait for the process to be gone."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()

    def rest(self) -> list[str]:
        """Every complete line still to read, until the pipe closes.

        A partial last line (the child was killed while writing it) is dropped:
        its call was not acknowledged.
        """
        lines = []
        while (line := self.line()) is not None:
            lines.append(line)
        return lines

    def finish(self) -> list[str]:
        """Wait for a normal exit (code 0); return the lines not read yet."""
        lines = self.rest()
        self.process.wait(timeout=DEADLINE)
        if self.process.returncode != 0:
            pytest.fail(f"{self.command} failed:\n{self.stderr()}")
        return lines

    def stderr(self) -> str:
        assert self.process.stderr is not None
        if self.process.poll() is None:
            return "(still running)"
        return self.process.stderr.read().decode(errors="replace")

    def close(self) -> None:
        self.kill()
        for pipe in (self.process.stdin, self.process.stdout, self.process.stderr):
            if pipe is not None:
                pipe.close()


def records(lines: list[str]) -> list[dict[str, Any]]:
    """The JSON objects among `lines` (progress markers are plain words)."""
    return [json.loads(line) for line in lines if line.startswith("{")]
