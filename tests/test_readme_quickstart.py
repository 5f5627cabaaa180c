"""The README's offline quick start, run as it stands in bash: only the port and the folder
differ. It must start the simulator, submit, watch and fetch the newest run, and stop the
background simulator it started."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

from cli_support import ROOT, free_port


def _quick_start() -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("### Offline, against the simulator", 1)[1]
    return section.split("```sh\n", 1)[1].split("```", 1)[0]


def test_the_readme_quick_start_works_verbatim(tmp_path: Path) -> None:
    block = _quick_start()
    assert "8080" in block and ".venv/bin/batchyard" in block
    port = free_port()
    script = block.replace("8080", str(port))
    # The folder: the README's `.venv` is the one running these tests.
    (tmp_path / ".venv").symlink_to(Path(sys.prefix), target_is_directory=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "BATCHYARD_"))}
    env["BATCHYARD_DB"] = str(tmp_path / "quick.db")
    done = subprocess.run(
        ["bash", "-e", "-c", script],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    run_ids = set(re.findall(r"run_\d{8}_[0-9a-f]{6}", done.stdout + done.stderr))
    assert len(run_ids) == 1, run_ids  # submit, watch and fetch all name the same run
    (run_id,) = run_ids
    assert f"Using the newest run, {run_id}." in done.stderr
    lines = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert len(lines) == 500
    assert all(line["response"]["status_code"] == 200 for line in lines)
    # `kill %1` stopped the simulator: nothing listens on its port any more.
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0
