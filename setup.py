"""Builds the lrts Python package with CMake: the extension lrts._lrts, liblrts (into lrts/lib)
and the lrts binary (into lrts/bin, run by the `lrts` command). Nothing is downloaded: pybind11
and the C++ libraries come from Debian (scripts/packages.txt).

    python3 -m pip install --no-build-isolation .

LRTS_CMAKE_BUILD_DIR=DIR uses an existing CMake build directory instead of configuring one
under build/pip (what the tests do, to skip a second full build).
"""

import glob
import os
import shutil
import subprocess
import sys
import tempfile

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ROOT = os.path.dirname(os.path.abspath(__file__))


class CMakeExtension(Extension):
    def __init__(self, name):
        super().__init__(name, sources=[])


class CMakeBuild(build_ext):
    def build_extension(self, ext):
        build = os.environ.get("LRTS_CMAKE_BUILD_DIR")
        if not build:
            build = os.path.abspath(os.path.join(self.build_temp, "cmake"))
            os.makedirs(build, exist_ok=True)
            generator = ["-G", "Ninja"] if shutil.which("ninja") else []
            subprocess.check_call(
                ["cmake", "-S", ROOT, "-B", build, *generator, "-DCMAKE_BUILD_TYPE=Release",
                 "-DLRTS_BUILD_TESTS=OFF", "-DLRTS_BUILD_EXAMPLES=OFF", "-DLRTS_BUILD_BENCH=OFF",
                 f"-DPython3_EXECUTABLE={sys.executable}"])
        jobs = str(os.cpu_count() or 2)
        subprocess.check_call(["cmake", "--build", build, "--target", "lrts_python", "lrts_bin",
                               "-j", jobs])
        package = os.path.join(os.path.abspath(self.build_lib), "lrts")
        target = os.path.abspath(self.get_ext_fullpath(ext.name))
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with tempfile.TemporaryDirectory() as stage:
            # cmake --install gives the files their install RPATHs ($ORIGIN-relative).
            subprocess.check_call(["cmake", "--install", build, "--prefix", stage],
                                  stdout=subprocess.DEVNULL)
            ext_files = glob.glob(os.path.join(stage, "lib", "python*", "*-packages", "lrts",
                                               "_lrts*.so"))
            libs = glob.glob(os.path.join(stage, "lib*", "**", "liblrts.so.*.*"), recursive=True)
            if not ext_files or not libs:
                raise RuntimeError(f"cmake --install of {build} has no lrts extension or library")
            shutil.copy2(ext_files[0], target)
            os.makedirs(os.path.join(package, "lib"), exist_ok=True)
            os.makedirs(os.path.join(package, "bin"), exist_ok=True)
            shutil.copy2(libs[0], os.path.join(package, "lib", "liblrts.so.0"))
            shutil.copy2(os.path.join(stage, "bin", "lrts"), os.path.join(package, "bin", "lrts"))


os.makedirs(os.path.join(ROOT, "build", "pip"), exist_ok=True)
setup(ext_modules=[CMakeExtension("lrts._lrts")], cmdclass={"build_ext": CMakeBuild},
      options={"build": {"build_base": os.path.join(ROOT, "build", "pip")},
               "egg_info": {"egg_base": os.path.join(ROOT, "build", "pip")}})
