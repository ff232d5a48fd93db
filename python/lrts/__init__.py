"""lrts: long running tasks on a cluster, with live progress.

    from lrts import ApplicationInformation, ClientApplication, ServiceResult
    from lrts.examples.services.mult_service import MultService

    app = ClientApplication(application_information=ApplicationInformation(
        scheduler_address='127.0.0.1', scheduler_port='5555'))
    app.start_application()
    service_id = app.schedule_service(service=MultService(a=6, b=9))
    print(app.wait_for(service_id=service_id).service_result)   # 54
    app.stop_application()

The scheduler, workers and progress server are the ``lrts`` daemons (``lrts scheduler``,
``lrts worker``, ``lrts progress-server``); a worker runs Python services in Python slot
processes (``lrts worker --python PATH``, /usr/bin/python3 by default).
"""

from __future__ import annotations

import importlib
import json
import os
import pickle
from typing import Any, Callable, Dict, Iterator, List, Optional, Union

from . import _lrts
from .logger import DetailedLogger, Logger, LogLevel
from .service import ProgressBar, Service

__version__ = "0.1.0"

__all__ = [
    "ApplicationInformation", "ClientApplication", "ServiceResult", "ServiceStatus",
    "NativeService", "ProgressSnapshot", "TimeoutError", "AdminError", "ResultError", "Service", "ProgressBar",
    "LogLevel", "Logger", "DetailedLogger", "__version__",
]

ServiceResult = _lrts.ServiceResult
ServiceStatus = _lrts.ServiceStatus
# Raised by the waits when their timeout passes; a subclass of the built-in TimeoutError.
TimeoutError = _lrts.TimeoutError  # noqa: A001
AdminError = _lrts.AdminError
# Raised by ServiceResult.service_result when a finished result cannot be decoded here.
ResultError = _lrts.ResultError


class ApplicationInformation:
    """Where the cluster is, and how this application behaves (the original lrts's names).

    Ports may be given as strings. ``progress_rtt_test_frequency``, ``communication_time_out``
    and ``progress_iteration_timeout`` are kept for compatibility: lrts measures progress round
    trips from every acknowledgement and never stalls on the network.

    ``application_id``: identifies the application; an application started again with the same
    id gets the results its earlier run left (empty: a fresh id). ``disconnect_grace``: seconds
    the scheduler keeps this application's tasks after it vanishes without stopping (0: the
    scheduler's default). ``collect_only``: only collect the results of a detached application.
    ``auth_dir``: the directory with application.key and scheduler.pub (``lrts keygen``);
    empty: $LRTS_AUTH_DIR. ``track_progress``: follow the tasks' bars (progress(),
    on_progress()). ``show_progress``: draw the live view on stderr (what DetailedLogger turns
    on).
    """

    def __init__(self, scheduler_address: str = "127.0.0.1",
                 scheduler_port: Union[int, str] = 5555,
                 progress_server_address: str = "127.0.0.1",
                 progress_server_port: Union[int, str] = 5454,
                 progress_rtt_test_frequency: int = 10_000, communication_time_out: int = 1,
                 progress_iteration_timeout: int = 2_000, application_id: str = "",
                 disconnect_grace: float = 0, collect_only: bool = False, auth_dir: str = "",
                 track_progress: bool = True, show_progress: bool = False) -> None:
        self.scheduler_address = str(scheduler_address)
        self.scheduler_port = _port(scheduler_port, "scheduler_port")
        self.progress_server_address = str(progress_server_address)
        self.progress_server_port = _port(progress_server_port, "progress_server_port")
        self.progress_rtt_test_frequency = progress_rtt_test_frequency
        self.communication_time_out = communication_time_out
        self.progress_iteration_timeout = progress_iteration_timeout
        self.application_id = str(application_id or "")
        self.disconnect_grace = float(disconnect_grace)
        self.collect_only = bool(collect_only)
        self.auth_dir = str(auth_dir or "")
        self.track_progress = bool(track_progress)
        self.show_progress = bool(show_progress)

    def __repr__(self) -> str:
        return (f"ApplicationInformation(scheduler={self.scheduler_address}:{self.scheduler_port}, "
                f"progress_server={self.progress_server_address}:{self.progress_server_port})")


def _port(value: Union[int, str], name: str) -> int:
    try:
        port = int(str(value).strip())
    except ValueError:
        raise ValueError(f"{name}: '{value}' is not a port number") from None
    if not 0 < port < 65536:
        raise ValueError(f"{name}: {port} is not between 1 and 65535")
    return port


class NativeService:
    """A C++ service, scheduled from Python by its name and fields:
    ``NativeService("Multiplication Service Example", a=6, b=9)``. Field values are plain data
    (None, bool, int, float, str, bytes, lists, tuples and dicts of them); its result comes
    back as the same kinds of values."""

    def __init__(self, name: str, **fields: Any) -> None:
        self.name = str(name)
        self.fields = fields

    def service_name(self) -> str:
        return self.name


class ProgressSnapshot:
    """One progress bar as the application sees it."""

    __slots__ = ("service_id", "attempt", "bar", "description", "unit", "count", "total",
                 "closed", "status", "rate", "eta_seconds", "elapsed_seconds")

    def __init__(self, d: Dict[str, Any]) -> None:
        for k in self.__slots__:
            setattr(self, k, d[k])

    def __repr__(self) -> str:
        return (f"ProgressSnapshot({self.service_id} bar {self.bar} '{self.description}' "
                f"{self.count}/{self.total or '?'} {self.unit}, {self.status})")


_BY_VALUE: Dict[type, bool] = {}


def _needs_by_value(cls: type) -> bool:
    """A class a worker cannot import by name travels by value (cloudpickle)."""
    module = getattr(cls, "__module__", "") or ""
    if module == "__main__" or module.startswith("__") or "<locals>" in cls.__qualname__:
        return True
    try:
        obj: Any = importlib.import_module(module)
        for part in cls.__qualname__.split("."):
            obj = getattr(obj, part)
        return obj is not cls
    except Exception:
        return True


def _cloudpickle(service: Any, why: str) -> bytes:
    try:
        import cloudpickle
    except ImportError:
        raise RuntimeError(f"{why}: it travels by value, which needs cloudpickle "
                           "(apt install python3-cloudpickle)") from None
    return cloudpickle.dumps(service, protocol=5)


def _pickle(service: Any) -> bytes:
    """By reference where the worker can import what the service holds; by value
    (cloudpickle) for what lives in __main__, a notebook or a function's locals."""
    cls = type(service)
    by_value = _BY_VALUE.get(cls)
    if by_value is None:
        by_value = _BY_VALUE[cls] = _needs_by_value(cls)
    if by_value:
        return _cloudpickle(service, f"{cls.__qualname__} is defined in {cls.__module__}")
    try:
        blob = pickle.dumps(service, protocol=5)
    except (pickle.PicklingError, TypeError, AttributeError):
        # A lambda or a local function among its attributes.
        return _cloudpickle(service, f"{cls.__qualname__} holds something pickle cannot name")
    if b"__main__" in blob:
        # It holds an object of a class defined in __main__ (the worker's __main__ is not the
        # application's): by value.
        return _cloudpickle(service, f"{cls.__qualname__} holds objects defined in __main__")
    return blob


def _timeout_s(timeout: Optional[float]) -> Optional[float]:
    if timeout is None:
        return None
    t = float(timeout)
    if t != t or t < 0:
        raise ValueError(f"timeout must be a number of seconds >= 0, got {timeout!r}")
    return t


class ClientApplication:
    """The main resource for sending services to the cluster and receiving their results.

    ``start_application()`` returns at once whether or not the scheduler is up;
    ``schedule_service()`` only queues (it never waits for the network). Each result is handed
    out once, by ``wait_for``, ``wait_for_multi`` or ``as_completed``. Waits release the GIL,
    take a ``timeout`` in seconds (raising ``lrts.TimeoutError``, a TimeoutError) and are
    interrupted by Ctrl-C.
    """

    def __init__(self, application_information: Optional[ApplicationInformation] = None,
                 logger: Optional[Logger] = None) -> None:
        info = application_information or ApplicationInformation()
        self.application_information = info
        self.logger = logger
        show = info.show_progress or bool(logger is not None and logger.wants_view)
        self._client = _lrts.Client(
            info.scheduler_address, info.scheduler_port, info.progress_server_address,
            info.progress_server_port, info.application_id, info.disconnect_grace,
            info.collect_only, info.auth_dir, info.track_progress or show, show)
        self._started = False
        self._stopped = False
        if logger is not None:
            logger._attach(self._client)

    # ---- life cycle ----
    def start_application(self) -> None:
        """Connects to the scheduler in the background (it need not be up yet)."""
        if self._stopped:
            raise RuntimeError("this ClientApplication was stopped; create a new one (with the "
                               "same application_id to collect a detached run's results)")
        self._client.start()
        self._started = True
        if self.logger is not None:
            if self.logger.wants_view and self.logger.stage:
                self._client.set_stage(self.logger.stage)
            self.logger.debug(
                f"application {self.application_id} started: scheduler "
                f"{self.application_information.scheduler_address}:"
                f"{self.application_information.scheduler_port}")

    def stop_application(self) -> None:
        """Cancels what this application still has on the cluster and disconnects."""
        self._stopped = True
        self._client.stop()
        if self.logger is not None:
            self.logger.debug(f"application {self.application_id} stopped")

    def detach_application(self) -> None:
        """Disconnects without cancelling: the tasks run to the end and their results wait for
        an application started with the same application_id (or ``lrts results``). Call
        ``flush()`` first."""
        self._stopped = True
        self._client.detach()

    def flush(self, timeout: Optional[float] = None) -> bool:
        """Waits until the scheduler has every task scheduled so far. False on timeout."""
        return self._client.flush(_timeout_s(timeout))

    def __enter__(self) -> "ClientApplication":
        if not self._started:
            self.start_application()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop_application()

    # ---- scheduling ----
    def schedule_service(self, service: Union[Service, NativeService], max_retries: int = 3,
                         timeout: Optional[float] = None) -> str:
        """Queues one service and returns its service id at once. ``max_retries``: further
        attempts after an attempt is lost (its worker or slot died); ``timeout``: seconds
        after which a running attempt is stopped and the task ends TIMED_OUT."""
        t = _timeout_s(timeout) or 0.0
        retries = int(max_retries)
        if retries < 0:
            raise ValueError("max_retries must be >= 0")
        if isinstance(service, NativeService):
            return self._client.schedule_native(service.name, service.fields, retries, t)
        name = service.service_name() if hasattr(service, "service_name") else type(service).__name__
        return self._client.schedule_python(str(name), _pickle(service), retries, t)

    # ---- results ----
    def wait_for(self, service_id: str, timeout: Optional[float] = None) -> ServiceResult:
        """Blocks until the service's result is in and returns it."""
        return self._client.wait_for(service_id, _timeout_s(timeout))

    def wait_for_multi(self, service_ids: List[str],
                       timeout: Optional[float] = None) -> List[ServiceResult]:
        """Blocks until every result is in; returns them in the order of ``service_ids``."""
        return self._client.wait_for_multi(list(service_ids), _timeout_s(timeout))

    def as_completed(self, service_ids: List[str],
                     timeout: Optional[float] = None) -> Iterator[ServiceResult]:
        """Yields results as they complete, in no particular order."""
        completion = self._client.as_completed(list(service_ids), _timeout_s(timeout))
        while True:
            batch = completion.next_batch(1024)
            if not batch:
                return
            yield from batch

    def collect_ready(self) -> List[ServiceResult]:
        """The results that have arrived and were not collected yet, without waiting."""
        return self._client.collect_ready()

    def results_waiting(self) -> int:
        return self._client.results_waiting()

    def pending_service_ids(self) -> List[str]:
        """Ids whose results were not collected yet (after wait_connected(), also those an
        earlier run with the same application_id scheduled)."""
        return self._client.pending_service_ids()

    def cancel(self, service_id: str) -> bool:
        """Stops a queued or running task; its result becomes CANCELLED. False if the id is
        unknown or already complete."""
        return self._client.cancel(service_id)

    # ---- progress ----
    def progress(self, service_id: Optional[str] = None) -> List[ProgressSnapshot]:
        """The bars of one task (latest known state), or of every task followed."""
        return [ProgressSnapshot(d) for d in self._client.progress(service_id)]

    def on_progress(self, callback: Optional[Callable[[List[ProgressSnapshot]], None]]) -> None:
        """Calls ``callback(changed_bars)`` from a background thread as bars change (None: no
        more calls). Keep it short."""
        if callback is None:
            self._client.on_progress(None)
            return
        self._client.on_progress(lambda bars: callback([ProgressSnapshot(d) for d in bars]))

    def set_stage(self, stage: str) -> None:
        """The stage the terminal view's status line shows."""
        if self.logger is not None:
            self.logger.set_stage(stage)
        else:
            self._client.set_stage(str(stage))

    # ---- state ----
    @property
    def application_id(self) -> str:
        return self._client.application_id()

    def connected(self) -> bool:
        return self._client.connected()

    def wait_connected(self, timeout: Optional[float] = None) -> bool:
        """Waits until the scheduler has welcomed this application. False on timeout."""
        return self._client.wait_connected(_timeout_s(timeout))

    def failure(self) -> str:
        """Why this application cannot go on (e.g. its id belongs to another key); empty
        while it can."""
        return self._client.failure()

    def status(self, timeout: float = 5.0) -> Dict[str, Any]:
        """The cluster's status as ``lrts status --json`` shows it."""
        return json.loads(self._client.status_json(float(timeout)))


class Admin:
    """What ``lrts status``, ``lrts workers`` and ``lrts tasks`` ask, from Python; with
    ``--auth``, admin.key (or viewer.key) from ``auth_dir``."""

    def __init__(self, scheduler_address: str = "127.0.0.1",
                 scheduler_port: Union[int, str] = 5555, auth_dir: str = "",
                 timeout: float = 5.0) -> None:
        self.scheduler_address = str(scheduler_address)
        self.scheduler_port = _port(scheduler_port, "scheduler_port")
        self.auth_dir = str(auth_dir or os.environ.get("LRTS_AUTH_DIR", ""))
        self.timeout = float(timeout)

    def _query(self, what: str, id: str = "") -> Any:
        return json.loads(_lrts.admin_query(self.scheduler_address, self.scheduler_port,
                                            self.auth_dir, self.timeout, what, id))

    def status(self) -> Dict[str, Any]:
        return self._query("status")

    def workers(self) -> Any:
        return self._query("workers")

    def task(self, service_id: str) -> Any:
        return self._query("task", service_id)


__all__.append("Admin")
