"""Logging for applications, as the original lrts has it: ``Logger`` prints messages at or
above its level; ``DetailedLogger`` also turns on the live terminal view of the application
(a status line with the stage, then one line per progress bar, redrawn in place)."""

from __future__ import annotations

import enum
import sys
import time
from typing import Any, Optional, TextIO

__all__ = ["LogLevel", "Logger", "DetailedLogger"]


class LogLevel(enum.IntEnum):
    TRACE = 0
    DEBUG = 1
    INFO = 2
    WARNING = 3
    ERROR = 4
    CRITICAL = 5


class Logger:
    """Prints ``[time] LEVEL message`` lines to ``stream`` (stderr) for levels at or above
    ``log_level``."""

    def __init__(self, log_level: LogLevel = LogLevel.INFO, stream: Optional[TextIO] = None) -> None:
        self.log_level = LogLevel(log_level)
        self.stream = stream
        self._stage = ""
        self._client: Any = None

    # ---- messages ----
    def log(self, level: LogLevel, message: str) -> None:
        if level < self.log_level:
            return
        stream = self.stream or sys.stderr
        stamp = time.strftime("%H:%M:%S")
        print(f"[{stamp}] {LogLevel(level).name:<8} {message}", file=stream, flush=True)

    def trace(self, message: str) -> None:
        self.log(LogLevel.TRACE, message)

    def debug(self, message: str) -> None:
        self.log(LogLevel.DEBUG, message)

    def info(self, message: str) -> None:
        self.log(LogLevel.INFO, message)

    def warning(self, message: str) -> None:
        self.log(LogLevel.WARNING, message)

    def error(self, message: str) -> None:
        self.log(LogLevel.ERROR, message)

    def critical(self, message: str) -> None:
        self.log(LogLevel.CRITICAL, message)

    # ---- stage ----
    @property
    def stage(self) -> str:
        return self._stage

    def set_stage(self, stage: str) -> None:
        """What the application is doing now ("Waiting For Results")."""
        self._stage = str(stage)
        if self._client is not None:
            self._client.set_stage(self._stage)
        self.debug(f"stage: {self._stage}")

    @property
    def wants_view(self) -> bool:
        return False

    def _attach(self, client: Any) -> None:
        self._client = client
        if self._stage and self.wants_view:
            client.set_stage(self._stage)


class DetailedLogger(Logger):
    """A Logger that also shows the live view on the terminal (stderr): a status line with the
    stage, the tasks' counts and rate, then one line per progress bar, redrawn at most every
    ``min_delta`` seconds (and at least ten times less often than that when stderr is not a
    terminal: plain lines). ``status_bar=False`` leaves the view off."""

    def __init__(self, log_level: LogLevel = LogLevel.INFO, status_bar: bool = True,
                 status_color: Optional[str] = None, initial_stage: str = "Running",
                 min_delta: float = 0.1, stream: Optional[TextIO] = None) -> None:
        super().__init__(log_level=log_level, stream=stream)
        self.status_bar = bool(status_bar)
        self.status_color = status_color
        self.min_delta = float(min_delta)
        self._stage = str(initial_stage)

    @property
    def wants_view(self) -> bool:
        return self.status_bar
