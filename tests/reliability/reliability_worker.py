"""A separate OS process for the reliability suite: one store, one job, then exit
or be killed.

Run as `python tests/reliability/reliability_worker.py MODE DB ...` (see
`--help`). Every mode opens its own ImageStore (except `hold-lock`, which is a
plain SQLite client), prints READY once it is ready to work, and reports each
result as one JSON line on stdout, flushed before it does anything else: a line
the parent has read is a call that returned. Modes that must not run unbounded
stop after a generous count, in case the parent is gone.
"""

from __future__ import annotations

import argparse
import json
import random
import sqlite3
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from imageledger import ImageStore
from imageledger.errors import Conflict, ImageLedgerError, ImageNotFound

MANIFEST = "application/vnd.oci.image.manifest.v1+json"
READY = "READY"
REBUILT = "REBUILT"
MAX_LOOP = 1_000_000  # register-loop stops here if nobody kills it

# The only errors a well-formed call may raise under contention: a failed condition
# (Conflict) or a name that is gone (ImageNotFound), as docs/library.md describes them.
DOCUMENTED = (Conflict, ImageNotFound)
OPERATIONS = ["register", "create", "retarget", "delete", "delete-if", "delete-expect"]
WEIGHTS = [35, 10, 25, 10, 12, 8]


def digest(n: int) -> str:
    """The same digests as tests/conftest.py: valid sha256, different for every n."""
    return f"sha256:{n:064x}"


def descriptor(n: int) -> dict[str, Any]:
    """The same manifest descriptors as tests/conftest.py."""
    return {"mediaType": MANIFEST, "digest": digest(n), "size": 1000 + n}


def shared_name(i: int) -> str:
    return f"registry.example/team/app{i}:latest"


def emit(value: object) -> None:
    sys.stdout.write((value if isinstance(value, str) else json.dumps(value)) + "\n")
    sys.stdout.flush()


def wait_for_go(gate: bool) -> None:
    emit(READY)
    if gate:
        sys.stdin.readline()  # a line, or EOF when the parent gave up


def mixed(db: Path, worker: int, count: int, names: int, seed: int, gate: bool) -> None:
    """`count` random operations on `names` shared names; one line per operation.

    Each line has the operation's sequence number, kind, name and outcome:
    "ok" (with the version and digest a register returned), a documented error
    class name, or "unexpected" with the error. Every write carries the reason
    "w<worker>s<seq>", so the parent can find each acknowledged one in the log.
    """
    rng = random.Random(seed)
    with ImageStore.open(db) as store:
        wait_for_go(gate)
        for seq in range(count):
            op = rng.choices(OPERATIONS, WEIGHTS)[0]
            name = shared_name(rng.randrange(names))
            reason = f"w{worker}s{seq}"
            number = 10_000_000 * (worker + 1) + seq  # a target of this write only
            line: dict[str, Any] = {"seq": seq, "op": op, "name": name}
            try:
                line.update(_operate(store, op, name, number, reason))
            except DOCUMENTED as e:
                line.update(outcome=type(e).__name__)
            except Exception as e:  # the test fails on any of these: report them
                line.update(outcome="unexpected", error=f"{type(e).__name__}: {e}")
            emit(line)


def _operate(
    store: ImageStore, op: str, name: str, number: int, reason: str
) -> dict[str, Any]:
    target, labels = descriptor(number), {"by": reason}
    if op in ("register", "create"):
        expect = "absent" if op == "create" else None
        image = store.register(name, target, labels, reason=reason, expect=expect)
        return {"outcome": "ok", "version": image.version, "digest": digest(number)}
    if op == "delete":
        store.delete(name, reason=reason)
        return {"outcome": "ok"}
    current = store.get(name)  # the conditional operations read first
    if op == "retarget":
        image = store.register(
            name, target, labels, reason=reason, expect=current.version
        )
        return {"outcome": "ok", "version": image.version, "digest": digest(number)}
    if op == "delete-if":
        store.delete(name, reason=reason, if_digest=current.target.digest)
    else:
        store.delete(name, reason=reason, expect=current.version)
    return {"outcome": "ok"}


def register_loop(db: Path, round_: int, names: int, gate: bool) -> None:
    """Register until killed: over `names` shared names, a new target each time.

    Prints {"name", "version", "digest"} after each register returned.
    """
    with ImageStore.open(db) as store:
        wait_for_go(gate)
        for seq in range(MAX_LOOP):
            name = shared_name((round_ * 7 + seq) % names)
            number = 1_000_000 * (round_ + 1) + seq
            image = store.register(
                name, descriptor(number), {"round": str(round_), "seq": str(seq)}
            )
            emit({"name": name, "version": image.version, "digest": digest(number)})


def rebuild(db: Path, pause: bool, gate: bool) -> None:
    """Rebuild the current view, printing PROGRESS lines; REBUILT when it returned.

    With --pause, waits for a line on stdin after the first batch, so the parent
    can kill it at a known point between two batches.
    """
    with ImageStore.open(db) as store:
        wait_for_go(gate)

        def progress(done: int, total: int) -> None:
            emit({"done": done, "total": total})
            if pause:
                sys.stdin.readline()

        folded = store.rebuild(progress)
        emit(REBUILT)
        emit({"folded": folded})


def hold_lock(db: Path, gate: bool) -> None:
    """Hold the file's write lock (BEGIN IMMEDIATE) until a line arrives on stdin."""
    connection = sqlite3.connect(db, isolation_level=None)
    connection.execute("BEGIN IMMEDIATE")
    connection.execute("PRAGMA application_id")  # a statement inside it, to be sure
    emit(READY)
    sys.stdin.readline()
    connection.rollback()
    connection.close()
    emit("RELEASED")


def read_only_probe(db: Path, name: str, gate: bool) -> None:
    """Try every call on a store; print one line per call: result or error."""

    def attempt(call: str, job: Callable[[ImageStore], object]) -> None:
        try:
            emit({"call": call, "result": job(store)})
        except ImageLedgerError as e:
            emit({"call": call, "error": type(e).__name__, "message": str(e)})

    with ImageStore.open(db) as store:
        wait_for_go(gate)
        attempt("get", lambda s: s.get(name).target.digest)
        attempt("list", lambda s: [image.name for image in s.list()])
        attempt("history", lambda s: [e.version for e in s.history(name)])
        attempt("replay", lambda s: sorted(n for _, n in s.replay()))
        attempt("register", lambda s: s.register(name, descriptor(99)).version)
        attempt("register-new", lambda s: s.register("other:1", descriptor(98)).version)
        attempt("delete", lambda s: s.delete(name))
        attempt("rebuild", lambda s: s.rebuild())
        attempt("get-after", lambda s: s.get(name).target.digest)


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    modes = top.add_subparsers(dest="mode", required=True)

    def mode(name: str, job: Callable[..., None], help: str) -> argparse.ArgumentParser:
        sub = modes.add_parser(name, help=help)
        sub.set_defaults(job=job)
        sub.add_argument("db", type=Path)
        sub.add_argument("--gate", action="store_true", help="after READY, wait")
        return sub

    sub = mode("mixed", mixed, "COUNT random operations over NAMES shared names")
    for argument in ("worker", "count", "names", "seed"):
        sub.add_argument(argument, type=int)
    sub = mode("register-loop", register_loop, "register until killed")
    sub.add_argument("round_", metavar="round", type=int)
    sub.add_argument("names", type=int)
    sub = mode("rebuild", rebuild, "rebuild the view, printing progress")
    sub.add_argument("--pause", action="store_true", help="wait after a batch")
    mode("hold-lock", hold_lock, "hold the write lock until stdin has a line")
    sub = mode("read-only-probe", read_only_probe, "try every call, print outcomes")
    sub.add_argument("name")
    return top


def main(argv: list[str]) -> int:
    arguments = vars(parser().parse_args(argv))
    del arguments["mode"]
    job = arguments.pop("job")
    try:
        job(**arguments)
    except Exception as e:  # any failure is the test's business: say what and where
        traceback.print_exc()
        print(
            f"reliability_worker: unexpected {type(e).__name__}: {e}", file=sys.stderr
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
