"""Services the Python tests run on real workers (importable there: the tests put this
directory on the workers' PYTHONPATH)."""

import ctypes
import os
import time

from lrts.service import Service


class Echo(Service):
    def __init__(self, value):
        super().__init__()
        self.value = value

    def service_name(self):
        return "Echo"

    @staticmethod
    def run(service):
        return service.value


class Sleep(Service):
    def __init__(self, seconds, value=None):
        super().__init__()
        self.seconds = seconds
        self.value = value

    @staticmethod
    def run(service):
        time.sleep(service.seconds)
        return service.value


class Raises(Service):
    @staticmethod
    def run(service):
        def inner():
            raise ValueError("the input was wrong")
        inner()


class Segfault(Service):
    """Crashes its Python slot process (SIGSEGV through ctypes) on attempts up to
    `crash_until`, then returns 'survived'."""

    def __init__(self, crash_until=1000):
        super().__init__()
        self.crash_until = crash_until

    @staticmethod
    def run(service):
        if service.attempt <= service.crash_until:
            ctypes.string_at(0)
        return f"survived attempt {service.attempt}"


class Numpy(Service):
    def __init__(self, n):
        super().__init__()
        self.n = n

    @staticmethod
    def run(service):
        import numpy as np
        return np.arange(service.n, dtype=np.float64) * 2


class Counts(Service):
    """A bar of `steps`, advanced every `step_s` seconds, through either API."""

    def __init__(self, steps, step_s, use_object=False):
        super().__init__()
        self.steps = steps
        self.step_s = step_s
        self.use_object = use_object

    @staticmethod
    def run(service):
        if service.use_object:
            bar = service.progress_bar(description="Counting", total=service.steps, unit="steps")
            for _ in range(service.steps):
                time.sleep(service.step_s)
                bar.advance()
            bar.close()
            return bar.count
        pid = service.create_progress(description="Counting", color="blue", total=service.steps,
                                      leave=True, unit="steps")
        for _ in range(service.steps):
            time.sleep(service.step_s)
            service.increment_progress(progress_id=pid, amount=1)
        service.close_progress(progress_id=pid)
        return service.steps


class Hog(Service):
    """Holds `mb` MiB for `seconds`."""

    def __init__(self, mb, seconds):
        super().__init__()
        self.mb = mb
        self.seconds = seconds

    @staticmethod
    def run(service):
        block = bytearray(service.mb << 20)
        for i in range(0, len(block), 4096):
            block[i] = 1
        time.sleep(service.seconds)
        return len(block)


class Spawns(Service):
    """Starts a background process that would outlive the task, writes its pid to `path`."""

    def __init__(self, path):
        super().__init__()
        self.path = path

    @staticmethod
    def run(service):
        import subprocess
        p = subprocess.Popen(["sleep", "300"], start_new_session=True)
        with open(service.path, "w") as f:
            f.write(str(p.pid))
        return p.pid


class Pid(Service):
    @staticmethod
    def run(service):
        return os.getpid()


class TwoArgError(Exception):
    def __init__(self, a, b):
        super().__init__(f"{a} {b}")


class ReturnsUnloadable(Service):
    """Returns an exception that pickles but does not unpickle (its __init__ takes two)."""

    @staticmethod
    def run(service):
        return TwoArgError(1, 2)


class ForksThenDies(Service):
    """Leaves a forked child holding everything open, then its process exits."""

    @staticmethod
    def run(service):
        if os.fork() == 0:
            time.sleep(60)
            os._exit(0)
        os._exit(1)


class WritesGarbage(Service):
    """Writes stray bytes on its slot's socket (descriptor 3)."""

    @staticmethod
    def run(service):
        os.write(3, b"\xff" * 64)
        time.sleep(30)
        return "not reached"


class Holds(Service):
    def __init__(self, value):
        super().__init__()
        self.value = value

    @staticmethod
    def run(service):
        return service.value.n


class Big(Service):
    def __init__(self, n):
        super().__init__()
        self.n = n

    @staticmethod
    def run(service):
        return b"x" * service.n
