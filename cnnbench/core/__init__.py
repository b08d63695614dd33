"""The core layer: errors and exit codes, the case spec, options, text and unit formatting, safe
writes, inert outputs, the environment and the allocator. Imports nothing else of cnnbench."""

VERSION = "0.1.0"  # cnnbench's version (pyproject.toml's); `cnnbench.__version__` is this
