"""Shared test setup.

Kernels: the suite runs twice in CI, normally and with ``NPGAN_NO_KERNELS=1``
(the plain-NumPy reference path). ``pytest --no-kernels`` is the same as
setting that variable. Tests that compare the compiled kernels with their
references take the ``activations_kernel`` (``layers_kernel``, ...) fixture,
which skips when the kernels are disabled or not built; ``reference_kernels``
forces the reference path inside one test (``npgan.settings.override``).
"""
import os

import numpy as np
import pytest

import npgan
from npgan import _kernels, settings


# Hypothesis profiles (tests/test_properties.py): "ci", the default and always
# with CI=true: few examples, the same ones every run (derandomize), no
# deadline (shared CI cores), no example database; "dev" (HYPOTHESIS_PROFILE=dev):
# ten times the examples, random, failures remembered in ~/.cache/npgan.
try:
    from hypothesis import settings as _hyp_settings
except ImportError:             # the property tests skip themselves without it
    _hyp_settings = None
if _hyp_settings is not None:
    _hyp_settings.register_profile("ci", max_examples=20, deadline=None, derandomize=True,
                                   database=None, print_blob=True)
    from hypothesis.database import DirectoryBasedExampleDatabase as _HypDB
    _hyp_settings.register_profile("dev", max_examples=200, deadline=None, print_blob=True,
                                   database=_HypDB(os.path.join(os.path.expanduser("~"), ".cache",
                                                                "npgan", "hypothesis")))
    _hyp_settings.load_profile("ci" if os.environ.get("CI", "").lower() == "true"
                               else os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def pytest_addoption(parser):
    parser.addoption("--no-kernels", action="store_true", default=False,
                     help="run with NPGAN_NO_KERNELS=1 (the NumPy reference kernels)")


def pytest_configure(config):
    if config.getoption("--no-kernels", default=False):
        os.environ["NPGAN_NO_KERNELS"] = "1"       # for the subprocesses tests start
        settings.configure(kernels=False)


def pytest_report_header(config):
    state = "disabled (NPGAN_NO_KERNELS)" if _kernels.disabled() else (
        "compiled" if _kernels.load("activations") is not None else "not built (reference path)")
    return f"npgan backend: {npgan.backend.name}; activation kernels: {state}"


def _compiled(name, why_missing=""):
    """The compiled module npgan._kernels.<name>; skip when disabled or not built."""
    if _kernels.disabled():
        pytest.skip("kernels disabled (NPGAN_NO_KERNELS=1)")
    k = _kernels.load(name)
    if k is None:
        pytest.skip(f"{name} extension not built (python setup.py build_ext --inplace){why_missing}")
    return k


def _kernel_fixture(name, why_missing=""):
    """A fixture ``<name>_kernel``: the compiled module (skips as _compiled)."""
    return pytest.fixture(lambda: _compiled(name, why_missing), name=f"{name}_kernel")


activations_kernel = _kernel_fixture("activations")
layers_kernel = _kernel_fixture("layers")
maxout_kernel = _kernel_fixture("maxout")
dropout_kernel = _kernel_fixture("dropout")
update_kernel = _kernel_fixture("update")
gemm_kernel = _kernel_fixture("gemm", ", or SciPy (cython_blas) missing")
pool_kernel = _kernel_fixture("pool")


@pytest.fixture
def reference_kernels():
    """Force the reference (NumPy) kernels for the duration of a test."""
    with settings.override(kernels=False):
        assert _kernels.load("activations") is None
        yield


def away_from_zero(a, margin=0.1):
    """Move values at least ``margin`` from 0 (kinks of relu/clip/max), keeping sign."""
    a = np.asarray(a, dtype=np.float64)
    return np.where(a >= 0, 1.0, -1.0) * (margin + np.abs(a))


def with_params(module, fn):
    """A function of (x, *parameters) for gradcheck: the given Tensors stand in
    for the module's parameters during the call."""
    slots = []
    for name, _ in module.named_parameters():
        *path, attr = name.split(".")
        owner = module
        for part in path:
            owner = getattr(owner, part)
        slots.append((owner, attr))

    def call(x, *params):
        saved = [getattr(o, a) for o, a in slots]
        try:
            for (o, a), p in zip(slots, params):
                setattr(o, a, p)
            return fn(x)
        finally:
            for (o, a), p in zip(slots, saved):
                setattr(o, a, p)
    return call, [p.data for p in module.parameters()]


EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples")


def load_example(name):
    """Import examples/<name>.py as a module (the examples are scripts, not a package)."""
    import importlib.util
    spec = importlib.util.spec_from_file_location(f"_example_{name}", os.path.join(EXAMPLES, f"{name}.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture
def one_blas_thread():
    """Tiny MLPs: one BLAS thread is several times faster than many on busy
    shared cores (the examples ask for it when run as scripts)."""
    with settings.override(blas_threads=1):
        yield


def wait_or_kill(pid, seconds=120):
    """Exit code of child ``pid``; None if it had not finished within
    ``seconds`` (it is then killed): a hang guard, not a timing measurement."""
    import signal
    import time
    deadline = time.monotonic() + seconds
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return None
        time.sleep(0.02)


def fork_child(child):
    """Fork; the child runs ``child()`` -> exit code (1 if it raised) and exits."""
    import warnings
    with warnings.catch_warnings():         # Python >= 3.12 warns about fork with threads
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:
        code = 1
        try:
            code = child()
        finally:
            os._exit(code)
    return pid
