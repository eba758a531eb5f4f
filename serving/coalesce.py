"""Answer together the requests that reach the worker while it is busy.

Under load, several requests arrive while the worker is scoring earlier ones. Scoring them one by one costs one
round of model calls each; scoring them together costs one round for all of them (an XGBoost call on eight rows
takes about as long as on one), and the models' memory is walked once while it is still in the CPU's cache.

:class:`Coalescer` hands the items submitted during one pass of the event loop to one call of its handler on the
next pass. Given an executor, the call runs there (XGBoost releases the GIL, so the event loop keeps reading,
validating and answering HTTP on the other core meanwhile), and whatever is submitted while a call runs is handed
over as one batch the moment it returns: the busier the service, the larger the batches. A lone request waits
for nothing but one loop pass and, with an executor, one thread hand-off, or none when the ``inline`` predicate
says the call should run on the event loop (a request alone in the worker: the loop has nothing else to do, and
handing over to a thread and back costs it two wake-ups). Nothing here knows about models: the handler does the
work.

One item's trouble stays its own: when a call over several items raises, each item is handled again alone, so
only the items that fail by themselves get the exception (a bad row — say an eligibility rule comparing a text
attribute with a number — does not fail the requests scored with it).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

#: Most items handed to the handler at once: bounds one call's time (and so everybody's wait in it).
MAX_BATCH = 64

_Batch = list[tuple[T, "asyncio.Future[R]"]]


class Coalescer(Generic[T, R]):
    """Batch the items submitted while the handler is busy (or during one event-loop pass) into one call.

    Args:
        handle: Called with the items in submission order; returns one result per item, in the same order. If it
            raises on several items, it is called again on each alone and only the items that fail alone get their
            exception (so it must have no effect when it raises).
        max_batch: Items per call at most; the rest wait for the next call.
        executor: Where ``handle`` runs. ``None`` runs it on the event loop (one call per loop pass); an executor
            runs one call at a time there, and items submitted meanwhile form the next call.
        inline: With an executor: called with the size of each batch about to be handed over; True runs that call
            on the event loop instead.
    """

    def __init__(
        self,
        handle: Callable[[list[T]], Sequence[R]],
        max_batch: int = MAX_BATCH,
        executor: Executor | None = None,
        inline: Callable[[int], bool] | None = None,
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        self.handle = handle
        self.max_batch = max_batch
        self.executor = executor
        self.inline = inline
        self._pending: _Batch[T, R] = []
        #: A dispatch is scheduled on the loop or a call is running: new items just join ``_pending``.
        self._busy = False

    async def submit(self, item: T) -> R:
        """The handler's result for ``item``, computed together with whatever else is waiting."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        self._pending.append((item, future))
        if not self._busy:
            self._busy = True
            loop.call_soon(self._dispatch, loop)
        return await future

    def _dispatch(self, loop: asyncio.AbstractEventLoop) -> None:
        # A request cancelled while waiting (client gone, timeout) is not scored at all.
        pending = [entry for entry in self._pending if not entry[1].done()]
        batch, self._pending = pending[: self.max_batch], pending[self.max_batch :]
        if not batch:
            self._busy = False
            return
        items = [item for item, _ in batch]
        if self.executor is None or (self.inline is not None and self.inline(len(items))):
            self._deliver(batch, *self._call(items))
            self._next(loop)
            return
        try:
            running = loop.run_in_executor(self.executor, self._call, items)
        except RuntimeError as exc:  # the executor is shut down (the worker is stopping)
            self._deliver(batch, None, exc)
            self._next(loop)
            return

        def done(task: asyncio.Future[tuple[Sequence[R] | None, BaseException | None]]) -> None:
            if task.cancelled():  # the executor was shut down under it
                self._deliver(batch, None, RuntimeError("the scoring thread stopped"))
            elif (raised := task.exception()) is not None:  # not an Exception (those _call returns): still answer
                self._deliver(batch, None, raised)
            else:
                self._deliver(batch, *task.result())
            self._next(loop)

        running.add_done_callback(done)

    def _next(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._pending:
            loop.call_soon(self._dispatch, loop)
        else:
            self._busy = False

    def _call(self, items: list[T]) -> tuple[Sequence[R | _Failed] | None, BaseException | None]:
        try:
            results = self.handle(items)
            if len(results) != len(items):
                raise RuntimeError(f"handler returned {len(results)} results for {len(items)} items")
        except Exception as exc:
            if len(items) == 1:
                return None, exc
            # Which item is it? Each alone: the others get their answers, the failing ones their own error.
            return [self._alone(item) for item in items], None
        return results, None

    def _alone(self, item: T) -> R | _Failed:
        results, error = self._call([item])
        return _Failed(error) if results is None else results[0]

    @staticmethod
    def _deliver(batch: _Batch[T, R], results: Sequence[R | _Failed] | None, error: BaseException | None) -> None:
        for i, (_, future) in enumerate(batch):
            # A request cancelled meanwhile simply does not take its result.
            if future.done():
                continue
            if results is None:
                future.set_exception(error or RuntimeError("handler failed"))
            elif isinstance(result := results[i], _Failed):
                future.set_exception(result.error)
            else:
                future.set_result(result)


class _Failed:
    """An item's own exception, among the results of items handled one by one."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error
