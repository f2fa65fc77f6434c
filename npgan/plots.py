"""The examples' figures: a command line with --out and --no-plot, pyplot
off-screen, and one way to save (needs matplotlib, the ``examples`` extra)."""
import argparse
import os

from . import files

__all__ = ["parser", "pyplot", "save"]


def parser(doc, out):
    """An ArgumentParser that shows ``doc`` as written, with --out DIR (default
    ``out``, normalised) and --no-plot."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=os.path.normpath(out), help="output directory")
    p.add_argument("--no-plot", action="store_true", help="print the numbers, draw nothing")
    return p


def pyplot():
    """``matplotlib.pyplot`` on the Agg backend (no display needed)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def save(fig, path, rect=None, dpi=110):
    """Lay ``fig`` out (``tight_layout(rect=rect)``), write it to ``path`` atomically
    (format from the extension, parent directory created), close it; returns path."""
    fig.tight_layout(rect=rect)
    files.save_figure(fig, path, dpi=dpi)
    pyplot().close(fig)
    return path
