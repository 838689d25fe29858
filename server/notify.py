"""Waking long polls when work appears.

``Waker`` lets any number of long-poll requests wait for "something may be
claimable now". Code in this process calls ``notify()`` after committing new or
requeued runs. With PostgreSQL, ``PgListener`` also LISTENs on the queue channel
in a background thread, so a run created through one server replica wakes the
long polls held by every other replica.
"""

import asyncio
import logging
import threading
from typing import Optional, Set

from .queue import NOTIFY_CHANNEL

log = logging.getLogger(__name__)


class Waker:
    def __init__(self) -> None:
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._waiters: Set[asyncio.Event] = set()

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def subscribe(self) -> asyncio.Event:
        """Register interest before looking for work, so no notification is missed."""
        event = asyncio.Event()
        self._waiters.add(event)
        return event

    def unsubscribe(self, event: asyncio.Event) -> None:
        self._waiters.discard(event)

    @staticmethod
    async def wait(event: asyncio.Event, timeout: float) -> bool:
        """Wait until notified or timed out; True when notified."""
        try:
            await asyncio.wait_for(event.wait(), timeout)
            return True
        except asyncio.TimeoutError:
            return False

    def notify(self) -> None:
        """Thread-safe: wake every waiting long poll."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        loop.call_soon_threadsafe(self._wake_all)

    def _wake_all(self) -> None:
        for event in list(self._waiters):
            event.set()


class PgListener:
    """A thread that LISTENs on PostgreSQL and forwards each NOTIFY to the Waker."""

    def __init__(self, sqlalchemy_url: str, waker: Waker):
        self._url = sqlalchemy_url.replace("postgresql+psycopg://", "postgresql://", 1)
        self._waker = waker
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pg-listen", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        import psycopg

        while not self._stop.is_set():
            try:
                with psycopg.connect(self._url, autocommit=True) as conn:
                    conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
                    self._waker.notify()  # we may have missed notifications while away
                    while not self._stop.is_set():
                        for _ in conn.notifies(timeout=1.0, stop_after=1):
                            self._waker.notify()
            except Exception as exc:  # reconnect after a database restart
                log.warning("PostgreSQL LISTEN connection lost (%s); reconnecting", exc)
                self._stop.wait(1.0)
