"""Answer together the requests that reach the event loop together.

Under load, several requests arrive while the worker is busy with an earlier one. Scoring them one by one costs one
round of model calls each; scoring them together costs one round for all of them (an XGBoost call on eight rows
takes about as long as on one), and the models' memory is walked once while it is still in the CPU's cache.

:class:`Coalescer` collects the items submitted during one pass of the event loop and hands them to one call of
its handler on the next pass. A lone request waits for nothing but that one pass (microseconds), so a quiet
service answers as fast as without it. Nothing here knows about models: the handler does the work.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

#: Most items handed to the handler at once: bounds one call's time (and so everybody's wait in it).
MAX_BATCH = 64


class Coalescer(Generic[T, R]):
    """Batch the items submitted during one event-loop pass into one ``handle`` call.

    Args:
        handle: Called with the items in submission order; returns one result per item, in the same order. If it
            raises, every item of that call gets the exception.
        max_batch: Items per call at most; a full batch is closed and the next item starts a new one.
    """

    def __init__(self, handle: Callable[[list[T]], Sequence[R]], max_batch: int = MAX_BATCH) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        self.handle = handle
        self.max_batch = max_batch
        self._open: list[tuple[T, asyncio.Future[R]]] | None = None
        #: Handler calls made and items handled, for the service's metrics (items / calls = mean batch size).
        self.calls = 0
        self.items = 0

    async def submit(self, item: T) -> R:
        """The handler's result for ``item``, computed together with whatever else arrived in this pass."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        batch = self._open
        if batch is None:
            batch = self._open = []
            loop.call_soon(self._run, batch)
        batch.append((item, future))
        if len(batch) >= self.max_batch:
            self._open = None
        return await future

    def _run(self, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        if self._open is batch:
            self._open = None
        self.calls += 1
        self.items += len(batch)
        try:
            results = self.handle([item for item, _ in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"handler returned {len(results)} results for {len(batch)} items")
        except Exception as exc:
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, future), result in zip(batch, results, strict=True):
            # A request cancelled meanwhile (client gone, timeout) simply does not take its result.
            if not future.done():
                future.set_result(result)
