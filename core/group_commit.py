"""A group commit: many callers' writes in one database transaction, each caller still waiting
for its own to be durable (or, for the receiver's routing starts, many items in one call).

Callers on one event loop `await group.write(item)`; the first starts a write, and items that
arrive while it runs go into the next one. Under load a transaction carries one item per
concurrent caller (each SMTP session, each bulk batch), with one commit and one thread hop
instead of one each; alone, a caller waits for nothing more than its own commit.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

# Items per transaction at most: a long transaction holds the database's write lock longer.
MAX_GROUP = 64


def in_thread(write_all: Callable[[list[T]], list[R]]) -> Callable[[list[T]], Awaitable[list[R]]]:
    """A blocking `write_all` (a database transaction), run in the default thread pool."""

    async def write_in_thread(items: list[T]) -> list[R]:
        return await asyncio.to_thread(write_all, items)

    return write_in_thread


class GroupCommit(Generic[T, R]):
    """`await write_all(items)` writes the items together and returns one result each (see
    `in_thread` for a database transaction). With `linger`, a group that formed during a
    write waits that long more before its own, to take in more; the first write after an
    idle spell goes at once.

    When it raises for a group of several, each item is written again alone, so an item that
    cannot be written fails only its own caller.
    """

    def __init__(
        self, write_all: Callable[[list[T]], Awaitable[list[R]]], linger: float = 0.0
    ) -> None:
        self._write_all = write_all
        self._linger = linger
        self._waiting: list[tuple[T, asyncio.Future[R]]] = []
        self._writing: asyncio.Task[None] | None = None

    async def write(self, item: T) -> R:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, future))
        if self._writing is None:
            self._writing = asyncio.ensure_future(self._drain())
        # Shielded: a caller cancelled while it waits leaves the commit to the others.
        return await asyncio.shield(future)

    async def _drain(self) -> None:
        group: list[tuple[T, asyncio.Future[R]]] = []
        try:
            while self._waiting:
                if group and self._linger:
                    await asyncio.sleep(self._linger)  # busy: let the next group grow
                group, self._waiting = self._waiting[:MAX_GROUP], self._waiting[MAX_GROUP:]
                try:
                    results = await self._write_all([item for item, _ in group])
                except Exception as err:
                    if len(group) == 1:
                        _settle(group, error=err)
                    else:
                        for one in group:
                            await self._write_alone(one)
                else:
                    for (_, future), result in zip(group, results, strict=True):
                        if not future.done():
                            future.set_result(result)
        finally:
            self._writing = None
            # Stopped (the process shutting down): nobody waits for a write that never ends.
            _settle(group + self._waiting, error=RuntimeError("stopped before the write ended"))
            self._waiting = []

    async def _write_alone(self, one: tuple[T, asyncio.Future[R]]) -> None:
        item, future = one
        try:
            [result] = await self._write_all([item])
        except Exception as err:
            _settle([one], error=err)
        else:
            if not future.done():
                future.set_result(result)


def _settle(group: list[tuple[T, asyncio.Future[R]]], *, error: BaseException) -> None:
    for _, future in group:
        if not future.done():
            future.set_exception(error)
