"""The crops a sweep saved (one fixed region of one test image per cell), grouped for visual comparisons."""
from __future__ import annotations

import base64
import io
from dataclasses import dataclass

import numpy as np

from ..bench import SweepRun


@dataclass
class Crop:
    caption: str
    png_b64: str  # base64 PNG, as cached by the sweep

    def array(self) -> np.ndarray:
        from PIL import Image

        return np.asarray(Image.open(io.BytesIO(base64.b64decode(self.png_b64))))


def _image_psnr(payload: dict) -> float | None:
    crop = payload["crop"]
    for record in payload["records"]:
        if record["dataset"] == crop["dataset"]:
            return next((i["psnr_y"] for i in record["images"] if i["name"] == crop["image"]), None)
    return None


def crop_sets(run: SweepRun) -> dict[str, dict[str, list[Crop]]]:
    """model -> bit width ("W4A4") -> crops [HR, bicubic, FP32, then each method at that width in the sweep's
    order]; captions carry the whole image's PSNR. Empty when the sweep saved no crops."""
    refs: dict[str, dict[str, Crop]] = {}  # model -> "hr" | "bicubic" | "fp32" -> crop
    per_bits: dict[str, dict[str, list[tuple[int, Crop]]]] = {}
    order = {label: i for i, label in enumerate(run.labels)}
    for p in run.payloads:
        if "crop" not in p:
            continue
        cell, model = p["cell"], f"{p['cell']['model']['name']}_x{p['cell']['model']['scale']}"
        name = cell.get("label") or cell["method"]
        psnr = _image_psnr(p)
        crop = Crop(name if psnr is None else f"{name} {psnr:.2f} dB", p["crop"]["sr"])
        if cell["w_bits"] is None:
            refs.setdefault(model, {})[name] = crop
            if "hr" in p["crop"]:
                refs[model]["hr"] = Crop(f"HR ({p['crop']['image']})", p["crop"]["hr"])
        else:
            bits = f"W{cell['w_bits']}A{cell['a_bits']}"
            per_bits.setdefault(model, {}).setdefault(bits, []).append((order.get(name, len(order)), crop))
    out = {}
    for model, by_bits in per_bits.items():
        ref = [refs.get(model, {})[k] for k in ("hr", "bicubic", "fp32") if k in refs.get(model, {})]
        widths = sorted(by_bits, key=lambda b: tuple(-int(v) for v in b[1:].split("A")))
        out[model] = {b: ref + [c for _, c in sorted(by_bits[b], key=lambda t: t[0])] for b in widths}
    return out
