"""Progress of a long job as log lines a log file can show: how much is done of how much, how fast, and
when it should end.

    progress = ProgressLog("generate out.zarr", total=12, unit="work items")
    with progress.heartbeat():                     # a line at least every interval_s, however long an item takes
        for item in items:
            run(item)
            progress.advance(note=f"item {item.key} written")

logs ``generate out.zarr: 3/12 work items (25 %), 0.05 work items/s, ETA 3 min 00 s — item … written``.
A line is written at the first count, whenever ``interval_s`` seconds or a tenth of the total have passed
since the last one, and at the end; the heartbeat thread adds one after ``interval_s`` seconds of silence
(a slow item, a validation, a long phase), so a log never goes quiet for longer than that. Rate and ETA
count only what this process did (a resumed job's earlier part is excluded).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

log = logging.getLogger("downscale.progress")

#: Seconds between progress lines at most (a heartbeat line fills a longer silence).
INTERVAL_S = 30.0


def duration(seconds: float) -> str:
    """``seconds`` in words for a log line: ``"42 s"``, ``"3 min 05 s"``, ``"2 h 07 min"``."""
    s = max(0, round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


class ProgressLog:
    """Log lines of ``done/total unit`` for the job ``name`` (module docstring). ``start``: the count the job
    starts from (a resumed training's step); ``eta``: whether to estimate the end (not for unequal phases).
    Thread-safe: :meth:`advance` and the heartbeat may run in different threads."""

    def __init__(self, name: str, total: int, unit: str, *, start: int = 0, interval_s: float = INTERVAL_S,
                 eta: bool = True, logger: logging.Logger = log, clock: Callable[[], float] = time.monotonic) -> None:
        self.name, self.total, self.unit, self.eta = name, max(total, 0), unit, eta
        self.interval_s, self.logger, self.clock = interval_s, logger, clock
        self.start = self.done = self._logged_done = start
        self.note = ""
        self._started = self._logged_at = clock()
        self._first = True
        self._lock = threading.Lock()

    def advance(self, by: int = 1, note: str = "") -> None:
        """Count ``by`` more done (a note says what just happened); log a line if one is due."""
        self.update(self.done + by, note)

    def update(self, done: int, note: str | Callable[[], str] = "") -> None:
        """Set the count to ``done``; log a line if one is due. ``note`` may be a callable, called only then
        (e.g. to read a loss off the device only when it is logged)."""
        with self._lock:
            self.done = done
            if not self._due():
                return
            self.note = note() if callable(note) else note
            self._log()

    def line(self) -> str:
        """The current progress line (what the next log line says)."""
        elapsed = self.clock() - self._started
        parts = [f"{self.name}: {self.done}/{self.total} {self.unit}"]
        if self.total:
            parts[0] += f" ({100 * self.done / self.total:.0f} %)"
        counted = self.done - self.start
        if self.eta and counted > 0 and elapsed > 0:
            rate = counted / elapsed
            left = max(self.total - self.done, 0) / rate
            parts.append(f"{rate:.3g} {self.unit}/s, ETA {duration(left)}")
        else:
            parts.append(f"{duration(elapsed)} elapsed")
        return ", ".join(parts) + (f" — {self.note}" if self.note else "")

    def _due(self) -> bool:
        return (self._first or self.done >= self.total or self.clock() - self._logged_at >= self.interval_s
                or self.done - self._logged_done >= max(1, self.total // 10))

    def _log(self) -> None:
        self.logger.info("%s", self.line())
        self._first = False
        self._logged_at, self._logged_done = self.clock(), self.done

    @contextmanager
    def heartbeat(self) -> Iterator[ProgressLog]:
        """While inside, a thread logs the current line (without a note) whenever ``interval_s`` seconds passed
        without one."""
        stop = threading.Event()

        def beat() -> None:
            while not stop.wait(self.interval_s / 4):
                with self._lock:
                    if self.clock() - self._logged_at >= self.interval_s:
                        self.note = ""          # what the last line noted is no news
                        self._log()

        thread = threading.Thread(target=beat, name=f"progress {self.name}", daemon=True)
        thread.start()
        try:
            yield self
        finally:
            stop.set()
            thread.join()
