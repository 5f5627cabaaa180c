"""A compact index of custom_ids seen so far, for duplicate detection in one streaming pass.

Owns only that index. A dict of the ids themselves costs about 130 bytes per request
(the string, the dict slot, the line number object), which alone would pass 400 MB at
three million lines. This open-addressing table keeps a 128-bit blake2b digest and the
line number per slot instead: 20 bytes a slot, at most half full, so 40 to 80 bytes per
request. Two different ids share a digest with probability about n²/2¹²⁹: never, in
practice.
"""

from __future__ import annotations

import struct
from array import array
from hashlib import blake2b

__all__ = ["IdIndex"]

_PAIR = struct.Struct("<qq")


def _digest(custom_id: str) -> tuple[int, int]:
    hi, lo = _PAIR.unpack(
        blake2b(custom_id.encode("utf-8", "surrogatepass"), digest_size=16).digest()
    )
    return (hi or 1), lo  # hi == 0 marks an empty slot


class IdIndex:
    """custom_id → the first line that used it."""

    def __init__(self, capacity: int = 1 << 16) -> None:
        size = 1 << max(4, (capacity - 1).bit_length())
        self._hi = array("q", bytes(8 * size))
        self._lo = array("q", bytes(8 * size))
        self._lines = array("I", bytes(4 * size))
        self._mask = size - 1
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def first_line(self, custom_id: str, line: int) -> int:
        """The earlier line that used `custom_id`, or `line` after recording it as the first."""
        hi, lo = _digest(custom_id)
        his, mask = self._hi, self._mask
        i = lo & mask
        while (found := his[i]) != 0:
            if found == hi and self._lo[i] == lo:
                return self._lines[i]
            i = (i + 1) & mask
        his[i] = hi
        self._lo[i] = lo
        self._lines[i] = line
        self._count += 1
        if 2 * self._count > mask:
            self._grow()
        return line

    def _grow(self) -> None:
        old = (self._hi, self._lo, self._lines)
        size = 2 * (self._mask + 1)
        self._hi = his = array("q", bytes(8 * size))
        self._lo = los = array("q", bytes(8 * size))
        self._lines = lines = array("I", bytes(4 * size))
        self._mask = mask = size - 1
        for hi, lo, line in zip(*old, strict=True):
            if hi:
                i = lo & mask
                while his[i]:
                    i = (i + 1) & mask
                his[i], los[i], lines[i] = hi, lo, line
