"""``srquant models``: the registered architectures."""
from __future__ import annotations

import argparse

from ..models import get_spec, list_models


def add_commands(sub) -> None:
    p = sub.add_parser("models", help="list the registered architectures")
    p.add_argument("filter", nargs="?", default="*", help="glob pattern on model names")
    p.set_defaults(func=cmd_models)


def cmd_models(args: argparse.Namespace) -> None:
    for name in list_models(args.filter):
        spec = get_spec(name)
        embedded = ",".join(f"x{s}" for s in spec.default_weights) or "-"
        scales = ",".join(f"x{s}" for s in spec.scales)
        print(f"{name:16s} scales {scales:10s} range [0,{spec.input_range:g}] {spec.color:3s} embedded {embedded:8s} {spec.description}")
