"""Builds the lrts Python package with CMake: the extension lrts._lrts, liblrts (into lrts/lib)
and the lrts binary (into lrts/bin, run by the `lrts` command). Nothing is downloaded: pybind11
and the C++ libraries come from Debian (scripts/packages.txt).

    python3 -m pip install --no-build-isolation .
"""

import os
import shutil
import subprocess
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ROOT = os.path.dirname(os.path.abspath(__file__))


class CMakeExtension(Extension):
    def __init__(self, name):
        super().__init__(name, sources=[])


class CMakeBuild(build_ext):
    def build_extension(self, ext):
        build = os.path.abspath(os.path.join(self.build_temp, "cmake"))
        os.makedirs(build, exist_ok=True)
        generator = ["-G", "Ninja"] if shutil.which("ninja") else []
        subprocess.check_call(
            ["cmake", "-S", ROOT, "-B", build, *generator, "-DCMAKE_BUILD_TYPE=Release",
             "-DLRTS_BUILD_TESTS=OFF", "-DLRTS_BUILD_EXAMPLES=OFF", "-DLRTS_BUILD_BENCH=OFF",
             "-DCMAKE_BUILD_WITH_INSTALL_RPATH=ON",
             f"-DPython3_EXECUTABLE={sys.executable}"])
        jobs = str(os.cpu_count() or 2)
        subprocess.check_call(["cmake", "--build", build, "--target", "lrts_python", "lrts_bin",
                               "-j", jobs])
        package = os.path.join(os.path.abspath(self.build_lib), "lrts")
        target = os.path.abspath(self.get_ext_fullpath(ext.name))
        os.makedirs(os.path.dirname(target), exist_ok=True)
        built = os.path.join(build, "python", "lrts")
        for name in os.listdir(built):
            if name.startswith("_lrts") and name.endswith(".so"):
                shutil.copy2(os.path.join(built, name), target)
        os.makedirs(os.path.join(package, "lib"), exist_ok=True)
        os.makedirs(os.path.join(package, "bin"), exist_ok=True)
        # liblrts.so.0 is what the extension and the binary load (RPATH $ORIGIN/lib, ../lib).
        real = os.path.realpath(os.path.join(build, "liblrts.so"))
        shutil.copy2(real, os.path.join(package, "lib", "liblrts.so.0"))
        shutil.copy2(os.path.join(build, "lrts"), os.path.join(package, "bin", "lrts"))


setup(ext_modules=[CMakeExtension("lrts._lrts")], cmdclass={"build_ext": CMakeBuild})
