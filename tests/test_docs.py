"""The README documents every command, and every command documents itself."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import typer
from cli_support import fast_config, run_cli, sample, sim_env
from simfixtures import running_server

from batchyard.cli import app

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _commands(group: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """Leaf commands as (full name, command). typer ships its own click, so duck-type."""
    found: list[tuple[str, Any]] = []
    for name, command in sorted(group.commands.items()):
        full = f"{prefix}{name}"
        if hasattr(command, "commands"):
            found.extend(_commands(command, full + " "))
        else:
            found.append((full, command))
    return found


COMMANDS = _commands(typer.main.get_group(app))


def test_the_command_list_is_complete() -> None:
    names = {name for name, _ in COMMANDS}
    assert {
        "submit",
        "plan",
        "watch",
        "poll",
        "status",
        "runs",
        "fetch",
        "costs",
        "cancel",
        "resume",
        "verify",
        "config show",
        "sim serve",
        "demo",
    } <= names


@pytest.mark.parametrize("name,command", COMMANDS, ids=[n for n, _ in COMMANDS])
def test_every_command_has_help_and_an_example_in_the_readme(name: str, command: Any) -> None:
    assert command.help and len(command.help.strip()) > 20, f"{name} has no help text"
    assert "Example: batchyard " in command.help, f"{name} help has no example"
    assert f"`batchyard {name}" in README, f"{name} is missing from the README's command table"
    assert re.search(rf"^batchyard (--\S+ \S+ )*{re.escape(name)}\b", README, re.M), (
        f"{name} has no example line in the README"
    )
    for param in command.params:
        if param.param_type_name == "option" and not param.hidden:
            assert param.help, f"{name} {param.opts} has no help"


def test_the_readme_setup_commands_are_the_demo_and_exactly_what_ci_runs() -> None:
    block = README.split("```sh\n", 1)[1].split("```", 1)[0].strip().splitlines()
    assert block[0] == (
        "python3 -m venv .venv && .venv/bin/pip install -e . && .venv/bin/batchyard demo"
    )
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert block[1] in ci.splitlines(), "the README's test command differs from .ci/run"


def test_the_readme_follows_the_agreed_order() -> None:
    headings = re.findall(r"^## (.+)$", README, re.M)
    assert headings[:3] == ["Quick start", "Python API", "Commands"]
    for section in ("Configuration", "The job store", "Durability", "Benchmarks"):
        assert section in headings


def test_the_readme_python_examples_run(tmp_path: Path) -> None:
    blocks = re.findall(r"```python\n(.*?)```", README, re.S)
    assert len(blocks) == 4
    sample(tmp_path, 12)
    with running_server(fast_config()) as server:
        for i, code in enumerate(blocks):
            script = tmp_path / f"example{i}.py"
            script.write_text(code)
            done = run_cli([], sim_env(server.base_url), cwd=tmp_path, python=[str(script)])
            assert done.returncode == 0, done.stderr
            if "by.results(" in code:  # the in-memory example prints each typed result
                printed = done.stdout.splitlines()
                assert [x.split()[:3] for x in printed] == [
                    ["q-0", "temperature=0", "True"],
                    ["q-0", "temperature=1", "True"],
                    ["q-1", "temperature=0", "True"],
                    ["q-1", "temperature=1", "True"],
                ]
    lines = (tmp_path / "out.jsonl").read_text().splitlines()
    assert len(lines) == 12


def test_every_benchmark_has_a_line_in_the_readme() -> None:
    for script in sorted((ROOT / "bench").glob("[!_]*.py")):
        assert f"python bench/{script.name}" in README, script.name
