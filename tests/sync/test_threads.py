"""The replicator's worker-thread hop (agentlog.sync.threads): a result or an error comes back from another thread,
a free slot of trio's thread limit is taken at once, and a full limit is waited for as trio waits."""

from __future__ import annotations

import threading

import pytest
import trio
import trio.testing

from agentlog.sync import threads


def test_the_result_comes_back_from_a_worker_thread():
    async def main():
        return await threads.run_sync(lambda a, b: (a + b, threading.get_ident()), 2, 3)

    total, ident = trio.run(main)
    assert total == 5
    assert ident != threading.get_ident()


def test_an_error_in_the_thread_is_raised_in_the_caller():
    def fails():
        raise ValueError("the store said no")

    async def main():
        with pytest.raises(ValueError, match="the store said no"):
            await threads.run_sync(fails)

    trio.run(main)


class _Steps(trio.abc.Instrument):
    """Counts the steps of one task: each resumption after it yielded to the scheduler."""

    def __init__(self):
        self.task: trio.lowlevel.Task | None = None
        self.count = 0

    def before_task_step(self, task) -> None:
        self.count += task is self.task


def test_a_free_slot_is_taken_without_a_scheduler_pass_and_given_back():
    async def main(run_sync) -> tuple[int, int]:
        steps = _Steps()
        trio.lowlevel.add_instrument(steps)
        steps.task = trio.lowlevel.current_task()
        await run_sync(lambda: None)
        steps.task = None
        return steps.count, trio.to_thread.current_default_thread_limiter().borrowed_tokens

    assert trio.run(main, threads.run_sync) == (1, 0)             # resumed once: with the thread's result
    assert trio.run(main, trio.to_thread.run_sync) == (2, 0)      # trio's own limiter yields once before


def test_a_full_thread_limit_is_waited_for():
    async def main():
        limiter = trio.to_thread.current_default_thread_limiter()
        limiter.total_tokens = 1
        done: list[int] = []
        holder = object()
        await limiter.acquire_on_behalf_of(holder)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(lambda: _run(done))
            await trio.testing.wait_all_tasks_blocked()
            assert done == []                   # waiting for the slot, not in a thread
            limiter.release_on_behalf_of(holder)
        assert done == [1]
        assert limiter.borrowed_tokens == 0

    trio.run(main)


async def _run(done: list[int]) -> None:
    done.append(await threads.run_sync(lambda: 1))
