"""A batch end to end over a real loopback socket: the lost-create fault really drops the
connection, the admin clock moves the batch, and the ledger bills every line once."""

from __future__ import annotations

import json

import httpx2
import openai
import pytest
from sim_batch_helpers import CHAT, chat_lines, config, jsonl
from simfixtures import running_server


def test_lost_create_then_reconcile_by_listing_over_a_socket() -> None:
    with running_server(config()) as server:
        client = openai.OpenAI(api_key="sk-test", base_url=server.base_url, max_retries=0)
        admin = httpx2.Client(base_url=server.root)
        uploaded = client.files.create(file=("in.jsonl", jsonl(chat_lines(6))), purpose="batch")
        admin.post("/_sim/faults", json={"lost_create_rate": 1.0}).raise_for_status()
        with pytest.raises(openai.APIConnectionError):
            client.batches.create(
                input_file_id=uploaded.id,
                endpoint=CHAT,
                completion_window="24h",
                metadata={"job": "j-42"},
            )
        admin.post("/_sim/faults", json={"lost_create_rate": 0.0}).raise_for_status()

        [batch] = [b for b in client.batches.list() if (b.metadata or {}).get("job") == "j-42"]
        assert batch.status == "validating"
        admin.post("/_sim/clock/advance", json={"seconds": 2_000}).raise_for_status()
        done = client.batches.retrieve(batch.id)
        assert done.status == "completed" and done.output_file_id is not None
        output = client.files.content(done.output_file_id).text.splitlines()
        assert sorted(json.loads(line)["custom_id"] for line in output) == [
            f"req-{i}" for i in range(6)
        ]
        client.batches.retrieve(batch.id)
        ledger = admin.get("/_sim/ledger").json()
        assert ledger["duplicates"] == []
        assert sorted(ledger["billed_custom_ids"]) == [f"req-{i}" for i in range(6)]
        assert len(server.state.batches) == 1
