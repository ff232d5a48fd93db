"""A Python slot process: ``python3 -m lrts._slot --lrts-slot FD ...``, started by a worker's
slot for Python services. It runs the worker's slot runtime (in the native module) and
unpickles and runs each service here. ``--check`` only says whether this interpreter can."""

import os
import pickle
import sys


def run_pickled(blob: bytes):
    try:
        service = pickle.loads(blob)
    except Exception as e:  # the class cannot be found or built here
        raise RuntimeError(
            f"cannot unpickle the service on this worker ({type(e).__name__}: {e}); is its "
            "module importable here, or was it pickled by value (classes in __main__ are)?"
        ) from e
    return type(service).run(service)


def _close_quietly(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass


def main(argv) -> int:
    if len(argv) >= 2 and argv[1] == "--check":
        from . import _lrts  # noqa: F401  (the extension loads)
        from . import __version__
        try:
            import cloudpickle  # noqa: F401
            extra = ""
        except ImportError:
            extra = ", without cloudpickle (services defined in __main__ cannot run here)"
        print(f"lrts {__version__}, Python {sys.version.split()[0]} at {sys.executable}{extra}")
        return 0
    from . import _lrts
    sys.stdin = open(os.devnull)
    # The slot's socket stays out of what a task starts: not inherited across exec, and closed
    # in a forked child (which would otherwise keep this process looking alive to its slot).
    slot_fd = int(argv[2])
    os.set_inheritable(slot_fd, False)
    os.register_at_fork(after_in_child=lambda: _close_quietly(slot_fd))
    code = _lrts.run_slot(list(argv), run_pickled)
    # Threads a task left running must not hold the exit up.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
