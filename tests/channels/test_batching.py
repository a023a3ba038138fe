"""Batches: what arrives while a batch is being processed goes into the next one, in order;
a failing batch fails only its own submitters; a lone item is processed straight away."""

from __future__ import annotations

import asyncio

import pytest

from booking.batching import Batches, together_or_one_by_one


class Recorder:
    """A `process` that records its batches and takes as long as it is told to."""

    def __init__(self, *, seconds: float = 0.05, failing: set[int] | None = None) -> None:
        self.batches: list[list[int]] = []
        self.seconds = seconds
        self.failing = failing or set()
        self.tasks: set[asyncio.Task] = set()

    async def process(self, items: list[int]) -> list[int]:
        self.batches.append(items)
        await asyncio.sleep(self.seconds)
        if self.failing & set(items):
            raise RuntimeError(f"batch {items} failed")
        return [item * 10 for item in items]

    def spawn(self, coro, *, name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)


async def test_items_arriving_during_a_batch_make_up_the_next_one():
    recorder = Recorder()
    batches = Batches(recorder.process, spawn=recorder.spawn, max_size=50)
    first = asyncio.create_task(batches.submit(1))
    await asyncio.sleep(0.01)  # the first batch is under way
    rest = [asyncio.create_task(batches.submit(item)) for item in range(2, 8)]
    assert await first == 10
    assert await asyncio.gather(*rest) == [20, 30, 40, 50, 60, 70]
    assert recorder.batches == [[1], [2, 3, 4, 5, 6, 7]]


async def test_batches_never_exceed_their_size():
    recorder = Recorder(seconds=0.01)
    batches = Batches(recorder.process, spawn=recorder.spawn, max_size=3)
    results = await asyncio.gather(*(batches.submit(item) for item in range(8)))
    assert results == [item * 10 for item in range(8)]
    assert recorder.batches == [[0, 1, 2], [3, 4, 5], [6, 7]]


async def test_a_failed_batch_fails_its_own_items_and_the_next_batch_still_runs():
    recorder = Recorder(failing={2})
    batches = Batches(recorder.process, spawn=recorder.spawn, max_size=2)
    results = await asyncio.gather(*(batches.submit(item) for item in range(1, 6)),
                                   return_exceptions=True)
    assert isinstance(results[0], RuntimeError) and isinstance(results[1], RuntimeError)
    assert results[2:] == [30, 40, 50]


async def test_waiting_before_each_batch_lets_more_items_join_it():
    recorder = Recorder(seconds=0)
    urgent_work_done = asyncio.Event()
    batches = Batches(recorder.process, spawn=recorder.spawn, max_size=50,
                      before_each=urgent_work_done.wait)
    waiting = [asyncio.create_task(batches.submit(item)) for item in range(3)]
    await asyncio.sleep(0.01)
    waiting.append(asyncio.create_task(batches.submit(3)))
    await asyncio.sleep(0.01)
    assert recorder.batches == []
    urgent_work_done.set()
    assert await asyncio.gather(*waiting) == [0, 10, 20, 30]
    assert recorder.batches == [[0, 1, 2, 3]]


async def test_a_submitter_cancelled_at_shutdown_does_not_break_the_batch():
    recorder = Recorder()
    batches = Batches(recorder.process, spawn=recorder.spawn, max_size=50)
    kept = asyncio.create_task(batches.submit(1))
    cancelled = asyncio.create_task(batches.submit(2))
    await asyncio.sleep(0.01)
    cancelled.cancel()
    assert await kept == 10
    with pytest.raises(asyncio.CancelledError):
        await cancelled


def test_a_batch_that_fails_together_is_retried_one_by_one():
    tried: list[list[int]] = []

    def process(items: list[int]) -> list[int]:
        tried.append(items)
        if 2 in items:
            raise ValueError("item 2 cannot be stored")
        return [item * 10 for item in items]

    outcomes = together_or_one_by_one(process, [1, 2, 3])

    assert outcomes[0] == 10 and outcomes[2] == 30
    assert isinstance(outcomes[1], ValueError)
    assert tried == [[1, 2, 3], [1], [2], [3]]


def test_a_lone_item_that_fails_is_not_tried_twice():
    tried: list[list[int]] = []

    def process(items: list[int]) -> list[int]:
        tried.append(items)
        raise ValueError("no")

    (outcome,) = together_or_one_by_one(process, [7])
    assert isinstance(outcome, ValueError) and tried == [[7]]
