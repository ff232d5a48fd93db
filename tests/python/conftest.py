"""A real lrts cluster for the Python tests: the lrts binary from the build tree (LRTS_BIN, or
build/lrts), daemons on free loopback ports in a temp dir, the Python package from
LRTS_PYTHON_DIR (or build/python). State is asked of the scheduler (lrts.Admin), never
guessed with sleeps."""

import glob
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.environ.get("LRTS_BUILD_DIR", os.path.join(ROOT, "build"))
LRTS_BIN = os.environ.get("LRTS_BIN", os.path.join(BUILD, "lrts"))
PYTHON_DIR = os.environ.get("LRTS_PYTHON_DIR", os.path.join(BUILD, "python"))
sys.path.insert(0, PYTHON_DIR)

import lrts  # noqa: E402


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(pred, timeout: float, what: str, interval: float = 0.02):
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)  # polling a condition with a deadline, not synchronisation


def child_env() -> dict:
    env = dict(os.environ)
    # The package, and this directory (the tests' services live in pyservices.py).
    here = os.path.dirname(os.path.abspath(__file__))
    env["PYTHONPATH"] = PYTHON_DIR + ":" + here + (
        ":" + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.pop("LRTS_AUTH_DIR", None)
    return env


def example_services_lib() -> str:
    found = glob.glob(os.path.join(BUILD, "examples", "libexample_services.so"))
    return found[0] if found else ""


class Cluster:
    def __init__(self, tmp):
        self.tmp = str(tmp)
        self.port = free_port()
        self.progress_port = free_port()
        self.procs = []
        self.workers = []
        self.scheduler = None

    def _start(self, name, args):
        log = open(os.path.join(self.tmp, f"{name}.{len(self.procs)}.log"), "wb")
        p = subprocess.Popen([LRTS_BIN] + args, stdout=log, stderr=subprocess.STDOUT,
                             env=child_env(), start_new_session=True)
        p.log_path = log.name
        self.procs.append(p)
        return p

    def start_scheduler(self, extra=()):
        self.scheduler = self._start("scheduler", [
            "scheduler", "-address", "127.0.0.1", "-port", str(self.port), "-timeout", "1",
            *extra])
        wait_until(self._answers, 20, "the scheduler to answer")
        return self.scheduler

    def _answers(self):
        try:
            self.admin(timeout=0.5).status()
            return True
        except Exception:
            return False

    def start_progress_server(self):
        return self._start("progress", ["progress-server", "-address", "127.0.0.1", "-port",
                                        str(self.progress_port), "-timeout", "1"])

    def start_worker(self, max_jobs="2", extra=(), wait=True):
        before = self.worker_count()
        p = self._start("worker", [
            "worker", "-scheduler-address", "127.0.0.1", "-scheduler-port", str(self.port),
            "-progress-address", "127.0.0.1", "-progress-port", str(self.progress_port),
            "-max-jobs", str(max_jobs), "-timeout", "1", *extra])
        self.workers.append(p)
        if wait:
            wait_until(lambda: self.worker_count() > before, 30, "the worker to register")
        return p

    def worker_count(self):
        try:
            return int(self.admin(timeout=1).status()["workers"])
        except Exception:
            return 0

    def admin(self, timeout=5.0):
        return lrts.Admin(scheduler_port=self.port, timeout=timeout)

    def info(self, **kw):
        return lrts.ApplicationInformation(
            scheduler_address="127.0.0.1", scheduler_port=str(self.port),
            progress_server_address="127.0.0.1", progress_server_port=str(self.progress_port),
            **kw)

    def app(self, **kw):
        a = lrts.ClientApplication(application_information=self.info(**kw))
        a.start_application()
        return a

    def stop(self):
        for p in self.procs:
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            p.wait()

    def logs(self):
        out = []
        for p in self.procs:
            with open(p.log_path, "rb") as f:
                out.append(f"==== {p.log_path}\n" + f.read().decode(errors="replace")[-4000:])
        return "\n".join(out)


@pytest.fixture
def cluster(tmp_path, request):
    c = Cluster(tmp_path)
    yield c
    if request.node.rep_call.failed if hasattr(request.node, "rep_call") else False:
        print(c.logs())
    c.stop()


@pytest.fixture
def running(cluster):
    """Scheduler, progress server and one worker with 2 slots."""
    cluster.start_scheduler()
    cluster.start_progress_server()
    cluster.start_worker("2")
    return cluster


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


def descendants(root: int):
    """Pids below `root`, with their command lines."""
    parent, cmd = {}, {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                stat = f.read()
            with open(f"/proc/{d}/cmdline", "rb") as f:
                cmd[int(d)] = f.read().split(b"\0")
        except OSError:
            continue
        parent[int(d)] = int(stat[stat.rindex(")") + 2:].split()[1])
    out, frontier = {}, [root]
    while frontier:
        p = frontier.pop()
        for c, pp in parent.items():
            if pp == p and c not in out:
                out[c] = cmd.get(c, [])
                frontier.append(c)
    return out


def python_slot_pids(worker) -> list:
    """The worker's Python slot processes (python -m lrts._slot --lrts-slot)."""
    return [p for p, argv in descendants(worker.pid).items()
            if b"lrts._slot" in argv and b"--lrts-slot" in argv]


def cpp_slot_pids(worker) -> list:
    return [p for p, argv in descendants(worker.pid).items()
            if argv and argv[0].endswith(b"lrts") and b"--lrts-slot" in argv]
