"""Only what pyproject.toml cannot say: the Cython extensions in npgan/_kernels.

Every ``npgan/_kernels/*.pyx`` is compiled as ``npgan._kernels.<name>``. The
extensions are optional: where they cannot be built (no working C compiler,
Cython or SciPy missing at build time, a compile error) the install goes on
without them, prints one warning line saying why, and npgan runs on its
plain-NumPy reference path (``npgan._kernels.available()`` then reports each
kernel as False). The warning is a Python warning, which pip shows without -v
for a checkout (pip install .), with -v for an sdist. Environment variables
read here:

- ``NPGAN_NO_BUILD=1``: do not try; install the pure-NumPy package.
- ``NPGAN_REQUIRE_KERNELS=1``: every extension must build, or the install
  fails with the compiler's error (CI, and anyone who wants the fast path or
  nothing).
"""
import glob
import os
import re
import sys
import warnings

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

try:                                    # setuptools >= 59 re-exports distutils' errors
    from setuptools.errors import CCompilerError, CompileError, ExecError, LinkError, PlatformError
except ImportError:                     # pragma: no cover - older setuptools
    from distutils.errors import (CCompilerError, CompileError, LinkError,
                                  DistutilsExecError as ExecError,
                                  DistutilsPlatformError as PlatformError)

KERNELS = os.path.join("npgan", "_kernels")
# what may go wrong while building one extension without it being a bug in
# this file: the compiler (missing, failing, unusable platform), Cython's own
# compile errors (e.g. scipy's cython_blas.pxd missing), a missing file
BUILD_ERRORS = (CCompilerError, CompileError, LinkError, ExecError, PlatformError, OSError)
CYTHON_DIRECTIVES = {"boundscheck": False, "wraparound": False, "cdivision": True,
                     "initializedcheck": False}


def _flag(name):
    return os.environ.get(name, "") not in ("", "0")


def _outcome(err):
    """How a compiler command ended, in a few words."""
    text = str(err)
    for pattern in (r"exit (?:status|code) -?\d+", r"No such file or directory", r"not found"):
        m = re.search(pattern, text)
        if m:
            return m.group(0)
    return _first_line(err)


def _first_line(err):
    text = str(err).strip() or type(err).__name__
    return text.splitlines()[0][:200]


class optional_build_ext(build_ext):
    """build_ext that cythonizes at build time and skips, with one warning,
    the extensions it cannot build (unless NPGAN_REQUIRE_KERNELS=1)."""

    def build_extensions(self):
        self._skipped = []                 # (name, why)
        why_none = self._why_nothing_can_build()
        if why_none and _flag("NPGAN_REQUIRE_KERNELS"):
            raise CompileError(f"NPGAN_REQUIRE_KERNELS=1, but the kernels cannot be built: {why_none}")
        if why_none:
            self._skipped = [(ext.name, why_none) for ext in self.extensions]
        else:
            super().build_extensions()     # calls build_extension for each
        if self._skipped:
            skipped = {name for name, _ in self._skipped}
            # the later steps (copy to the source tree for -e, the wheel's
            # file list) only see what was built
            self.extensions = [ext for ext in self.extensions if ext.name not in skipped]
            self._warn()

    def _why_nothing_can_build(self):
        """A reason shared by every extension (no NumPy, no working C
        compiler, no Cython), found before any slow Cython compilation; else
        None."""
        try:
            import numpy
        except ImportError:
            return "NumPy is not installed at build time"
        for ext in self.extensions:
            ext.include_dirs.insert(0, numpy.get_include())
        import tempfile
        with tempfile.TemporaryDirectory() as tmp:
            src = os.path.join(tmp, "npgan_cc_check.c")
            with open(src, "w") as f:
                f.write("int npgan_cc_check(void) { return 0; }\n")
            try:
                self.compiler.compile([src], output_dir=tmp)
            except BUILD_ERRORS as e:
                if _flag("NPGAN_REQUIRE_KERNELS"):
                    raise
                cc = getattr(self.compiler, "compiler_so", None) or [self.compiler.compiler_type]
                return (f"no working C compiler ({os.path.basename(str(cc[0]))!r} cannot compile "
                        f"a one-line C file: {_outcome(e)})")
        try:
            import Cython  # noqa: F401
        except ImportError:
            return "Cython is not installed"
        return None

    def build_extension(self, ext):
        from Cython.Build import cythonize
        try:
            ext.sources = [ext.npgan_pyx]  # setuptools may have renamed it to .c without Cython
            (cythonized,) = cythonize([ext], language_level=3, quiet=True,
                                      compiler_directives=CYTHON_DIRECTIVES)
            ext.sources = cythonized.sources              # the generated .c
            super().build_extension(ext)
        except BUILD_ERRORS + (_cython_compile_error(),) as e:
            if _flag("NPGAN_REQUIRE_KERNELS"):
                raise
            self._skipped.append((ext.name, _first_line(e)))

    def _warn(self):
        names = ", ".join(name.rsplit(".", 1)[-1] for name, _ in self._skipped)
        reasons = sorted({why for _, why in self._skipped})
        # a Python warning, not a print: pip (>= 24.1, through pyproject-hooks)
        # shows a build backend's warnings even without -v, and hides its output
        warnings.warn(
            f"WARNING: npgan: compiled kernels not built ({names}): {'; '.join(reasons)}. "
            "Installing without them: npgan runs on its pure-NumPy path (same results, slower "
            "training; npgan._kernels.available() shows which kernels are in use). To build them, "
            "install a C compiler, Cython and SciPy, then reinstall with "
            "`pip install --no-cache-dir --force-reinstall --no-deps npgan` (or `pip install -e .` "
            "in a checkout); NPGAN_REQUIRE_KERNELS=1 makes this warning an error.",
            KernelsNotBuiltWarning, stacklevel=1)


class KernelsNotBuiltWarning(UserWarning):
    """The install goes on without (some of) the compiled kernels."""


def _cython_compile_error():
    try:
        from Cython.Compiler.Errors import CompileError as CythonCompileError
    except ImportError:                 # no Cython: nothing of it can be raised
        return OSError
    return CythonCompileError


def extensions():
    if _flag("NPGAN_NO_BUILD"):
        return []
    args = ["-O3"] if sys.platform != "win32" else ["/O2"]
    out = []
    for pyx in sorted(glob.glob(os.path.join(KERNELS, "*.pyx"))):
        ext = Extension(
            "npgan._kernels." + os.path.splitext(os.path.basename(pyx))[0], [pyx],
            include_dirs=[KERNELS],
            depends=sorted(glob.glob(os.path.join(KERNELS, "*.h"))
                           + glob.glob(os.path.join(KERNELS, "*.pxd"))),
            extra_compile_args=args,
            define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")])
        ext.npgan_pyx = pyx
        out.append(ext)
    return out


setup(ext_modules=extensions(), cmdclass={"build_ext": optional_build_ext})
