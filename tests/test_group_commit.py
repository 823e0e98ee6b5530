"""Group commit: concurrent callers share one write, each gets its own result or the error."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import pytest

from newsletter.group_commit import GroupCommit
from tests.servers import wait_for


class Recorder:
    """A write that records its batches; the first one waits until released."""

    def __init__(self, fail_on: str | None = None) -> None:
        self.batches: list[list[str]] = []
        self.first_started = threading.Event()
        self.release_first = threading.Event()
        self.fail_on = fail_on

    def write(self, items: Sequence[str]) -> list[str]:
        self.batches.append(list(items))
        if len(self.batches) == 1:
            self.first_started.set()
            assert self.release_first.wait(10)
        if self.fail_on in items:
            raise RuntimeError(f"cannot write {self.fail_on}")
        return [item.upper() for item in items]


def submit_all(
    group: GroupCommit, items: list[str]
) -> tuple[dict[str, object], list[threading.Thread]]:
    """Each item from its own (daemon) thread; what each caller got back (a result or the error)."""
    outcomes: dict[str, object] = {}

    def call(item: str) -> None:
        try:
            outcomes[item] = group.submit(item)
        except RuntimeError as exc:
            outcomes[item] = exc

    threads = [threading.Thread(target=call, args=(item,), daemon=True) for item in items]
    for thread in threads:
        thread.start()
    return outcomes, threads


def behind_a_write(
    group: GroupCommit, recorder: Recorder, items: list[str]
) -> tuple[dict[str, object], dict[str, object]]:
    """ "a" writes alone and is held; ``items`` queue behind it; then all finish.

    What the first caller and the rest got back. A caller that never
    returns fails the test instead of hanging it.
    """
    first, first_threads = submit_all(group, ["a"])
    assert recorder.first_started.wait(10)
    rest, threads = submit_all(group, items)
    wait_for(lambda: len(group._waiting) == len(items), 10, "the callers to queue")
    recorder.release_first.set()
    for thread in first_threads + threads:
        thread.join(10)
        assert not thread.is_alive(), "a caller never got its result"
    return first, rest


def test_a_caller_alone_writes_at_once():
    recorder = Recorder()
    recorder.release_first.set()
    assert GroupCommit(recorder.write).submit("a") == "A"
    assert recorder.batches == [["a"]]


def test_callers_arriving_during_a_write_share_the_next_one():
    recorder = Recorder()
    group = GroupCommit(recorder.write)
    first, rest = behind_a_write(group, recorder, ["b", "c", "d", "e"])
    assert recorder.batches[0] == ["a"]
    assert sorted(recorder.batches[1]) == ["b", "c", "d", "e"] and len(recorder.batches) == 2
    assert {**first, **rest} == {"a": "A", "b": "B", "c": "C", "d": "D", "e": "E"}


def test_a_failed_write_fails_its_batch_only():
    """By default no error is retried item by item: a database out of reach would make
    each caller wait out the outage once more."""
    recorder = Recorder(fail_on="c")
    group = GroupCommit(recorder.write)
    first, rest = behind_a_write(group, recorder, ["b", "c"])
    assert first == {"a": "A"}
    assert isinstance(rest["b"], RuntimeError) and isinstance(rest["c"], RuntimeError)
    assert len(recorder.batches) == 2  # the failed batch was written once
    assert group.submit("f") == "F"  # the lead was given up, not lost


@pytest.mark.parametrize("max_batch", [1, 2])
def test_no_batch_exceeds_max_batch_and_every_caller_is_served(max_batch):
    recorder = Recorder()
    group = GroupCommit(recorder.write, max_batch=max_batch)
    first, rest = behind_a_write(group, recorder, ["b", "c", "d", "e", "f"])
    assert all(len(batch) <= max_batch for batch in recorder.batches)
    assert sorted(item for batch in recorder.batches for item in batch) == list("abcdef")
    assert {**first, **rest} == {item: item.upper() for item in "abcdef"}


def test_a_batch_refused_for_one_item_is_written_again_item_by_item():
    """One signup the database refuses fails its own caller only, when the error allows it."""
    recorder = Recorder(fail_on="c")
    group = GroupCommit(recorder.write, retry_alone=lambda error: "cannot write" in str(error))
    first, rest = behind_a_write(group, recorder, ["b", "c", "d"])
    assert first == {"a": "A"}
    assert rest["b"] == "B" and rest["d"] == "D"
    assert isinstance(rest["c"], RuntimeError)
    assert sorted(recorder.batches[1]) == ["b", "c", "d"]
    assert sorted(recorder.batches[2:]) == [["b"], ["c"], ["d"]]  # then one a call


def test_signups_retry_alone_unless_the_database_is_out_of_reach(app):
    from sqlalchemy.exc import DataError, IntegrityError, OperationalError

    from newsletter.subscriptions.routes import SIGNUPS

    retry_alone = app.extensions[SIGNUPS]._retry_alone
    assert retry_alone(DataError("INSERT", {}, ValueError("NUL")))
    assert retry_alone(IntegrityError("INSERT", {}, ValueError("fk")))
    assert not retry_alone(OperationalError("INSERT", {}, ValueError("gone")))
