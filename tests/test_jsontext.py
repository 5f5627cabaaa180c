"""`compact` writes exactly the bytes json writes, whatever the values (floats of every size,
escapes, non-ASCII, nulls, big integers), and raises what json raises."""

from __future__ import annotations

import json
import math
import random
import struct
from typing import Any

import pytest

from batchyard.fingerprint import fingerprint
from batchyard.jsontext import agrees, compact


def _json(obj: Any, sort_keys: bool = False) -> bytes:
    text = json.dumps(
        obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False, sort_keys=sort_keys
    )
    return text.encode()


_PIECES = ["a", "é", "😀", "\x00", "\n", '"', "\\", "\u2028", "e-", "0.0000", "null", "7", " "]


def _value(rng: random.Random, depth: int = 0) -> Any:
    pick = rng.random()
    if depth > 3 or pick < 0.4:
        kind = rng.randrange(6)
        if kind == 0:
            return rng.uniform(-1, 1) * 10 ** rng.randint(-12, 20)
        if kind == 1:
            double = struct.unpack("d", rng.getrandbits(64).to_bytes(8, "little"))[0]
            return double if math.isfinite(double) else 0.5
        if kind == 2:
            return rng.randint(-(2**63), 2**64 - 1) * rng.choice([1, 2**10])
        if kind == 3:
            return "".join(rng.choice(_PIECES) for _ in range(rng.randint(0, 6)))
        return rng.choice([None, True, False, 0, -1])
    if pick < 0.7:
        return [_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    keys = ("".join(rng.choice(_PIECES) for _ in range(rng.randint(0, 3))) for _ in range(4))
    return {key: _value(rng, depth + 1) for key in keys}


def test_random_values_are_written_as_json_writes_them() -> None:
    rng = random.Random(20261202)
    for _ in range(20_000):
        obj = _value(rng)
        assert compact(obj) == _json(obj)
        assert compact(obj, sort_keys=True) == _json(obj, sort_keys=True)


def test_values_that_agree_are_written_as_json_writes_them_however_arranged() -> None:
    rng = random.Random(20261203)
    agreed = 0
    for _ in range(20_000):
        obj = {"model": "m", "body": _value(rng), "metadata": _value(rng)}
        text = compact(obj)
        if not agrees(obj, text):
            continue
        agreed += 1
        wrapped = ["/v1/chat/completions", "m", obj]
        assert compact(wrapped, sort_keys=True, agreed=True) == _json(wrapped, sort_keys=True)
    assert 1_000 < agreed < 20_000  # both kinds of value were drawn


def test_a_fingerprint_is_the_same_with_the_body_text_or_without() -> None:
    rng = random.Random(20261204)
    for _ in range(5_000):
        body = {"model": "m", "messages": [_value(rng)], "temperature": _value(rng)}
        text = compact(body)
        plain = fingerprint("/v1/chat/completions", body, "m")
        assert fingerprint("/v1/chat/completions", body, "m", text) == plain


@pytest.mark.parametrize("value", [1e-05, 6.2e-05, 1e-07, 2.5e-09, 1e-4, 1e16, 1e22, 0.1 + 0.2])
def test_floats_where_orjson_differs(value: float) -> None:
    assert compact({"x": value}) == _json({"x": value})


@pytest.mark.parametrize(
    ("value", "error"),
    [(math.inf, ValueError), (math.nan, ValueError), ("\ud800", UnicodeEncodeError)],
)
def test_what_json_refuses_is_refused(value: Any, error: type[Exception]) -> None:
    with pytest.raises(error):
        compact({"x": value})
