"""The prefetch: in order, at most one batch ahead, nothing fetched is lost on close."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from loginetl.actions.prefetch import Prefetcher


def _counting(items: list[int]) -> tuple[list[int], Callable[[], int | None]]:
    fetched: list[int] = []
    source = iter(items)

    def fetch() -> int | None:
        item = next(source, None)
        if item is not None:
            fetched.append(item)
        return item

    return fetched, fetch


def _settle(condition: Callable[[], bool], timeout: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not condition():
        time.sleep(0.01)


def test_items_come_in_order_then_none() -> None:
    _, fetch = _counting([1, 2, 3])
    prefetcher = Prefetcher(fetch, ahead=lambda _: True, discard=lambda _: None, name="t")
    taken = []
    while (item := prefetcher.take()) is not None:
        taken.append(item)
        prefetcher.done()
    prefetcher.close()
    assert taken == [1, 2, 3]


def test_fetches_one_ahead_of_the_batch_in_hand_and_no_more() -> None:
    fetched, fetch = _counting(list(range(10)))
    prefetcher = Prefetcher(fetch, ahead=lambda _: True, discard=lambda _: None, name="t")
    assert prefetcher.take() == 0
    _settle(lambda: len(fetched) >= 2)
    time.sleep(0.1)  # room for a wrong implementation to run further ahead
    assert fetched == [0, 1]  # the batch in hand and exactly one ahead
    prefetcher.close()


def test_a_batch_not_to_be_fetched_ahead_waits_until_it_is_done() -> None:
    fetched, fetch = _counting([0, 1, 2])
    prefetcher = Prefetcher(fetch, ahead=lambda item: item != 0, discard=lambda _: None, name="t")
    assert prefetcher.take() == 0
    time.sleep(0.1)
    assert fetched == [0]  # e.g. large bodies: nothing received while this one is loaded
    prefetcher.done()
    _settle(lambda: len(fetched) == 2)
    assert fetched == [0, 1]
    prefetcher.close()


def test_close_discards_what_was_fetched_and_never_taken() -> None:
    discarded: list[int] = []
    fetched, fetch = _counting([0, 1, 2])
    prefetcher = Prefetcher(fetch, ahead=lambda _: True, discard=discarded.append, name="t")
    assert prefetcher.take() == 0
    _settle(lambda: len(fetched) == 2)
    prefetcher.close()
    assert discarded == [1]  # consume releases it to the queue
    assert fetched == [0, 1]


def test_an_error_in_the_fetch_is_raised_to_the_worker() -> None:
    def fetch() -> int | None:
        raise RuntimeError("queue gone")

    prefetcher = Prefetcher(fetch, ahead=lambda _: True, discard=lambda _: None, name="t")
    with pytest.raises(RuntimeError, match="queue gone"):
        prefetcher.take()
    prefetcher.close()
    assert not any(t.name == "t" for t in threading.enumerate())
