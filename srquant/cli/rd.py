"""``srquant rd score | select | enhance``: representative-dataset curation on the command line."""
from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path

from ..rd.calibrate import model_variant
from ..rd.enhance import BlurConfig, enhance
from ..rd.images import load_rd, write_rd
from ..rd.outliers import OutlierConfig, rank, score_images, select_clean, select_good
from ..results import write_text_atomic


def add_commands(sub) -> None:
    """Register ``srquant rd`` and its subcommands on the CLI's subparsers."""
    rd = sub.add_parser("rd", help="representative-dataset curation for clip-free INT8 (score, select, enhance)")
    sub = rd.add_subparsers(dest="rd_command", required=True)

    p = sub.add_parser("score", help="print ON (outliers of the FP32 clip-free response) per image, fewest first")
    _common(p)
    p.set_defaults(func=_cmd_score)

    p = sub.add_parser("select", help="M1: write the k images with the fewest outliers (as LR RD images)")
    _common(p)
    p.add_argument("--k", type=int, default=1, help="how many images to keep")
    p.add_argument("--max-on", type=int, help="keep every image with at most this many outliers instead of --k")
    p.add_argument("--out", required=True, help="folder for the RD images and rd.json")
    p.set_defaults(func=_cmd_select)

    p = sub.add_parser("enhance", help="M2: blur each image while its response has outliers, write the results")
    _common(p)
    p.add_argument("--blur", choices=["gb", "libb", "lipb"], default="lipb",
                   help="global, local box or local point blur")
    p.add_argument("--sigma", type=float, default=1.0, help="gb: Gaussian sigma (LR pixels)")
    p.add_argument("--truncate", type=float, default=2.0, help="gb: kernel radius in sigmas")
    p.add_argument("--radius", type=int, default=2, help="libb: half-size of the window around each outlier")
    p.add_argument("--kernel", type=int, default=3, help="libb/lipb: box-mean size")
    p.add_argument("--max-iter", type=int, default=20, help="libb/lipb: iteration cap (Thr)")
    p.add_argument("--drop-unrepaired", action="store_true",
                   help="write only the images whose outliers are gone after the blur")
    p.add_argument("--out", required=True, help="folder for the enhanced RD images and rd.json")
    p.set_defaults(func=_cmd_enhance)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="abpn", help="model with a clip_output option (its clip-free variant is scored)")
    p.add_argument("--scale", type=int, default=4)
    p.add_argument("--weights", help="checkpoint; default: the model's embedded weights")
    p.add_argument("--images", required=True, help="folder of candidate images")
    p.add_argument("--lr", action="store_true", help="the images are LR RD images already (default: HR photos, "
                                                      "shrunk by MATLAB bicubic)")
    p.add_argument("--rgb", action="store_true", help="keep colour (default: grayscale RD, the seed's choice)")
    p.add_argument("--limit", type=int, help="only the first N images (by name)")
    p.add_argument("--outliers", choices=["range", "zscore", "activation"], default="range", help="outlier definition")
    p.add_argument("--lo", type=float, default=0.0, help="range: lowest valid output (pixel units)")
    p.add_argument("--hi", type=float, default=255.0, help="range: highest valid output (pixel units)")
    p.add_argument("--tolerance", type=float, default=0.0, help="range: slack around [lo, hi] (pixel units)")
    p.add_argument("--zk", type=float, default=3.0, help="zscore: outlier beyond this many standard deviations")
    p.add_argument("--threshold", type=float, help="activation: |value| above this (model units)")
    p.add_argument("--layers", action="append", help="activation: conv name pattern (repeatable; default all)")


def _setup(args):
    outliers = OutlierConfig(args.outliers, args.lo, args.hi, args.tolerance, args.zk, args.threshold,
                             tuple(args.layers or ("*",)))
    model = model_variant(args.model, args.scale, args.weights, clip=False)
    images = load_rd(args.images, args.scale, from_hr=not args.lr, gray=not args.rgb, limit=args.limit)
    return model, images, outliers


def _print_scores(scores) -> None:
    print("| rank | image | ON | output min | output max |\n|---:|---|---:|---:|---:|")
    for i, s in enumerate(rank(scores), 1):
        print(f"| {i} | {s.name} | {s.on} | {s.out_range[0]:.1f} | {s.out_range[1]:.1f} |")


def _write_json(path: Path, payload: dict) -> None:
    write_text_atomic(path, json.dumps(payload, indent=2) + "\n")


def _settings(args) -> dict:
    return {k: v for k, v in vars(args).items() if k not in ("func", "command", "rd_command")}


def _cmd_score(args) -> None:
    model, images, outliers = _setup(args)
    _print_scores(score_images(model, images, outliers))


def _cmd_select(args) -> None:
    model, images, outliers = _setup(args)
    scores = score_images(model, images, outliers)
    _print_scores(scores)
    chosen = select_good(scores, args.k) if args.max_on is None else select_clean(scores, args.max_on)
    if not chosen:
        raise ValueError(f"no image has at most {args.max_on} outliers")
    out = Path(args.out)
    write_rd(out, {name: images[name] for name in chosen})
    _write_json(out / "rd.json", {"settings": _settings(args), "selected": chosen,
                                  "scores": [asdict(s) for s in scores]})
    print(f"wrote {len(chosen)} RD images and rd.json to {out}")


def _cmd_enhance(args) -> None:
    model, images, outliers = _setup(args)
    blur = BlurConfig(args.blur, args.sigma, args.truncate, args.radius, args.kernel, args.max_iter)
    out, report = Path(args.out), []
    print("| image | ON before | ON after | iterations | output range after | written |\n|---|---:|---:|---:|---|---|")
    for name, img in images.items():
        result = enhance(model, img, blur, outliers)
        written = result.on_after == 0 or not args.drop_unrepaired
        if written:
            write_rd(out, {name: result.image})
        report.append({"name": name, "on_before": result.on_before, "on_after": result.on_after,
                       "iterations": result.iterations, "out_range": result.out_range, "written": written})
        lo, hi = result.out_range
        print(f"| {name} | {result.on_before} | {result.on_after} | {result.iterations} | {lo:.1f}..{hi:.1f} "
              f"| {written} |")
    kept = sum(r["written"] for r in report)
    if not kept:
        raise ValueError(f"no image lost its outliers within --max-iter {args.max_iter} blur steps; "
                         "raise --max-iter or keep unrepaired images (no --drop-unrepaired)")
    _write_json(out / "rd.json", {"settings": _settings(args), "images": report})
    print(f"wrote {kept} enhanced RD images and rd.json to {out}")
