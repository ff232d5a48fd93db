"""Services of bench/python_bench.py (importable by the workers: the bench puts bench/ on their
PYTHONPATH)."""

import io
import os
import time

from lrts.service import Service


class Noop(Service):
    """The same body as the peers' no-op: returns None."""

    @staticmethod
    def run(service):
        return None


class SleepMs(Service):
    """The same body as the peers' sleeping task: time.sleep(ms / 1000), returns None."""

    def __init__(self, ms):
        super().__init__()
        self.ms = ms

    @staticmethod
    def run(service):
        time.sleep(service.ms / 1000)
        return None


class ProgressCost(Service):
    """ns per call of each way to count progress, measured inside a running task (the bars
    are the slot's shared-memory cells), tqdm's update(1) beside them in the same process."""

    def __init__(self, n):
        super().__init__()
        self.n = n

    @staticmethod
    def run(service):
        n = service.n
        out = {}
        r = range(n)

        t = time.perf_counter_ns()
        for _ in r:
            pass
        out["empty_loop"] = (time.perf_counter_ns() - t) / n

        pid = service.create_progress(description="increment_progress", total=n, unit="it")
        t = time.perf_counter_ns()
        for _ in r:
            service.increment_progress(progress_id=pid, amount=1)
        out["increment_progress_kwargs"] = (time.perf_counter_ns() - t) / n
        service.close_progress(progress_id=pid)

        pid = service.create_progress(description="increment_progress", total=n, unit="it")
        t = time.perf_counter_ns()
        for _ in r:
            service.increment_progress(pid)
        out["increment_progress"] = (time.perf_counter_ns() - t) / n
        service.close_progress(progress_id=pid)

        bar = service.progress_bar(description="advance", total=n, unit="it")
        advance = bar.advance
        t = time.perf_counter_ns()
        for _ in r:
            advance()
        out["advance"] = (time.perf_counter_ns() - t) / n
        out["advance_counted"] = bar.count
        bar.close()

        try:
            import tqdm
            sink = open(os.devnull, "w")
            b = tqdm.tqdm(total=n, file=sink)
            t = time.perf_counter_ns()
            for _ in r:
                b.update(1)
            out["tqdm_update"] = (time.perf_counter_ns() - t) / n
            b.close()
            sink.close()
        except ImportError:
            out["tqdm_update"] = None
        return out
