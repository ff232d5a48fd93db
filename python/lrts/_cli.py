"""The ``lrts`` command of a pip install: runs the lrts binary shipped in the package (or the
one on PATH after ``cmake --install``)."""

import os
import shutil
import sys


def main() -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    binary = os.path.join(here, "bin", "lrts")
    if not os.access(binary, os.X_OK):
        found = shutil.which("lrts")
        if not found or os.path.realpath(found) == os.path.realpath(sys.argv[0]):
            sys.exit("lrts: the lrts binary is not installed with this package")
        binary = found
    os.execv(binary, [binary] + sys.argv[1:])


if __name__ == "__main__":
    main()
