"""Celery app module for celery_bench.py.

Broker and result backend are both the Redis server that celery_bench.py starts;
its URL is passed in the environment variable LRTS_PEER_CELERY_REDIS_URL
(e.g. redis://127.0.0.1:40123/0). The worker is started from this directory:

    LRTS_PEER_CELERY_REDIS_URL=redis://127.0.0.1:PORT/0 \\
    /usr/bin/python3 -m celery -A celery_tasks worker --pool prefork --concurrency 2 --loglevel WARNING
"""

import os
import time

from celery import Celery

ENV_VAR = "LRTS_PEER_CELERY_REDIS_URL"

_url = os.environ.get(ENV_VAR)
if not _url:
    raise RuntimeError("%s is not set (celery_bench.py sets it to the Redis it started)" % ENV_VAR)

app = Celery("celery_tasks", broker=_url, backend=_url)
app.conf.update(
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    # the bench process owns the logging/stdout; keep Celery quiet
    worker_hijack_root_logger=True,
    worker_redirect_stdouts=False,
    # fail fast instead of retrying forever when Redis is gone
    broker_connection_max_retries=3,
    result_expires=3600,
)


@app.task(name="celery_tasks.noop")
def noop():
    return None


@app.task(name="celery_tasks.sleep_ms")
def sleep_ms(ms):
    """The --sleep-ms task body: sleep `ms` milliseconds, return None."""
    time.sleep(ms / 1000)
    return None


@app.task(name="celery_tasks.spin")
def spin(seconds):
    """Busy-loop for `seconds` wall seconds; report the CPU this task body used."""
    c0 = time.thread_time()
    t0 = time.perf_counter()
    x = 0
    while time.perf_counter() - t0 < seconds:
        for _ in range(1000):
            x += 1
    return {"cpu": time.thread_time() - c0, "wall": time.perf_counter() - t0,
            "pid": os.getpid()}
