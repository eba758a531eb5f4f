"""The coalescer: what reaches the event loop together is handled in one call, each caller gets its own result."""

from __future__ import annotations

import asyncio

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
    assert (coalescer.calls, coalescer.items) == (1, 7)


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


def test_a_failing_call_fails_its_items_only() -> None:
    handler = Recorder(fail_on=3)
    coalescer = Coalescer(handler, max_batch=3)

    async def main() -> list[object]:
        first = await asyncio.gather(*(coalescer.submit(i) for i in range(6)), return_exceptions=True)
        return [*first, await coalescer.submit(9)]

    out = asyncio.run(main())
    assert out[:3] == [0, 10, 20] and out[6] == 90
    assert all(isinstance(e, ValueError) and "cannot handle 3" in str(e) for e in out[3:6])


def test_a_handler_returning_the_wrong_count_is_an_error() -> None:
    coalescer: Coalescer[int, int] = Coalescer(lambda items: items[:-1])

    async def main() -> list[object]:
        return await asyncio.gather(*(coalescer.submit(i) for i in range(3)), return_exceptions=True)

    out = asyncio.run(main())
    assert all(isinstance(e, RuntimeError) and "2 results for 3 items" in str(e) for e in out)


def test_a_cancelled_caller_does_not_disturb_the_others() -> None:
    handler = Recorder()
    coalescer = Coalescer(handler)

    async def main() -> list[object]:
        tasks = [asyncio.ensure_future(coalescer.submit(i)) for i in range(3)]
        await asyncio.sleep(0)  # every task is now waiting in the open batch
        tasks[1].cancel()
        return await asyncio.gather(*tasks, return_exceptions=True)

    out = asyncio.run(main())
    assert out[0] == 0 and out[2] == 20 and isinstance(out[1], asyncio.CancelledError)
    assert handler.calls == [[0, 1, 2]]


def test_max_batch_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Coalescer(Recorder(), max_batch=0)
