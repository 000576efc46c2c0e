"""The group commit that the bulk batches and the SMTP receiver write through: what arrives
during a commit shares the next one, each caller hears its own result, and an item that
cannot be written fails only its own caller. And the receiver's writes under SQLite's lock."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time

import pytest
from sqlalchemy.exc import OperationalError

from core.db import make_engine, retry_while_locked
from core.group_commit import GroupCommit, in_thread


async def test_what_arrives_during_a_commit_shares_the_next_and_a_bad_item_fails_alone():
    groups: list[list[str]] = []
    writing = threading.Event()
    release = threading.Event()

    def write_all(items: list[str]) -> list[str]:
        groups.append(items)
        writing.set()
        release.wait(10)
        if "bad" in items:
            raise RuntimeError("disk I/O error")
        return [item.upper() for item in items]

    group: GroupCommit[str, str] = GroupCommit(in_thread(write_all))
    first = asyncio.ensure_future(group.write("a"))
    await asyncio.to_thread(writing.wait, 10)
    during = [asyncio.ensure_future(group.write(item)) for item in ("b", "c", "d")]
    await asyncio.sleep(0.05)  # all three wait while "a" commits
    release.set()
    assert await asyncio.gather(first, *during) == ["A", "B", "C", "D"]
    assert groups == [["a"], ["b", "c", "d"]]

    # A group that fails is written again item by item: only the bad item's caller fails.
    groups.clear()
    results = await asyncio.gather(
        *(group.write(item) for item in ("e", "bad", "f")), return_exceptions=True
    )
    assert groups == [["e", "bad", "f"], ["e"], ["bad"], ["f"]]
    assert results[0] == "E" and results[2] == "F"
    assert isinstance(results[1], RuntimeError)

    # A caller cancelled while it waits does not stop the commit for the others.
    release.clear()
    writing.clear()
    groups.clear()
    leaving = asyncio.ensure_future(group.write("g"))
    staying = asyncio.ensure_future(group.write("h"))
    await asyncio.to_thread(writing.wait, 10)
    leaving.cancel()
    release.set()
    assert await staying == "H"
    assert groups == [["g", "h"]] and leaving.cancelled()


async def test_linger_lets_a_busy_group_grow_and_the_first_write_go_at_once():
    groups: list[list[str]] = []
    writing = threading.Event()
    release = threading.Event()

    def write_all(items: list[str]) -> list[None]:
        groups.append(items)
        writing.set()
        release.wait(10)
        return [None] * len(items)

    group: GroupCommit[str, None] = GroupCommit(in_thread(write_all), linger=1.0)
    first = asyncio.ensure_future(group.write("a"))
    await asyncio.to_thread(writing.wait, 10)  # "a" went alone, without lingering
    second = asyncio.ensure_future(group.write("b"))  # arrives while "a" is written
    await asyncio.sleep(0.05)
    release.set()
    await first
    await asyncio.sleep(0.05)  # after "a" is written, within the linger
    third = asyncio.ensure_future(group.write("c"))
    await asyncio.gather(second, third)
    assert groups == [["a"], ["b", "c"]]


def test_a_write_that_finds_sqlite_locked_asks_again_until_its_patience_ends(tmp_path):
    """The receiver's writes poll for SQLite's lock every millisecond (retry_while_locked with
    a short busy timeout) instead of SQLite's growing sleeps, and give up after `patience`."""
    url = f"sqlite:///{tmp_path / 'locks.db'}"
    engine = make_engine(url, sqlite_busy_timeout=0.002)
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE t (x INTEGER)")
    holder = sqlite3.connect(tmp_path / "locks.db", isolation_level=None, check_same_thread=False)

    def hold(seconds: float) -> threading.Thread:
        holder.execute("BEGIN IMMEDIATE")  # another process's writer holds the lock

        def release() -> None:
            time.sleep(seconds)
            holder.execute("COMMIT")

        thread = threading.Thread(target=release)
        thread.start()
        return thread

    tries: list[float] = []

    def insert() -> int:
        tries.append(time.monotonic())
        with engine.begin() as connection:
            connection.exec_driver_sql("INSERT INTO t VALUES (1)")
        return len(tries)

    released = hold(0.2)
    assert retry_while_locked(insert) > 10  # it asked again and again, then got through
    released.join()

    released = hold(0.5)
    with pytest.raises(OperationalError, match="database is locked"):
        retry_while_locked(insert, patience=0.05)
    released.join()
    holder.close()
    engine.dispose()
