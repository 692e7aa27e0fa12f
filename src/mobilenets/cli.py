"""``mobilenets`` command line: a thin layer over the Python API (one function per verb)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

from .textfmt import millions, render_table

Handler = Callable[[argparse.Namespace], int | None]


class CLIError(Exception):
    """An error worth one line to the user (no traceback)."""


def _print_json(obj: Any) -> None:
    print(json.dumps(obj, indent=None, default=str))


# ------------------------------------------------------------------------------- cost verbs


def cmd_models(args: argparse.Namespace) -> None:
    from .cost import profile
    from .registry import list_models

    rows = []
    for name in list_models(args.pattern):
        p = profile(name)
        rows.append({"model": name, "params": p.params, "trainable_params": p.trainable_params, "madds": p.madds,
                     "input_size": p.input_size[0]})
    if args.json:
        _print_json(rows)
        return
    print(render_table(
        ["model", "input", "params (paper)", "params (torch)", "MAdds"],
        [[r["model"], r["input_size"], f"{r['params']:,}", f"{r['trainable_params']:,}", millions(r["madds"])] for r in rows],
    ))
    print(f"\n{len(rows)} models. Any width/resolution also works by name, e.g. 0.6-MobileNet-200. "
          "Params (paper) = conv + FC, no BN; params (torch) adds BN gamma/beta.")


def cmd_summary(args: argparse.Namespace) -> None:
    from .cost import profile

    p = profile(args.model, input_size=args.input_size)
    if args.json:
        _print_json(p.to_dict())
        return
    print(f"{p.name} at {p.input_size[0]}x{p.input_size[1]}\n")
    print(render_table(
        ["layer", "type", "input", "output", "params", "MAdds", "activations"],
        [[r.name, r.type, "x".join(map(str, r.input_shape)), "x".join(map(str, r.output_shape)),
          f"{r.params:,}", f"{r.madds:,}", f"{r.activations:,}"] for r in p.layers],
        align="llllrrr",
    ))
    print()
    print(render_table(
        ["type", "MAdds", "% MAdds", "params", "% params (no FC bias)"],
        [[t.type, f"{t.madds:,}", f"{t.madds_pct:.2f}", f"{t.params:,}", f"{t.weights_pct:.2f}"] for t in p.by_type],
    ))
    print(f"\nMAdds {p.madds:,} ({millions(p.madds)})  params {p.params:,} (conv + FC, no BN)  "
          f"trainable {p.trainable_params:,} (+BN gamma/beta)  BN buffers {p.bn_buffers:,}")


def cmd_paper(args: argparse.Namespace) -> None:
    from .paper import format_cell, paper_tables

    tables = paper_tables(args.family)
    if args.json:
        _print_json([t.to_dict() for t in tables])
        return
    mismatches = 0
    for t in tables:
        print(f"{t.title}\n  source: {t.source}")
        headers = ["", "accuracy"]
        for col in t.columns:
            headers += [f"{col} paper", f"{col} ours"]
        rows = []
        for r in t.rows:
            cells: list[str] = [r.label, r.accuracy]
            for col in t.columns:
                cells += list(format_cell(r.cells.get(col)))
            rows.append(cells + [r.note])
            mismatches += not r.match
        print(render_table(headers + ["note"], rows, align="ll" + "r" * 2 * len(t.columns) + "l"))
        print()
    print(f"* = differs from the printed value at its precision ({mismatches} rows; each carries a note). "
          "Ours: MAdds = conv + FC multiply-adds; params = conv + FC weights and bias, no BN.")


# ------------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mobilenets",
        description="MobileNet V1/V2: build, count, train, evaluate, convert, export and benchmark.",
    )
    parser.add_argument("--debug", action="store_true", help="show Python tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def verb(name: str, handler: Handler, help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        p.set_defaults(handler=handler)
        return p

    p = verb("models", cmd_models, "list registered models with params and MAdds")
    p.add_argument("pattern", nargs="?", help="shell pattern, e.g. '*V2-224'")
    p.add_argument("--json", action="store_true", help="print JSON")

    p = verb("summary", cmd_summary, "per-layer cost table of a model (from its spec, no forward pass)")
    p.add_argument("model", help="model name, e.g. 0.75-MobileNet-128")
    p.add_argument("--input-size", type=int, default=None, help="input resolution (default: the name's)")
    p.add_argument("--json", action="store_true", help="print JSON")

    p = verb("paper", cmd_paper, "reproduce the papers' cost tables side by side with ours")
    p.add_argument("family", choices=["v1", "v2"], help="which paper")
    p.add_argument("--json", action="store_true", help="print JSON")

    for register in _EXTRA_VERBS:
        register(verb)
    return parser


#: Verb registrars added by other modules of the CLI (kept in one list so the parser stays one place).
_EXTRA_VERBS: list[Callable[[Callable[..., argparse.ArgumentParser]], None]] = []


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        rc = args.handler(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (CLIError, ValueError, KeyError, FileNotFoundError, OSError, TypeError, RuntimeError) as e:
        if args.debug:
            raise
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"mobilenets {args.command}: error: {msg}", file=sys.stderr)
        return 2
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
