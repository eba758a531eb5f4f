"""The coalescer: what reaches the event loop together is handled in one call, each caller gets its own result."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from serving.coalesce import Coalescer


class Recorder:
    """A handler that remembers its calls and answers each item with ``item * 10``."""

    def __init__(self, fail_on: int | None = None) -> None:
        self.calls: list[list[int]] = []
        self.fail_on = fail_on

    def __call__(self, items: list[int]) -> list[int]:
        self.calls.append(list(items))
        if self.fail_on is not None and self.fail_on in items:
            raise ValueError(f"cannot handle {self.fail_on}")
        return [i * 10 for i in items]


def test_items_submitted_together_share_one_call() -> None:
    handler = Recorder()
    coalescer = Coalescer(handler)

    async def main() -> list[int]:
        return await asyncio.gather(*(coalescer.submit(i) for i in range(7)))

    assert asyncio.run(main()) == [0, 10, 20, 30, 40, 50, 60]
    assert handler.calls == [[0, 1, 2, 3, 4, 5, 6]]


def test_a_lone_item_is_handled_alone_and_at_once() -> None:
    handler = Recorder()
    coalescer = Coalescer(handler)

    async def main() -> list[int]:
        out = [await coalescer.submit(1)]
        await asyncio.sleep(0)
        out.append(await coalescer.submit(2))
        return out

    assert asyncio.run(main()) == [10, 20]
    assert handler.calls == [[1], [2]]


def test_full_batches_are_closed() -> None:
    handler = Recorder()
    coalescer = Coalescer(handler, max_batch=2)

    async def main() -> list[int]:
        return await asyncio.gather(*(coalescer.submit(i) for i in range(5)))

    assert asyncio.run(main()) == [0, 10, 20, 30, 40]
    assert handler.calls == [[0, 1], [2, 3], [4]]


def test_a_failing_item_fails_alone_not_the_items_handled_with_it() -> None:
    handler = Recorder(fail_on=3)
    coalescer = Coalescer(handler, max_batch=3)

    async def main() -> list[object]:
        first = await asyncio.gather(*(coalescer.submit(i) for i in range(6)), return_exceptions=True)
        return [*first, await coalescer.submit(9)]

    out = asyncio.run(main())
    assert out[:3] == [0, 10, 20] and out[4:] == [40, 50, 90]
    assert isinstance(out[3], ValueError) and "cannot handle 3" in str(out[3])
    # The failing call is retried item by item: only item 3 fails alone.
    assert handler.calls == [[0, 1, 2], [3, 4, 5], [3], [4], [5], [9]]


def test_a_handler_returning_the_wrong_count_is_an_error() -> None:
    coalescer: Coalescer[int, int] = Coalescer(lambda items: items[:-1])

    async def main() -> list[object]:
        return await asyncio.gather(*(coalescer.submit(i) for i in range(3)), return_exceptions=True)

    out = asyncio.run(main())
    assert all(isinstance(e, RuntimeError) and "0 results for 1 items" in str(e) for e in out)


def test_a_caller_cancelled_while_waiting_is_not_handled_and_does_not_disturb_the_others() -> None:
    handler = Recorder()
    coalescer = Coalescer(handler)

    async def main() -> list[object]:
        tasks = [asyncio.ensure_future(coalescer.submit(i)) for i in range(3)]
        await asyncio.sleep(0)  # every task is now waiting for the next pass
        tasks[1].cancel()
        return await asyncio.gather(*tasks, return_exceptions=True)

    out = asyncio.run(main())
    assert out[0] == 0 and out[2] == 20 and isinstance(out[1], asyncio.CancelledError)
    assert handler.calls == [[0, 2]]


def test_max_batch_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Coalescer(Recorder(), max_batch=0)


class SlowRecorder(Recorder):
    """A handler that takes ``seconds`` per call and records the thread it ran on."""

    def __init__(self, seconds: float, fail_on: int | None = None) -> None:
        super().__init__(fail_on)
        self.seconds = seconds
        self.threads: set[str] = set()

    def __call__(self, items: list[int]) -> list[int]:
        self.threads.add(threading.current_thread().name)
        time.sleep(self.seconds)
        return super().__call__(items)


def test_with_an_executor_items_submitted_while_a_call_runs_form_the_next_call() -> None:
    handler = SlowRecorder(0.05)
    with ThreadPoolExecutor(1, thread_name_prefix="scorer") as pool:
        coalescer = Coalescer(handler, executor=pool)

        async def main() -> list[int]:
            first = asyncio.ensure_future(coalescer.submit(0))
            await asyncio.sleep(0.01)  # the first call is running in the pool now
            rest = await asyncio.gather(*(coalescer.submit(i) for i in range(1, 6)))
            return [await first, *rest]

        out = asyncio.run(main())
    assert out == [0, 10, 20, 30, 40, 50]
    assert handler.calls == [[0], [1, 2, 3, 4, 5]]
    assert handler.threads and all(name.startswith("scorer") for name in handler.threads)


def test_with_an_executor_the_event_loop_keeps_running_during_a_call() -> None:
    handler = SlowRecorder(0.2)
    with ThreadPoolExecutor(1) as pool:
        coalescer = Coalescer(handler, executor=pool)

        async def main() -> int:
            ticks = 0

            async def tick() -> None:
                nonlocal ticks
                while True:
                    await asyncio.sleep(0.01)
                    ticks += 1

            ticker = asyncio.ensure_future(tick())
            await coalescer.submit(1)
            ticker.cancel()
            return ticks

        # On the loop, a 0.2 s call would let no tick happen; in the pool, the ticker runs throughout.
        assert asyncio.run(main()) >= 5


def test_with_an_executor_failures_and_full_batches_behave_as_on_the_loop() -> None:
    handler = SlowRecorder(0.0, fail_on=3)
    with ThreadPoolExecutor(1) as pool:
        coalescer = Coalescer(handler, max_batch=3, executor=pool)

        async def main() -> list[object]:
            return await asyncio.gather(*(coalescer.submit(i) for i in range(7)), return_exceptions=True)

        out = asyncio.run(main())
    assert handler.calls == [[0, 1, 2], [3, 4, 5], [3], [4], [5], [6]]
    assert out[:3] == [0, 10, 20] and out[4:] == [40, 50, 60]
    assert isinstance(out[3], ValueError) and "cannot handle 3" in str(out[3])


def test_a_stopped_executor_fails_the_waiting_items_instead_of_hanging() -> None:
    pool = ThreadPoolExecutor(1)
    pool.shutdown()
    coalescer = Coalescer(Recorder(), executor=pool)

    async def main() -> list[object]:
        return await asyncio.wait_for(
            asyncio.gather(*(coalescer.submit(i) for i in range(2)), return_exceptions=True), timeout=5
        )

    out = asyncio.run(main())
    assert all(isinstance(e, RuntimeError) for e in out)


class Halt(BaseException):
    """Not an ``Exception``: the handler's error path does not catch it."""


def test_a_handler_raising_a_base_exception_in_the_executor_still_answers_and_frees_the_coalescer() -> None:
    calls: list[list[int]] = []

    def handler(items: list[int]) -> list[int]:
        calls.append(list(items))
        if items == [1]:
            raise Halt("stopping")
        return [i * 10 for i in items]

    with ThreadPoolExecutor(1) as pool:
        coalescer = Coalescer(handler, executor=pool)

        async def main() -> list[object]:
            first = await asyncio.wait_for(asyncio.gather(coalescer.submit(1), return_exceptions=True), timeout=5)
            return [*first, await asyncio.wait_for(coalescer.submit(2), timeout=5)]

        out = asyncio.run(main())
    assert isinstance(out[0], Halt) and out[1] == 20
    assert calls == [[1], [2]]


def test_the_inline_predicate_keeps_chosen_calls_on_the_event_loop() -> None:
    threads: list[tuple[list[int], int]] = []

    def handler(items: list[int]) -> list[int]:
        threads.append((list(items), threading.get_ident()))
        return [i * 10 for i in items]

    sizes: list[int] = []

    def alone(n: int) -> bool:
        sizes.append(n)
        return n == 1

    with ThreadPoolExecutor(max_workers=1) as pool:
        coalescer = Coalescer(handler, executor=pool, inline=alone)

        async def main() -> tuple[int, list[int], list[int]]:
            lone = [await coalescer.submit(1)]
            together = await asyncio.gather(*(coalescer.submit(i) for i in range(2, 5)))
            return threading.get_ident(), lone, list(together)

        loop_thread, lone, together = asyncio.run(main())
    assert lone == [10] and together == [20, 30, 40]
    assert sizes == [1, 3]
    assert threads[0] == ([1], loop_thread)
    assert threads[1][0] == [2, 3, 4] and threads[1][1] != loop_thread
