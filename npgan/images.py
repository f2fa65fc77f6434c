"""Image grids of samples written as PNG (needs Pillow, the ``examples`` extra)."""
import numpy  # host-side: the canvas

from . import files

__all__ = ["save_grid"]


def save_grid(images, path, rows, cols=None, scale=2, side=28):
    """Write the first rows x cols of ``images`` ((N, side*side) or (N, side, side),
    values in [0, 1], clipped) as one PNG, row by row, 1-px white lines between
    them, each pixel ``scale`` x ``scale``: a (rows*(side+1)+1) x (cols*(side+1)+1)
    grid before scaling. cols defaults to rows. Written atomically."""
    from PIL import Image
    cols = rows if cols is None else cols
    n, cell = rows * cols, side + 1
    images = numpy.asarray(images)
    if len(images) < n:
        raise ValueError(f"save_grid: {rows} x {cols} cells need {n} images, got {len(images)}")
    s = numpy.clip(images[:n].reshape(rows, cols, side, side), 0, 1)
    canvas = numpy.ones((rows * cell + 1, cols * cell + 1), dtype=numpy.float32)
    for i in range(rows):
        for j in range(cols):
            canvas[1 + cell * i:cell * (i + 1), 1 + cell * j:cell * (j + 1)] = s[i, j]
    img = Image.fromarray((canvas * 255).astype(numpy.uint8)).resize(
        (canvas.shape[1] * scale, canvas.shape[0] * scale), Image.NEAREST)
    with files.atomic_write(path) as f:
        img.save(f, format="PNG")
    return path
