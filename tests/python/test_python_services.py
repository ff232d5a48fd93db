"""Python services on real daemons: failures, crashes, timeouts, cancel, progress, numpy,
C++ services beside Python ones, detach and reattach, Ctrl-C, and volume."""

import builtins
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

import lrts
from lrts import NativeService, ServiceStatus
from conftest import (LRTS_BIN, child_env, cpp_slot_pids, example_services_lib, python_slot_pids,
                      wait_until)
from pyservices import (Big, Counts, Echo, ForksThenDies, Hog, Numpy, Raises, ReturnsUnloadable,
                        Segfault, Sleep, Spawns, WritesGarbage)


def test_results_keep_their_python_types(running):
    app = running.app()
    values = [None, True, 7, -3, 2**70, 1.5, 1.0, -0.0, 3e18, "text é", "caf\udce9",
              b"\x00bytes", (1, "a"), [1, [2]], {"k": (1, 2)}, {1, 2}, frozenset({3})]
    ids = [app.schedule_service(service=Echo(v)) for v in values]
    results = app.wait_for_multi(service_ids=ids, timeout=60)
    for v, r in zip(values, results):
        assert r.service_status == ServiceStatus.FINISHED
        assert r.ok and r.error == ""
        assert r.service_result == v and type(r.service_result) is type(v)
        assert r.attempt == 1 and r.worker
    app.stop_application()


def test_an_exception_fails_the_task_with_its_type_message_and_traceback(running):
    app = running.app()
    r = app.wait_for(service_id=app.schedule_service(service=Raises()), timeout=60)
    assert r.service_status == ServiceStatus.CRASHED == ServiceStatus.FAILED
    assert r.service_result is None
    assert r.error.startswith("ValueError: the input was wrong")
    assert "Traceback (most recent call last)" in r.error and "in inner" in r.error
    assert r.attempt == 1  # an exception is the task's result: not retried
    app.stop_application()


def test_a_segfault_is_retried_then_failed_with_the_signal(running):
    app = running.app()
    survives = app.schedule_service(service=Segfault(crash_until=1), max_retries=3)
    dies = app.schedule_service(service=Segfault(), max_retries=2)
    r = app.wait_for(service_id=survives, timeout=60)
    assert r.ok, r.error
    assert r.service_result == "survived attempt 2" and r.attempt == 2
    r = app.wait_for(service_id=dies, timeout=60)
    assert r.service_status == ServiceStatus.FAILED
    assert "signal 11" in r.error and "Segmentation fault" in r.error, r.error
    assert r.attempt == 3
    # The slot came back: the next task runs.
    assert app.wait_for(app.schedule_service(Echo(1)), timeout=60).service_result == 1
    app.stop_application()


def test_a_numpy_array_comes_back(running):
    np = pytest.importorskip("numpy")
    app = running.app()
    r = app.wait_for(service_id=app.schedule_service(service=Numpy(1000)), timeout=60)
    assert r.ok, r.error
    assert isinstance(r.service_result, np.ndarray)
    assert np.array_equal(r.service_result, np.arange(1000, dtype=np.float64) * 2)
    app.stop_application()


def test_cpp_and_python_services_side_by_side_on_one_worker(cluster):
    lib = example_services_lib()
    if not lib:
        pytest.skip("examples not built")
    cluster.start_scheduler()
    cluster.start_progress_server()
    worker = cluster.start_worker("2", extra=["--service-lib", lib])
    services = cluster.admin().workers()["workers"][0]["services"]
    assert "lrts.python" in services and "Multiplication Service Example" in services
    app = cluster.app()
    ids = []
    for i in range(20):
        ids.append(app.schedule_service(NativeService("Multiplication Service Example", a=i, b=2)))
        ids.append(app.schedule_service(Echo(i)))
    results = {r.service_id: r for r in app.as_completed(service_ids=ids, timeout=60)}
    for i in range(20):
        native, python = results[ids[2 * i]], results[ids[2 * i + 1]]
        assert native.ok and native.service_result == 2.0 * i
        assert python.ok and python.service_result == i
    assert {r.worker for r in results.values()} == {results[ids[0]].worker}
    assert python_slot_pids(worker) and cpp_slot_pids(worker)
    app.stop_application()


def test_progress_from_python_reaches_the_application(running):
    app = running.app()
    seen = []
    app.on_progress(lambda bars: seen.extend(bars))
    for use_object in (False, True):
        sid = app.schedule_service(Counts(steps=40, step_s=0.05, use_object=use_object))

        def moving():
            bars = app.progress(sid)
            return bars and 3 <= bars[0].count < 40 and bars[0].status == "running"
        wait_until(moving, 30, "the bar to move")
        bar = app.progress(sid)[0]
        assert bar.description == "Counting" and bar.unit == "steps" and bar.total == 40
        r = app.wait_for(sid, timeout=60)
        assert r.ok and r.service_result == 40, r.error
        wait_until(lambda: app.progress(sid) and app.progress(sid)[0].count == 40
                   and app.progress(sid)[0].closed, 10, "the final count")
    assert any(b.count > 0 for b in seen)
    app.stop_application()


def test_progress_calls_outside_a_worker_count_nowhere():
    s = Counts(steps=3, step_s=0)
    assert Counts.run(s) == 3
    pid = s.create_progress(description="x", total=10)
    s.increment_progress(progress_id=pid, amount=5)
    s.increment_progress(pid)
    s.close_progress(progress_id=pid)
    with pytest.raises(TypeError):
        s.increment_progress(progress_id=pid, amont=1)
    with pytest.raises(TypeError):
        s.increment_progress()
    assert s.service_id is None and s.attempt == 0


def test_timeouts_cancel_and_wait_timeouts(running):
    app = running.app()
    slow = app.schedule_service(Sleep(30), timeout=0.5)
    r = app.wait_for(slow, timeout=60)
    assert r.service_status == ServiceStatus.TIMED_OUT
    long = app.schedule_service(Sleep(30))
    t0 = time.monotonic()
    with pytest.raises(lrts.TimeoutError) as e:
        app.wait_for(long, timeout=0.3)
    assert isinstance(e.value, builtins.TimeoutError)
    assert 0.25 < time.monotonic() - t0 < 5
    with pytest.raises(TimeoutError):
        app.wait_for_multi([long], timeout=0.1)
    with pytest.raises(TimeoutError):
        list(app.as_completed([long], timeout=0.1))
    assert app.cancel(long)
    r = app.wait_for(long, timeout=60)
    assert r.service_status == ServiceStatus.CANCELLED
    assert not app.cancel(long)
    with pytest.raises(ValueError):
        app.wait_for(long, timeout=1)  # handed out already
    app.stop_application()


def test_waits_release_the_gil(running):
    app = running.app()
    sid = app.schedule_service(Sleep(1.0, "done"))
    ticks = []
    stop = threading.Event()

    def spin():
        while not stop.is_set():
            ticks.append(1)
            time.sleep(0.001)
    t = threading.Thread(target=spin)
    t.start()
    r = app.wait_for(sid, timeout=60)
    stop.set()
    t.join()
    assert r.service_result == "done"
    assert len(ticks) > 100  # the other thread ran all along
    app.stop_application()


def test_ctrl_c_interrupts_a_wait(running, tmp_path):
    script = tmp_path / "waits.py"
    script.write_text(textwrap.dedent(f"""
        import sys, time
        import lrts
        from pyservices import Sleep
        app = lrts.ClientApplication(lrts.ApplicationInformation(
            scheduler_port='{running.port}', progress_server_port='{running.progress_port}'))
        app.start_application()
        sid = app.schedule_service(Sleep(60))
        waiting = False
        try:
            print('waiting', flush=True)
            waiting = True
            app.wait_for(sid)
        except KeyboardInterrupt:
            print('interrupted' if waiting else 'too early', flush=True)
            app.stop_application()
            sys.exit(3)
    """))
    p = subprocess.Popen(["/usr/bin/python3", str(script)], stdout=subprocess.PIPE, text=True,
                         env=child_env())
    assert p.stdout.readline().strip() == "waiting"

    def asleep_in_the_wait():
        # The main thread blocked (the wait releases the GIL and sleeps on a condition).
        with open(f"/proc/{p.pid}/task/{p.pid}/stat") as f:
            stat = f.read()
        return stat[stat.rindex(")") + 2] == "S"
    wait_until(asleep_in_the_wait, 20, "the application to wait")
    p.send_signal(signal.SIGINT)
    t0 = time.monotonic()
    out, _ = p.communicate(timeout=20)
    assert p.returncode == 3 and "interrupted" in out, out
    assert time.monotonic() - t0 < 5


def test_detach_and_reattach_with_the_application_id(running):
    app = running.app(application_id="py-detach-test")
    ids = [app.schedule_service(Sleep(0.2, i)) for i in range(6)]
    assert app.flush(timeout=30)
    app.detach_application()
    later = running.app(application_id="py-detach-test")
    assert later.wait_connected(timeout=30)
    assert sorted(later.pending_service_ids()) == sorted(ids)
    results = later.wait_for_multi(ids, timeout=60)
    assert [r.service_result for r in results] == list(range(6))
    later.stop_application()


def test_status_query_from_the_application(running):
    app = running.app()
    app.wait_for(app.schedule_service(Echo(1)), timeout=60)
    s = app.status()
    assert s["workers"] == 1 and s["finished"] >= 1
    # Operators see a running Python task under its own name.
    sid = app.schedule_service(Sleep(30))

    def listed():
        r = subprocess.run([LRTS_BIN, "tasks", "--state", "running", "--json",
                            "--scheduler-port", str(running.port)],
                           capture_output=True, text=True, timeout=30)
        return r.returncode == 0 and json.loads(r.stdout)
    rows = wait_until(lambda: (listed() or {}).get("tasks"), 30, "the task to run")
    assert rows[0]["service_id"] == sid and rows[0]["service"] == "lrts.python: Sleep"
    app.stop_application()


def test_the_memory_limit_and_process_cleanup_hold_for_python_tasks(cluster, tmp_path):
    cluster.start_scheduler()
    cluster.start_progress_server()
    cluster.start_worker("1", extra=["--max-job-memory-mb", "200"])
    app = cluster.app()
    r = app.wait_for(app.schedule_service(Hog(600, 5), max_retries=0), timeout=60)
    assert r.service_status == ServiceStatus.FAILED
    assert "memory" in r.error, r.error
    pid_file = tmp_path / "child.pid"
    r = app.wait_for(app.schedule_service(Spawns(str(pid_file))), timeout=60)
    assert r.ok, r.error
    child = int(pid_file.read_text())

    def gone():
        try:
            with open(f"/proc/{child}/stat") as f:
                return f.read().split()[2] == "Z"
        except FileNotFoundError:
            return True
    wait_until(gone, 10, "the task's background process to be killed")
    app.stop_application()


def test_a_worker_without_python_says_why(cluster):
    cluster.start_scheduler()
    cluster.start_worker("1", extra=["--python", "/nonexistent/python3"])
    app = cluster.app()
    r = app.wait_for(app.schedule_service(Echo(1), max_retries=0), timeout=60)
    assert r.service_status == ServiceStatus.FAILED
    assert "Python" in r.error and "/nonexistent/python3" in r.error, r.error
    app.stop_application()


def test_the_detailed_progress_example_runs(running):
    r = subprocess.run(
        ["/usr/bin/python3", "-m", "lrts.examples.detailed_progress", "--scheduler-port",
         str(running.port), "--progress-port", str(running.progress_port), "--tasks", "3",
         "--iterations", "10", "--sleep-ms", "20"],
        capture_output=True, text=True, timeout=120, env=child_env())
    assert r.returncode == 0, r.stderr
    lines = [l for l in r.stdout.splitlines() if l.startswith("Service with ID")]
    assert len(lines) == 3 and all(l.endswith("finished after 10 iterations") for l in lines)
    # The view (stderr is not a terminal here: plain status lines) shows the stage.
    assert "Waiting For Results" in r.stderr or "Done" in r.stderr, r.stderr


def test_ten_thousand_tasks_over_two_workers_each_result_once(cluster):
    cluster.start_scheduler()
    cluster.start_progress_server()
    cluster.start_worker("2")
    cluster.start_worker("2")
    app = cluster.app(track_progress=False)
    n = 10_000
    ids = [app.schedule_service(Echo(i)) for i in range(n)]
    expected = {sid: i for i, sid in enumerate(ids)}
    seen = {}
    workers = set()
    for r in app.as_completed(service_ids=ids, timeout=300):
        assert r.ok, r.error
        assert r.service_id not in seen, "delivered twice"
        seen[r.service_id] = r.service_result
        workers.add(r.worker)
    assert seen == expected
    assert len(workers) == 2
    app.stop_application()


def test_chaos_on_python_slots(cluster, tmp_path):
    """Python slots, C++ slots and a whole worker SIGKILLed, and the scheduler SIGKILLed and
    restarted from its journal, while 600 Python tasks run: each ends once, correct."""
    state = str(tmp_path / "state")
    args = ["--state-dir", state, "--heartbeat-interval", "0.2", "--worker-timeout", "1",
            "--reclaim-grace", "1"]
    cluster.start_scheduler(args)
    cluster.start_progress_server()
    w1 = cluster.start_worker("2")
    w2 = cluster.start_worker("2")
    app = cluster.app(track_progress=False)
    n = 600
    ids = [app.schedule_service(Sleep(0.005 * (i % 5), i), max_retries=50) for i in range(n)]
    seen = {}
    faults = 0
    for r in app.as_completed(service_ids=ids, timeout=300):
        assert r.ok, r.error
        assert r.service_id not in seen
        seen[r.service_id] = r.service_result
        k = len(seen)
        if k in (50, 100, 150):
            for p in python_slot_pids(w1)[:1] + python_slot_pids(w2)[:1]:
                os.kill(p, signal.SIGKILL)
                faults += 1
        elif k == 200:
            for p in cpp_slot_pids(w2)[:1]:
                os.kill(p, signal.SIGKILL)
                faults += 1
        elif k == 250:
            os.killpg(w1.pid, signal.SIGKILL)
            w1.wait()
            cluster.start_worker("2", wait=False)
            faults += 1
        elif k == 350:
            os.killpg(cluster.scheduler.pid, signal.SIGKILL)
            cluster.scheduler.wait()
            cluster.start_scheduler(args)
            faults += 1
    assert seen == {sid: i for i, sid in enumerate(ids)}
    assert faults >= 6
    app.stop_application()


def test_short_tasks_behind_a_long_one_are_recalled_from_the_python_process(cluster):
    """Short tasks deepen the slots' queues; a long one then holds up those queued behind it
    in its Python process until the worker recalls them and runs them on the other slot."""
    cluster.start_scheduler()
    cluster.start_progress_server()
    cluster.start_worker("2")
    app = cluster.app(track_progress=False)
    warm = [app.schedule_service(Echo(i)) for i in range(2000)]
    assert len(list(app.as_completed(warm, timeout=60))) == 2000
    ids = []
    for round_ in range(3):
        # In one burst: the long task lands in the middle of a slot's batch.
        before = [app.schedule_service(Echo(i)) for i in range(40)]
        long_id = app.schedule_service(Sleep(3, "long"))
        shorts = before + [app.schedule_service(Echo(i)) for i in range(200)]
        order = [r.service_id for r in app.as_completed([long_id] + shorts, timeout=60)]
        # Every short task came back while the long one still ran.
        assert order[-1] == long_id, f"round {round_}: {order.index(long_id)} of {len(order)}"
        ids += shorts
    app.stop_application()


def test_a_crash_costs_only_the_task_it_happened_in(cluster):
    """One slot, short tasks pipelined, every seventh crashing: the results finished just
    before a crash were still in the slots' buffers, yet no other task fails or is retried."""
    cluster.start_scheduler()
    cluster.start_progress_server()
    cluster.start_worker("1")
    app = cluster.app(track_progress=False)
    ids = {}
    for i in range(210):
        if i % 7 == 6:
            ids[app.schedule_service(Segfault(), max_retries=1)] = "crash"
        else:
            ids[app.schedule_service(Echo(i), max_retries=0)] = i
    for r in app.as_completed(list(ids), timeout=120):
        want = ids[r.service_id]
        if want == "crash":
            assert r.service_status == ServiceStatus.FAILED and "signal 11" in r.error
        else:
            assert r.ok, f"{r.service_id}: {r.error}"
            assert r.service_result == want
    app.stop_application()


def test_a_python_process_that_dies_with_a_forked_child_alive_is_noticed(running):
    app = running.app()
    r = app.wait_for(app.schedule_service(ForksThenDies(), max_retries=0), timeout=30)
    assert r.service_status == ServiceStatus.FAILED
    assert "exited with status 1" in r.error, r.error
    assert app.wait_for(app.schedule_service(Echo(5)), timeout=30).service_result == 5
    app.stop_application()


def test_stray_bytes_on_the_slot_socket_end_the_attempt(running):
    app = running.app()
    r = app.wait_for(app.schedule_service(WritesGarbage(), max_retries=0), timeout=30)
    assert r.service_status == ServiceStatus.FAILED, r
    assert app.wait_for(app.schedule_service(Echo(6)), timeout=30).service_result == 6
    app.stop_application()


def test_a_slow_progress_callback_holds_up_nothing_else(running):
    app = running.app()
    release = threading.Event()
    calls = []

    def stuck(bars):
        calls.append(len(bars))
        release.wait(60)  # until the results are in: they must not need this callback
    app.on_progress(stuck)
    ids = [app.schedule_service(Counts(steps=10, step_s=0.05)) for _ in range(2)]
    try:
        results = app.wait_for_multi(ids, timeout=30)
    finally:
        release.set()
    assert [r.service_result for r in results] == [10, 10]
    assert calls
    app.on_progress(None)
    app.stop_application()


def test_a_result_the_application_cannot_unpickle_says_so(running):
    app = running.app()
    sid = app.schedule_service(ReturnsUnloadable())
    r = app.wait_for(sid, timeout=30)
    assert r.ok
    with pytest.raises(lrts.ResultError) as e:
        r.service_result
    assert sid in str(e.value) and "unpickled" in str(e.value)
    assert sid in repr(r)
    app.stop_application()


def test_an_application_stopped_cannot_start_again(running):
    app = running.app()
    app.stop_application()
    with pytest.raises(RuntimeError, match="stopped"):
        app.start_application()


def test_a_service_holding_objects_from_main_travels_by_value(running, tmp_path):
    script = tmp_path / "holds.py"
    script.write_text(textwrap.dedent(f"""
        import dataclasses
        import lrts
        from pyservices import Holds

        @dataclasses.dataclass
        class Config:
            n: int

        app = lrts.ClientApplication(lrts.ApplicationInformation(
            scheduler_port='{running.port}', progress_server_port='{running.progress_port}'))
        app.start_application()
        print(app.wait_for(app.schedule_service(Holds(Config(3))), timeout=60).service_result)
        app.stop_application()
    """))
    r = subprocess.run(["/usr/bin/python3", str(script)], capture_output=True, text=True,
                       timeout=120, env=child_env())
    assert r.returncode == 0, r.stderr
    assert r.stdout == "3\n"


def test_a_result_just_past_max_result_mb_fails_once_with_its_size(cluster):
    cluster.start_scheduler()
    cluster.start_progress_server()
    cluster.start_worker("1", extra=["--max-result-mb", "1"])
    app = cluster.app()
    # The limit is on the value: exactly 1 MiB passes (its encoding is allowed 64 KiB more).
    fits = app.wait_for(app.schedule_service(Big(1 << 20)), timeout=60)
    assert fits.ok and len(fits.service_result) == 1 << 20
    r = app.wait_for(app.schedule_service(Big((1 << 20) + (64 << 10) + 1024)), timeout=60)
    assert r.service_status == ServiceStatus.FAILED and r.attempt == 1
    assert "--max-result-mb limit of 1.0 MB" in r.error, r.error
    assert app.wait_for(app.schedule_service(Echo(7)), timeout=60).service_result == 7
    app.stop_application()
