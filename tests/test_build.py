"""Templates and fan-out: request files from data rows, validated as submit validates."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
from cli_support import invoke

from batchyard.build import Variation, build_file, split_variant, variant_id
from batchyard.catalog import Catalog
from batchyard.config import model_table
from batchyard.errors import BuildFailed, InputError

TEMPLATE = """\
model = "gpt-4o-mini"
custom_id = "q-{{ id }}"
[body]
max_tokens = 50
[[body.messages]]
role = "user"
content = "Answer briefly: {{ question }}"
"""


@pytest.fixture
def models() -> Catalog:
    return model_table({})


def _files(
    tmp_path: Path, data: str, name: str = "data.csv", template: str = TEMPLATE
) -> tuple[Path, Path]:
    tpl = tmp_path / "prompt.toml"
    tpl.write_text(template)
    path = tmp_path / name
    path.write_text(data)
    return tpl, path


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_csv_row_becomes_a_request_in_the_batch_format(tmp_path: Path, models: Catalog) -> None:
    tpl, data = _files(tmp_path, 'id,question\n7,"Capital, of France?"\n8,Two plus two?\n')
    report = build_file(tpl, data, tmp_path / "out.jsonl", models)
    lines = _lines(tmp_path / "out.jsonl")
    assert (report.rows, report.requests) == (2, 2)
    assert lines[0] == {
        "custom_id": "q-7",
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {
            "model": "gpt-4o-mini",
            "max_tokens": 50,
            "messages": [{"role": "user", "content": "Answer briefly: Capital, of France?"}],
        },
    }
    assert [line["custom_id"] for line in lines] == ["q-7", "q-8"]


def test_jsonl_data_a_custom_id_column_and_a_templated_model(
    tmp_path: Path, models: Catalog
) -> None:
    template = TEMPLATE.replace('model = "gpt-4o-mini"', 'model = "{{ m }}"').replace(
        'custom_id = "q-{{ id }}"', 'custom_id_column = "key"'
    )
    rows = [
        {"key": "a", "m": "gpt-4o-mini", "question": "x"},
        {"key": "b", "m": "gpt-4.1-nano", "question": "y"},
    ]
    tpl, data = _files(
        tmp_path, "\n".join(json.dumps(r) for r in rows) + "\n", "rows.jsonl", template
    )
    build_file(tpl, data, tmp_path / "out.jsonl", models)
    lines = _lines(tmp_path / "out.jsonl")
    assert [(x["custom_id"], x["body"]["model"]) for x in lines] == [
        ("a", "gpt-4o-mini"),
        ("b", "gpt-4.1-nano"),
    ]


def test_a_missing_field_names_the_row_and_the_template_key(
    tmp_path: Path, models: Catalog
) -> None:
    tpl, _ = _files(tmp_path, "id,question\n1,fine\n")
    other = tmp_path / "other.csv"
    other.write_text("id,questoin\n1,typo\n")
    with pytest.raises(BuildFailed) as err:
        build_file(tpl, other, tmp_path / "out.jsonl", models)
    message = str(err.value)
    assert f"{other} row 1 (body.messages[0].content)" in message
    assert "'question' is undefined" in message and "id, questoin" in message
    assert not (tmp_path / "out.jsonl").exists()


def test_a_request_the_api_would_refuse_names_the_data_row_and_field(
    tmp_path: Path, models: Catalog
) -> None:
    template = TEMPLATE.replace('model = "gpt-4o-mini"', 'model = "{{ model }}"')
    tpl, data = _files(
        tmp_path,
        "id,question,model\n1,a,gpt-4o-mini\n2,b,no-such-model\n3,c,gpt-4o-mini\n",
        template=template,
    )
    with pytest.raises(BuildFailed) as err:
        build_file(tpl, data, tmp_path / "out.jsonl", models)
    assert f"{data} row 2 (body.model)" in str(err.value)
    assert "row 1" not in str(err.value) and "row 3" not in str(err.value)


def test_the_sandbox_refuses_unsafe_placeholders(tmp_path: Path, models: Catalog) -> None:
    template = TEMPLATE.replace("{{ question }}", "{{ question.__class__.__mro__ }}")
    tpl, data = _files(tmp_path, "id,question\n1,a\n", template=template)
    with pytest.raises(BuildFailed, match=r"row 1 \(body.messages\[0\].content\)"):
        build_file(tpl, data, tmp_path / "out.jsonl", models)


@pytest.mark.parametrize(
    "template, message",
    [
        ("colour = 1\n" + TEMPLATE, "unknown key(s) colour"),
        (TEMPLATE.replace('model = "gpt-4o-mini"\n', ""), "(model)"),
        (TEMPLATE.replace("{{ question }}", "{{ question "), "not valid Jinja2"),
        ('endpoint = "/v1/images"\n' + TEMPLATE, "(endpoint)"),
    ],
)
def test_a_bad_template_is_named(
    tmp_path: Path, models: Catalog, template: str, message: str
) -> None:
    tpl, data = _files(tmp_path, "id,question\n1,a\n", template=template)
    with pytest.raises(InputError) as err:
        build_file(tpl, data, tmp_path / "out.jsonl", models)
    assert message in str(err.value) and str(tpl) in str(err.value)


def test_fan_out_keeps_input_order_and_writes_variants_side_by_side(
    tmp_path: Path, models: Catalog
) -> None:
    tpl, data = _files(tmp_path, "id,question\n1,a\n2,b\n")
    variation = Variation.parse(["model=gpt-4o-mini,gpt-4.1-nano", "temperature=0,0.7"], samples=2)
    report = build_file(tpl, data, tmp_path / "out.jsonl", models, variation)
    lines = _lines(tmp_path / "out.jsonl")
    assert report.requests == 16 and report.variants_per_row == 8
    ids = [line["custom_id"] for line in lines]
    assert ids[:3] == [
        "q-1#model=gpt-4o-mini,temperature=0,sample=1",
        "q-1#model=gpt-4o-mini,temperature=0,sample=2",
        "q-1#model=gpt-4o-mini,temperature=0.7,sample=1",
    ]
    assert [split_variant(i)[0] for i in ids] == ["q-1"] * 8 + ["q-2"] * 8
    nano = [line for line in lines if "model=gpt-4.1-nano,temperature=0.7" in line["custom_id"]]
    assert {(x["body"]["model"], x["body"]["temperature"]) for x in nano} == {("gpt-4.1-nano", 0.7)}
    again = build_file(tpl, data, tmp_path / "again.jsonl", models, variation)
    assert again.requests == 16 and _lines(tmp_path / "again.jsonl") == lines  # stable


def test_a_variant_the_api_would_refuse_names_the_row_and_the_variant(
    tmp_path: Path, models: Catalog
) -> None:
    tpl, data = _files(tmp_path, "id,question\n1,a\n")
    with pytest.raises(BuildFailed) as err:
        build_file(tpl, data, tmp_path / "out.jsonl", models, Variation.parse(["temperature=0,7"]))
    assert f"{data} row 1 [q-1#temperature=7] (body.temperature)" in str(err.value)


def test_nested_keys_and_typed_values() -> None:
    variation = Variation.parse(["reasoning.effort=low,high", "store=true"])
    line: dict[str, Any] = {
        "custom_id": "x",
        "body": {"model": "o4-mini", "reasoning": {"summary": "auto"}},
    }
    out = list(variation.expand(line))
    assert out[1]["body"]["reasoning"] == {"summary": "auto", "effort": "high"}
    assert out[1]["body"]["store"] is True
    assert line["body"]["reasoning"] == {"summary": "auto"}  # the original is untouched


@pytest.mark.parametrize(
    "custom_id, expected",
    [
        ("q-1#temperature=0.7", ("q-1", "temperature=0.7")),
        ("a#b#model=x,sample=2", ("a#b", "model=x,sample=2")),
        ("issue#42", ("issue#42", None)),
        ("plain", ("plain", None)),
        ("#temperature=1", ("#temperature=1", None)),
    ],
)
def test_split_variant_reads_back_what_variant_id_writes(
    custom_id: str, expected: tuple[str, str | None]
) -> None:
    assert split_variant(custom_id) == expected


def test_variant_id_round_trips() -> None:
    cid = variant_id("row#1", [("model", "gpt-4o-mini"), ("sample", "3")])
    assert split_variant(cid) == ("row#1", "model=gpt-4o-mini,sample=3")


@pytest.mark.parametrize(
    "spec", ["temperature", "=1,2", "temperature=", "temperature=1,,2", "t=1,1", "a b=1"]
)
def test_bad_vary_options_are_explained(spec: str) -> None:
    with pytest.raises(InputError, match="--vary"):
        Variation.parse([spec])


def test_cli_build_writes_the_file_and_exits_3_naming_the_row(tmp_path: Path) -> None:
    tpl, data = _files(tmp_path, "id,question\n1,a\n2,b\n")
    out = tmp_path / "requests.jsonl"
    done = invoke(
        "build", str(tpl), str(data), "-o", str(out), "--vary", "temperature=0,1", "--json"
    )
    assert done.exit_code == 0, done.stderr
    assert json.loads(done.stdout)["requests"] == 4
    assert len(out.read_text().splitlines()) == 4
    data.write_text("id,prompt\n1,a\n")
    done = invoke("build", str(tpl), str(data), "-o", str(tmp_path / "x.jsonl"))
    assert done.exit_code == 3
    assert f"{data} row 1 (body.messages[0].content)" in done.stderr


def test_plan_takes_a_template_and_sees_every_variant(tmp_path: Path) -> None:
    tpl, data = _files(tmp_path, "id,question\n1,a\n2,b\n3,c\n")
    done = invoke(
        "plan",
        str(data),
        "--template",
        str(tpl),
        "--vary",
        "model=gpt-4o-mini,gpt-4.1-nano",
        "--samples",
        "2",
        "--json",
    )
    assert done.exit_code == 0, done.stderr
    plan = json.loads(done.stdout)
    assert sum(r["requests"] for r in plan["rows"]) == 12
    assert {r["model"] for r in plan["rows"]} == {"gpt-4o-mini", "gpt-4.1-nano"}


def _readme_block(lang: str, containing: str) -> str:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    blocks: list[str] = re.findall(rf"```{lang}\n(.*?)```", readme, re.S)
    return next(b for b in blocks if containing in b)


def test_the_readme_template_example_builds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "prompt.toml").write_text(_readme_block("toml", "# prompt.toml"))
    (tmp_path / "questions.csv").write_text(_readme_block("csv", "id,question"))
    command = "batchyard build prompt.toml questions.csv -o requests.jsonl"
    assert command + "\n" in _readme_block("sh", command + "\n")
    done = invoke(*shlex.split(command)[1:])
    assert done.exit_code == 0, done.stderr
    lines = _lines(tmp_path / "requests.jsonl")
    assert [x["custom_id"] for x in lines] == ["q-1", "q-2"]
    assert lines[1]["body"]["messages"][0]["content"].endswith("What is 2 + 2, in words?")
    (tmp_path / "questions.csv").write_text("id,qestion\n1,x\n2,y\n")
    done = invoke(*shlex.split(command)[1:])
    expected = _readme_block("text", "is undefined").strip().replace("row 2", "row 1")
    assert done.exit_code == 3
    assert " ".join(expected.split()) in " ".join(done.stderr.split())
