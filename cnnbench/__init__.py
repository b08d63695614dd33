"""cnnbench: a benchmarking and profiling harness for CNN architectures.

`import cnnbench` is light (no torch): the library's heavy parts import torch inside the
functions that need it, so the CLI answers instantly. Entry point: `cnnbench.cli.main`.
"""

from cnnbench.core import VERSION as __version__
__all__ = ["__version__"]
