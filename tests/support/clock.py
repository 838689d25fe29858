"""A fake clock for loops that take ``clock`` and ``sleep``: sleeping moves it."""


class FakeClock:
    """Call it for the time; ``sleep(s)`` adds ``s`` at once instead of waiting."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds
