#!/usr/bin/env python3
"""cnnbench entry point: `python bench.py --help`."""

import sys

from cnnbench.cli import entry

if __name__ == "__main__":
    sys.exit(entry())
