"""A quick matrix from the command line, without writing YAML (`bench.py run` with no SUITE):

    bench.py run --models resnet18,mobilenet_v2 --batch-sizes 1,8 --backends eager,onnxrt

The flags build a suite mapping (the suite schema, validated by the same code as a file); it is
written beside the results file (`<out>.suite.yaml`) so the results name a file that reproduces
them, and `--print-suite` prints it and runs nothing. Not a command module (no `run`).
"""

from __future__ import annotations

import argparse
from typing import Any

from cnnbench.core.errors import UserError

__all__ = ["QUICK_NAME", "add_quick_arguments", "wants_quick_matrix", "quick_suite", "suite_yaml", "split_list"]

QUICK_NAME = "quick"
_QUICK_ONLY = (("batch_sizes", "--batch-sizes"), ("precisions", "--precisions"), ("input_size", "--input-size"))


def add_quick_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--batch-sizes", metavar="N,N", help="without SUITE: the quick matrix's batch sizes (default 1)")
    p.add_argument("--precisions", metavar="P,P", help="without SUITE: the quick matrix's precisions (default fp32)")
    p.add_argument("--input-size", metavar="SIZE",
                   help="without SUITE: the input size, as in a suite (224, 3x224x224; default: each model's own)")  # fmt: skip
    p.add_argument("--print-suite", action="store_true",
                   help="print the suite a quick matrix implies (YAML, ready to save and edit), run nothing")  # fmt: skip


def split_list(values: list[str] | str | None) -> list[str]:
    """"a,b" and repeated flags alike: ["a", "b"]; blanks dropped."""
    if values is None:
        return []
    items = [values] if isinstance(values, str) else values
    return [part.strip() for item in items for part in str(item).split(",") if part.strip()]


def wants_quick_matrix(args: argparse.Namespace) -> bool:
    """No SUITE and a matrix flag given. A matrix flag with a SUITE is refused (it would be ignored)."""
    given = [flag for attr, flag in _QUICK_ONLY if getattr(args, attr, None) is not None]
    if args.suite is not None:
        if given:
            raise UserError(f"{given[0]} builds a quick matrix without a SUITE; with {args.suite!r} edit the suite instead")
        return False
    return bool(given or args.models)


def _number(text: str, flag: str) -> Any:
    try:
        return int(text)
    except ValueError:
        return text  # the suite validator names what is wrong with it, as for a file


def quick_suite(args: argparse.Namespace) -> dict[str, Any]:
    """The suite mapping the flags imply (validated later, by the suite schema, as a file is)."""
    models = split_list(args.models)
    if not models:
        raise UserError("a quick matrix needs --models (e.g. --models resnet18,mobilenet_v2), or give a SUITE file")
    suite: dict[str, Any] = {
        "name": QUICK_NAME,
        "description": "a quick matrix from the command line (bench.py run --models ...)",
        "models": models,
        "batch_sizes": [_number(b, "--batch-sizes") for b in split_list(args.batch_sizes)] or [1],
        "backends": split_list(args.backends) or ["eager"],
        "precisions": split_list(args.precisions) or ["fp32"],
        "device": "auto",
    }
    if args.input_size is not None:
        text = str(args.input_size).strip()
        suite["input_size"] = int(text) if text.isdigit() else text
    return suite


def suite_yaml(suite: dict[str, Any]) -> str:
    import yaml

    return yaml.safe_dump(suite, sort_keys=False, default_flow_style=None)
