"""Waking long polls when work appears.

``Waker`` lets any number of long-poll requests wait, each for its own device,
until "something may be claimable for this device now". Code in this process
calls ``notify(device_ids)`` after committing new or requeued runs, which wakes
only the polls of those devices: a parked poll costs nothing until then. With
PostgreSQL, ``PgListener`` also LISTENs on the queue channel in a background
thread, so a run created through one server replica wakes the long polls held
by every other replica; the NOTIFY payload names the devices (empty: all).
"""

import asyncio
import logging
import threading
from typing import Dict, FrozenSet, Iterable, List, Optional, Set

from .queue import NOTIFY_CHANNEL

log = logging.getLogger(__name__)


Devices = Optional[Iterable[int]]


class Waker:
    """Parked long polls, by device. A poll registers for its device before it looks
    for work; ``notify(devices)`` wakes only the polls of those devices (``None``:
    every poll, when it is not known whose work appeared)."""

    def __init__(self) -> None:
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._waiters: Dict[int, Set[asyncio.Event]] = {}
        #: Wakes delivered so far: a poll that looked for work before it subscribed
        #: looks again when this moved meanwhile (it may have missed its own wake).
        self.wakes = 0

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def subscribe(self, device_id: int) -> asyncio.Event:
        """Register interest before looking for work, so no notification is missed."""
        event = asyncio.Event()
        self._waiters.setdefault(device_id, set()).add(event)
        return event

    def unsubscribe(self, device_id: int, event: asyncio.Event) -> None:
        waiters = self._waiters.get(device_id)
        if waiters is not None:
            waiters.discard(event)
            if not waiters:
                del self._waiters[device_id]

    def waiting(self) -> int:
        return sum(len(events) for events in self._waiters.values())

    @staticmethod
    async def wait(event: asyncio.Event, timeout: float) -> bool:
        """Wait until notified or timed out; True when notified."""
        try:
            await asyncio.wait_for(event.wait(), timeout)
            return True
        except asyncio.TimeoutError:
            return False

    def notify(self, devices: Devices = None) -> None:
        """Thread-safe: wake the polls of ``devices`` (every poll when None)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        targets = None if devices is None else frozenset(devices)
        if targets is not None and not targets:
            return
        loop.call_soon_threadsafe(self._wake, targets)

    def _wake(self, devices: Optional[FrozenSet[int]]) -> None:
        self.wakes += 1
        if devices is None:
            groups = list(self._waiters.values())
        else:
            groups = [self._waiters[d] for d in devices if d in self._waiters]
        for events in groups:
            for event in list(events):
                event.set()


def parse_payload(payload: str) -> Optional[List[int]]:
    """The device ids of a NOTIFY payload (``queue.notify_new_work``); None: everyone."""
    try:
        return [int(part) for part in payload.split(",")] if payload else None
    except ValueError:
        return None


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
                        for note in conn.notifies(timeout=1.0, stop_after=1):
                            self._waker.notify(parse_payload(note.payload))
            except Exception as exc:  # reconnect after a database restart
                log.warning("PostgreSQL LISTEN connection lost (%s); reconnecting", exc)
                self._stop.wait(1.0)
