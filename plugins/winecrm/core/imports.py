"""Heavy imports done without the cyclic garbage collector.

Importing a library the size of Great Expectations or scikit-learn creates hundreds of thousands
of objects (classes, functions, dicts), which trigger collection after collection of a heap that
only grows: GX's import took 1.19 s with the collector on and 0.89 s with it paused. Nothing it
creates is garbage worth collecting meanwhile; the collector resumes afterwards.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def collector_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector for the block; it resumes after it if it was running
    before (two threads pausing it at once: it resumes when the one that found it running ends)."""
    was_running = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_running:
            gc.enable()
