"""Builds lowbit's Python extension with CMake (pyproject.toml says how to install).

The extension is the CMake target lowbit_python, built for this interpreter (Python3_EXECUTABLE)
in build/python-<version> of the source tree, or taken from an existing CMake build folder named
by LOWBIT_CMAKE_BUILD_DIR (configured with -DLOWBIT_BUILD_PYTHON=ON), which saves the compile.
Like every lowbit build, it targets this machine's instruction set (-march=native)."""
import os
import pathlib
import shutil
import subprocess
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ROOT = pathlib.Path(__file__).resolve().parent


class CMakeBuild(build_ext):
    def build_extension(self, ext):
        given = os.environ.get("LOWBIT_CMAKE_BUILD_DIR")
        build = pathlib.Path(given).resolve() if given else ROOT / "build" / f"python-{sys.version_info[0]}.{sys.version_info[1]}"
        if not given:
            subprocess.check_call(["cmake", "-S", str(ROOT), "-B", str(build), "-DCMAKE_BUILD_TYPE=Release",
                                   "-DLOWBIT_BUILD_PYTHON=ON", "-DLOWBIT_BUILD_TESTS=OFF",
                                   "-DLOWBIT_BUILD_BENCHMARKS=OFF", "-DLOWBIT_BUILD_EXAMPLES=OFF",
                                   f"-DPython3_EXECUTABLE={sys.executable}"])
        subprocess.check_call(["cmake", "--build", str(build), "--target", "lowbit_python", "-j", str(os.cpu_count() or 1)])
        built = sorted((build / "python" / "lowbit").glob("_lowbit*.so"))
        if not built:
            raise RuntimeError(f"lowbit: no _lowbit*.so in {build / 'python' / 'lowbit'} after the CMake build")
        target = pathlib.Path(self.get_ext_fullpath(ext.name))
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(built[-1], target)


setup(ext_modules=[Extension("lowbit._lowbit", sources=[])], cmdclass={"build_ext": CMakeBuild})
