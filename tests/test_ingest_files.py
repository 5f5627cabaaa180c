"""Request files as users really have them, the one-pass summary `plan` shows, and rejects files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from batchyard.catalog import Catalog
from batchyard.config import model_table
from batchyard.errors import InputError, LineProblem, ValidationFailed
from batchyard.ingest import ParsedRequest, read_requests, validate_file, write_rejects
from batchyard.models import Endpoint
from batchyard.shards import TOKEN_MARGIN


def request(cid: str, model: str = "gpt-4o-mini", content: str = "Hi.") -> bytes:
    body = {"model": model, "messages": [{"role": "user", "content": content}]}
    obj = {"custom_id": cid, "method": "POST", "url": "/v1/chat/completions", "body": body}
    return json.dumps(obj, ensure_ascii=False).encode()


@pytest.fixture(scope="module")
def models() -> Catalog:
    return model_table()


def ids(path: Path, models: Catalog) -> list[tuple[int, str]]:
    return [
        (r.line, r.custom_id) for r in read_requests(path, models) if isinstance(r, ParsedRequest)
    ]


def test_crlf_blank_lines_bom_and_no_final_newline(tmp_path: Path, models: Catalog) -> None:
    path = tmp_path / "windows.jsonl"
    path.write_bytes(
        b"\xef\xbb\xbf"
        + request("a")
        + b"\r\n\r\n   \r\n"
        + request("b", content="café")
        + b"\r\n"
        + request("c")
    )
    assert ids(path, models) == [(1, "a"), (4, "b"), (5, "c")]


def test_non_utf8_line_is_reported_and_the_rest_still_read(tmp_path: Path, models: Catalog) -> None:
    path = tmp_path / "latin1.jsonl"
    latin1 = request("b", content="café").decode().encode("latin-1")
    path.write_bytes(request("a") + b"\n" + latin1 + b"\n" + request("c") + b"\n")
    found = list(read_requests(path, models))
    assert [r.line for r in found] == [1, 2, 3]
    problem = found[1]
    assert isinstance(problem, LineProblem)
    assert problem.field is None
    assert "not valid UTF-8" in problem.message and "0xe9" in problem.message


@pytest.mark.parametrize("content", [b"", b"\n\n  \r\n"], ids=["zero bytes", "blank lines"])
def test_empty_file_is_an_input_error(tmp_path: Path, models: Catalog, content: bytes) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_bytes(content)
    with pytest.raises(InputError, match=r"empty\.jsonl is empty"):
        list(read_requests(path, models))


def test_missing_file_and_directory(tmp_path: Path, models: Catalog) -> None:
    with pytest.raises(InputError, match="does not exist"):
        list(read_requests(tmp_path / "nope.jsonl", models))
    with pytest.raises(InputError, match="is a directory"):
        list(read_requests(tmp_path, models))


def test_validate_file_totals_groups_and_plans_shards(tmp_path: Path, models: Catalog) -> None:
    rows = [request(f"m{i}") for i in range(3)] + [request("g1", model="gpt-4.1-mini")]
    rows.append(b'{"custom_id": "m0", "broken": ')
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(b"\n".join(rows) + b"\n")
    result = validate_file(path, models)
    assert (result.lines, result.valid, result.problem_count, result.ok) == (5, 4, 1, False)
    assert result.problems[0].line == 5
    mini = result.groups[(Endpoint.CHAT, "gpt-4o-mini")]
    assert (mini.requests, mini.shards, mini.waves, mini.uncapped) == (3, 1, 1, 3)
    assert mini.input_tokens == 3 * mini.largest_input_tokens > 0
    assert mini.queue_limit == int(models["gpt-4o-mini"].enqueued_token_limit * TOKEN_MARGIN)
    assert result.groups[(Endpoint.CHAT, "gpt-4.1-mini")].requests == 1
    with pytest.raises(ValidationFailed, match=r"mixed\.jsonl:5"):
        result.raise_if_invalid()


def test_validate_file_with_learned_limit_plans_more_shards_and_waves(
    tmp_path: Path, models: Catalog
) -> None:
    path = tmp_path / "many.jsonl"
    path.write_bytes(b"\n".join(request(f"r{i}", content="word " * 50) for i in range(10)))
    plain = validate_file(path, models).groups[(Endpoint.CHAT, "gpt-4o-mini")]
    per_request = plain.largest_input_tokens
    learned = validate_file(path, models, {"gpt-4o-mini": int(per_request * 3 / TOKEN_MARGIN) + 1})
    group = learned.groups[(Endpoint.CHAT, "gpt-4o-mini")]
    assert plain.shards == 1
    assert group.shards == 4 and group.waves == 4  # 3 + 3 + 3 + 1, one at a time
    assert sum(group.shard_tokens) == group.input_tokens


def test_request_larger_than_the_queue_is_flagged_by_the_plan(
    tmp_path: Path,
) -> None:
    small_queue = model_table({"gpt-4o-mini": {"enqueued_token_limit": 40}})
    path = tmp_path / "big.jsonl"
    path.write_bytes(request("small") + b"\n" + request("big", content="word " * 100) + b"\n")
    group = validate_file(path, small_queue).groups[(Endpoint.CHAT, "gpt-4o-mini")]
    assert group.requests == 2 and group.shards == 1
    [why] = group.never_fit
    assert why.startswith("line 2:") and "'big'" in why and "real time" in why


def test_rejects_file_lists_every_problem_with_the_original_line(
    tmp_path: Path, models: Catalog
) -> None:
    path = tmp_path / "in.jsonl"
    bad_json = b'{"custom_id": "x", '
    path.write_bytes(request("a") + b"\n" + bad_json + b"\n" + request("a") + b"\r\n")
    result = validate_file(path, models)
    out = tmp_path / "rejects.jsonl"
    assert write_rejects(result.problems, out, source=path) == 2
    records = [json.loads(x) for x in out.read_text(encoding="utf-8").splitlines()]
    assert [(r["line"], r["custom_id"], r["field"]) for r in records] == [
        (2, None, None),
        (3, "a", "custom_id"),
    ]
    assert records[0]["request"] == bad_json.decode()
    assert json.loads(records[1]["request"])["custom_id"] == "a"
    assert "line 1 already uses it" in records[1]["message"]


def test_duplicates_found_across_a_large_file(tmp_path: Path, models: Catalog) -> None:
    """The id index grows several times over 70,000 lines and still knows every first line."""
    n = 70_000
    rows = [request(f"id-{i}") for i in range(n)]
    rows += [request("id-0"), request(f"id-{n - 1}"), request("id-12345"), request("fresh")]
    path = tmp_path / "large.jsonl"
    path.write_bytes(b"\n".join(rows))
    found = [r for r in read_requests(path, models) if isinstance(r, LineProblem)]
    assert [(p.line, p.custom_id) for p in found] == [
        (n + 1, "id-0"),
        (n + 2, f"id-{n - 1}"),
        (n + 3, "id-12345"),
    ]
    assert [p.message.split(": ")[1].split(";")[0] for p in found] == [
        "line 1 already uses it",
        f"line {n} already uses it",
        "line 12346 already uses it",
    ]


def test_the_summary_counts_lines_not_problems() -> None:
    from batchyard.errors import LineProblem, ValidationFailed

    problems = [
        LineProblem("f.jsonl", 2, "body.model", "Model parameter is required."),
        LineProblem("f.jsonl", 2, "body.messages", "Messages parameter is required."),
        LineProblem("f.jsonl", 5, "method", "Only POST is supported."),
    ]
    message = str(ValidationFailed(problems))
    assert message.startswith("3 problem(s) on 2 line(s); nothing was submitted.")
    assert "f.jsonl:2 (body.messages)" in message and "f.jsonl:5 (method)" in message
    assert str(ValidationFailed(problems[2:])).startswith("1 invalid line(s);")


def test_a_json_error_names_the_column_within_the_line(tmp_path: Path) -> None:
    from batchyard.config import model_table
    from batchyard.errors import LineProblem
    from batchyard.ingest import read_requests

    good = '{"custom_id": "a", "method": "POST", "url": "/v1/chat/completions", "body": {}}'
    broken = good[:-2]  # the closing braces are missing
    path = tmp_path / "broken.jsonl"
    path.write_text(broken + "\n")
    (problem,) = [p for p in read_requests(path, model_table()) if isinstance(p, LineProblem)]
    assert problem.line == 1
    assert f"at column {len(broken) + 1}" in problem.message


def test_duplicates_within_one_block_and_odd_ids(tmp_path: Path, models: Catalog) -> None:
    """Ids are looked up a block at a time: repeats inside one block, and an id holding a
    lone surrogate escape (json accepts it), still name the first line."""
    rows = [request("a"), request("a"), request("b"), request("a")]
    lone = request("X").replace(b'"X"', b'"\\ud800"')  # the JSON text "\ud800"
    rows += [lone, lone, request("b")]
    path = tmp_path / "dups.jsonl"
    path.write_bytes(b"\n".join(rows))
    found = [
        r
        for r in read_requests(path, models)
        if isinstance(r, LineProblem) and r.field == "custom_id"
    ]
    assert [(p.line, p.message.split(": ")[1].split(";")[0]) for p in found] == [
        (2, "line 1 already uses it"),
        (4, "line 1 already uses it"),
        (6, "line 5 already uses it"),
        (7, "line 3 already uses it"),
    ]
