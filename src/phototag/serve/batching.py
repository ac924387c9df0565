"""Dynamic batching: concurrent requests for one analyzer are gathered into one model call.

One :class:`Batcher` per analyzer, living on the server's event loop. :meth:`Batcher.submit` queues a
request's images and waits for their analyses. A single loop per analyzer takes the oldest request, waits up
to ``wait_s`` for others to join until ``batch_size`` images are gathered, runs the batch in a worker thread
(``work``: the runtime's ``analyze``; never on the event loop) and hands each request its share.

While a batch runs, new requests queue up and form the next batch, so a busy GPU is fed full batches the way
the batch scanner feeds it, and an idle one answers a lone request after ``wait_s``.

Backpressure: at most ``queue_limit`` requests wait; the next one is refused at once with :class:`Busy`
(503 + Retry-After) instead of queueing without end. A request that gives up (its deadline passed, its client
disconnected: its task is cancelled) is taken out of the queue; once its batch has started, its share of the
result is dropped.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from ..runtime import Ran
from ..types import Analysis
from .errors import Busy, Deadline, ServeError

T = TypeVar("T")
"""What a batcher gathers: decoded images (the runtime's ``analyze``), or (image, question) pairs."""

Work = Callable[[Sequence[T]], Ran]
"""Runs one batch (blocking): the runtime's ``analyze`` for one analyzer, one analysis per item."""


@dataclass
class _Item(Generic[T]):
    images: Sequence[T]
    future: asyncio.Future[list[Analysis]]
    queued: float = field(default_factory=time.monotonic)


class Batcher(Generic[T]):
    """Gathers and runs the batches of one analyzer (items of type ``T``: decoded images for ``analyze``).
    ``on_batch(n)`` and ``on_depth(n)`` report batch sizes and queue depth (metrics); ``on_reject()`` a request
    refused for a full queue. ``error(message)`` turns a failed batch into the error each of its requests gets."""

    def __init__(
        self,
        name: str,
        work: Work[T],
        executor: Executor,
        *,
        batch_size: int,
        wait_s: float,
        queue_limit: int,
        error: Callable[[str], ServeError],
        on_batch: Callable[[int], None] = lambda n: None,
        on_depth: Callable[[int], None] = lambda n: None,
        on_reject: Callable[[], None] = lambda: None,
    ) -> None:
        self.name = name
        self._work = work
        self._executor = executor
        self.batch_size = batch_size
        self.wait_s = wait_s
        self.queue_limit = queue_limit
        self._error = error
        self._on_batch = on_batch
        self._on_depth = on_depth
        self._on_reject = on_reject
        self._queue: collections.deque[_Item[T]] = collections.deque()
        self._arrived = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.running = 0  # images in the batch being run now
        self.retry_after = 1.0  # seconds; grows with how long batches take

    @property
    def depth(self) -> int:
        """Requests waiting (not yet started)."""
        return len(self._queue)

    async def submit(self, images: Sequence[T], deadline: float | None = None) -> list[Analysis]:
        """The analyses of ``images`` (in order), run in a batch with other requests' images.

        Raises :class:`Busy` when the queue is full, :class:`Deadline` when ``deadline`` (``time.monotonic``)
        passes first, or the batch's error. Cancelling the caller drops the request."""
        if not images:
            return []
        if len(self._queue) >= self.queue_limit:
            self._on_reject()
            raise Busy(
                f"analyzer {self.name} has {len(self._queue)} requests waiting (serve.queue_limit): "
                "try again shortly",
                retry_after=self.retry_after,
            )
        self._ensure_running()
        loop = asyncio.get_running_loop()
        item: _Item[T] = _Item(images, loop.create_future())
        self._queue.append(item)
        self._on_depth(len(self._queue))
        self._arrived.set()
        try:
            if deadline is None:
                return await item.future
            return await asyncio.wait_for(item.future, max(0.0, deadline - time.monotonic()))
        except TimeoutError:
            raise Deadline(
                f"analyzer {self.name} did not answer within the deadline (serve.deadline_s); the server is "
                "busy: try again later or send fewer images"
            ) from None
        finally:
            self._forget(item)

    def _forget(self, item: _Item[T]) -> None:
        """Take a finished or abandoned request out of the queue (a no-op once its batch took it)."""
        try:
            self._queue.remove(item)
        except ValueError:
            return
        self._on_depth(len(self._queue))

    def _ensure_running(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._loop(), name=f"batcher-{self.name}")

    async def close(self) -> None:
        """Stop the loop; waiting requests are cancelled."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        for item in self._queue:
            item.future.cancel()
        self._queue.clear()

    async def _loop(self) -> None:
        while True:
            while not self._queue:
                self._arrived.clear()
                await self._arrived.wait()
            await self._gather()
            batch = self._take()
            if batch:
                await self._run(batch)

    async def _gather(self) -> None:
        """Wait until ``batch_size`` images are queued or the oldest request waited ``wait_s``."""
        while self._queue:
            waited = time.monotonic() - self._queue[0].queued
            left = self.wait_s - waited
            if left <= 0 or sum(len(i.images) for i in self._queue) >= self.batch_size:
                return
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), left)
            except TimeoutError:
                return

    def _take(self) -> list[_Item[T]]:
        """The oldest requests that fit in one batch (always at least one, even if it alone is larger)."""
        batch: list[_Item[T]] = []
        count = 0
        while self._queue:
            item = self._queue[0]
            if item.future.done():  # given up (cancelled) before it started
                self._queue.popleft()
                continue
            if batch and count + len(item.images) > self.batch_size:
                break
            batch.append(self._queue.popleft())
            count += len(item.images)
        self._on_depth(len(self._queue))
        return batch

    async def _run(self, batch: list[_Item[T]]) -> None:
        images = [image for item in batch for image in item.images]
        self._on_batch(len(images))
        self.running = len(images)
        start = time.monotonic()
        try:
            ran = await asyncio.get_running_loop().run_in_executor(self._executor, self._work, images)
        except Exception as e:  # the runtime returns errors; this is a bug in it, not the request
            ran = Ran(None, f"analyzer {self.name} failed: {type(e).__name__}: {e}")
        finally:
            self.running = 0
        took = time.monotonic() - start
        self.retry_after = max(1.0, min(60.0, took * max(1, len(self._queue)) / max(1, self.batch_size)))
        at = 0
        for item in batch:
            n = len(item.images)
            if item.future.done():  # its client gave up while the batch ran
                at += n
                continue
            if ran.analyses is None:
                item.future.set_exception(self._error(ran.error or f"analyzer {self.name} failed"))
            else:
                item.future.set_result(ran.analyses[at : at + n])
            at += n
