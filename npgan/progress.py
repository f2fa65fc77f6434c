"""Progress of long work, reported one way across the package.

:class:`Progress`: a loop over a known number of units (rows, batches). A
tqdm bar on stderr where tqdm is installed, else a plain line on stderr; or,
for code that reports to a log, lines handed to a callable.
:class:`Log`: timestamped lines ("[  12.3s] message") handed to a callable.

Used by the metrics (Parzen window, nearest neighbours, the suite) and the
sweep driver.
"""
import sys
import time

__all__ = ["Progress", "Log"]


class Progress:
    """Progress of a loop over ``total`` units.

    report: False or None: silent; True: a tqdm bar on stderr when tqdm is
    installed, else one line on stderr, rewritten in place at most every
    ``every`` seconds and ended at the total ("parzen: 300/1000 rows (2.1 s)");
    a callable (a log, e.g. ``print``): lines "DESC:  30% (2 s)" handed to
    it at each further tenth of the total and at the end. Call
    :meth:`update` with the units done since the last call, :meth:`close`
    at the end (or use it as a context manager)."""

    def __init__(self, total, desc, report=True, unit="rows", every=0.5):
        self.total, self.desc, self.unit, self.every = total, desc, unit, every
        self.done, self.bar, self.last, self.next_report = 0, None, 0.0, 0.1
        self.t0 = time.perf_counter()
        self.out = report if callable(report) else None
        self.enabled = bool(report)
        if self.enabled and self.out is None:
            try:
                from tqdm.auto import tqdm
                self.bar = tqdm(total=total, desc=desc, unit=unit, leave=False, file=sys.stderr)
            except ImportError:
                pass

    def update(self, n):
        self.done += n
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.update(n)
        elif self.out is not None:
            frac = self.done / max(self.total, 1)
            if frac >= self.next_report or frac >= 1:
                self.out(f"{self.desc}: {frac:4.0%} ({time.perf_counter() - self.t0:.0f} s)")
                self.next_report = frac + 0.1
        else:
            now = time.perf_counter()
            if now - self.last > self.every or self.done >= self.total:
                self.last = now
                print(f"\r{self.desc}: {self.done}/{self.total} {self.unit} ({now - self.t0:.1f} s)",
                      end="\n" if self.done >= self.total else "", file=sys.stderr, flush=True)

    def close(self):
        if self.bar is not None:
            self.bar.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Log:
    """Lines "STAMP message" handed to ``out`` (a callable taking a str; None:
    nothing), STAMP the seconds since ``t0`` (default: now) through ``stamp``."""

    def __init__(self, out, t0=None, stamp="[{:7.1f}s] "):
        self.out, self.stamp = out, stamp
        self.t0 = time.time() if t0 is None else t0

    def __call__(self, msg):
        if self.out is not None:
            self.out(self.stamp.format(time.time() - self.t0) + msg)
