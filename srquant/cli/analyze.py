"""``srquant analyze sensitivity | outliers | point-groups | layer-loss``: layer sensitivity scan, the
activation-outlier study, activation point groups, and a quantized model's loss layer by layer."""
from __future__ import annotations

import torch

from ..analysis.layer_loss import layer_loss_scan, write_layer_loss
from ..analysis.outliers import outlier_study, write_outlier_study
from ..analysis.point_groups import point_group_scan, write_point_groups
from ..analysis.sensitivity import sensitivity_scan, write_sensitivity
from ..evaluate import calibration_batch
from .common import benchmark_folders, build_model


def add_commands(sub) -> None:
    """Register ``srquant analyze sensitivity``, ``outliers`` and ``point-groups`` on the CLI's subparsers."""
    analyze = sub.add_parser("analyze", help="layer sensitivity scan, activation-outlier study, point groups")
    commands = analyze.add_subparsers(dest="analysis", required=True)

    def common(p) -> None:
        p.add_argument("--model", default="abpn", help="registered model name (see `srquant models`)")
        p.add_argument("--scale", type=int, default=4)
        p.add_argument("--weights", help="checkpoint; default: the model's embedded weights")
        p.add_argument("--data", action="append", help="benchmark folder (repeatable); default: demo photos")
        p.add_argument("--out", required=True, help="output folder")
        p.add_argument("--quiet", action="store_true", help="no progress bars")

    p = commands.add_parser("sensitivity", help="quantize one layer at a time, PSNR drop per layer (CSV, Markdown, PNG)")
    common(p)
    p.add_argument("--bits", type=int, default=4, help="weight and activation bits of the quantized layer")
    p.add_argument("--method", default="minmax", help="quantization method of the single layer")
    p.add_argument("--layers", nargs="+", help="layer names (default: every quantizable layer)")
    p.add_argument("--calib", help="folder of HR calibration images (default: scikit-image sample photos)")
    p.add_argument("--n-calib", type=int, default=32)
    p.add_argument("--patch", type=int, default=48)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd_sensitivity)

    p = commands.add_parser("outliers", help="clip the top 1%% of FP32 layer inputs: PSNR drop, colour shift")
    common(p)
    p.add_argument("--percent", type=float, default=1.0, help="share of the largest |activations| clipped, in %%")
    p.add_argument("--scope", default="body", choices=["body", "all"], help="layers whose inputs are clipped")
    p.add_argument("--crop", type=int, default=128, help="side of the side-by-side crop (HR pixels)")
    p.set_defaults(func=_cmd_outliers)

    p = commands.add_parser("point-groups", help="W8A8 with one group of activation points in float at a time: "
                                                 "the PSNR each group recovers (CSV, Markdown)")
    common(p)
    p.add_argument("--method", default="minmax", help="quantization method (its W8A8 ranges)")
    p.add_argument("--scope", choices=["all", "body"], default="all",
                   help="all: every layer and runtime points; body: head and tail in float, layer inputs only")
    p.add_argument("--calib", help="folder of HR calibration images (default: scikit-image sample photos)")
    p.add_argument("--n-calib", type=int, default=32)
    p.add_argument("--patch", type=int, default=48)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2, help="torch threads (the third decimal depends on it)")
    p.set_defaults(func=_cmd_point_groups)

    p = commands.add_parser("layer-loss", help="a saved quantized model with one layer's weights, then its input, in "
                                               "float at a time: the PSNR each recovers (CSV, Markdown)")
    common(p)
    p.add_argument("quantized", help="a model saved by `srquant quantize --save`")
    p.add_argument("--threads", type=int, default=2, help="torch threads (the third decimal depends on it)")
    p.set_defaults(func=_cmd_layer_loss)


def _cmd_sensitivity(args) -> None:
    model = build_model(args)
    calib = calibration_batch(model.sr_info, args.calib, args.n_calib, args.patch, args.seed)
    rows = sensitivity_scan(model, calib, benchmark_folders(args, args.scale), args.bits, args.method, args.layers,
                            progress=not args.quiet)
    title = f"{args.model} x{args.scale}: one layer at W{args.bits}A{args.bits} ({args.method}), PSNR drop vs FP32"
    paths = write_sensitivity(rows, args.out, title)
    print(paths[1].read_text(), end="")
    print("wrote " + ", ".join(str(p) for p in paths))


def _cmd_outliers(args) -> None:
    model = build_model(args)
    rows, example = outlier_study(model, benchmark_folders(args, args.scale), args.percent, args.scope, not args.quiet)
    title = f"{args.model} x{args.scale}: top {args.percent:g}% of |x| clipped at every {args.scope} layer input (FP32)"
    paths = write_outlier_study(rows, example, args.out, args.crop, title)
    print(paths[1].read_text(), end="")
    print("wrote " + ", ".join(str(p) for p in paths))


def _cmd_point_groups(args) -> None:
    torch.set_num_threads(args.threads)
    model = build_model(args)
    calib = calibration_batch(model.sr_info, args.calib, args.n_calib, args.patch, args.seed)
    datasets = benchmark_folders(args, args.scale)
    summary, rows = point_group_scan(model, calib, datasets, args.method, args.scope)
    where = "all layers, runtime points" if args.scope == "all" else "body, layer inputs"
    names = ", ".join(d.name for d in datasets)
    title = (f"{args.model} x{args.scale}, {args.method} W8A8, {where}, {names}: FP32 {summary['fp32']:.3f}, "
             f"quantized {summary['quantized']:.3f} ({summary['quantized'] - summary['fp32']:+.3f} dB)")
    paths = write_point_groups(rows, args.out, title)
    print(paths[1].read_text(), end="")
    print("wrote " + ", ".join(str(p) for p in paths))


def _cmd_layer_loss(args) -> None:
    from ..api import load

    torch.set_num_threads(args.threads)
    model = build_model(args)
    qmodel = load(args.quantized, model=model)
    datasets = benchmark_folders(args, args.scale)
    summary, rows = layer_loss_scan(qmodel, model, datasets, progress=not args.quiet)
    config = qmodel.srquant_config
    names = ", ".join(d.name for d in datasets)
    title = (f"{args.model} x{args.scale}, {config.method} W{config.w_bits}A{config.a_bits}, {names}: FP32 "
             f"{summary['fp32']:.3f}, quantized {summary['quantized']:.3f} ({summary['quantized'] - summary['fp32']:+.3f} dB)")
    paths = write_layer_loss(rows, args.out, title)
    print(paths[1].read_text(), end="")
    print("wrote " + ", ".join(str(p) for p in paths))
