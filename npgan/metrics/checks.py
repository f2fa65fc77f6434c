"""Input checks shared by the metrics: every problem raises MetricsError
naming it; nothing is clipped, cast from integers or dropped silently."""
import numpy

from .. import backend

IMAGE_SHAPE = (28, 28)
IMAGE_DIM = 784


class MetricsError(ValueError):
    """Inputs the metrics cannot use: wrong shape, dtype, range, NaN, too few."""


def _host(a):
    return backend.to_numpy(a) if not isinstance(a, numpy.ndarray) else a


def check_images(x, name="samples", min_count=1):
    """Images as the metrics take them -> float32 (N, 784), C-contiguous.

    Accepts float arrays (N, 784), (N, 28, 28) or (N, 1, 28, 28) with every
    value finite and in [0, 1] (host or backend arrays). Raises MetricsError
    for anything else, or for fewer than ``min_count`` images."""
    if x is None:
        raise MetricsError(f"{name}: got None, expected an array of images")
    x = _host(x) if hasattr(x, "shape") else numpy.asarray(x)
    if x.dtype.kind != "f":
        hint = " (uint8 pixels? divide by 255 first)" if x.dtype.kind in "ui" else ""
        raise MetricsError(f"{name}: dtype {x.dtype}, expected floating point in [0, 1]{hint}")
    if x.ndim == 2 and x.shape[1] == IMAGE_DIM:
        pass
    elif x.ndim in (3, 4) and x.shape[-2:] == IMAGE_SHAPE and (x.ndim == 3 or x.shape[1] == 1):
        x = x.reshape(len(x), IMAGE_DIM)
    else:
        raise MetricsError(f"{name}: shape {x.shape}, expected (N, 784), (N, 28, 28) or "
                           "(N, 1, 28, 28) MNIST-sized images")
    if len(x) < min_count:
        raise MetricsError(f"{name}: {len(x)} images, need at least {min_count}")
    bad = ~numpy.isfinite(x)
    if bad.any():
        rows = numpy.flatnonzero(bad.any(axis=1))
        raise MetricsError(f"{name}: {int(bad.sum())} NaN/inf values in {len(rows)} images "
                           f"(first: image {int(rows[0])})")
    lo, hi = float(x.min()), float(x.max())
    if lo < 0 or hi > 1:
        n_out = int(((x < 0) | (x > 1)).sum())
        raise MetricsError(f"{name}: values range over [{lo:.4g}, {hi:.4g}], expected [0, 1] "
                           f"({n_out} values outside; tanh output? map it with (x + 1) / 2)")
    return numpy.ascontiguousarray(x, dtype=numpy.float32)


def check_features(f, name="features", min_count=2, dim=None):
    """Feature vectors -> float (N, D) host array; finite, at least ``min_count`` rows."""
    f = _host(f) if hasattr(f, "shape") else numpy.asarray(f)
    if f.dtype.kind != "f":
        raise MetricsError(f"{name}: dtype {f.dtype}, expected floating point")
    if f.ndim != 2:
        raise MetricsError(f"{name}: shape {f.shape}, expected (N, D)")
    if dim is not None and f.shape[1] != dim:
        raise MetricsError(f"{name}: {f.shape[1]} features per row, expected {dim}")
    if len(f) < min_count:
        raise MetricsError(f"{name}: {len(f)} rows, need at least {min_count}")
    if not numpy.isfinite(f).all():
        raise MetricsError(f"{name}: holds NaN or inf")
    return f
