"""How long to wait before retrying a transient failure: exponential backoff with
full jitter, so that a fleet of clients that failed together does not retry
together; a delay the server asked for (``Retry-After``) wins, up to the cap."""

from __future__ import annotations

import random
from typing import Optional


class Backoff:
    """Exponential backoff with full jitter: up to 1, 2, 4 ... ``cap`` seconds."""

    def __init__(self, base: float = 1.0, cap: float = 60.0):
        self.base, self.cap, self.failures = base, cap, 0

    def next_delay(self, hint: Optional[float] = None) -> float:
        """The delay after one more failure; ``hint`` is the server's ``Retry-After``."""
        self.failures += 1
        if hint is not None:
            return min(hint, self.cap)
        return random.uniform(0, min(self.cap, self.base * 2 ** (self.failures - 1)))

    def reset(self) -> None:
        self.failures = 0
