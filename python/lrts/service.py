"""The unit of work: subclass Service, keep the task's data as instance attributes, implement
``service_name()`` and a static ``run(service)``.

    class MultService(Service):
        def __init__(self, a, b):
            super().__init__()
            self.a = a
            self.b = b

        def service_name(self) -> str:
            return "Multiplication Service Example"

        @staticmethod
        def run(service: "MultService"):
            return service.a * service.b

An instance travels to a worker pickled (by reference to its class when the class can be
imported there, by value with cloudpickle when it is defined in ``__main__`` or a notebook) and
``run`` executes in a Python slot process; what it returns (anything picklable) comes back as
the result. An exception in ``run`` fails the task with its type, message and traceback.

Progress, inside ``run``: ``create_progress`` makes a bar in the slot's shared memory,
``increment_progress`` advances it (no message, no system call), ``close_progress`` ends it. For
the tightest loops, ``progress_bar`` returns a bar object whose ``advance()`` is cheaper still.
Outside a worker the calls work and count nowhere.
"""

from __future__ import annotations

from typing import Any, Optional, Tuple

from . import _lrts

__all__ = ["Service", "ProgressBar"]

ProgressBar = _lrts.ProgressBar


def _text(value: Any) -> str:
    """Printable UTF-8 for a bar's description or unit (cut to what the bar holds)."""
    return str(value).encode("utf-8", "replace").decode("utf-8").replace("\0", " ")


def _total(total: Any) -> int:
    t = int(total or 0)
    if not 0 <= t < 2**64:
        raise ValueError(f"a progress total is between 0 (unknown) and 2**64 - 1, got {total!r}")
    return t


class Service:
    """Base class of Python services (see the module's documentation)."""

    def __init__(self) -> None:
        pass

    def service_name(self) -> str:
        """The name shown for this service's tasks; by default the class name."""
        return type(self).__name__

    @staticmethod
    def run(service: Any) -> Any:
        """Runs on a worker with the instance that was scheduled; returns the result."""
        raise NotImplementedError(f"{type(service).__name__} does not implement run(service)")

    # ---- progress (the original lrts's calls) ----

    def create_progress(self, description: str = "", color: Optional[str] = None,
                        total: int = 0, leave: bool = True, unit: str = "it") -> int:
        """A new progress bar of the running task; returns its progress id. ``total`` 0 means
        unknown. ``color`` and ``leave`` are accepted for compatibility: the application's
        terminal view draws every bar the same way and keeps finished ones while their task
        is shown."""
        return _lrts.create_bar(_text(description or self.service_name()), _total(total),
                                _text(unit or "it"), False)

    # increment_progress(self, progress_id, amount=1): a C function bound as a method.
    increment_progress = _lrts.increment_progress_method

    def close_progress(self, progress_id: int) -> None:
        """Marks the bar done (bars still open when run returns are closed too)."""
        _lrts.close_bar(int(progress_id))

    def progress_bar(self, description: str = "", total: int = 0,
                     unit: str = "it") -> ProgressBar:
        """A new bar as an object: ``bar.advance(n=1)``, ``bar.close()``, ``bar.count``. The
        fastest way to report from a tight loop."""
        return _lrts.create_bar(_text(description or self.service_name()), _total(total),
                                _text(unit or "it"), True)

    @property
    def service_id(self) -> Optional[str]:
        """The running task's service id (None outside a worker)."""
        info: Optional[Tuple[str, int]] = _lrts.task_info()
        return info[0] if info else None

    @property
    def attempt(self) -> int:
        """1 for the first execution of the running task, higher when retried (0 outside)."""
        info: Optional[Tuple[str, int]] = _lrts.task_info()
        return info[1] if info else 0
