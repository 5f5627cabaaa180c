"""A temporary file of small per-line records, written once and read back in order.

Owns `Spill`: what planning and recording need of each valid line of a request file (its
line number, custom_id, tokens, costs, fingerprint; never the body), kept on disk so that
memory stays flat however long the file is. Records are tuples of plain values (str, int,
float, bool, None), written `CHUNK` at a time with `marshal` and read back any number of
times, each reader with its own handle (each block length-prefixed: `marshal.load` on a
file reads it a few bytes at a time). The file is removed when the spill is closed or
collected. Knows nothing of what the values mean.
"""

from __future__ import annotations

import contextlib
import marshal
import os
import struct
import tempfile
import weakref
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, BinaryIO

__all__ = ["CHUNK", "CodeSpill", "Spill", "SpillChain", "follow"]

CHUNK = 4096  # records per marshal block: the most a reader or the writer holds at once
_SIZE = struct.Struct("<Q")


def _closed_file() -> BinaryIO:
    """A closed file: what an adopted spill holds where its writer's file was (it is read,
    never written)."""
    file = open(os.devnull, "wb")  # noqa: SIM115 (closed at once)
    file.close()
    return file


def _remove(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


class Spill:
    """Append records with `add`, call `seal` once, then iterate (as often as needed).

    `on_block`: called each time a block is written out (and flushed to the file), so that
    another process can `follow` the spill while it is being written."""

    def __init__(
        self, folder: Path | None = None, on_block: Callable[[], None] | None = None
    ) -> None:
        fd, path = tempfile.mkstemp(prefix="batchyard-lines-", suffix=".spill", dir=folder)
        self._file = os.fdopen(fd, "wb", buffering=1 << 20)
        self.path = path
        self._buffer: list[tuple[Any, ...]] = []
        self.count = 0
        self._on_block = on_block
        self._cleanup = weakref.finalize(self, _remove, path)

    def add(self, record: tuple[Any, ...]) -> None:
        self._buffer.append(record)
        if len(self._buffer) >= CHUNK:
            self._flush()

    def _flush(self) -> None:
        if self._buffer:
            block = marshal.dumps(self._buffer)
            self._file.write(_SIZE.pack(len(block)))
            self._file.write(block)
            self.count += len(self._buffer)
            self._buffer = []
            if self._on_block is not None:
                self._file.flush()
                self._on_block()

    @classmethod
    def adopt(cls, path: str, count: int) -> Spill:
        """A sealed spill written by another process (`keep`), removed when this one is."""
        spill = cls.__new__(cls)
        spill.path = path
        spill.count = count
        spill._buffer = []
        spill._file = _closed_file()
        spill._on_block = None
        spill._cleanup = weakref.finalize(spill, _remove, path)
        return spill

    def keep(self) -> tuple[str, int]:
        """Seal, and leave the file for another process to `adopt`: its path and count."""
        self.seal()
        self._cleanup.detach()
        return self.path, self.count

    def seal(self) -> Spill:
        """Write what is buffered; after this the spill is read-only."""
        if not self._file.closed:
            self._flush()
            self._file.close()
        return self

    def chunks(self) -> Iterator[list[tuple[Any, ...]]]:
        """The records, a block at a time, in the order they were added."""
        self.seal()
        with open(self.path, "rb", buffering=1 << 20) as f:
            while len(head := f.read(_SIZE.size)) == _SIZE.size:
                (size,) = _SIZE.unpack(head)
                yield marshal.loads(f.read(size))

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        for block in self.chunks():
            yield from block

    def close(self) -> None:
        """Remove the file now (else when the spill is collected)."""
        self.seal()
        self._cleanup()


def follow(path: str, written: Iterable[object]) -> Iterator[list[tuple[Any, ...]]]:
    """The blocks of a spill that another process is still writing (with `on_block`), in
    order: one block for each item `written` yields, as the writer says each is written.
    Read without a buffer of its own, which could hold a block's first bytes from before
    the writer had written the rest."""
    with open(path, "rb", buffering=0) as f:
        for _ in written:
            (size,) = _SIZE.unpack(_read_exactly(f, _SIZE.size))
            yield marshal.loads(_read_exactly(f, size))


def _read_exactly(f: BinaryIO, size: int) -> bytes:
    parts = []
    while size > 0:
        data = f.read(size)
        if not data:
            raise EOFError(f"{f.name} ends before a block its writer said was written")
        parts.append(data)
        size -= len(data)
    return b"".join(parts)


Fix = Callable[[list[tuple[Any, ...]]], list[tuple[Any, ...]]]


class SpillChain:
    """Several spills read as one, in order, each block passed through its own `fix` (for
    parts written by workers: their line numbers and indices made the whole file's)."""

    def __init__(self, parts: Sequence[tuple[Spill, Fix | None]]) -> None:
        self.parts = tuple(parts)
        self.count = sum(spill.count for spill, _ in self.parts)

    def chunks(self) -> Iterator[list[tuple[Any, ...]]]:
        for spill, fix in self.parts:
            for block in spill.chunks():
                yield block if fix is None else fix(block)

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        for block in self.chunks():
            yield from block

    def close(self) -> None:
        for spill, _ in self.parts:
            spill.close()


class CodeSpill:
    """Small integer codes (below 2**16) appended one at a time and read back in order, two
    bytes each in a temporary file: the router's memo of a plan's assignments
    (`router.Memo`), so a plan of any size replays them without holding one per line."""

    def __init__(self) -> None:
        fd, path = tempfile.mkstemp(prefix="batchyard-routes-", suffix=".codes")
        self._file = os.fdopen(fd, "wb", buffering=1 << 20)
        self.path = path
        self._buffer = array("H")
        self._cleanup = weakref.finalize(self, _remove, path)

    @classmethod
    def adopt(cls, path: str) -> CodeSpill:
        """Codes written by another process (`keep`), removed when this one is."""
        spill = cls.__new__(cls)
        spill.path = path
        spill._buffer = array("H")
        spill._file = _closed_file()
        spill._cleanup = weakref.finalize(spill, _remove, path)
        return spill

    def keep(self) -> str:
        """Write what is buffered and leave the file for another process to `adopt`."""
        if not self._file.closed:
            self._flush()
            self._file.close()
        self._cleanup.detach()
        return self.path

    def add(self, code: int) -> None:
        self._buffer.append(code)
        if len(self._buffer) >= CHUNK * 16:
            self._flush()

    def _flush(self) -> None:
        self._buffer.tofile(self._file)
        self._buffer = array("H")

    def codes(self) -> Iterator[int]:
        if not self._file.closed:
            self._flush()
            self._file.close()
        with open(self.path, "rb", buffering=1 << 20) as f:
            while block := f.read(CHUNK * 32):
                yield from array("H", block)
