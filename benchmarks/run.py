"""Run the CPU benchmarks and write them to benchmarks/results/cpu-<date>.txt (+ .json).

    python benchmarks/run.py [--steps 200] [--max-s 30] [--threads N] [--impls ...]
                             [--parzen-test 2000] [--no-parzen] [--no-memory] [--out DIR]

Sections, all measured in this one run (ratios are taken between rows of the
same run: on a shared machine only they mean anything):

  machine    CPU, cores, load average, versions, the BLAS libraries as
             threadpoolctl sees them (kernel = the core type OpenBLAS chose),
             and OPENBLAS_CORETYPE: whether it is set, and what it does to a
             NumPy sgemm (measured in subprocesses with and without it)
  train      the paper's GAN step and G forward for 10,000 samples: npgan
             (kernels with split GEMMs; the same with MKL's sgemm where
             installed; kernels with BLAS-threaded GEMMs; the
             reference path; optionally the public-API step) vs PyTorch vs JAX
             (bench_train.py), with the peak RSS of each (training, and G
             forward) in a fresh process. 200 steps each, but a row whose steps have taken --max-s
             seconds stops at 50 or more (a loaded machine makes the slow rows
             crawl); every row shows its count.
  gemm       the step's 27 GEMMs alone (bench_gemm.py): npgan's kernels with SciPy's
             BLAS and with MKL, NumPy's matmul, torch.mm: how much of a step
             the BLAS takes, and how fast each library runs these shapes here
  parzen     the rows of bench_parzen.run() (if that script exists), at a
             smaller test size by default to keep the whole run near 5 minutes
"""
import argparse
import datetime
import importlib.util
import io
import json
import os
import platform
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
for p in (ROOT, HERE):
    if p not in sys.path:
        sys.path.insert(0, p)

import bench_train  # noqa: E402


def _version(dist):
    from importlib import metadata
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _cpu_model():
    """'<model name> (family F model M, AVX-512)': the name alone does not tell
    these VMs' Xeons apart."""
    info = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if ":" in line:
                    key, value = (t.strip() for t in line.split(":", 1))
                    info.setdefault(key, value)
    except OSError:
        pass
    if "model name" not in info:
        return platform.processor() or platform.machine()
    flags = info.get("flags", "").split()
    simd = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "no AVX2"
    return f"{info['model name']} (family {info.get('cpu family', '?')} model {info.get('model', '?')}, {simd})"


_SGEMM_PROBE = r"""
import json, time, numpy as np
from threadpoolctl import threadpool_info, threadpool_limits
a = np.random.default_rng(0).random((100, 1200), dtype=np.float32)
b = np.random.default_rng(1).random((1200, 1200), dtype=np.float32)
c = np.empty((100, 1200), np.float32)
with threadpool_limits(1):
    best = min((lambda t: (np.matmul(a, b, out=c), time.perf_counter() - t)[1])(time.perf_counter())
               for _ in range(60))
info = [i for i in threadpool_info() if i.get("user_api") == "blas"]
print(json.dumps({"gflops": 2 * 100 * 1200 * 1200 / best / 1e9,
                  "kernel": info[0].get("architecture") if info else None}))
"""


def _sgemm_probe(env):
    r = subprocess.run([sys.executable, "-c", _SGEMM_PROBE], env=env, capture_output=True,
                       text=True, timeout=120)
    try:
        return json.loads(r.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        return {"error": r.stderr.strip()[-300:]}


def openblas_coretype():
    """OPENBLAS_* variables, and a 1-thread NumPy sgemm (100x1200 @ 1200x1200)
    with the environment as it is and, if OPENBLAS_CORETYPE is set, without it."""
    found = {k: v for k, v in os.environ.items() if k.startswith("OPENBLAS")}
    out = {"env": found, "as_is": _sgemm_probe(dict(os.environ))}
    if "OPENBLAS_CORETYPE" in os.environ:
        env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_CORETYPE"}
        out["without_OPENBLAS_CORETYPE"] = _sgemm_probe(env)
    return out


def machine():
    """A dict describing this machine and the software (nothing heavy imported)."""
    import numpy
    from npgan import _kernels
    _kernels.load("gemm")                   # so that SciPy's BLAS is loaded and shows below
    d = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "cpu": _cpu_model(), "cpus": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "platform": platform.platform(), "python": platform.python_version(),
        "versions": {k: _version(k) for k in ("numpy", "scipy", "Cython", "torch", "jax", "jaxlib",
                                              "threadpoolctl")},
        "npgan_kernels": _kernels.available(), "npgan_gemm": _kernels.blas(),
        "gemm_split_threads": (_kernels.load("pool").split_threads()
                               if _kernels.load("pool") else None),
        "thread_env": {k: os.environ[k] for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                                  "MKL_NUM_THREADS", "NPGAN_NO_KERNELS",
                                                  "NPGAN_GEMM_SPLIT") if k in os.environ},
    }
    try:
        from threadpoolctl import threadpool_info
        d["blas"] = [{k: i.get(k) for k in ("filepath", "internal_api", "version", "architecture",
                                            "num_threads", "threading_layer")}
                     for i in threadpool_info()]
    except ImportError:
        d["blas"] = "threadpoolctl not installed"
    d["numpy_blas_config"] = _numpy_blas(numpy)
    if importlib.util.find_spec("threadpoolctl"):
        d["openblas_coretype"] = openblas_coretype()
    return d


def _numpy_blas(numpy):
    try:
        cfg = numpy.show_config(mode="dicts")
        b = cfg["Build Dependencies"]["blas"]
        return f"{b.get('name')} {b.get('version')}"
    except Exception:                    # older NumPy: no dict mode
        return None


def machine_text(m):
    lines = [f"date {m['date']}; {m['cpu']}, {m['cpus']} CPUs ({m['usable_cpus']} usable); "
             f"load average {' / '.join(f'{v:.1f}' for v in m['load_average'] or ())}",
             f"{m['platform']}; Python {m['python']}; " + ", ".join(
                 f"{k} {v}" for k, v in m["versions"].items() if v),
             f"npgan compiled kernels: {m['npgan_kernels']}; GEMM {m.get('npgan_gemm')}; split over "
             f"{m['gemm_split_threads']} threads; thread variables: {m['thread_env'] or 'none set'}",
             f"NumPy built with: {m['numpy_blas_config']}"]
    if isinstance(m["blas"], list):
        for b in m["blas"]:
            lines.append(f"  BLAS {b['internal_api']} {b['version']} kernel {b['architecture']}, "
                         f"{b['num_threads']} threads ({b['threading_layer']}): {b['filepath']}")
    ct = m.get("openblas_coretype")
    if ct:
        env = ", ".join(f"{k}={v}" for k, v in ct["env"].items()) or "no OPENBLAS_* variable set"
        lines.append(f"OpenBLAS environment: {env}")
        for key, label in (("as_is", "as set"), ("without_OPENBLAS_CORETYPE", "OPENBLAS_CORETYPE unset")):
            if key in ct:
                p = ct[key]
                lines.append(f"  NumPy sgemm 100x1200x1200, 1 thread, {label}: " + (
                    f"{p['gflops']:.0f} GFLOP/s, kernel {p['kernel']}" if "gflops" in p else
                    f"failed: {p.get('error')}"))
    return "\n".join(lines)


def parzen_section(n_test, n_samples, repeats, memory):
    """bench_parzen.run()'s rows and table, or (None, note) when it is missing."""
    path = os.path.join(HERE, "bench_parzen.py")
    if not os.path.exists(path):
        return None, "Parzen: skipped (benchmarks/bench_parzen.py not found)"
    try:
        import bench_parzen
        run = getattr(bench_parzen, "run")
    except Exception as e:
        return None, f"Parzen: skipped (bench_parzen has no usable run(): {type(e).__name__}: {e})"
    rows = run(n_samples=n_samples, n_test=n_test, repeats=repeats, memory=memory)
    report = getattr(bench_parzen, "report", None)
    text = report(rows, n_samples, n_test) if report else "\n".join(map(str, rows))
    return [r._asdict() if hasattr(r, "_asdict") else r for r in rows], text


def targets(res):
    """The issue's targets, checked on this run's medians (and minima)."""
    tr, gf = res["train"], res["gforward"]
    out = []

    def med(d, k):
        return float(sorted(d[k])[len(d[k]) // 2]) if d.get(k) else None

    def mn(d, k):
        return float(min(d[k])) if d.get(k) else None
    for row in ("npgan", "npgan-scipy", "npgan-mkl"):   # the default GEMM, SciPy's BLAS, MKL
        if med(tr, row) and med(tr, "torch"):
            r, rm = med(tr, row) / med(tr, "torch"), mn(tr, row) / mn(tr, "torch")
            out.append(f"train step {row} / torch = {r:.2f} (min {rm:.2f}): floor <= 0.8 "
                       f"{'met' if r <= 0.8 else 'NOT met'}, stretch <= 0.6 "
                       f"{'met' if r <= 0.6 else 'not met'}")
        if med(tr, row) and med(tr, "jax"):
            r, rm = med(tr, row) / med(tr, "jax"), mn(tr, row) / mn(tr, "jax")
            out.append(f"train step {row} / jax = {r:.2f} (min {rm:.2f}): match (<= 1.0) "
                       f"{'met' if r <= 1.0 else 'not met'}")
        if med(gf, row) and med(gf, "torch"):
            r, rm = med(gf, row) / med(gf, "torch"), mn(gf, row) / mn(gf, "torch")
            out.append(f"G forward 10k {row} / torch = {r:.2f} (min {rm:.2f}): <= 1.0 "
                       f"{'met' if r <= 1.0 else 'NOT met'}")
    mem = res.get("memory") or {}
    if mem.get("npgan") and mem.get("torch") and mem["npgan"]["train"] and mem["torch"]["train"]:
        a, b = mem["npgan"]["train"][1], mem["torch"]["train"][1]
        out.append(f"training peak RSS npgan {a:.0f} MiB vs torch {b:.0f} MiB: <= torch "
                   f"{'met' if a <= b else 'NOT met'}")
    if mem.get("npgan") and mem.get("torch") and mem["npgan"].get("gforward") and mem["torch"].get("gforward"):
        a, b = mem["npgan"]["gforward"][1], mem["torch"]["gforward"][1]
        out.append(f"G forward 10k peak RSS npgan {a:.0f} MiB vs torch {b:.0f} MiB (no target)")
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=200, help="training steps per implementation")
    p.add_argument("--gf-reps", type=int, default=9, help="G forward repetitions")
    p.add_argument("--max-s", type=float, default=30.0,
                   help="seconds of training steps after which a row stops (once it has 50)")
    p.add_argument("--threads", type=int, default=None, help="default: all CPUs")
    p.add_argument("--impls", default=",".join(bench_train.DEFAULT_IMPLS),
                   help=f"of {','.join(bench_train.IMPLS)}")
    p.add_argument("--parzen-test", type=int, default=2000, help="Parzen test points (10000: the full size)")
    p.add_argument("--parzen-samples", type=int, default=10000)
    p.add_argument("--no-parzen", action="store_true")
    p.add_argument("--no-gemm", action="store_true", help="skip the step's GEMMs alone (bench_gemm.py)")
    p.add_argument("--no-memory", action="store_true")
    p.add_argument("--parzen-memory", action="store_true", help="peak RSS of the Parzen rows too")
    p.add_argument("--out", default=os.path.join(HERE, "results"))
    a = p.parse_args(argv)

    t0 = time.time()
    m = machine()
    out = io.StringIO()

    def say(text=""):
        print(text)
        out.write(text + "\n")
    say(f"$ python benchmarks/run.py {' '.join(argv if argv is not None else sys.argv[1:])}".rstrip())
    say("Machine")
    say(machine_text(m))
    say()
    res = bench_train.run(steps=a.steps, gf_reps=a.gf_reps, threads=a.threads,
                          impls=a.impls.split(","), memory=False if a.no_memory else "all",
                          max_s=a.max_s)
    say(bench_train.report(res))
    say()
    say("Targets (issue): " + ("; ".join(targets(res)) or "not checkable (rows missing)"))
    if not a.no_gemm:
        say()
        r = subprocess.run([sys.executable, os.path.join(HERE, "bench_gemm.py")]
                           + ([] if a.threads is None else ["--threads", str(a.threads)]),
                           capture_output=True, text=True)
        say(r.stdout.strip() if r.returncode == 0 else f"GEMM section failed: {r.stderr[-800:]}")
    parzen_rows, parzen_note = None, None
    if not a.no_parzen:
        say()
        parzen_rows, parzen_text = parzen_section(a.parzen_test, a.parzen_samples, 2,
                                                  a.parzen_memory)
        parzen_note = parzen_text if parzen_rows is None else None
        say(parzen_text)
    m["load_average_end"] = os.getloadavg() if hasattr(os, "getloadavg") else None
    say()
    say(f"load average at the end {' / '.join(f'{v:.1f}' for v in m['load_average_end'] or ())}; "
        f"total {time.time() - t0:.0f} s")

    os.makedirs(a.out, exist_ok=True)
    stem = os.path.join(a.out, f"cpu-{datetime.date.today().isoformat()}"
                        + ("" if a.threads is None else f"-{a.threads}thread"))
    base, i = stem, 2
    while os.path.exists(stem + ".txt"):         # an earlier run of the same day stays
        stem, i = f"{base}-{i}", i + 1
    with open(stem + ".txt", "w") as f:
        f.write(out.getvalue())
    with open(stem + ".json", "w") as f:
        json.dump({"machine": m, "train": res, "targets": targets(res),
                   "parzen": parzen_rows, "parzen_note": parzen_note}, f, indent=1)
    print(f"wrote {stem}.txt and .json")


if __name__ == "__main__":
    main()
