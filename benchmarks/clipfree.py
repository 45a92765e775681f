"""The clip-free study's observations (Kalay et al., BMVC 2023; docs/clipfree.md), one subcommand each.

    python benchmarks/clipfree.py gray      # (a) RGB vs grayscale RD
    python benchmarks/clipfree.py size      # (b) RD size 1, 5, 10, all with good, bad and mixed images
    python benchmarks/clipfree.py on-gap    # (c) ON against the clipped / clip-free INT8 PSNR gap (scatter, Spearman)
    python benchmarks/clipfree.py pipeline  # (d) M1, M2, M1+M2 against clipped INT8 and FP32 (simulation, --ort)

Every INT8 model is ``fullint`` (min/max ranges, every layer, runtime points, quantized uint8 output, output clip
folded; docs/clipfree.md) calibrated on whole RD images made from the candidate photos (SunHays80 by default, never
a test set). Good and bad images are ranked by ON of the FP32 clip-free model. Each subcommand prints Markdown
tables and writes ``results.json`` and ``tables.md`` (and PNG scatter plots for on-gap) to ``--out``.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from srquant.data import BenchmarkFolder
from srquant.evaluate import evaluate, model_predictor
from srquant.export.runtime import cpu_has_vnni
from srquant.methods import FullIntConfig
from srquant.rd import (BlurConfig, OutlierConfig, enhance, load_rd, model_variant, quantize_rd, rank,
                        score_images, select_clean, select_good)
from srquant.results import write_text_atomic

from common import CLIPFREE_MODELS as MODELS, SHARED


# ----------------------------------------------------------------------------------------------------------------
# Shared pieces
# ----------------------------------------------------------------------------------------------------------------
class Study:
    """One model's clipped and clip-free variants, its test sets and its candidate RD images."""

    def __init__(self, name: str, args: argparse.Namespace):
        self.name, self.args = name, args
        self.scale, weights = MODELS[name]
        weights = str(weights) if weights is not None else None
        self.clipped = model_variant(name, self.scale, weights, clip=True)
        self.free = model_variant(name, self.scale, weights, clip=False)
        self.info = self.free.sr_info
        self.datasets = [BenchmarkFolder(_data_path(d), self.scale) for d in args.data]
        self._candidates: dict[bool, dict[str, np.ndarray]] = {}

    def candidates(self, gray: bool) -> dict[str, np.ndarray]:
        if gray not in self._candidates:
            self._candidates[gray] = load_rd(self.args.candidates, self.scale, from_hr=True, gray=gray,
                                             limit=self.args.n_candidates)
        return self._candidates[gray]

    def config(self) -> FullIntConfig:
        return FullIntConfig(w_bits=self.args.w_bits, readout=self.args.readout, raw_input=self.args.raw_input,
                             fold_clip=not self.args.no_fold, batch_size=1)  # whole images: one at a time

    def int8(self, clip: bool, rd: list[np.ndarray]) -> torch.nn.Module:
        return quantize_rd(self.clipped if clip else self.free, self.config(), rd)

    def psnr(self, forward) -> dict[str, float]:
        records = evaluate(model_predictor(forward, self.info), self.datasets, model=self.name, progress=False)
        return {r.dataset: round(r.psnr_y, 3) for r in records}

    def ort_psnr(self, qmodel: torch.nn.Module, tag: str) -> dict[str, float]:
        from srquant.export import OrtRunner, export_onnx

        path = export_onnx(qmodel, Path(self.args.out) / "onnx" / f"{self.name}_x{self.scale}_{tag}.onnx")
        return self.psnr(OrtRunner(path, threads=self.args.threads))


def _data_path(name: str) -> Path:
    path = Path(name)
    return path if path.exists() else SHARED / "data" / "benchmarks" / name


def _table(headers: list[str], rows: list[list]) -> str:
    fmt = lambda v: f"{v:.3f}" if isinstance(v, float) else str(v)  # noqa: E731
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _finish(args: argparse.Namespace, tables: list[str], payload: dict) -> None:
    out = Path(args.out)
    text = "\n".join(tables)
    print(text, end="")
    settings = {k: str(v) for k, v in vars(args).items() if k != "func"}
    write_text_atomic(out / "tables.md", f"`{' '.join(sys.argv)}`\n\n{text}")
    write_text_atomic(out / "results.json", json.dumps({"settings": settings, **payload}, indent=2) + "\n")
    print(f"wrote {out / 'tables.md'} and {out / 'results.json'}")


def _log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------------------------------------------
# (a) RGB vs grayscale RD
# ----------------------------------------------------------------------------------------------------------------
def cmd_gray(args: argparse.Namespace) -> None:
    results, tables = [], []
    for name in args.models:
        s = Study(name, args)
        row = {"model": name, "scale": s.scale, "fp32_clip": s.psnr(s.clipped), "fp32_free": s.psnr(s.free)}
        for gray in (False, True):
            rd = list(s.candidates(gray).values())
            tag = "gray" if gray else "rgb"
            _log(f"{name}: INT8 on {len(rd)} {tag} RD images")
            row[f"int8_clip_{tag}"] = s.psnr(s.int8(True, rd))
            row[f"int8_free_{tag}"] = s.psnr(s.int8(False, rd))
        results.append(row)
    for ds in results[0]["fp32_clip"]:
        rows = []
        for r in results:
            d = {k: v[ds] for k, v in r.items() if isinstance(v, dict)}
            rows.append([f"{r['model']} x{r['scale']}", d["fp32_clip"], d["fp32_free"], d["int8_clip_rgb"],
                         d["int8_free_rgb"], d["int8_clip_rgb"] - d["int8_free_rgb"], d["int8_clip_gray"],
                         d["int8_free_gray"], d["int8_clip_gray"] - d["int8_free_gray"]])
        tables.append(f"**{ds}**, RD = {args.n_candidates or 'all'} candidate images\n\n" + _table(
            ["model", "FP32 clip", "FP32 no-clip", "INT8 clip RGB", "INT8 no-clip RGB", "Δ RGB", "INT8 clip gray",
             "INT8 no-clip gray", "Δ gray"], rows))
    _finish(args, tables, {"results": results})


# ----------------------------------------------------------------------------------------------------------------
# (b) RD size with good, bad and mixed images
# ----------------------------------------------------------------------------------------------------------------
def rd_sets(ranked: list[str], k: int, mixes: int, seed: int) -> list[tuple[str, list[str]]]:
    """Named RD sets: best and worst image, k good, k bad, ``mixes`` random k-subsets of good + bad, both, all."""
    good, bad = ranked[:k], ranked[::-1][:k]
    rng = np.random.default_rng(seed)
    both = good + bad
    sets = [("1 good", good[:1]), ("1 bad", bad[:1]), (f"{k} good", good), (f"{k} bad", bad)]
    sets += [(f"{k} mixed #{i + 1}", [both[j] for j in sorted(rng.choice(len(both), k, replace=False))])
             for i in range(mixes)]
    return sets + [(f"{2 * k} good + bad", both), (f"all {len(ranked)}", ranked)]


def cmd_size(args: argparse.Namespace) -> None:
    results, tables = [], []
    for name in args.models:
        s = Study(name, args)
        images = s.candidates(not args.rgb)
        ranked = [x.name for x in rank(score_images(s.free, images))]
        sets = rd_sets(ranked, args.k, args.mixes, args.seed)
        ds = s.datasets[0].name
        extremes = list(dict.fromkeys(ranked[: args.k] + ranked[::-1][: args.k]))
        _log(f"{name}: single-image RDs of the {len(extremes)} best and worst images")
        singles = {m: s.psnr(s.int8(False, [images[m]]))[ds] for m in extremes}
        rows, records = [], []
        for label, members in sets:
            _log(f"{name}: RD {label} ({len(members)} images)")
            rd = [images[m] for m in members]
            free, clip = s.psnr(s.int8(False, rd)), s.psnr(s.int8(True, rd))
            per = [singles[m] for m in members] if all(m in singles for m in members) else []
            stats = [min(per), max(per), float(np.mean(per))] if per else [None] * 3
            records.append({"rd": label, "members": members, "int8_free": free, "int8_clip": clip,
                            "single_min": stats[0], "single_max": stats[1], "single_avg": stats[2]})
            rows.append([label, clip[ds], free[ds], *(v if v is not None else "-" for v in stats)])
        results.append({"model": name, "scale": s.scale, "ranked": ranked, "singles": singles, "sets": records})
        tables.append(f"**{name} x{s.scale}**, {ds}, {'RGB' if args.rgb else 'gray'} RD, good/bad by ON; single = "
                      "clip-free INT8 with one member as the RD\n\n"
                      + _table(["RD", "INT8 clip (all RD)", "INT8 no-clip (all RD)", "single min", "single max",
                                "single avg"], rows))
    _finish(args, tables, {"results": results})


# ----------------------------------------------------------------------------------------------------------------
# (c) ON vs the PSNR gap between clipped and clip-free INT8, one single-image RD at a time
# ----------------------------------------------------------------------------------------------------------------
def cmd_on_gap(args: argparse.Namespace) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from scipy.stats import spearmanr

    results, rows = [], []
    out = Path(args.out)
    for name in args.models:
        s = Study(name, args)
        images = s.candidates(not args.rgb)
        ds = s.datasets[0].name
        points = []
        for score in score_images(s.free, images):
            _log(f"{name}: {score.name} (ON {score.on})")
            clip = s.psnr(s.int8(True, [images[score.name]]))[ds]
            free = s.psnr(s.int8(False, [images[score.name]]))[ds]
            points.append({"image": score.name, "on": score.on, "int8_clip": clip, "int8_free": free,
                           "gap": clip - free})
        on = np.array([p["on"] for p in points], dtype=float)
        gap = np.array([p["gap"] for p in points])
        rho, p_value = spearmanr(on, gap)
        fig, ax = plt.subplots(figsize=(5, 4))
        ax.scatter(on, gap, s=14)
        ax.set_xscale("symlog", linthresh=1)
        ax.set(xlabel="ON (outliers of the FP32 clip-free output)", ylabel=f"PSNR gap clip - no-clip INT8, {ds} (dB)",
               title=f"{name} x{s.scale}: Spearman rho {rho:.2f} (p {p_value:.1g})")
        fig.tight_layout()
        png = out / f"on_gap_{name}_x{s.scale}.png"
        png.parent.mkdir(parents=True, exist_ok=True)
        tmp = png.with_suffix(".tmp.png")
        fig.savefig(tmp, dpi=120)
        plt.close(fig)
        tmp.replace(png)
        results.append({"model": name, "scale": s.scale, "dataset": ds, "spearman_rho": float(rho),
                        "p_value": float(p_value), "points": points})
        rows.append([f"{name} x{s.scale}", len(points), float(rho), f"{p_value:.2g}", float(np.median(gap)),
                     float(gap.max()), png.name])
    table = _table(["model", "images", "Spearman rho (ON, gap)", "p", "median gap", "max gap", "plot"], rows)
    _finish(args, [f"{'RGB' if args.rgb else 'gray'} single-image RDs, gap on {args.data[0]}\n\n" + table],
            {"results": results})


# ----------------------------------------------------------------------------------------------------------------
# (d) the two-stage pipeline
# ----------------------------------------------------------------------------------------------------------------
def cmd_pipeline(args: argparse.Namespace) -> None:
    results, tables = [], []
    outliers = OutlierConfig()
    for name in args.models:
        s = Study(name, args)
        images = s.candidates(not args.rgb)
        scores = score_images(s.free, images, outliers)
        on = {x.name: x.on for x in scores}
        best, clean = select_good(scores, args.k), select_clean(scores, args.max_on)
        # (label, clipped model?, RD images, total ON of the RD images)
        rds = [("INT8 clip", True, list(images.values()), sum(on.values())),
               ("INT8 no-clip", False, list(images.values()), sum(on.values())),
               (f"INT8 no-clip M1 (top {args.k})", False, [images[n] for n in best], sum(on[n] for n in best))]
        if clean:
            rds.append((f"INT8 no-clip M1 (ON <= {args.max_on})", False, [images[n] for n in clean],
                        sum(on[n] for n in clean)))
        for blur in args.blur:
            cfg = BlurConfig(blur, args.sigma, args.truncate, args.radius, args.kernel, args.max_iter)
            _log(f"{name}: M2 {blur} on {len(images)} images")
            fixed = {n: enhance(s.free, img, cfg, outliers) for n, img in images.items()}
            bad = [n for n in images if n not in clean]
            if bad:
                rds.append((f"INT8 no-clip M2 {blur} (bad images)", False, [fixed[n].image for n in bad],
                            sum(fixed[n].on_after for n in bad)))
            rds.append((f"INT8 no-clip M1+M2 {blur} (all)", False, [e.image for e in fixed.values()],
                        sum(e.on_after for e in fixed.values())))
            repaired = [n for n, e in fixed.items() if e.on_after <= args.max_on]
            if len(repaired) < len(images):  # some bad images kept their outliers through M2: leave them out
                rds.append((f"INT8 no-clip M1+M2 {blur} (repaired)", False, [fixed[n].image for n in repaired],
                            sum(fixed[n].on_after for n in repaired)))
            rds.append((f"INT8 no-clip M1+M2 {blur} (top {args.k})", False, [fixed[n].image for n in best],
                        sum(fixed[n].on_after for n in best)))
        records = [{"row": "FP32 clip", "sim": s.psnr(s.clipped)}, {"row": "FP32 no-clip", "sim": s.psnr(s.free)}]
        for i, (label, clip, rd, rd_on) in enumerate(rds):
            _log(f"{name}: {label}")
            q = s.int8(clip, rd)
            records.append({"row": label, "rd_images": len(rd), "rd_on": rd_on, "sim": s.psnr(q),
                            "ort": s.ort_psnr(q, f"rd{i}") if args.ort else None})
        base = next(r for r in records if r["row"] == "INT8 clip")
        for ds in base["sim"]:
            rows = [[r["row"], r.get("rd_images", "-"), r.get("rd_on", "-"), r["sim"][ds],
                     r["sim"][ds] - base["sim"][ds] if "rd_on" in r else "-",
                     r["ort"][ds] if r.get("ort") else "-"] for r in records]
            tables.append(f"**{name} x{s.scale}, {ds}** ({'RGB' if args.rgb else 'gray'} RD from {len(images)} "
                          "candidates; Δ against INT8 clip)\n\n"
                          + _table(["model", "RD images", "ON of RD", "PSNR sim", "Δ sim", "PSNR ORT"], rows))
        results.append({"model": name, "scale": s.scale, "on": on, "rows": records})
    _finish(args, tables, {"results": results})


# ----------------------------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    vnni = cpu_has_vnni()

    def common(sp: argparse.ArgumentParser, data: list[str]) -> None:
        sp.add_argument("--models", type=lambda v: v.split(","), default=list(MODELS),
                        help=f"comma list of {', '.join(MODELS)}")
        sp.add_argument("--data", action="append",
                        help=f"test set name or folder (repeatable; default {', '.join(data)})")
        sp.add_argument("--candidates", type=Path, default=SHARED / "data" / "calib" / "SunHays80",
                        help="candidate RD photos (HR; never a test set)")
        sp.add_argument("--n-candidates", type=int, help="only the first N candidates (default all)")
        sp.add_argument("--rgb", action="store_true", help="colour RD images (default grayscale)")
        sp.add_argument("--w-bits", type=int, default=8 if vnni else 7,
                        help="weight bits (default 8 with VNNI, else 7: ONNX Runtime's U8S8 kernels saturate)")
        sp.add_argument("--readout", choices=["uint8", "dequant"], default="uint8", help="how the INT8 output is read")
        sp.add_argument("--raw-input", action="store_true", help="pixels enter as the input's integer codes")
        sp.add_argument("--no-fold", action="store_true", help="do not fold the output clip into the conv's range")
        sp.add_argument("--threads", type=int, default=2)
        sp.add_argument("--seed", type=int, default=0)
        sp.add_argument("--out", required=True, help="folder for results.json, tables.md (and plots)")
        sp.set_defaults(default_data=data)

    sp = sub.add_parser("gray", help="(a) RGB vs grayscale RD")
    common(sp, ["Set5"])
    sp.set_defaults(func=cmd_gray)

    sp = sub.add_parser("size", help="(b) RD size with good, bad and mixed images")
    common(sp, ["Set5"])
    sp.add_argument("--k", type=int, default=5, help="size of the good / bad sets")
    sp.add_argument("--mixes", type=int, default=3, help="random good + bad selections")
    sp.set_defaults(func=cmd_size)

    sp = sub.add_parser("on-gap", help="(c) ON against the clipped / clip-free INT8 gap")
    common(sp, ["Set5"])
    sp.set_defaults(func=cmd_on_gap)

    sp = sub.add_parser("pipeline", help="(d) M1, M2 and M1+M2 against clipped INT8 and FP32")
    common(sp, ["Set5", "Set14", "B100"])
    sp.add_argument("--k", type=int, default=1, help="M1 top-k: images kept")
    sp.add_argument("--max-on", type=int, default=0, help="M1 by threshold: good images have at most this ON")
    sp.add_argument("--blur", type=lambda v: v.split(","), default=["gb", "libb", "lipb"], help="M2 blurs (comma list)")
    sp.add_argument("--sigma", type=float, default=1.0)
    sp.add_argument("--truncate", type=float, default=2.0)
    sp.add_argument("--radius", type=int, default=2)
    sp.add_argument("--kernel", type=int, default=3)
    sp.add_argument("--max-iter", type=int, default=20)
    sp.add_argument("--ort", action="store_true", help="also evaluate every INT8 model exported to ONNX Runtime")
    sp.set_defaults(func=cmd_pipeline)

    args = p.parse_args(argv)
    args.data = args.data or args.default_data
    unknown = set(args.models) - set(MODELS)
    if unknown:
        p.error(f"unknown models {sorted(unknown)}; known: {', '.join(MODELS)}")
    torch.set_num_threads(args.threads)
    args.func(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
