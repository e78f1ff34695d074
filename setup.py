"""Build the Cython twin of the WBXML codec; fall back to pure Python.

Cython compiles ``_wbxml/_codec.pyx`` (the C-level twin of ``_wbxml/_pure.py``)
into the extension ``_wbxml._codec``.
When Cython or a C compiler is missing, or ``EASLOAD_NO_EXTENSIONS`` is set, the
package installs without it and ``_wbxml`` uses the pure twin.
"""

import os
import sys

from setuptools import setup
from setuptools.command.build_ext import build_ext


class OptionalBuildExt(build_ext):
    """Never fail the install because the extension could not be built."""

    def run(self):
        try:
            super().run()
        except Exception as exc:  # no compiler, no Python headers...
            self._warn(exc)

    def build_extension(self, ext):
        try:
            super().build_extension(ext)
        except Exception as exc:
            self._warn(exc)

    @staticmethod
    def _warn(exc):
        sys.stderr.write(
            "WARNING: the compiled WBXML codec could not be built (%s); "
            "easload will use the pure-Python codec.\n" % exc
        )


def extensions():
    if os.environ.get("EASLOAD_NO_EXTENSIONS"):
        return []
    try:
        from Cython.Build import cythonize
    except ImportError:
        sys.stderr.write("WARNING: Cython not available; installing the pure-Python codec only.\n")
        return []
    from setuptools import Extension

    ext = Extension("_wbxml._codec", ["_wbxml/_codec.pyx"], extra_compile_args=["-O2"])
    try:
        return _cythonize(cythonize, ext)
    except Exception as exc:  # a Cython error must not make the package uninstallable
        sys.stderr.write("WARNING: Cython could not translate the codec (%s); using the pure-Python codec.\n" % exc)
        return []


def _cythonize(cythonize, ext):
    return cythonize(
        [ext],
        compiler_directives={
            "language_level": "3",
            "binding": False,
        },
        quiet=True,
    )


setup(ext_modules=extensions(), cmdclass={"build_ext": OptionalBuildExt})
