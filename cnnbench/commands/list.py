"""`bench.py list models|suites|backends`: what the registry and the project offer."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from cnnbench.backends.support import render_support
from cnnbench.core.environment import PROJECT_ROOT
from cnnbench.core.errors import UserError
from cnnbench.models.catalog import get_info, list_models, suggest

from cnnbench.backends.supportcache import cached_support

HELP = "list models (with an optional glob), suites, or backends (what runs on this machine, and why not)"
ORDER = 60


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("what", choices=("models", "suites", "backends"), help="what to list")
    p.add_argument("pattern", nargs="?", help="glob for models, e.g. 'resnet*', or timm's: 'timm:resnet*' (archs), 'timm:resnet18.*' (tags); quote it")
    p.add_argument("--details", action="store_true", help="models: show source, input size and classes")
    p.add_argument("--refresh", action="store_true",
                   help="backends: check again instead of the cached answer (kept per installed versions and GPUs)")  # fmt: skip


def run(args: argparse.Namespace) -> int:
    if args.what == "models":

        names = list_models(args.pattern)
        if not names and args.pattern:

            near = suggest(args.pattern.strip("*?"))
            hint = f" (did you mean: {', '.join(near)}?)" if near else ""
            raise UserError(f"no model matches {args.pattern!r}{hint}")
        for name in names:
            if args.details:
                info = get_info(name)  # a timm: name reads its pretrained config
                size = "x".join(map(str, info.input_size))
                print(f"{name:28s} {info.source:12s} {size:12s} {info.description}")
            else:
                print(name)
    elif args.what == "suites":

        for path in sorted(Path(PROJECT_ROOT, "suites").glob("*.yaml")):
            print(path.relative_to(PROJECT_ROOT))
    else:  # which backend x device x precision runs here, and why not (cnnbench.backends.support)
        rows, cached = cached_support(refresh=args.refresh, say=lambda line: print(line, file=sys.stderr, flush=True))
        for line in render_support(rows):
            print(line)
        if cached:
            print("(cached for these package versions and GPUs; --refresh checks again)", file=sys.stderr)
    return 0
