"""A separate OS process for the multi-process tests: one store, one small job.

Run as `python tests/process_worker.py MODE ...` (see `--help`). Every mode opens
its own ImageStore on DB, prints its results as JSON lines (or plain words) on
stdout and exits 0; any unexpected exception exits 1 with a message on stderr.

With `--gate`, a mode opens the store (and does its first read), prints READY and
waits for one line on stdin before doing its work, so a test can start several
workers and release them at the same moment, or write between the two reads.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import traceback
from collections.abc import Callable
from typing import Any, Literal

from imageledger import Image, ImageStore
from imageledger.errors import Conflict, ImageNotFound

MANIFEST = "application/vnd.oci.image.manifest.v1+json"
READY = "READY"
NOT_FOUND = "NOTFOUND"
DELETE_SHARE = 0.15  # of the `mixed` mode's operations


def digest(n: int) -> str:
    """The same digests as tests/conftest.py: valid sha256, different for every n."""
    return f"sha256:{n:064x}"


def descriptor(n: int) -> dict[str, Any]:
    """The same manifest descriptors as tests/conftest.py."""
    return {"mediaType": MANIFEST, "digest": digest(n), "size": 1000 + n}


def upsert_number(worker: int, seq: int) -> int:
    """The descriptor number of one plain upsert: unique per (worker, seq)."""
    return 1_000_000 * (worker + 1) + seq


def emit(value: object) -> None:
    print(value if isinstance(value, str) else json.dumps(value), flush=True)


def wait_for_go(gate: bool) -> None:
    if gate:
        emit(READY)
        sys.stdin.readline()  # a line, or EOF when the parent gave up


def written(image: Image) -> dict[str, Any]:
    return {
        "name": image.name,
        "version": image.version,
        "digest": image.target.digest,
        "labels": image.labels,
    }


def register(db: str, name: str, number: int, gate: bool) -> None:
    with ImageStore.open(db) as store:
        wait_for_go(gate)
        emit(written(store.register(name, descriptor(number), {"n": str(number)})))


def attempt(db: str, name: str, number: int, immutable: bool, gate: bool) -> None:
    """Register NAME at descriptor(N); print the image, or {"refused": message}
    when the store refuses it with a Conflict (an immutable name, say)."""
    with ImageStore.open(db) as store:
        wait_for_go(gate)
        try:
            image = store.register(name, descriptor(number), immutable=immutable)
        except Conflict as e:
            emit({"refused": str(e)})
        else:
            emit(written(image) | {"immutable": image.immutable})


def get(db: str, name: str, gate: bool) -> None:
    with ImageStore.open(db) as store:

        def look() -> str:
            try:
                return store.get(name).target.digest
            except ImageNotFound:
                return NOT_FOUND

        if gate:
            emit(look())  # before the parent writes, on the same open store
        wait_for_go(gate)
        emit(look())


def upserts(db: str, worker: int, count: int, names: list[str], gate: bool) -> None:
    """`count` plain registers, round-robin over `names` from an offset per worker.

    Every write carries this worker's id and its sequence number in the labels
    (and a digest unique to both), so every acknowledged write changes the image.
    """
    with ImageStore.open(db) as store:
        wait_for_go(gate)
        for seq in range(count):
            name = names[(worker + seq) % len(names)]
            labels = {"writer": str(worker), "seq": str(seq)}
            image = store.register(name, descriptor(upsert_number(worker, seq)), labels)
            emit(written(image))


def mixed(db: str, worker: int, count: int, names: list[str], gate: bool) -> None:
    """`count` operations on random `names`: mostly retargets, some deletes.

    Each operation carries actor "w<worker>" and reason "<seq>", so every
    acknowledged one can be found in the log; each prints one JSON line:
    {"op": "register", "seq", "name", "version", "digest"} or
    {"op": "delete", "seq", "name", "deleted": whether it found the name}.
    """
    rng = random.Random(worker)
    with ImageStore.open(db) as store:
        wait_for_go(gate)
        for seq in range(count):
            name = rng.choice(names)
            common = {"actor": f"w{worker}", "reason": str(seq)}
            if rng.random() < DELETE_SHARE:
                try:
                    store.delete(name, **common)
                except ImageNotFound:
                    emit({"op": "delete", "seq": seq, "name": name, "deleted": False})
                else:
                    emit({"op": "delete", "seq": seq, "name": name, "deleted": True})
                continue
            number = upsert_number(worker, seq)
            image = store.register(name, descriptor(number), **common)
            emit(
                {
                    "op": "register",
                    "seq": seq,
                    "name": name,
                    "version": image.version,
                    "digest": image.target.digest,
                }
            )


def batches(db: str, worker: int, count: int, names: list[str], gate: bool) -> None:
    """`count` batches, each registering every one of `names` in one call.

    Labels carry this worker's id and the batch's sequence number; prints one
    JSON list of the written images per batch.
    """
    with ImageStore.open(db) as store:
        wait_for_go(gate)
        for seq in range(count):
            labels = {"writer": str(worker), "seq": str(seq)}
            number = upsert_number(worker, seq)
            items = [(name, descriptor(number), labels) for name in names]
            emit([written(image) for image in store.register_many(items)])


def increments(db: str, name: str, count: int, gate: bool) -> None:
    """Compare-and-swap `count` increments of the label "counter" on `name`.

    Read the image (or its absence), write counter+1 on the condition that the
    version is still the one read, retry from the read on Conflict. Prints the
    number of successful increments (then the number of conflicts seen).
    """
    with ImageStore.open(db) as store:
        wait_for_go(gate)
        done = conflicts = 0
        while done < count:
            try:
                current = store.get(name)
            except ImageNotFound:
                expect: int | Literal["absent"] = "absent"
                counter = 0
            else:
                expect = current.version
                counter = int(current.labels["counter"])
            try:
                store.register(
                    name,
                    descriptor(counter + 1),
                    {"counter": str(counter + 1)},
                    expect=expect,
                )
            except Conflict:
                conflicts += 1
                continue
            done += 1
        emit(done)
        emit(conflicts)


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    modes = top.add_subparsers(dest="mode", required=True)

    def mode(name: str, job: Callable[..., None], help: str) -> argparse.ArgumentParser:
        sub = modes.add_parser(name, help=help)
        sub.set_defaults(job=job)
        sub.add_argument("db")
        sub.add_argument(
            "--gate", action="store_true", help="print READY, wait for stdin"
        )
        return sub

    sub = mode("register", register, "register NAME at descriptor(N), print the image")
    sub.add_argument("name")
    sub.add_argument("number", type=int)
    sub = mode("attempt", attempt, "register NAME at descriptor(N), or say refused")
    sub.add_argument("name")
    sub.add_argument("number", type=int)
    sub.add_argument("--immutable", action="store_true")
    sub = mode("get", get, "print the digest NAME points at, or NOTFOUND")
    sub.add_argument("name")
    sub = mode("upserts", upserts, "COUNT plain registers over NAMES, one line each")
    sub.add_argument("worker", type=int)
    sub.add_argument("count", type=int)
    sub.add_argument("names", nargs="+")
    sub = mode("mixed", mixed, "COUNT random retargets and deletes over NAMES")
    sub.add_argument("worker", type=int)
    sub.add_argument("count", type=int)
    sub.add_argument("names", nargs="+")
    sub = mode("batches", batches, "COUNT batches registering all NAMES, one line each")
    sub.add_argument("worker", type=int)
    sub.add_argument("count", type=int)
    sub.add_argument("names", nargs="+")
    sub = mode("increments", increments, "COUNT compare-and-swap increments of NAME")
    sub.add_argument("name")
    sub.add_argument("count", type=int)
    return top


def main(argv: list[str]) -> int:
    arguments = vars(parser().parse_args(argv))
    del arguments["mode"]
    job = arguments.pop("job")
    try:
        job(**arguments)
    except Exception as e:  # any failure is the test's business: say what and where
        traceback.print_exc()
        print(f"process_worker: unexpected {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
