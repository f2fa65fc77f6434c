"""A strict stand-in for CuPy, for checking backend neutrality without a GPU.

``strict`` is a module object with NumPy's names; every array it returns is a
:class:`DeviceArray`, which (like ``cupy.ndarray``) is *not* a
``numpy.ndarray`` and refuses to become one implicitly:

* ``numpy.asarray(d)`` / ``numpy.array(d)`` / anything that asks ``__array__``
  raises :class:`StrictError` (CuPy: "Implicit conversion to a NumPy array is
  not allowed"); ``d.get()`` is the one way to the host, as in CuPy;
* any NumPy function or ufunc called on a DeviceArray (``numpy.exp(d)``,
  ``numpy.sum(d)``, ``numpy.shape(d)``, ``numpy.add.at(d, ...)``) raises, via
  ``__array_ufunc__`` / ``__array_function__``: array code must go through the
  backend module (``backend.xp``). This is stricter than CuPy, which would
  quietly serve some of them through the same protocols: a stray ``numpy.``
  call is a bug here even where CuPy would have forgiven it;
* a host ``numpy.ndarray`` mixed into a device operation (``d + host``,
  ``strict.maximum(host, 0)``, ``d[...] = host``) raises, as CuPy does; host
  data crosses only through ``strict.asarray`` / ``strict.array`` (which copy,
  like a host-to-device transfer). Host integer/boolean arrays used as
  *indices* are accepted, as CuPy converts them.

Inside, a DeviceArray holds an ordinary ndarray and every method, operator and
namespace function unwraps its arguments, lets NumPy do the work, and wraps
the results again (NumPy scalars from reductions and integer indexing become
0-d DeviceArrays, as CuPy returns 0-d arrays). So the numbers are NumPy's
exactly, and only the *route* to them is checked.

``strict.random`` is refused on purpose: npgan draws every random number on
the host from ``numpy.random.Generator`` s and moves it with
``backend.asarray``, so that CPU and GPU runs draw the same numbers.

Install with ``npgan.backend.set_module(strict, "strict")`` (see the
``strict_backend`` fixture in test_backend.py).
"""
import types

import numpy

__all__ = ["strict", "DeviceArray", "StrictError"]


class StrictError(TypeError):
    """A NumPy call met a device array, or a host array met a device operation."""


def _host_array_error(where):
    return StrictError(
        f"{where}: got a host numpy.ndarray where a device array is needed; move it "
        "explicitly with backend.asarray (CuPy raises here too)")


def _unwrap(obj, where):
    """DeviceArray -> its ndarray; host arrays refused; containers recursed."""
    if isinstance(obj, DeviceArray):
        return obj._a
    if isinstance(obj, numpy.ndarray):
        raise _host_array_error(where)
    if isinstance(obj, (list, tuple)):
        return type(obj)(_unwrap(o, where) for o in obj)
    return obj


def _unwrap_kwargs(kwargs, where):
    return {k: _unwrap(v, where) for k, v in kwargs.items()}


def _unwrap_index(idx):
    """Indices: DeviceArrays unwrapped; host integer/bool arrays and lists allowed."""
    if isinstance(idx, DeviceArray):
        return idx._a
    if isinstance(idx, tuple):
        return tuple(_unwrap_index(i) for i in idx)
    return idx


def _wrap(obj):
    """ndarray / NumPy scalar -> DeviceArray; containers recursed; others as is."""
    if isinstance(obj, numpy.ndarray):
        return DeviceArray(obj)
    if isinstance(obj, numpy.generic):
        return DeviceArray(numpy.asarray(obj))
    if isinstance(obj, list):
        return [_wrap(o) for o in obj]
    if isinstance(obj, tuple):
        return tuple(_wrap(o) for o in obj)
    return obj


# methods of numpy.ndarray that cupy.ndarray has too and npgan may use
_METHODS = frozenset("""
    all any argmax argmin argsort astype clip copy cumsum diagonal dot fill flatten item
    max mean min nonzero prod ravel repeat reshape round sort squeeze std sum swapaxes
    take tolist trace transpose var conj
""".split())


class DeviceArray:
    """An array "on the device": NumPy does the arithmetic, nothing converts it
    to a host array implicitly (see the module docstring)."""

    __slots__ = ("_a",)
    __hash__ = None

    def __init__(self, a):
        if not isinstance(a, numpy.ndarray):
            raise TypeError("DeviceArray wraps a numpy.ndarray; use strict.asarray")
        self._a = a

    # -- the only way to the host (as cupy.ndarray.get) --------------------------------
    def get(self):
        """A host copy (numpy.ndarray)."""
        return numpy.array(self._a, copy=True)

    # -- refusals ------------------------------------------------------------------------
    def __array__(self, *args, **kwargs):
        raise StrictError("implicit conversion of a device array to a NumPy array "
                          "(numpy.asarray/array, or a NumPy function on it): use "
                          "backend.to_numpy(a) (a.get()) for host data, backend.xp for math")

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        # ``numpy_scalar (op) device_array`` lands here; CuPy computes it, so do we.
        # Anything else (numpy.exp(d), numpy.add.at(d, ...), host_array + d) is a
        # NumPy call on a device array: refused.
        if method == "__call__" and any(isinstance(i, numpy.generic) for i in inputs) and \
                not any(isinstance(i, numpy.ndarray) for i in inputs) and "out" not in kwargs:
            return _wrap(ufunc(*_unwrap(inputs, ufunc.__name__), **kwargs))
        raise StrictError(
            f"numpy.{ufunc.__name__}{'' if method == '__call__' else '.' + method} was called on a "
            "device array: use backend.xp (the active array module) instead of numpy")

    def __array_function__(self, func, types, args, kwargs):
        raise StrictError(
            f"numpy.{func.__name__} was called on a device array: use backend.xp "
            "(the active array module) instead of numpy, or backend.to_numpy(a) for host data")

    # -- attributes -----------------------------------------------------------------------
    shape = property(lambda self: self._a.shape)
    dtype = property(lambda self: self._a.dtype)
    ndim = property(lambda self: self._a.ndim)
    size = property(lambda self: self._a.size)
    itemsize = property(lambda self: self._a.itemsize)
    nbytes = property(lambda self: self._a.nbytes)
    strides = property(lambda self: self._a.strides)
    flags = property(lambda self: self._a.flags)
    T = property(lambda self: DeviceArray(self._a.T))
    real = property(lambda self: DeviceArray(self._a.real))
    imag = property(lambda self: DeviceArray(self._a.imag))

    def __getattr__(self, name):
        if name not in _METHODS:
            raise AttributeError(f"DeviceArray has no attribute {name!r} (the strict namespace "
                                 "offers the methods that cupy.ndarray has)")
        method = getattr(self._a, name)

        def call(*args, **kwargs):
            return _wrap(method(*_unwrap(args, f".{name}()"), **_unwrap_kwargs(kwargs, f".{name}()")))
        call.__name__ = name
        return call

    # -- Python protocols -----------------------------------------------------------------
    def __repr__(self):
        return f"DeviceArray({self._a!r})"

    __str__ = __repr__

    def __format__(self, spec):
        return format(self._a, spec)

    def __len__(self):
        return len(self._a)

    def __iter__(self):
        return (_wrap(r) for r in self._a)

    def __bool__(self):
        return bool(self._a)

    def __float__(self):
        return float(self._a)

    def __int__(self):
        return int(self._a)

    def __complex__(self):
        return complex(self._a)

    def __getitem__(self, idx):
        return _wrap(self._a[_unwrap_index(idx)])

    def __setitem__(self, idx, value):
        self._a[_unwrap_index(idx)] = _unwrap(value, "__setitem__")

    def __getstate__(self):
        return self._a

    def __setstate__(self, a):
        self._a = a


def _binary(name):
    def op(self, other):
        res = getattr(self._a, name)(_unwrap(other, name))
        return res if res is NotImplemented else _wrap(res)
    op.__name__ = name
    return op


def _inplace(name):
    def op(self, other):
        res = getattr(self._a, name)(_unwrap(other, name))
        if res is NotImplemented:
            return res
        return self
    op.__name__ = name
    return op


def _unary(name):
    def op(self):
        return _wrap(getattr(self._a, name)())
    op.__name__ = name
    return op


for _n in ("add", "sub", "mul", "truediv", "floordiv", "mod", "pow", "matmul",
           "and", "or", "xor", "lshift", "rshift"):
    setattr(DeviceArray, f"__{_n}__", _binary(f"__{_n}__"))
    setattr(DeviceArray, f"__r{_n}__", _binary(f"__r{_n}__"))
    setattr(DeviceArray, f"__i{_n}__", _inplace(f"__i{_n}__"))
for _n in ("lt", "le", "eq", "ne", "gt", "ge"):
    setattr(DeviceArray, f"__{_n}__", _binary(f"__{_n}__"))
for _n in ("neg", "pos", "abs", "invert"):
    setattr(DeviceArray, f"__{_n}__", _unary(f"__{_n}__"))
del _n


# ----------------------------------------------------------------------------- the namespace

class _Ufunc:
    """A NumPy ufunc that takes and returns DeviceArrays (and its methods)."""

    def __init__(self, uf):
        self._uf = uf
        self.__name__ = uf.__name__
        self.nin, self.nout = uf.nin, uf.nout

    def __call__(self, *args, **kwargs):
        where = f"{self.__name__}()"
        return _wrap(self._uf(*_unwrap(args, where), **_unwrap_kwargs(kwargs, where)))

    def _method(self, name, *args, **kwargs):
        where = f"{self.__name__}.{name}()"
        return _wrap(getattr(self._uf, name)(*_unwrap(args, where), **_unwrap_kwargs(kwargs, where)))

    def reduce(self, *args, **kwargs):
        return self._method("reduce", *args, **kwargs)

    def accumulate(self, *args, **kwargs):
        return self._method("accumulate", *args, **kwargs)

    def outer(self, *args, **kwargs):
        return self._method("outer", *args, **kwargs)

    def at(self, a, indices, b=None):
        """In place, like cupy.add.at / cupyx.scatter_add: a device array, indices
        (device or host index arrays), values (device array or scalar)."""
        where = f"{self.__name__}.at()"
        if not isinstance(a, DeviceArray):
            raise StrictError(f"{where}: the target must be a device array, got {type(a).__name__}")
        if b is None:
            self._uf.at(a._a, _unwrap_index(indices))
        else:
            self._uf.at(a._a, _unwrap_index(indices), _unwrap(b, where))

    def __repr__(self):
        return f"<strict ufunc {self.__name__!r}>"


def _function(f, name):
    def call(*args, **kwargs):
        where = f"{name}()"
        return _wrap(f(*_unwrap(args, where), **_unwrap_kwargs(kwargs, where)))
    call.__name__ = name
    call.__doc__ = f"strict wrapper of numpy.{name}"
    return call


def _from_host(name):
    """asarray / array: host data (arrays, lists, scalars) to the device, always
    a copy of host memory, as a host-to-device transfer is."""
    f = getattr(numpy, name)

    def call(a, dtype=None, **kwargs):
        if isinstance(a, DeviceArray):
            if name == "asarray" and (dtype is None or numpy.dtype(dtype) == a.dtype) and not kwargs:
                return a                      # cupy.asarray(cupy_array) is the same array
            return DeviceArray(numpy.array(a._a, dtype=dtype, **kwargs))
        if isinstance(a, (list, tuple)) and any(isinstance(v, DeviceArray) for v in a):
            a = [v._a if isinstance(v, DeviceArray) else v for v in a]
        return DeviceArray(numpy.array(f(a, dtype, **kwargs), copy=True))
    call.__name__ = name
    return call


class _Namespace(types.ModuleType):
    """NumPy's names, with arrays in and out as DeviceArrays."""

    def __init__(self, name, wrapped):
        super().__init__(name, f"strict checking namespace over {wrapped.__name__}")
        self._wrapped = wrapped

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        if name == "random":
            raise AttributeError(
                "strict.random is refused on purpose: npgan draws random numbers on the host "
                "with numpy.random.Generator and moves them with backend.asarray, so that CPU "
                "and GPU runs draw the same numbers")
        obj = getattr(self._wrapped, name)
        if isinstance(obj, numpy.ufunc):
            value = _Ufunc(obj)
        elif isinstance(obj, type):
            value = obj                      # dtypes (float32, dtype, finfo, ...)
        elif isinstance(obj, types.ModuleType):
            value = _Namespace(f"{self.__name__}.{name}", obj)
        elif callable(obj):
            value = _function(obj, name)
        else:
            value = obj                      # constants: inf, pi, newaxis, ...
        setattr(self, name, value)            # cache
        return value


strict = _Namespace("strict", numpy)
strict.ndarray = DeviceArray
strict.asarray = _from_host("asarray")
strict.array = _from_host("array")
strict.asanyarray = strict.asarray


def device_leaves(obj):
    """All DeviceArrays inside nested dicts/lists/tuples (to check that host
    state such as a state_dict holds none)."""
    if isinstance(obj, DeviceArray):
        return [obj]
    if isinstance(obj, dict):
        return [d for v in obj.values() for d in device_leaves(v)]
    if isinstance(obj, (list, tuple)):
        return [d for v in obj for d in device_leaves(v)]
    return []

