"""A CPU stand-in for CuPy, to check GPU code where there is no GPU.

Two pieces:

* ``ElementwiseKernel`` / ``ReductionKernel``: CuPy's user-kernel classes,
  emulated by compiling the *same* kernel source (the CUDA C++ snippets of
  ``npgan/_kernels/cuda.py``) as ordinary C++ with the system compiler and
  running it on the CPU, one loop iteration per CUDA thread. The generated code
  follows CuPy's conventions: non-raw inputs are ``const T name`` (broadcast),
  outputs ``T& name``, ``raw`` arguments are indexed by their flat C-order index,
  ``i`` is the loop index; a reduction maps each element with ``map_expr``,
  combines with ``reduce_expr`` over ``a`` and ``b``, starts from
  ``identity`` and finishes with ``post_map_expr``, in ``reduce_type``. It
  checks the kernels' syntax and arithmetic; it cannot check CUDA's own math
  library, warp scheduling or memory limits.

* :func:`fake_cupy`: a module object named ``cupy`` made of the strict checking
  namespace (``strict_xp``: arrays that refuse implicit host conversion), these
  kernel classes, ``cuda.runtime.getDeviceCount() == 1`` and a
  ``testing`` module, enough for ``npgan.use("cupy")``, ``npgan._kernels.cuda``
  and ``tests/test_gpu.py`` to run on the CPU:

      python tests/cupy_emulator.py [pytest options]     # test_gpu.py, emulated
      python tests/cupy_emulator.py --script benchmarks/bench_gpu.py --quick --no-torch

  A pass there means the GPU tests and kernels are consistent with each other
  and with the NumPy results; only a run on a real GPU says they are right there.
"""
import ctypes
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import types

import numpy

_CTYPES = {"float32": "float", "float64": "double", "int32": "int", "int64": "long long",
           "uint32": "unsigned int", "uint64": "unsigned long long", "bool": "bool",
           "int8": "signed char", "uint8": "unsigned char", "int16": "short"}
_PRELUDE = """
#include <cmath>
#include <cstddef>
using namespace std;
template <class U> struct Raw {
    U* p; long long n;
    U& operator[](long long k) const { return p[k]; }
    long long size() const { return n; }
};
"""


def compiler():
    """The C++ compiler used for emulation, or None."""
    return shutil.which(os.environ.get("CXX", "g++")) or shutil.which("c++")


class _Param:
    def __init__(self, text):
        parts = text.split()
        self.raw = parts[0] == "raw"
        if self.raw:
            parts = parts[1:]
        if len(parts) != 2:
            raise ValueError(f"bad kernel parameter {text!r}")
        self.type, self.name = parts
        self.placeholder = len(self.type) == 1 and self.type.isupper()
        if not self.placeholder and self.type not in _CTYPES:
            raise ValueError(f"unsupported parameter type {self.type!r}")


def _params(text):
    return [_Param(p) for p in text.split(",") if p.strip()]


_cache = {}   # source hash -> ctypes library


def _build(source):
    key = hashlib.sha256(source.encode()).hexdigest()[:16]
    if key in _cache:
        return _cache[key]
    cxx = compiler()
    if cxx is None:
        raise RuntimeError("no C++ compiler found to emulate CuPy kernels")
    d = os.path.join(tempfile.gettempdir(), f"npgan-cupy-emu-{os.getuid()}")
    os.makedirs(d, exist_ok=True)
    so = os.path.join(d, f"k_{key}.so")
    if not os.path.exists(so):
        src = os.path.join(d, f"k_{key}.cpp")
        with open(src, "w") as f:
            f.write(source)
        tmp = f"{so}.{os.getpid()}"
        r = subprocess.run([cxx, "-O1", "-std=c++14", "-shared", "-fPIC", src, "-o", tmp],
                           capture_output=True, text=True)
        if r.returncode:
            raise RuntimeError(f"kernel source does not compile:\n{r.stderr}\n--- source ---\n{source}")
        os.replace(tmp, so)
    lib = ctypes.CDLL(so)
    _cache[key] = lib
    return lib


def _np(a):
    """The ndarray behind an argument (strict DeviceArray or ndarray), else None."""
    if isinstance(a, numpy.ndarray):
        return a
    inner = getattr(a, "_a", None)
    return inner if isinstance(inner, numpy.ndarray) else None


class _Kernel:
    def __init__(self, in_params, out_params, name):
        self.in_params, self.out_params = _params(in_params), _params(out_params)
        self.params = self.in_params + self.out_params
        self.name = name

    def _resolve(self, arrays):
        """placeholder -> dtype, from outputs first, then inputs (as CuPy)."""
        types_ = {}
        order = list(range(len(self.in_params), len(self.params))) + list(range(len(self.in_params)))
        for k in order:
            p, a = self.params[k], arrays[k] if k < len(arrays) else None
            if a is None or not p.placeholder:
                continue
            if p.type in types_ and types_[p.type] != a.dtype:
                raise TypeError(f"{self.name}: type {p.type} is mismatched "
                                f"({types_[p.type]} and {a.dtype})")
            types_.setdefault(p.type, a.dtype)
        return types_

    def _dtype(self, p, types_):
        return numpy.dtype(types_[p.type]) if p.placeholder else numpy.dtype(p.type)

    def _scalar(self, p, value, types_):
        return numpy.array(value, dtype=self._dtype(p, types_))

    @staticmethod
    def _wrap_like(args, out):
        """Return arrays of the callers' kind (DeviceArray if any argument was one)."""
        for a in args:
            if not isinstance(a, numpy.ndarray) and _np(a) is not None:
                return type(a)(out)
        return out


class ElementwiseKernel(_Kernel):
    """cupy.ElementwiseKernel, run as C++ on the CPU."""

    def __init__(self, in_params, out_params, operation, name="kernel", **kwargs):
        super().__init__(in_params, out_params, name)
        self.operation = operation

    def _source(self, types_):
        decl, loop = [], []
        for k, p in enumerate(self.params):
            ct = "T_" + p.type if p.placeholder else _CTYPES[p.type]
            if p.raw:
                decl.append(f"Raw<{ct}> {p.name}{{({ct}*)_args[{k}], _sizes[{k}]}};")
            elif k < len(self.in_params):
                loop.append(f"const {ct} {p.name} = _isscalar[{k}] ? (({ct}*)_args[{k}])[0] "
                            f": (({ct}*)_args[{k}])[i];")
            else:
                loop.append(f"{ct}& {p.name} = (({ct}*)_args[{k}])[i];")
        tdefs = "".join(f"typedef {_CTYPES[numpy.dtype(t).name]} T_{n};\n" for n, t in types_.items())
        body = self.operation
        for n in types_:
            body = re.sub(rf"\b{n}\b", f"T_{n}", body)
        return (_PRELUDE + tdefs + 'extern "C" void run(long long _n, void** _args, '
                "const long long* _sizes, const int* _isscalar) {\n  " + "\n  ".join(decl)
                + "\n  for (long long i = 0; i < _n; ++i) {\n    " + "\n    ".join(loop)
                + "\n    {\n" + body + "\n    }\n  }\n}\n")

    def __call__(self, *args, size=None, **kwargs):
        nin, nparams = len(self.in_params), len(self.params)
        if len(args) not in (nin, nparams):
            raise TypeError(f"{self.name}: wrong number of arguments")
        arrays = [_np(a) for a in args]
        for a, arr in zip(args, arrays):
            if arr is None and not isinstance(a, (int, float, bool, numpy.generic)):
                raise TypeError(f"{self.name}: unsupported argument {type(a).__name__}")
        types_ = self._resolve(arrays)
        shapes = [a.shape for a, p in zip(arrays, self.params) if a is not None and not p.raw]
        if not shapes:
            if size is None:
                raise ValueError(f"{self.name}: all arguments are raw or scalars: give size=")
            shape = (int(size),)
        else:
            shape = numpy.broadcast_shapes(*shapes)
        outs = list(arrays[nin:]) if len(args) == nparams else [
            numpy.empty(shape, self._dtype(p, types_)) for p in self.out_params]
        for o, p in zip(outs, self.out_params):
            if o.shape != shape or o.dtype != self._dtype(p, types_):
                raise ValueError(f"{self.name}: output {p.name} must be {shape} "
                                 f"{self._dtype(p, types_)}, got {o.shape} {o.dtype}")
        n = int(numpy.prod(shape))
        bufs, isscalar, sizes, keep = [], [], [], []
        for k, p in enumerate(self.params):
            a = arrays[k] if k < nin else outs[k - nin]
            dt = self._dtype(p, types_)
            if k < nin and a is None:                       # Python or NumPy scalar
                b = self._scalar(p, args[k], types_)
                isscalar.append(1)
            elif p.raw:
                if a.dtype != dt:
                    raise TypeError(f"{self.name}: raw {p.name} is {a.dtype}, expected {dt}")
                b = numpy.ascontiguousarray(a).reshape(-1)
                isscalar.append(0)
            elif k < nin:
                if a.dtype != dt:
                    raise TypeError(f"{self.name}: {p.name} is {a.dtype}, expected {dt}")
                b = numpy.ascontiguousarray(numpy.broadcast_to(a, shape)).reshape(-1)
                isscalar.append(0)
            else:
                b = numpy.empty(n, dt)
                b[:] = a.reshape(-1)                        # outputs may be read before written
                isscalar.append(0)
            bufs.append(b)
            sizes.append(b.size)
            keep.append(b)
        if n:
            lib = _build(self._source(types_))
            ptrs = (ctypes.c_void_p * len(bufs))(*[b.ctypes.data for b in bufs])
            lib.run(ctypes.c_longlong(n), ptrs, (ctypes.c_longlong * len(sizes))(*sizes),
                    (ctypes.c_int * len(isscalar))(*isscalar))
        for o, b in zip(outs, bufs[nin:]):
            o[...] = b.reshape(shape)
        res = [self._wrap_like(args, o) if len(args) != nparams else args[nin + i]
               for i, o in enumerate(outs)]
        return res[0] if len(res) == 1 else tuple(res)



class ReductionKernel(_Kernel):
    """cupy.ReductionKernel (one output, no raw arguments), run as C++ on the CPU."""

    def __init__(self, in_params, out_params, map_expr, reduce_expr, post_map_expr, identity,
                 name="reduce_kernel", reduce_type=None, **kwargs):
        super().__init__(in_params, out_params, name)
        if len(self.out_params) != 1 or any(p.raw for p in self.params):
            raise NotImplementedError("emulated ReductionKernel: one output, no raw arguments")
        self.map_expr, self.reduce_expr, self.post_map_expr = map_expr, reduce_expr, post_map_expr
        self.identity, self.reduce_type = identity, reduce_type

    def _source(self, types_):
        loop = []
        for k, p in enumerate(self.in_params):
            ct = "T_" + p.type if p.placeholder else _CTYPES[p.type]
            loop.append(f"const {ct} {p.name} = _isscalar[{k}] ? (({ct}*)_args[{k}])[0] "
                        f": (({ct}*)_args[{k}])[_o * _nred + _j];")
        out = self.out_params[0]
        oct_ = "T_" + out.type if out.placeholder else _CTYPES[out.type]
        rt = self.reduce_type or (out.type if out.placeholder else _CTYPES[out.type])
        tdefs = "".join(f"typedef {_CTYPES[numpy.dtype(t).name]} T_{n};\n" for n, t in types_.items())

        def sub(code):
            for n in types_:
                code = re.sub(rf"\b{n}\b", f"T_{n}", code)
            return code
        rt = sub(rt)
        k_out = len(self.in_params)
        return (_PRELUDE + tdefs + f"typedef {rt} _type_reduce;\n"
                + 'extern "C" void run(long long _nout, long long _nred, void** _args, '
                "const int* _isscalar) {\n"
                "  for (long long _o = 0; _o < _nout; ++_o) {\n"
                f"    _type_reduce _acc = _type_reduce({self.identity});\n"
                "    for (long long _j = 0; _j < _nred; ++_j) {\n      " + "\n      ".join(loop)
                + f"\n      const _type_reduce _m = _type_reduce({sub(self.map_expr)});\n"
                f"      {{ const _type_reduce a = _acc, b = _m; _acc = ({sub(self.reduce_expr)}); }}\n"
                "    }\n"
                f"    {{ const _type_reduce a = _acc; {oct_}& {out.name} = "
                f"(({oct_}*)_args[{k_out}])[_o]; {sub(self.post_map_expr)}; }}\n"
                "  }\n}\n")

    def __call__(self, *args, axis=None, keepdims=False, **kwargs):
        if len(args) != len(self.in_params) or kwargs.get("out") is not None:
            raise NotImplementedError("emulated ReductionKernel: inputs only, no out=")
        arrays = [_np(a) for a in args]
        types_ = self._resolve(arrays + [None])
        shape = numpy.broadcast_shapes(*[a.shape for a in arrays if a is not None])
        axes = tuple(range(len(shape))) if axis is None else \
            tuple(sorted(ax % len(shape) for ax in ((axis,) if numpy.ndim(axis) == 0 else axis)))
        kept = [ax for ax in range(len(shape)) if ax not in axes]
        out_shape = tuple(shape[ax] for ax in kept)
        nout = int(numpy.prod(out_shape))
        nred = int(numpy.prod([shape[ax] for ax in axes]))
        bufs, isscalar = [], []
        for a, p, v in zip(arrays, self.in_params, args):
            dt = self._dtype(p, types_)
            if a is None:
                bufs.append(self._scalar(p, v, types_))
                isscalar.append(1)
                continue
            if a.dtype != dt:
                raise TypeError(f"{self.name}: {p.name} is {a.dtype}, expected {dt}")
            b = numpy.broadcast_to(a, shape).transpose(kept + list(axes))
            bufs.append(numpy.ascontiguousarray(b).reshape(-1))
            isscalar.append(0)
        out = numpy.empty(nout, self._dtype(self.out_params[0], types_))
        bufs.append(out)
        if nout:
            lib = _build(self._source(types_))
            ptrs = (ctypes.c_void_p * len(bufs))(*[b.ctypes.data for b in bufs])
            lib.run(ctypes.c_longlong(nout), ctypes.c_longlong(nred), ptrs,
                    (ctypes.c_int * len(isscalar))(*isscalar))
        out = out.reshape(out_shape)
        if keepdims:
            out = out.reshape(tuple(1 if ax in axes else n for ax, n in enumerate(shape)))
        return self._wrap_like(args, out)


# ----------------------------------------------------------------------------- a fake cupy module

def fake_cupy():
    """A ``cupy`` module for the CPU: strict device arrays + emulated kernels."""
    from strict_xp import DeviceArray, _Namespace, strict
    mod = _Namespace("cupy", numpy)
    for name in ("ndarray", "asarray", "array", "asanyarray"):
        setattr(mod, name, getattr(strict, name))
    mod.ElementwiseKernel, mod.ReductionKernel = ElementwiseKernel, ReductionKernel
    mod.cuda = types.SimpleNamespace(runtime=types.SimpleNamespace(
        getDeviceCount=lambda: 1, deviceSynchronize=lambda: None,
        getDeviceProperties=lambda i: {"name": b"CPU (emulated CuPy)"}))
    mod.__version__ = "emulated"

    def host(a):
        return a.get() if isinstance(a, DeviceArray) else numpy.asarray(a)
    testing = types.ModuleType("cupy.testing")
    testing.assert_allclose = lambda a, b, *x, **k: numpy.testing.assert_allclose(host(a), host(b), *x, **k)
    testing.assert_array_equal = lambda a, b, *x, **k: numpy.testing.assert_array_equal(host(a), host(b), *x, **k)
    mod.testing = testing
    return mod


def main(argv):
    """Run tests/test_gpu.py (default) or, with ``--script FILE ARGS...``, a script
    (e.g. benchmarks/bench_gpu.py --quick) with the emulated cupy."""
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:0] = [here, os.path.dirname(here)]
    sys.modules["cupy"] = fake_cupy()
    if argv[:1] == ["--script"]:
        import runpy
        sys.argv = argv[1:]
        runpy.run_path(argv[1], run_name="__main__")
        return 0
    import pytest
    return pytest.main([os.path.join(here, "test_gpu.py"), "-p", "no:cacheprovider"] + argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
