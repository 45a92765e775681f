"""``srquant bench CONFIG``: run or resume a sweep (or ``--estimate`` its cost), print its tables, optionally write
BENCHMARKS.md; ``srquant bench compare RESULTS...``: margins over baselines."""
from __future__ import annotations

import shlex
import time
from pathlib import Path

from ..bench import SweepConfig, expand, inline_executor, load_run, local_executor, ray_executor, run_sweep
from ..bench.compare import compare_table
from ..bench.estimate import estimate_sweep
from ..bench.runner import pending
from ..report import write_benchmarks_md
from ..results import read_results
from ..validate import check_data_folders, check_image_folder, check_input_file, check_output_dir, check_output_file


def add_commands(sub) -> None:
    p = sub.add_parser("bench", help="run a sweep (models x methods x bits x datasets) from a YAML/TOML config")
    p.add_argument("config", help="sweep config file")
    p.add_argument("--out", help="output folder (default runs/bench/<name>); finished cells are cached there")
    p.add_argument("--executor", choices=["local", "inline", "ray"], default="local", help="local processes, this process, or Ray")
    p.add_argument("--workers", type=int, default=1, help="local worker processes")
    p.add_argument("--ray-address", help="Ray cluster address (default: a local instance)")
    p.add_argument("--models", help="only these models of the config (comma list of labels, e.g. imdn_x4,pan_x4)")
    p.add_argument("--methods", help="only these method labels of the config (comma list)")
    p.add_argument("--bits", help="only the bit widths with these weight bits (comma list, e.g. 4 or 8,6)")
    p.add_argument("--retry-failed", action="store_true", help="run cells cached as failed again")
    p.add_argument("--markdown", help="also write this Markdown file (e.g. BENCHMARKS.md) with plots beside it")
    p.add_argument("--plots", help="folder for the Markdown's PNG plots (default: benchmarks/plots beside it)")
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--estimate", action="store_true",
                   help="run nothing: estimate the sweep's CPU time from short measurements on Set5 (see --set5)")
    p.add_argument("--set5", default="../shared/data/benchmarks/Set5", help="with --estimate: the Set5 folder")
    p.set_defaults(func=_cmd_bench)
    _add_compare(sub)


COMPARE = "bench compare"  # `srquant bench compare ...`: main() joins the two words into this verb


def _add_compare(sub) -> None:
    p = sub.add_parser(COMPARE, help="margins of some methods over the best of some baselines, from sweep results")
    p.add_argument("results", nargs="+", help="a sweep's results.json (or several: a later file's record wins)")
    p.add_argument("--methods", required=True, help="comma list of method labels to compare")
    p.add_argument("--against", required=True, help="comma list of baseline method labels")
    p.add_argument("--reference", default="Set5", help="dataset for the loss against FP32")
    p.set_defaults(func=_cmd_compare)


def _cmd_compare(args) -> None:
    for path in args.results:
        check_input_file(path, "results file")
    records = [r for path in args.results for r in read_results(path)]
    print(compare_table(records, args.methods.split(","), args.against.split(","), args.reference), end="")


def _command(args) -> str:
    """The command line that reproduces this run's Markdown (flags at their defaults left out)."""
    parts = ["srquant", "bench", args.config]
    for flag, value, default in (("--models", args.models, None), ("--methods", args.methods, None),
                                 ("--bits", args.bits, None),
                                 ("--out", args.out, None), ("--executor", args.executor, "local"),
                                 ("--workers", args.workers, 1), ("--markdown", args.markdown, None),
                                 ("--plots", args.plots, None)):
        if value != default:
            parts += [flag, str(value)]
    return shlex.join(parts)


def _labels(value: str | None) -> list[str] | None:
    return [x for x in value.split(",") if x] if value else None


def _cmd_bench(args) -> None:
    widths = [int(w) for w in _labels(args.bits)] if args.bits else None
    config = SweepConfig.from_file(args.config).subset(_labels(args.models), _labels(args.methods), widths)
    if args.estimate:
        check_data_folders([args.set5], what="--set5 folder")
        estimate_sweep(config, args.set5)
        return
    out = check_output_dir(args.out or Path("runs") / "bench" / config.name, "--out")
    check_data_folders(config.datasets, what=f"dataset folder of {args.config}")
    if config.calib.folder is not None:
        check_image_folder(config.calib.folder, f"calibration folder of {args.config}")
    if args.markdown:
        check_output_file(args.markdown, "--markdown")
    executors = {"local": lambda: local_executor(args.workers), "inline": inline_executor, "ray": lambda: ray_executor(args.ray_address)}
    computed = len(pending(expand(config), out / "cells", args.retry_failed))
    start = time.perf_counter()
    run_sweep(config, out, executors[args.executor](), progress=not args.quiet, retry_failed=args.retry_failed)
    wall = time.perf_counter() - start
    print((out / "tables.md").read_text(), end="")
    print(f"wrote {out}/results.json, results.csv, tables.md ({computed} cells computed in {wall / 60:.1f} min)")
    if args.markdown:
        plots = Path(args.plots) if args.plots else Path(args.markdown).parent / "benchmarks" / "plots"
        write_benchmarks_md(load_run(out), args.markdown, plots, _command(args), computed, wall)
        print(f"wrote {args.markdown} (plots in {plots})")
