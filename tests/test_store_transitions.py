"""Every allowed and every forbidden status change, through the store's real write paths."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest
from test_store_support import (
    ENDPOINT,
    force_batch_status,
    force_request_status,
    make_run,
    open_store,
    route_all,
)

from batchyard.errors import IllegalTransition, ProviderError
from batchyard.models import BatchStatus, RequestStatus, Route, RunState
from batchyard.store import (
    BATCH_TRANSITIONS,
    PROVIDER_STATUS,
    REQUEST_TRANSITIONS,
    RUN_TRANSITIONS,
    Store,
)

# Short names for the three status enums (one assignment each, so they are type aliases).
R = RequestStatus
B = BatchStatus
S = RunState


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    """One database for the module (each test makes its own run): ~300 cases stay fast."""
    with open_store(tmp_path_factory.mktemp("transitions") / "t.db") as s:
        yield s


# Changes that would corrupt a run if they slipped into a table: written out by hand so
# that this test fails if someone "fixes" an error by widening the table.
KEY_FORBIDDEN_REQUEST = [
    (R.PENDING, R.SUBMITTED),  # never sent anywhere without a route
    (R.PENDING, R.IN_FLIGHT),
    (R.PENDING, R.SUCCEEDED),
    (R.SUBMITTED, R.IN_FLIGHT),  # inside a live batch: a real-time call would double it
    (R.SUBMITTED, R.ROUTED),
    (R.RETRYABLE, R.SUCCEEDED),  # a result must come from a claimed or submitted attempt
    (R.SUCCEEDED, R.IN_FLIGHT),
    (R.SUCCEEDED, R.RETRYABLE),
    (R.SUCCEEDED, R.SUCCEEDED),
    (R.FAILED, R.RETRYABLE),
    (R.FAILED, R.ROUTED),
    (R.CANCELLED, R.ROUTED),
]
KEY_FORBIDDEN_BATCH = [
    (B.PLANNED, B.CREATING),  # create before the input file exists
    (B.PLANNED, B.VALIDATING),
    (B.UPLOADING, B.CREATING),
    (B.COMPLETED, B.IN_PROGRESS),  # provider statuses never go back
    (B.IN_PROGRESS, B.VALIDATING),
    (B.APPLIED, B.COMPLETED),  # applied twice
    (B.APPLIED, B.PLANNED),
    (B.VALIDATING, B.APPLIED),  # applied before the provider finished
    (B.CREATING, B.PLANNED),  # would re-upload and re-create: a second batch
]
KEY_FORBIDDEN_RUN = [
    (S.COMPLETED, S.RUNNING),
    (S.CANCELLED, S.RUNNING),
    (S.CANCELLED, S.COMPLETED),
    (S.RUNNING, S.PENDING),
]


def test_key_forbidden_changes_are_not_in_the_tables() -> None:
    for old, new in KEY_FORBIDDEN_REQUEST:
        assert new not in REQUEST_TRANSITIONS[old], (old, new)
    for old_batch, new_batch in KEY_FORBIDDEN_BATCH:
        assert new_batch not in BATCH_TRANSITIONS[old_batch], (old_batch, new_batch)
    for old_run, new_run in KEY_FORBIDDEN_RUN:
        assert new_run not in RUN_TRANSITIONS[old_run], (old_run, new_run)


def test_tables_cover_every_status_and_terminal_ones_have_no_exit() -> None:
    assert set(REQUEST_TRANSITIONS) == set(R)
    assert set(BATCH_TRANSITIONS) == set(B)
    assert set(RUN_TRANSITIONS) == set(S)
    for terminal in (R.SUCCEEDED, R.FAILED, R.CANCELLED):
        assert not REQUEST_TRANSITIONS[terminal]
    assert not BATCH_TRANSITIONS[B.APPLIED]
    assert not RUN_TRANSITIONS[S.COMPLETED] and not RUN_TRANSITIONS[S.CANCELLED]


@pytest.mark.parametrize(("old", "new"), list(itertools.product(R, R)))
def test_request_transition(store: Store, old: R, new: R) -> None:
    run_id = make_run(store, 2)
    force_request_status(store, run_id, "req-0", old)
    if new in REQUEST_TRANSITIONS[old]:
        assert store.transition_requests(run_id, ["req-0"], new) == 1
        assert store.get_request(run_id, "req-0").status == new
    else:
        # A legal change for req-1 in the same chunk must not be written either.
        legal_from = next((s for s in R if new in REQUEST_TRANSITIONS[s]), None)
        ids = ["req-0"]
        if legal_from is not None:
            force_request_status(store, run_id, "req-1", legal_from)
            ids = ["req-1", "req-0"]
        with pytest.raises(IllegalTransition) as err:
            store.transition_requests(run_id, ids, new)
        message = str(err.value)
        assert "req-0" in message and f"'{old}'" in message and f"'{new}'" in message
        assert store.get_request(run_id, "req-0").status == old
        assert store.get_request(run_id, "req-1").status == (legal_from or R.PENDING)


@pytest.mark.parametrize(("old", "new"), KEY_FORBIDDEN_REQUEST)
def test_key_forbidden_request_changes_raise(store: Store, old: R, new: R) -> None:
    run_id = make_run(store, 1)
    force_request_status(store, run_id, "req-0", old)
    with pytest.raises(IllegalTransition):
        store.transition_requests(run_id, ["req-0"], new)


@pytest.mark.parametrize(("old", "new"), list(itertools.product(S, S)))
def test_run_transition(store: Store, old: S, new: S) -> None:
    run_id = make_run(store)
    with store.db.atomic():
        store.db.execute("UPDATE runs SET state = ? WHERE id = ?", [old.value, run_id])
    if new in RUN_TRANSITIONS[old]:
        run = store.set_run_state(run_id, new)
        assert run.state == new
        assert (run.finished_at is not None) == (new in (S.COMPLETED, S.CANCELLED))
    else:
        with pytest.raises(IllegalTransition, match=run_id):
            store.set_run_state(run_id, new)
        assert store.get_run(run_id).state == old


def _shard(store: Store) -> int:
    run_id = make_run(store, 1)
    route_all(store, run_id, 1, Route.BATCH)
    return store.create_shard(run_id, endpoint=ENDPOINT, model="gpt-4o-mini", custom_ids=["req-0"])


@pytest.mark.parametrize(("old", "new"), list(itertools.product(B, B)))
def test_batch_transition(store: Store, old: B, new: B) -> None:
    shard = _shard(store)
    force_batch_status(store, shard, old)
    if new in BATCH_TRANSITIONS[old]:
        assert store.set_batch_status(shard, new)
        assert store.get_batch(shard).status == new
    else:
        with pytest.raises(IllegalTransition, match=f"shard {shard}"):
            store.set_batch_status(shard, new)
        assert store.get_batch(shard).status == old


@pytest.mark.parametrize(("old", "new"), KEY_FORBIDDEN_BATCH)
def test_key_forbidden_batch_changes_raise(store: Store, old: B, new: B) -> None:
    shard = _shard(store)
    force_batch_status(store, shard, old)
    with pytest.raises(IllegalTransition):
        store.set_batch_status(shard, new)


def test_every_openai_batch_status_maps_and_an_unknown_one_raises(store: Store) -> None:
    # The `status` enum of the Batch object in OpenAI's API spec.
    spec = [
        "validating",
        "failed",
        "in_progress",
        "finalizing",
        "completed",
        "expired",
        "cancelling",
        "cancelled",
    ]
    assert sorted(PROVIDER_STATUS) == sorted(spec)
    assert {PROVIDER_STATUS[s].value for s in spec} == set(spec)
    shard = _shard(store)
    force_batch_status(store, shard, B.CREATING)
    store.record_batch_remote(shard, "batch_abc")
    with pytest.raises(ProviderError, match="paused"):
        store.update_batch_from_provider(shard, {"id": "batch_abc", "status": "paused"})
    assert store.get_batch(shard).status == B.VALIDATING


def test_provider_status_going_backwards_raises(store: Store) -> None:
    shard = _shard(store)
    force_batch_status(store, shard, B.CREATING)
    store.record_batch_remote(shard, "batch_back", {"id": "batch_back", "status": "completed"})
    with pytest.raises(IllegalTransition):
        store.update_batch_from_provider(shard, {"id": "batch_back", "status": "in_progress"})
    assert store.get_batch(shard).status == B.COMPLETED
