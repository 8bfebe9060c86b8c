"""Store files with random damage: every call raises StoreError or IntegrityError.

A real store is written, then copies of its file get random bytes changed
(seeded, so a failure can be replayed). Opening and reading each copy may
succeed (the damage hit free space or bytes nobody reads) or fail, but only
with our two storage errors: never a driver error, a decoding error or a crash.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import descriptor
from imageledger import ImageStore
from imageledger.errors import ImageNotFound, IntegrityError, StoreError

NAMES = [f"registry.example/team{i % 5}/app{i}:v{i % 3}" for i in range(40)]
COPIES = 400
LOOKUPS = ("get", "history")  # calls by name, which may find the name damaged away

READS: dict[str, Callable[[ImageStore], object]] = {
    "get": lambda store: [store.get(name) for name in NAMES[:5]],
    "list": lambda store: list(store.list()),
    "history": lambda store: [store.history(name) for name in NAMES[:5]],
    "replay": lambda store: store.replay(),
    "checkpoint": lambda store: store.checkpoint(),
    "verify": lambda store: store.verify(),
    "rebuild": lambda store: store.rebuild(),
}


@pytest.fixture(scope="module")
def original(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = tmp_path_factory.mktemp("original") / "store.db"
    with ImageStore.open(path) as store:
        for i, name in enumerate(NAMES):
            store.register(
                name,
                descriptor(i, annotations={"org.example.note": "x" * (i * 7)}),
                {"team": f"team{i % 5}", "build": str(i)},
                actor="ci",
                reason=f"release {i}",
            )
        for i, name in enumerate(NAMES[:10]):
            store.register(name, descriptor(100 + i), actor="ci")
        for name in NAMES[10:15]:
            store.delete(name, actor="ops", reason="retired")
    assert not Path(f"{path}-wal").exists()  # the last close checkpointed the WAL
    return path.read_bytes()


def _damage(data: bytes, seed: int) -> bytes:
    rng = random.Random(seed)
    damaged = bytearray(data)
    for _ in range(rng.randint(1, 12)):
        # Mostly single bits; sometimes a whole random byte.
        at = rng.randrange(len(damaged))
        if rng.random() < 0.7:
            damaged[at] ^= 1 << rng.randrange(8)
        else:
            damaged[at] = rng.randrange(256)
    return bytes(damaged)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(COPIES))
def test_a_damaged_copy_raises_only_storage_errors(
    original: bytes, tmp_path: Path, seed: int
) -> None:
    path = tmp_path / "damaged.db"
    path.write_bytes(_damage(original, seed))
    outcomes: dict[str, str] = {}
    try:
        store = ImageStore.open(path)
    except (StoreError, IntegrityError) as e:
        outcomes["open"] = type(e).__name__
        return
    with store:
        for read, call in READS.items():
            try:
                call(store)
                outcomes[read] = "ok"
            except (StoreError, IntegrityError) as e:
                outcomes[read] = type(e).__name__
            except ImageNotFound:
                # The damage hit a name the call looks up: it is simply not there.
                outcomes[read] = "not found"
            except Exception as e:  # the test's point: nothing else escapes
                pytest.fail(f"seed {seed}, {read}: {type(e).__name__}: {e}")
    assert set(outcomes.values()) <= {"ok", "StoreError", "IntegrityError", "not found"}
    assert "not found" not in (outcomes[read] for read in READS if read not in LOOKUPS)
