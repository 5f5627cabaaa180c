"""Fan-out: one request line into variants (`--vary KEY=A,B`, `--samples N`), and the
variant custom_id form.

A variant's custom_id is `ORIGINAL#KEY=VALUE,KEY=VALUE[,sample=N]`: the original id, a
`#`, then each varied key with the value as it was typed, in the order the options were
given, then the sample number (1-based) when `--samples` is above 1. It is stable (the
same line and options always give the same ids) and `split_variant` reads it back, so
`fetch --group` and `costs` need nothing but the ids. The first `--vary` changes slowest,
samples fastest; a line's variants are written side by side, in input order.

KEY is a field of the request body (`temperature`, `model`) or a dotted path into it
(`reasoning.effort`). Values are read as JSON when they parse (`0.7`, `true`, `null`),
as text otherwise (`gpt-4o-mini`). Pure: no I/O.
"""

from __future__ import annotations

import copy
import itertools
import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from batchyard.errors import InputError

__all__ = ["SEPARATOR", "Dimension", "Variation", "parse_vary", "split_variant", "variant_id"]

SEPARATOR = "#"
_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")
_PART = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*=[^,=#]*")


@dataclass(frozen=True, slots=True)
class Dimension:
    """One `--vary`: a body key and its values (each with the text it was typed as)."""

    key: str
    values: tuple[tuple[str, Any], ...]


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def parse_vary(spec: str) -> Dimension:
    """`temperature=0,0.7,1.0` → Dimension; raises InputError saying what is wrong."""
    key, eq, rest = spec.partition("=")
    key = key.strip()
    if not eq or not _KEY.fullmatch(key):
        raise InputError(
            f"--vary {spec!r}: write KEY=VALUE,VALUE,... with KEY a body field such as "
            "temperature or model (dotted for nested fields: reasoning.effort)."
        )
    texts = [t.strip() for t in rest.split(",")]
    if not rest.strip() or any(not t for t in texts):
        raise InputError(f"--vary {spec!r}: give one or more values, separated by commas.")
    if any(c in t for t in texts for c in "=#"):
        raise InputError(f"--vary {spec!r}: values may not contain '=' or '#'.")
    if len(set(texts)) != len(texts):
        raise InputError(f"--vary {spec!r}: a value is given twice.")
    return Dimension(key, tuple((t, _value(t)) for t in texts))


def variant_id(original: str, labels: Sequence[tuple[str, str]]) -> str:
    """The documented custom_id of one variant: `ORIGINAL#k=v,k=v`."""
    return original + SEPARATOR + ",".join(f"{k}={v}" for k, v in labels)


def split_variant(custom_id: str) -> tuple[str, str | None]:
    """(original id, variant label such as `temperature=0.7,sample=2`), or
    (custom_id, None) when the id is not a variant's."""
    original, sep, label = custom_id.rpartition(SEPARATOR)
    if not sep or not original or not all(_PART.fullmatch(p) for p in label.split(",")):
        return custom_id, None
    return original, label


def _set(body: dict[str, Any], key: str, value: Any) -> None:
    *parents, last = key.split(".")
    node = body
    for name in parents:
        child = node.get(name)
        if not isinstance(child, dict):
            child = node[name] = {}
        node = child
    node[last] = value


@dataclass(frozen=True)
class Variation:
    """What to multiply every line by: the product of the dimensions, times `samples`."""

    dimensions: tuple[Dimension, ...] = ()
    samples: int = 1

    @classmethod
    def parse(cls, vary: Sequence[str] = (), samples: int = 1) -> Variation:
        dims = tuple(parse_vary(v) for v in vary)
        keys = [d.key for d in dims]
        if len(set(keys)) != len(keys):
            raise InputError(f"--vary names a key twice ({', '.join(keys)}); give it once.")
        if samples < 1:
            raise InputError(f"--samples {samples}: give 1 or more.")
        return cls(dims, samples)

    @property
    def active(self) -> bool:
        return bool(self.dimensions) or self.samples > 1

    @property
    def per_line(self) -> int:
        count = self.samples
        for d in self.dimensions:
            count *= len(d.values)
        return count

    def expand(self, line: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """The line's variants in the documented order (the line itself when inactive)."""
        if not self.active:
            yield line
            return
        original = str(line.get("custom_id"))
        choices = [[(d.key, t, v) for t, v in d.values] for d in self.dimensions]
        for combo in itertools.product(*choices):
            for sample in range(1, self.samples + 1):
                body = copy.deepcopy(line.get("body"))
                labels = [(k, t) for k, t, _ in combo]
                if isinstance(body, dict):
                    for key, _, value in combo:
                        _set(body, key, value)
                if self.samples > 1:
                    labels.append(("sample", str(sample)))
                yield {**line, "custom_id": variant_id(original, labels), "body": body}
