"""Which chunk ``omc run --batch`` may create now, and through which key: one queue per key
group (or key) and model."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from openai_multi_client import Key
from openai_multi_client._batches import AsyncBatchClient
from openai_multi_client.cli._batch_journal import ChunkRow
from openai_multi_client.cli._batch_keys import BatchKeys
from openai_multi_client.cli._batch_queue import QueueGate


def chunk(no: int, model: str = "m", tokens: int = 10, **more: object) -> ChunkRow:
    fields: dict[str, object] = {
        "chunk_no": no, "path": f"c{no}", "endpoint": "/v1/chat/completions", "model": model,
        "lines": 1, "file_id": None, "batch_id": None, "status": "new", "completed": 0,
        "failed": 0, "output_done": False, "error_done": False, "finished": False,
        "usage": None, "tokens": tokens, "key_id": None,
    }  # fmt: skip
    fields.update(more)
    return ChunkRow(**fields)  # type: ignore[arg-type]


@pytest.fixture
async def keys(tmp_path: Path) -> AsyncIterator[BatchKeys]:
    given = [Key("sk-a1", group="org-a"), Key("sk-a2", group="org-a"), Key("sk-b")]
    clients = [
        AsyncBatchClient(key, base_url="http://127.0.0.1:9", workdir=tmp_path) for key in given
    ]
    yield BatchKeys(clients)
    for client in clients:
        await client.aclose()


def ids(keys: BatchKeys) -> list[str]:
    return keys.usable()


async def test_keys_of_one_group_share_a_queue_and_chunks_spread_over_queues(
    keys: BatchKeys,
) -> None:
    a1, a2, b = ids(keys)
    gate = QueueGate(15, keys)
    gate.start([])
    first = chunk(1)
    assert gate.choose(first) == a1
    gate.add(first, a1)
    second = chunk(2)
    assert gate.choose(second) == b  # org-a's queue holds 10 of 15: a2 shares it
    gate.add(second, b)
    third = chunk(3)
    assert not gate.admits(third, a2)
    assert gate.choose(third) is None  # both queues full for this model
    assert gate.choose(chunk(4, model="other")) == a1  # another model: queues of its own


async def test_a_token_limit_holds_its_queue_only(keys: BatchKeys) -> None:
    a1, a2, b = ids(keys)
    gate = QueueGate(None, keys)
    running = chunk(1, key_id=a1, batch_id="batch_1", file_id="file-1")
    refused = chunk(2, key_id=a2, batch_id="batch_2", file_id="file-2")
    gate.start([running])
    gate.hold(refused)  # org-a's queue for model m
    assert gate.choose(chunk(3)) == b
    assert gate.choose(chunk(4, model="other")) == a1
    gate.start([])  # org-a's batches ended: the hold is let go
    assert gate.choose(chunk(5)) == a1


async def test_an_uploaded_chunk_keeps_its_key_and_a_retired_keys_chunk_moves(
    keys: BatchKeys,
) -> None:
    a1, _, b = ids(keys)
    gate = QueueGate(None, keys)
    gate.start([])
    uploaded = chunk(1, key_id=b, file_id="file-1")
    assert gate.choose(uploaded) == b
    legacy = chunk(2, file_id="file-2")  # journalled before keys were: the first key's
    assert keys.key_of(legacy) == a1
    assert gate.choose(legacy) == a1
    keys.retire(b, "401")
    assert gate.choose(uploaded) == a1  # uploaded again through a usable key
    assert keys.client_of(chunk(3, key_id=b, batch_id="batch_3")) is None
    assert "refused" in keys.why_not(b)
    assert "not among the keys" in keys.why_not("key-00000000")
