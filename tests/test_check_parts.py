"""A large file checked by worker processes gives what checking it in one process gives.

`check_file` cuts a file of `PARALLEL_BYTES` or more into one part per worker. Here the
threshold is lowered so that small files are cut too, and every intake is compared with the
one-process intake of the same file: the spilled records line by line (line numbers, group
indices, costs, reuse keys), the summary and its problems (renumbered for the whole file),
the groups, and the reuse preview (what is left to send, twins, the router's sums).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from batchyard.catalog import Catalog
from batchyard.config import model_table
from batchyard.errors import LineProblem, ValidationFailed
from batchyard.orchestrator._planning import intake as _intake
from batchyard.orchestrator._planning.intake import Intake, check_file, reuse_preview
from batchyard.store import Store

MODELS = ("gpt-4o-mini", "gpt-4.1-mini", "gpt-5-mini")


@pytest.fixture
def models() -> Catalog:
    return model_table()


@pytest.fixture(autouse=True)
def cut_small_files(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_intake, "PARALLEL_BYTES", 0)


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store.open(tmp_path / "jobs.db")


def line(i: int, text: str | None = None, **body: Any) -> str:
    request = {
        "model": MODELS[i % 3],
        "messages": [{"role": "user", "content": text or f"question number {i} " * (1 + i % 5)}],
        "max_completion_tokens": 50 + i % 7,
        **body,
    }
    envelope = {"custom_id": f"req-{i}", "method": "POST", "url": "/v1/chat/completions"}
    return json.dumps({**envelope, "body": request})


def write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def both(path: Path, models: Catalog, **kw: Any) -> tuple[Intake, Intake]:
    return check_file(path, models, workers=1, **kw), check_file(path, models, workers=3, **kw)


def same_records(one: Intake, parts: Intake) -> None:
    assert list(parts.lines) == list(one.lines)
    assert [(g.index, g.endpoint, g.model) for g in parts.groups] == [
        (g.index, g.endpoint, g.model) for g in one.groups
    ]
    assert (parts.checked.lines, parts.checked.valid) == (one.checked.lines, one.checked.valid)
    assert sorted(parts.checked.groups) == sorted(one.checked.groups)
    for key, group in one.checked.groups.items():
        other = parts.checked.groups[key]
        assert (other.requests, other.input_tokens, other.bytes) == (
            group.requests,
            group.input_tokens,
            group.bytes,
        )


def same_errors(path: Path, models: Catalog) -> list[LineProblem]:
    """The problems both ways of checking `path` report (they must be the same)."""
    with pytest.raises(ValidationFailed) as one:
        check_file(path, models, workers=1)
    with pytest.raises(ValidationFailed) as parts:
        check_file(path, models, workers=3)
    assert [str(p) for p in parts.value.problems] == [str(p) for p in one.value.problems]
    return list(parts.value.problems)


def test_parts_give_the_records_of_one_process(tmp_path: Path, models: Catalog) -> None:
    lines = [line(i) for i in range(300)]
    lines.insert(100, "")  # a blank line still counts in the numbering
    path = write(tmp_path / "in.jsonl", lines)
    one, parts = both(path, models)
    assert parts.preview is not None  # the workers' passes were used
    assert len(parts.lines.parts) == 3  # type: ignore[union-attr]
    same_records(one, parts)
    assert [rec[0] for rec in parts.lines][99:102] == [100, 102, 103]


def test_problems_are_numbered_for_the_whole_file(tmp_path: Path, models: Catalog) -> None:
    lines = [line(i) for i in range(200)]
    lines[150] = line(150, temperature=7)
    lines[190] = "{not json"
    problems = same_errors(write(tmp_path / "in.jsonl", lines), models)
    assert [p.line for p in problems] == [151, 191]


def test_skipped_invalid_lines_are_the_same(tmp_path: Path, models: Catalog) -> None:
    lines = [line(i) for i in range(200)]
    lines[170] = line(170, temperature=7)
    path = write(tmp_path / "in.jsonl", lines)
    one = check_file(path, models, workers=1, skip_invalid=True, rejects=tmp_path / "a.jsonl")
    parts = check_file(path, models, workers=3, skip_invalid=True, rejects=tmp_path / "b.jsonl")
    same_records(one, parts)
    assert (tmp_path / "a.jsonl").read_text() == (tmp_path / "b.jsonl").read_text()
    assert parts.checked.invalid_lines == 1


def test_a_custom_id_used_in_two_parts_is_the_one_process_error(
    tmp_path: Path, models: Catalog
) -> None:
    lines = [line(i) for i in range(200)]
    lines[180] = lines[180].replace('"req-180"', '"req-3"')
    problems = same_errors(write(tmp_path / "in.jsonl", lines), models)
    assert "line 4 already uses it" in str(problems[0])


@pytest.mark.parametrize("twin_at", [23, 184], ids=["same part", "another part"])
def test_twins_and_sums_match_one_process(
    tmp_path: Path, models: Catalog, store: Store, twin_at: int
) -> None:
    lines = [line(i) for i in range(200)]
    lines[twin_at] = line(twin_at, text=json.loads(lines[9])["body"]["messages"][0]["content"])
    lines[twin_at] = lines[twin_at].replace(MODELS[twin_at % 3], MODELS[9 % 3])
    path = write(tmp_path / "in.jsonl", lines)
    one, parts = both(path, models)
    same_records(one, parts)
    routable_one, preview_one = reuse_preview(one, store)
    routable_parts, preview_parts = reuse_preview(parts, store)
    assert preview_parts == preview_one
    assert preview_one.twins == 1 and preview_one.twin_ids == frozenset({f"req-{twin_at}"})
    assert routable_parts.kinds == routable_one.kinds
    assert routable_parts.twins == routable_one.twins
    assert list(routable_parts.records()) == list(routable_one.records())
    sums_one, sums_parts = routable_one.tally.result(), routable_parts.tally.result()
    assert sorted(sums_parts) == sorted(sums_one)
    for model, work in sums_one.items():
        for priority, w in work.classes.items():
            other = sums_parts[model].classes[priority]
            assert (other.count, other.input_tokens, other.rate_tokens) == (
                w.count,
                w.input_tokens,
                w.rate_tokens,
            )
            assert other.cost.standard == pytest.approx(w.cost.standard, rel=1e-12)
            assert other.worst.batch == pytest.approx(w.worst.batch, rel=1e-12)


def test_a_small_file_is_checked_in_one_process(
    tmp_path: Path, models: Catalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_intake, "PARALLEL_BYTES", 1 << 20)
    path = write(tmp_path / "in.jsonl", [line(i) for i in range(20)])
    intake = check_file(path, models, workers=3)
    assert intake.preview is None and intake.checked.valid == 20


def test_the_workers_setting_keeps_planning_in_one_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from batchyard.config import load_settings
    from batchyard.orchestrator import Orchestrator

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("workers were started")

    monkeypatch.setattr(_intake, "check_in_parts", refuse)
    path = write(tmp_path / "in.jsonl", [line(i) for i in range(50)])
    monkeypatch.setenv("BATCHYARD_WORKERS", "1")
    orch = Orchestrator(load_settings(db=str(tmp_path / "jobs.db")))
    assert orch.plan(path).requests == 50
    monkeypatch.setenv("BATCHYARD_WORKERS", "2")
    with pytest.raises(AssertionError, match="workers were started"):
        Orchestrator(load_settings(db=str(tmp_path / "jobs.db"))).plan(path)


def test_a_part_that_fails_leaves_no_file_behind(
    tmp_path: Path, models: Catalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tempfile

    from batchyard.ingest import validate_file
    from batchyard.orchestrator._planning import parts

    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    checked = validate_file  # what the parts call

    def second_part_fails(*args: Any, **kwargs: Any) -> Any:
        if kwargs["span"][0] > 0:
            raise RuntimeError("the second part failed")
        return checked(*args, **kwargs)

    monkeypatch.setattr(parts, "validate_file", second_part_fails)  # the workers are forked
    path = write(tmp_path / "in.jsonl", [line(i) for i in range(300)])
    with pytest.raises(RuntimeError, match="the second part failed"):
        check_file(path, models, workers=2)
    assert list(scratch.iterdir()) == []


@pytest.mark.parametrize(
    ("deadline", "limits"),
    [(None, {}), (300.0, {"rpm": 10, "tpm": 5_000}), (None, {"enqueued_token_limit": 3_000})],
    ids=["no deadline", "some late", "queue headroom"],
)
def test_lines_routed_in_parts_are_routed_as_in_one_process(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    deadline: float | None,
    limits: dict[str, int],
) -> None:
    from batchyard.config import load_settings
    from batchyard.orchestrator import Orchestrator
    from batchyard.orchestrator._planning import assigning, planner

    made: list[bool] = []

    def spy(routable: Any) -> Any:
        stream = assigning.parts_stream(routable)
        made.append(stream is not None)
        return stream

    monkeypatch.setattr(planner, "parts_stream", spy)
    lines = [json.loads(line(i)) | {"priority": i % 3} for i in range(600)]
    path = write(tmp_path / "in.jsonl", [json.dumps(obj) for obj in lines])
    plans = []
    at = 1_800_000_000.0  # both plans at the same instant, however long each takes
    for workers in ("1", "3"):
        monkeypatch.setenv("BATCHYARD_WORKERS", workers)
        db = str(tmp_path / f"{workers}.db")
        settings = load_settings(db=db, models={m: limits for m in MODELS})
        orch = Orchestrator(settings, clock=lambda: at)
        plans.append(orch.plan(path, deadline=None if deadline is None else at + deadline))
    one, parts = plans
    assert made == [False, True]  # one process, then the workers
    assert list(parts.decision.assignments) == list(one.decision.assignments)
    assert (parts.late, parts.cannot_meet) == (one.late, one.cannot_meet)
    if deadline is not None:
        assert one.late > 0  # the lanes' places cross the parts
    if limits.get("enqueued_token_limit"):
        assert any(a.deferred for a in one.decision.assignments)
    for m1, m2 in zip(one.decision.models, parts.decision.models, strict=True):
        assert sorted(m1.routed) == sorted(m2.routed)
        for route, work in m1.routed.items():
            other = m2.routed[route]
            assert (other.count, other.input_tokens) == (work.count, work.input_tokens)
            assert other.cost.standard == pytest.approx(work.cost.standard, rel=1e-12)
        assert m2.deferred.count == m1.deferred.count
    assert parts.expected == pytest.approx(one.expected, rel=1e-12)
