"""npgan.settings: the environment read once as the defaults, configure() and
override() to change them, and the kernels following them (on/off, GEMM
split, pool spin, BLAS threads)."""
import os
import subprocess
import sys

import numpy as np
import pytest

from npgan import Tensor, settings
from npgan import _kernels as K
from npgan._kernels import reference as ref

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_override_switches_to_the_reference_path(monkeypatch):
    calls = []
    real = ref.sigmoid_forward
    monkeypatch.setattr(ref, "sigmoid_forward", lambda x: calls.append(1) or real(x))
    with settings.override(kernels=False):
        assert K.disabled() and not settings.kernels()
        assert K.load("activations") is None
        assert K.available()["activations"] is False
        Tensor(np.ones(3)).sigmoid()
    assert calls, "with kernels=False the reference must be used"


@pytest.mark.parametrize("value,disabled", [("", False), ("0", False), ("1", True), ("yes", True)])
def test_no_kernels_variable_gives_the_default(value, disabled):
    assert settings._from_environment({"NPGAN_NO_KERNELS": value})["kernels"] is not disabled


def test_environment_defaults():
    d = settings._from_environment({})
    assert d == {"kernels": True, "backend": None, "blas": None, "gemm_split": True,
                 "pool_spin_us": 1000.0, "blas_threads": None}
    d = settings._from_environment({"NPGAN_GEMM_SPLIT": "0", "NPGAN_POOL_SPIN_US": "20",
                                    "NPGAN_BLAS": "mkl", "NPGAN_BACKEND": "cupy"})
    assert (d["gemm_split"], d["pool_spin_us"], d["blas"], d["backend"]) == (False, 20.0, "mkl", "cupy")
    with pytest.raises(ValueError, match="NPGAN_POOL_SPIN_US must be a number"):
        settings._from_environment({"NPGAN_POOL_SPIN_US": "fast"})


def test_the_environment_is_read_once_at_import():
    code = ("import os, npgan\nfrom npgan import settings, _kernels as K\n"
            "assert not settings.kernels() and K.disabled()\n"
            "os.environ['NPGAN_NO_KERNELS'] = '0'\n"
            "assert K.disabled()\n"
            "print('ok')\n")
    env = dict(os.environ, NPGAN_NO_KERNELS="1", PYTHONPATH=ROOT)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr[-2000:]


def test_kernels_come_back_when_enabled(activations_kernel):
    with settings.override(kernels=True):
        assert K.load("activations") is activations_kernel
        with settings.override(kernels=False):
            assert K.load("activations") is None
        assert K.load("activations") is activations_kernel


def test_configure_refuses_unknown_names_and_bad_values():
    before = {n: settings.get(n) for n in ("kernels", "blas", "blas_threads")}
    with pytest.raises(TypeError, match="unknown setting 'threads'"):
        settings.configure(threads=2)
    with pytest.raises(TypeError, match="npgan.use"):
        settings.configure(backend="cupy")
    with pytest.raises(ValueError, match="'scipy' or 'mkl'"):
        settings.configure(kernels=False, blas="openblas")
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="blas_threads"):
            settings.configure(blas_threads=bad)
    assert {n: settings.get(n) for n in before} == before


def test_override_restores_after_an_exception():
    with pytest.raises(RuntimeError):
        with settings.override(pool_spin_us=5):
            assert settings.get("pool_spin_us") == 5.0
            raise RuntimeError
    assert settings.get("pool_spin_us") == settings._from_environment(os.environ)["pool_spin_us"]


def test_gemm_split_and_spin_reach_the_pool(pool_kernel):
    if pool_kernel.split_threads() < 2:
        pytest.skip("one BLAS thread (or thread functions not found): nothing is split")
    with settings.override(gemm_split=False, pool_spin_us=7):
        assert pool_kernel.split_threads() == 1
        assert pool_kernel.set_spin(7) == 7.0                # what the setting put there
    assert pool_kernel.split_threads() >= 2
    assert pool_kernel.set_spin(settings.get("pool_spin_us")) == settings.get("pool_spin_us")


def test_blas_threads_sets_and_gives_back_the_count(pool_kernel):
    before = pool_kernel.split_threads()
    if before < 2:
        pytest.skip("one BLAS thread (or thread functions not found)")
    with settings.override(blas_threads=1):
        assert pool_kernel.split_threads() == 1
        with settings.override(blas_threads=2):
            assert pool_kernel.split_threads() == 2
        assert pool_kernel.split_threads() == 1
    assert pool_kernel.split_threads() == before


def test_data_environment_is_read_at_each_call(monkeypatch):
    """The data search's variables are read when asked (not frozen at import)."""
    monkeypatch.setenv("NPGAN_DATA", "/somewhere")
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("NPGAN_NO_DOWNLOAD", "1")
    assert settings.data_environment() == {"data": "/somewhere", "cache_home": None, "download": False}
    monkeypatch.setenv("NPGAN_NO_DOWNLOAD", "0")
    monkeypatch.setenv("XDG_CACHE_HOME", "/cache")
    monkeypatch.setenv("NPGAN_DATA", "")
    assert settings.data_environment() == {"data": None, "cache_home": "/cache", "download": True}


def test_machine_records_versions_and_settings():
    import platform
    import numpy
    import npgan
    m = settings.machine()
    assert m["numpy"] == numpy.__version__ and m["npgan"] == npgan.__version__
    assert m["python"] == platform.python_version() and m["cores"] >= 1 and m["cpu"]
    with settings.override(kernels=False):
        assert settings.machine()["kernels"] is False
    assert {"OPENBLAS_NUM_THREADS", "OPENBLAS_CORETYPE", "blas"} <= set(m)
