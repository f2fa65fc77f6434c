"""Only what pyproject.toml cannot say: the Cython extensions in npgan/_kernels.

Every ``npgan/_kernels/*.pyx`` is compiled as ``npgan._kernels.<name>``.
Set ``NPGAN_NO_BUILD=1`` to install the pure-NumPy package without them.
"""
import glob
import os
import sys

from setuptools import Extension, setup

extensions = []
if os.environ.get("NPGAN_NO_BUILD", "") != "1":
    import numpy
    from Cython.Build import cythonize

    args = ["-O3"] if sys.platform != "win32" else ["/O2"]
    for pyx in sorted(glob.glob(os.path.join("npgan", "_kernels", "*.pyx"))):
        name = "npgan._kernels." + os.path.splitext(os.path.basename(pyx))[0]
        extensions.append(Extension(
            name, [pyx], include_dirs=[numpy.get_include(), os.path.dirname(pyx)],
            depends=sorted(glob.glob(os.path.join("npgan", "_kernels", "*.h"))),
            extra_compile_args=args,
            define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")]))
    extensions = cythonize(extensions, language_level=3, compiler_directives={
        "boundscheck": False, "wraparound": False, "cdivision": True,
        "initializedcheck": False})

setup(ext_modules=extensions)
