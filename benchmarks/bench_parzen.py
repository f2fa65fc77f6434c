"""Parzen-window benchmark: npgan's fused kernel against a bare float32 GEMM.

A Parzen evaluation of N test points under M samples in D dimensions is one
(N x D) @ (D x M) GEMM plus a log-sum-exp over the N x M distances, so the
honest yardstick is the bare GEMM of that shape (NumPy matmul into a
preallocated float32 output, BLAS threads as configured). Rows:

  float32 GEMM (N x D @ D x M)     the yardstick
  npgan kernel, 1 sigma            parzen.log_likelihood, compiled path
  npgan kernel, 10-sigma sweep     the paper's grid, one pass over distances
  npgan NumPy path, 1 sigma        parzen.log_likelihood(use_kernel=False)
  torch addmm+logsumexp, 1 / 10    blocked, no cdist, same thread count

Times are the best of ``repeats`` runs, interleaved so that load from other
processes hits every row alike (rows slower than ``slow_s`` are run once);
cpu_seconds is the process CPU time (all threads) of that best run, a check
when the machine is shared: a load average near the core count inflates every
wall time. Peak extra memory of each row is measured in a
fresh subprocess (peak RSS after the data is made, minus RSS before: BLAS and
torch allocations are invisible to tracemalloc).

    python benchmarks/bench_parzen.py [--n-samples 10000] [--n-test 10000] [--repeats 3]
                                      [--data random|mnist] [--no-memory] [--no-torch] [--json FILE]
"""
import argparse
import collections
import json
import os
import resource
import subprocess
import sys
import time

import numpy

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from npgan import _kernels  # noqa: E402
from npgan.metrics import parzen  # noqa: E402

Row = collections.namedtuple("Row", "name seconds ratio peak_mib cpu_seconds")
SIGMAS = numpy.logspace(-1, 0, 10)
ONE_SIGMA = float(SIGMAS[3])      # 0.215, what the paper's grid picks for a GAN
DIM = 784


def make_data(n_samples, n_test, data="random", seed=0):
    """(test points, samples), float32 (n, 784). ``random``: uniform [0, 1)
    (distances concentrate, so few blocks can be skipped: the hard case);
    ``mnist``: MNIST test images under training images (the real-data row)."""
    if data == "mnist":
        from npgan import datasets
        test, _ = datasets.load_mnist("test")
        train, _ = datasets.load_mnist("train_full")
        if n_test > len(test) or n_samples > len(train):
            raise ValueError(f"MNIST has {len(test)} test and {len(train)} training images")
        return test[:n_test], train[:n_samples]
    if data != "random":
        raise ValueError(f"data must be 'random' or 'mnist', not {data!r}")
    rng = numpy.random.default_rng(seed)
    return (rng.random((n_test, DIM), dtype=numpy.float32),
            rng.random((n_samples, DIM), dtype=numpy.float32))


def _threads():
    return parzen.usable_cores()


def torch_parzen(x, s, sigmas, block_x=1024, block_s=4096):
    """Log p under a Parzen window in PyTorch: addmm for the distances, logsumexp
    per block (float32) combined across sample blocks in float64. (K, N)."""
    import torch
    x, s = torch.from_numpy(x), torch.from_numpy(s)
    sig = torch.as_tensor(numpy.atleast_1d(sigmas), dtype=torch.float64)
    ss = (s.double() ** 2).sum(1).float()
    out = torch.empty(len(sig), x.shape[0], dtype=torch.float64)
    for i0 in range(0, x.shape[0], block_x):
        xb = x[i0:i0 + block_x]
        xx = (xb.double() ** 2).sum(1).float()
        run = torch.full((len(sig), xb.shape[0]), -torch.inf, dtype=torch.float64)
        for j0 in range(0, s.shape[0], block_s):
            sb = s[j0:j0 + block_s]
            d = torch.addmm(xx[:, None] + ss[None, j0:j0 + block_s], xb, sb.T,
                            beta=1, alpha=-2).clamp_(min=0)
            for k in range(len(sig)):
                lse = torch.logsumexp(d * float(-0.5 / sig[k] ** 2), dim=1)
                run[k] = torch.logaddexp(run[k], lse.double())
        out[:, i0:i0 + xb.shape[0]] = run
    const = numpy.log(s.shape[0]) + 0.5 * x.shape[1] * numpy.log(2 * numpy.pi * sig.numpy() ** 2)
    return out.numpy() - const[:, None]


def _cases(x, s, torch_rows=True):
    """name -> zero-argument callable (data bound), and a note per skipped row."""
    cases, notes = {}, []
    c_out = numpy.empty((x.shape[0], s.shape[0]), numpy.float32)
    cases["gemm"] = lambda: numpy.matmul(x, s.T, out=c_out)
    if _kernels.load("parzen_kernel") is not None:
        cases["kernel_1"] = lambda: parzen.log_likelihood(x, s, ONE_SIGMA, use_kernel=True)
        cases["kernel_10"] = lambda: parzen.log_likelihood(x, s, SIGMAS, use_kernel=True)
    else:
        notes.append("npgan kernel: skipped (parzen_kernel not built: "
                     "python setup.py build_ext --inplace)")
    cases["numpy_1"] = lambda: parzen.log_likelihood(x, s, ONE_SIGMA, use_kernel=False)
    if not torch_rows:
        return cases, notes
    try:
        import torch
        torch.set_num_threads(_threads())
        cases["torch_1"] = lambda: torch_parzen(x, s, ONE_SIGMA)
        cases["torch_10"] = lambda: torch_parzen(x, s, SIGMAS)
    except Exception as e:       # ImportError, or a broken install
        notes.append(f"torch: skipped ({type(e).__name__}: {e})")
    return cases, notes


NAMES = {
    "gemm": "float32 GEMM {n}x{d} @ {d}x{m} (numpy)",
    "kernel_1": "npgan kernel, 1 sigma",
    "kernel_10": "npgan kernel, 10-sigma sweep",
    "numpy_1": "npgan NumPy path, 1 sigma",
    "torch_1": "torch addmm+logsumexp, 1 sigma",
    "torch_10": "torch addmm+logsumexp, 10 sigmas",
}


def _rss_kib(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def _child(case, n_samples, n_test, data):
    """Run one case once in this (fresh) process; print its peak extra RSS in MiB."""
    x, s = make_data(n_samples, n_test, data)
    cases, _ = _cases(x, s, torch_rows=case.startswith("torch"))
    try:                                    # Linux: reset the high-water mark
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        before = _rss_kib("VmRSS")
        cases[case]()
        peak = _rss_kib("VmHWM")
    except OSError:                         # elsewhere: ru_maxrss (KiB on Linux, bytes on macOS)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        cases[case]()
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        if sys.platform == "darwin":
            before, peak = before / 1024, peak / 1024
    print(json.dumps({"peak_mib": (peak - before) / 1024}))


def peak_memory(case, n_samples, n_test, data="random"):
    """Peak extra RSS (MiB) of one case, measured in a subprocess; None on failure."""
    r = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", case,
                        "--n-samples", str(n_samples), "--n-test", str(n_test),
                        "--data", data],
                       capture_output=True, text=True, cwd=ROOT)
    try:
        return json.loads(r.stdout.strip().splitlines()[-1])["peak_mib"]
    except (IndexError, ValueError, KeyError):
        print(f"memory of {case}: child failed: {r.stderr[-500:]}", file=sys.stderr)
        return None


def _cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def run(n_samples=10000, n_test=10000, repeats=3, memory=True, verbose=True, slow_s=5.0,
        data="random", torch=True):
    """Time every row; -> list of Row(name, seconds, ratio to the GEMM,
    peak_mib, cpu_seconds).

    Skipped rows (kernel not built, torch missing) are left out and reported on
    stderr. peak_mib is None when ``memory`` is False (and for the torch sweep,
    whose memory is that of the torch 1-sigma row)."""
    x, s = make_data(n_samples, n_test, data)
    cases, notes = _cases(x, s, torch_rows=torch)
    for note in notes:
        print("note:", note, file=sys.stderr)
    for k, f in cases.items():        # warm up: threads, page faults, first-call costs
        if k in ("gemm", "kernel_1", "kernel_10"):
            f()
    best = {k: float("inf") for k in cases}
    cpu = dict(best)
    for r in range(repeats):
        for k, f in cases.items():
            if r and best[k] > slow_s:
                continue
            c0, t0 = _cpu(), time.perf_counter()
            f()
            t, c = time.perf_counter() - t0, _cpu() - c0
            if t < best[k]:
                best[k], cpu[k] = t, c
        if verbose:
            print(f"repeat {r + 1}/{repeats}: " + ", ".join(f"{k} {v:.3f}s" for k, v in best.items()),
                  file=sys.stderr)
    rows = []
    for k in cases:
        mib = peak_memory(k, n_samples, n_test, data) if memory and k != "torch_10" else None
        rows.append(Row(NAMES[k].format(n=n_test, m=n_samples, d=DIM), best[k],
                        best[k] / best["gemm"], mib, cpu[k]))
    return rows


def report(rows, n_samples, n_test, data="random"):
    load = " / ".join(f"{v:.1f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    lines = [f"Parzen window, {n_test} test x {n_samples} samples x {DIM}-d ({data}), float32, "
             f"{_threads()} threads, {os.cpu_count()} CPUs, load average {load}", "",
             f"| {'row':44s} | seconds | x GEMM | CPU s | peak extra MiB |",
             f"|{'-' * 46}|---------|--------|-------|----------------|"]
    for r in rows:
        mib = "" if r.peak_mib is None else f"{r.peak_mib:.0f}"
        lines.append(f"| {r.name:44s} | {r.seconds:7.3f} | {r.ratio:6.2f} | {r.cpu_seconds:5.2f} "
                     f"| {mib:>14s} |")
    by = {r.name: r.seconds for r in rows}
    k1, k10 = by.get(NAMES["kernel_1"]), by.get(NAMES["kernel_10"])
    if k1 and k10:
        lines += ["", f"10-sigma sweep / 1 sigma (kernel): {k10 / k1:.2f}"]
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n-samples", type=int, default=10000)
    p.add_argument("--n-test", type=int, default=10000)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--data", choices=["random", "mnist"], default="random")
    p.add_argument("--no-memory", action="store_true")
    p.add_argument("--no-torch", action="store_true")
    p.add_argument("--json", help="also write the rows to this JSON file")
    p.add_argument("--child", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.child:
        return _child(a.child, a.n_samples, a.n_test, a.data)
    rows = run(a.n_samples, a.n_test, a.repeats, memory=not a.no_memory, data=a.data,
               torch=not a.no_torch)
    print(report(rows, a.n_samples, a.n_test, a.data))
    if a.json:
        with open(a.json, "w") as f:
            json.dump([r._asdict() for r in rows], f, indent=1)


if __name__ == "__main__":
    main()
