"""The progress line on a terminal's stderr: phase, item, percentage, elapsed time; cleared
when done.

One line, never wider than the terminal (80 columns when unknown), rewritten in place with
`\\r` and erased at the end, so nothing is left on screen and nothing reaches a log file (the
CLI uses it only when stderr is a terminal). A background thread redraws it every quarter of a
second so a long read or analysis still shows time passing.
"""
from __future__ import annotations

import os
import shutil
import sys
import threading
import time
from typing import TextIO


def _size(path: str) -> str:
    try:
        if os.path.isfile(path):
            n = os.path.getsize(path)
            return f"{n / 1e6:,.0f} MB" if n >= 1e6 else f"{n / 1e3:,.0f} kB"
    except OSError:
        pass
    return ""


class Progress:
    """`reading(name, done, total)` and `analysing(done, total)` are the callbacks the library
    takes; `close()` erases the line. Use as a context manager."""

    def __init__(self, stream: TextIO | None = None, width: int | None = None,
                 interval: float = 0.25) -> None:
        self.stream = stream or sys.stderr
        self.width = width or min(shutil.get_terminal_size((80, 24)).columns, 200)
        self.interval = interval
        self._phase = ""
        self._item = ""
        self._done = 0
        self._total = 0
        self._t0 = time.monotonic()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ callbacks
    def reading(self, name: str, done: int, total: int) -> None:
        self._set("reading", os.path.basename(name.rstrip("/")) or name, done, total,
                  _size(name))

    def analysing(self, done: int, total: int, name: str = "") -> None:
        self._set("analysing", name, done, total)

    def _set(self, phase: str, item: str, done: int, total: int, size: str = "") -> None:
        with self._lock:
            if phase != self._phase:
                self._t0 = time.monotonic()
            self._phase = phase
            self._item = item + (f" ({size})" if size else "")
            self._done, self._total = done, total
        self._draw()
        if self._thread is None:
            self._thread = threading.Thread(target=self._tick, daemon=True)
            self._thread.start()

    # ------------------------------------------------------------------ drawing
    def line(self) -> str:
        """The text of the line (without control characters), at most width - 1 wide."""
        with self._lock:
            phase, item, done, total = self._phase, self._item, self._done, self._total
            elapsed = time.monotonic() - self._t0
        head = f"losslens: {phase}"
        if total > 1:
            head += f" {done}/{total} {100 * done // max(total, 1):3d}%"
        tail = f" {elapsed:.1f} s"
        room = self.width - 1 - len(head) - len(tail) - 1
        if item and room >= 8:
            item = item if len(item) <= room else "…" + item[-(room - 1):]
            return f"{head} {item}{tail}"
        return f"{head}{tail}"[: self.width - 1]

    def _draw(self) -> None:
        try:
            self.stream.write("\r\x1b[K" + self.line())
            self.stream.flush()
        except (OSError, ValueError):
            pass

    def _tick(self) -> None:
        while not self._stop.wait(self.interval):
            self._draw()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=1)
        try:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
        except (OSError, ValueError):
            pass

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
