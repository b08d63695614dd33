"""Subcommands of `bench.py`; see `cnnbench.cli` for the protocol each module follows."""
