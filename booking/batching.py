"""Batches: what arrives while one batch is being processed is processed together, next.

A lone request is processed at once; under a burst the batches grow, so fifty missed calls at
once cost the database a few transactions (and a few commits) instead of fifty. One batch runs
at a time per queue in a process. The gateway's webhooks and the outbox's records of what
Twilio took use it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


class Batches(Generic[Item, Result]):
    def __init__(
        self,
        process: Callable[[list[Item]], Awaitable[list[Result]]],
        *,
        spawn: Callable[..., None],
        max_size: int,
        before_each: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """`process` gets the items of one batch and returns their results in the same order (an
        exception as an item's result is raised to that item's submitter alone); `before_each` is
        awaited before a batch is taken (to let more urgent work go first)."""
        self._process = process
        self._spawn = spawn
        self._max_size = max_size
        self._before_each = before_each
        self._waiting: list[tuple[Item, asyncio.Future]] = []
        self._draining = False

    async def submit(self, item: Item) -> Result:
        future = asyncio.get_running_loop().create_future()
        self._waiting.append((item, future))
        if not self._draining:
            self._draining = True
            self._spawn(self._drain(), name="batches")
        return await future

    async def _drain(self) -> None:
        try:
            while self._waiting:
                if self._before_each is not None:
                    await self._before_each()
                batch = self._waiting[:self._max_size]
                del self._waiting[:self._max_size]
                try:
                    results = await self._process([item for item, _ in batch])
                except Exception as exc:  # each submitter gets the error, and the next batch runs
                    for _, future in batch:
                        if not future.done():  # its submitter was cancelled (shutdown)
                            future.set_exception(exc)
                    continue
                for (_, future), result in zip(batch, results, strict=True):
                    if future.done():
                        continue
                    if isinstance(result, Exception):
                        future.set_exception(result)
                    else:
                        future.set_result(result)
        finally:
            self._draining = False


def together_or_one_by_one(process: Callable[[list[Item]], Sequence[Result]],
                           items: list[Item]) -> list[Result | Exception]:
    """`process` the items in one go (one transaction); when that fails, each on its own, so an
    item that cannot be processed costs no other its result. A failed item's result is its
    exception, as `Batches` expects."""
    try:
        return list(process(items))
    except Exception as exc:
        if len(items) == 1:
            return [exc]
    outcomes: list[Result | Exception] = []
    for item in items:
        try:
            outcomes.extend(process([item]))
        except Exception as exc:  # this item's own error, raised to its submitter alone
            outcomes.append(exc)
    return outcomes
