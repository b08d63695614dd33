#!/usr/bin/env python3
"""cnnbench entry point: `python bench.py --help`."""

import sys

from cnnbench.cli import main

if __name__ == "__main__":
    sys.exit(main())
