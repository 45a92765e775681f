"""Issue 19, case by case: no stale reuse, no silently loaded corruption, a clear error for every bad input before
any work. Tiny images and the embedded ABPN x4: every quantize run here takes about a second."""
import io
import json
import os
import struct
import time
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import srquant
from srquant import api
from srquant.cli import main
from srquant.data import BenchmarkFolder, read_image
from srquant.errors import (CheckpointError, ConfigError, ImageError, InputError, ModelError, OnnxError, OutputError,
                            SrquantError)
from srquant.methods import MinMaxConfig
from srquant.models import create, read_checkpoint
from srquant.models._registry import ASSETS

ANSI = "\x1b["


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """Two small test images and two calibration images (72 px: room for one 16-px LR patch at x4)."""
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for sub, size, count in (("data", 32, 2), ("calib", 72, 2)):
        (root / sub).mkdir()
        for i in range(count):
            base = rng.integers(0, 256, (size // 8, size // 8, 3), dtype=np.uint8)
            img = Image.fromarray(base).resize((size, size), Image.BICUBIC)
            img.save(root / sub / f"{i}.png")
    return root


def quantize_args(folders, out, *extra):
    return ["quantize", "--method", "minmax", "--n-calib", "2", "--patch", "16", "--data", str(folders / "data"),
            "--calib", str(folders / "calib"), "--out", str(out), "--quiet", *extra]


def run(capsys, args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def records(path):
    return {r["method"]: r for r in json.loads(Path(path).read_text())["results"]}


def clear_error(code, err, *needles):
    """Exit 2, one line naming the problem, no traceback, no ANSI escapes, no advice to load unsafely."""
    assert code == 2, err
    assert err.startswith("srquant: error: ") and "Traceback" not in err and ANSI not in err
    assert "weights_only" not in err
    for needle in needles:
        assert str(needle) in err, (needle, err)


# --- 1. reuse is keyed by content ------------------------------------------------------------------------------------
def test_changed_weights_are_not_reused(tmp_path, folders, capsys):
    weights = tmp_path / "w.pt"
    state = torch.load(ASSETS / "abpn_x4.pt", weights_only=True)
    torch.save(state, weights)
    args = quantize_args(folders, tmp_path / "run", "--weights", weights)
    assert run(capsys, args)[0] == 0
    torch.save({k: v * 0.5 for k, v in state.items()}, weights)  # same path, other contents
    code, out, _ = run(capsys, args)
    assert code == 0 and "reusing" not in out and "changed: weights_sha256" in out
    fp, q = records(tmp_path / "run" / "results.json").values()
    assert abs(q["psnr_y"] - fp["psnr_y"]) < 0.5  # W8A8 of the new weights, next to their own FP32


def test_replaced_calibration_images_are_not_reused(tmp_path, folders, capsys):
    calib = tmp_path / "calib"
    calib.mkdir()
    for p in (folders / "calib").iterdir():
        (calib / p.name).write_bytes(p.read_bytes())
    args = quantize_args(folders, tmp_path / "run")
    args[args.index("--calib") + 1] = str(calib)
    assert run(capsys, args)[0] == 0
    assert "reusing" in run(capsys, args)[1]
    Image.fromarray(np.full((72, 72, 3), 200, np.uint8)).save(calib / "0.png")
    out = run(capsys, args)[1]
    assert "reusing" not in out and "changed: calib_sha256" in out


def test_a_model_of_another_config_is_not_reused(tmp_path, folders, capsys):
    w8, w4 = tmp_path / "w8", tmp_path / "w4"
    assert run(capsys, quantize_args(folders, w8))[0] == 0
    assert run(capsys, quantize_args(folders, w4, "--w-bits", "4", "--a-bits", "4"))[0] == 0
    (w8 / "model.pt").write_bytes((w4 / "model.pt").read_bytes())  # a W4A4 model.pt beside W8A8 inputs.json
    out = run(capsys, quantize_args(folders, w8))[1]
    assert "reusing" not in out and "no complete run" in out
    (w8 / "model.pt").write_bytes((w4 / "model.pt").read_bytes())
    srquant.runfolder.RunFolder(w8).commit(["model.pt", "inputs.json", "results.json", "results.md"])  # hand-made manifest
    out = run(capsys, quantize_args(folders, w8))[1]
    assert "reusing" not in out and "another config" in out
    assert records(w8 / "results.json")["minmax"]["w_bits"] == 8
    assert api.read_artifact(w8 / "model.pt")["config"]["w_bits"] == 8


# --- 2. a run killed during evaluation leaves the folder as it was -------------------------------------------------
def test_killed_run_leaves_the_previous_run_whole(tmp_path, folders, capsys, monkeypatch):
    out = tmp_path / "run"
    assert run(capsys, quantize_args(folders, out))[0] == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    import srquant.cli.quantize

    real = srquant.cli.quantize.evaluate

    def killed_during_quantized_eval(*args, **kwargs):
        if kwargs.get("method", "fp32") != "fp32":
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(srquant.cli.quantize, "evaluate", killed_during_quantized_eval)
    monkeypatch.setattr(srquant.api, "evaluate", killed_during_quantized_eval)
    assert run(capsys, quantize_args(folders, out, "--w-bits", "4", "--a-bits", "4"))[0] == 130
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # no W4A4 model.pt next to W8A8 results
    monkeypatch.undo()
    (out / ".staging-999999999-x").mkdir()  # left by a run killed with SIGKILL (its process is gone)
    assert "reusing" in run(capsys, quantize_args(folders, out))[1]
    assert sorted(p.name for p in out.iterdir()) == ["inputs.json", "manifest.json", "model.pt", "results.json",
                                                     "results.md"]


# --- 3. corrupted files never load silently --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "model.pt"
    model = create("abpn", 4, pretrained=True)
    api.save(api.quantize(model, MinMaxConfig(act_points="runtime"), torch.rand(2, 3, 12, 12)), path)
    return path


def test_zeroed_bytes_in_a_saved_model_are_caught(tmp_path, saved_model):
    data = bytearray(saved_model.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 1000] = bytes(1000)
    bad = tmp_path / "model.pt"
    bad.write_bytes(data)
    with pytest.raises(CheckpointError, match="corrupted: CRC-32 mismatch") as err:
        srquant.load(bad)
    assert str(bad) in str(err.value)


def test_changed_tensor_with_valid_zip_fails_the_sha256(tmp_path, saved_model):
    payload = torch.load(saved_model, weights_only=True)
    name = next(k for k in payload["state_dict"] if k.endswith("weight"))
    payload["state_dict"][name] = payload["state_dict"][name] * 1.01
    torch.save(payload, tmp_path / "edited.pt")  # fresh CRCs, stale sha256
    with pytest.raises(CheckpointError, match="do not match the SHA-256"):
        srquant.load(tmp_path / "edited.pt")


def test_mutated_float_checkpoint_is_caught(tmp_path):
    data = bytearray((ASSETS / "abpn_x4.pt").read_bytes())
    with zipfile.ZipFile(ASSETS / "abpn_x4.pt") as archive:
        info = next(i for i in archive.infolist() if "/data/" in i.filename and i.file_size > 64)
    name_len, extra_len = struct.unpack("<HH", data[info.header_offset + 26: info.header_offset + 30])  # local header
    data[info.header_offset + 30 + name_len + extra_len + 8] ^= 0xFF  # one byte of a tensor
    (tmp_path / "w.pt").write_bytes(data)
    with pytest.raises(CheckpointError, match="CRC-32 mismatch"):
        create("abpn", 4, weights=tmp_path / "w.pt")


# --- 4. malformed files: one clear error each ------------------------------------------------------------------------
@pytest.mark.parametrize("content", [b"", b"PK\x03\x04" + bytes(40), os.urandom(3000), b"\x80\x02garbage"],
                         ids=["empty", "zip-header-only", "random", "pickle-start"])
def test_malformed_checkpoints_are_checkpoint_errors(tmp_path, content, saved_model):
    path = tmp_path / "bad.pt"
    path.write_bytes(content)
    for load in (read_checkpoint, srquant.load):
        with pytest.raises(CheckpointError) as err:
            load(path)
        message = str(err.value)
        assert str(path) in message and "legacy" not in message and "weights_only" not in message and ANSI not in message


def test_truncated_checkpoint(tmp_path, saved_model):
    for size in (10, 100, len(saved_model.read_bytes()) // 2, len(saved_model.read_bytes()) - 1):
        (tmp_path / "t.pt").write_bytes(saved_model.read_bytes()[:size])
        with pytest.raises(CheckpointError, match="t.pt"):
            srquant.load(tmp_path / "t.pt")


def test_code_pickle_is_named_as_such_without_unsafe_advice(tmp_path):
    torch.save(torch.nn.Conv2d(1, 1, 1), tmp_path / "module.pth")
    with pytest.raises(CheckpointError) as err:
        read_checkpoint(tmp_path / "module.pth")
    message = str(err.value)
    assert "legacy full-module pickle" in message and "GLOBAL torch.nn" in message
    assert "weights_only" not in message and ANSI not in message


def test_no_state_dict_names_the_file(tmp_path):
    torch.save({"epoch": 3}, tmp_path / "meta.pth")
    with pytest.raises(CheckpointError, match="no state dict found in .*meta.pth"):
        create("abpn", 4, weights=tmp_path / "meta.pth")


@pytest.mark.parametrize("option,needle", [
    ("foo=bar", "unknown option(s) ['foo']"),
    ("percentile=abc", "option percentile must be float, got 'abc'"),
    ("percentile=[1", "--option percentile=[1 is not valid YAML"),
    ("percentile", "key=value"),
    ("w_bits=4", "set w_bits with --w-bits"),
])
def test_bad_options_fail_before_work(tmp_path, folders, capsys, option, needle):
    args = quantize_args(folders, tmp_path / "run", "--option", option)
    args[args.index("minmax")] = "percentile"
    clear_error(*run(capsys, args)[::2], needle)
    assert not (tmp_path / "run" / "model.pt").exists()


@pytest.mark.parametrize("text,needle", [("percentile: [1\n", "is not valid YAML"), ("- 1\n- 2\n", "not a list"),
                                         ("a: &x 1\nb: *x\n", "aliases")])
def test_bad_config_files(tmp_path, folders, capsys, text, needle):
    config = tmp_path / "c.yaml"
    config.write_text(text)
    args = quantize_args(folders, tmp_path / "run", "--config", config)
    clear_error(*run(capsys, args)[::2], config, needle)


def test_malformed_bench_yaml_names_the_file(tmp_path, capsys):
    for text in ("models: [\n", "- a\n", "models: 3\nmethods: [mse]\nbits: [8]\n",
                 "models: [{name: abpn, scale: 4}]\nmethods: [mse]\nbits: [9]\n"):
        (tmp_path / "sweep.yaml").write_text(text)
        clear_error(*run(capsys, ["bench", tmp_path / "sweep.yaml", "--out", tmp_path / "o"])[::2], "sweep.yaml")


@pytest.fixture
def no_calibration(monkeypatch):
    """Fail the test if calibration or evaluation starts."""
    import srquant.cli.quantize

    def never(*args, **kwargs):
        raise AssertionError("work started before the inputs were checked")

    monkeypatch.setattr(api, "quantize", never)
    monkeypatch.setattr(srquant.cli.quantize, "evaluate", never)
    monkeypatch.setattr(api, "evaluate", never)


def test_bad_outputs_fail_before_calibration(tmp_path, folders, capsys, no_calibration):
    (tmp_path / "file").write_text("x")
    clear_error(*run(capsys, quantize_args(folders, tmp_path / "file"))[::2], "is an existing file")
    clear_error(*run(capsys, quantize_args(folders, tmp_path / "file" / "sub"))[::2], "cannot be written")
    clear_error(*run(capsys, quantize_args(folders, tmp_path / "r", "--json", tmp_path))[::2], "is a folder")
    clear_error(*run(capsys, ["eval", "--json", tmp_path, "--data", folders / "data"])[::2], "is a folder")
    clear_error(*run(capsys, ["eval", "--json", tmp_path / "file" / "x.json"])[::2], "file is an existing file")


def test_bad_inputs_fail_before_calibration(tmp_path, folders, capsys, no_calibration):
    clear_error(*run(capsys, quantize_args(folders, tmp_path / "r", "--data", tmp_path / "typo"))[::2],
                "--data folder not found", "typo")
    args = quantize_args(folders, tmp_path / "r")
    args[args.index("--calib") + 1] = str(tmp_path / "nocalib")
    clear_error(*run(capsys, args)[::2], "calibration folder (--calib) not found")
    (tmp_path / "empty").mkdir()
    args[args.index("--calib") + 1] = str(tmp_path / "empty")
    clear_error(*run(capsys, args)[::2], "no images in calibration folder")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "a.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    clear_error(*run(capsys, quantize_args(folders, tmp_path / "r", "--data", tmp_path / "broken"))[::2], "a.png")
    assert not (tmp_path / "r" / "model.pt").exists()


def test_scales(capsys, no_calibration):
    clear_error(*run(capsys, ["eval", "--model", "bicubic", "--scale", "0"])[::2], "bicubic needs an integer --scale")
    code, _, err = run(capsys, ["eval", "--model", "abpn", "--scale", "5"])
    clear_error(code, err, "abpn supports scales x2, x3, x4, not x5")
    assert "--weights" not in err
    clear_error(*run(capsys, ["quantize", "--model", "abpn", "--scale", "8"])[::2], "not x8")


def test_eval_onnx_bad_files(tmp_path, saved_model, capsys):
    export = tmp_path / "m.onnx"
    assert run(capsys, ["export", saved_model, "--out", export, "--size", "8"])[0] == 0
    good = export.read_bytes()
    files = {"random.onnx": os.urandom(2000), "truncated.onnx": good[: len(good) // 2], "empty.onnx": b""}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
        clear_error(*run(capsys, ["eval", "--onnx", tmp_path / name, "--quiet"])[::2], name)
    clear_error(*run(capsys, ["eval", "--onnx", tmp_path / "missing.onnx"])[::2], "--onnx file not found")
    from srquant.export import OrtRunner

    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(export))
    init = model.graph.initializer[0]
    init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) * 0 + 1, init.name))  # weights changed
    onnx.save(model, str(tmp_path / "edited.onnx"))
    with pytest.raises(OnnxError, match="edited.onnx is corrupted"):
        OrtRunner(tmp_path / "edited.onnx")


def test_export_to_an_existing_folder(tmp_path, saved_model, capsys):
    (tmp_path / "out").mkdir()
    clear_error(*run(capsys, ["export", saved_model, "--out", tmp_path / "out"])[::2], "is a folder")
    from srquant.export import export_onnx

    with pytest.raises(OutputError):
        export_onnx(srquant.load(saved_model), tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"] and not any((tmp_path / "out").iterdir())


def test_debug_shows_the_traceback(capsys):
    code, _, err = run(capsys, ["--debug", "eval", "--model", "bicubic", "--scale", "0"])
    assert code == 2 and "Traceback" in err and "bicubic needs" in err


def test_error_types_share_one_base():
    for cls in (CheckpointError, ConfigError, ImageError, InputError, ModelError, OnnxError, OutputError):
        assert issubclass(cls, SrquantError)
    with pytest.raises(KeyError):  # still what callers caught before
        create("nope", 4)
    with pytest.raises(ValueError, match="supports scales"):
        create("abpn", 8)


# --- 6. pixel limits from the header ---------------------------------------------------------------------------------
def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_bytes(width: int, height: int, bits: int, interlace: int, idat: bytes) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, bits, 2, 0, 0, interlace)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


@pytest.mark.parametrize("side", [8000, 20000])
def test_small_16bit_png_claiming_a_huge_size_is_refused_at_once(tmp_path, side):
    path = tmp_path / "bomb.png"
    path.write_bytes(png_bytes(side, side, 16, 1, zlib.compress(os.urandom(1300))))
    assert path.stat().st_size < 1500
    start = time.perf_counter()
    with pytest.raises(ImageError) as err:
        read_image(path)
    assert time.perf_counter() - start < 0.2
    assert f"{side}x{side}" in str(err.value) and "bomb.png" in str(err.value)


@pytest.mark.parametrize("bits", [8, 16])
def test_pixel_limit_holds_for_every_bit_depth(tmp_path, monkeypatch, bits):
    import srquant.data.images as images

    rows = b"".join(b"\x00" + bytes(16 * 3 * bits // 8) for _ in range(16))
    path = tmp_path / f"x{bits}.png"
    path.write_bytes(png_bytes(16, 16, bits, 0, zlib.compress(rows)))
    assert read_image(path).shape == (16, 16, 3)
    monkeypatch.setattr(images, "MAX_PIXELS", 255)
    with pytest.raises(ImageError, match="16x16 exceeds srquant's limit of 255 pixels"):
        read_image(path)
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(tmp_path / "x.jpg")
    with pytest.raises(ImageError, match="exceeds"):
        read_image(tmp_path / "x.jpg")


def test_small_jpeg_claiming_a_huge_size_is_refused_at_once(tmp_path):
    buf = io.BytesIO()
    Image.fromarray(np.zeros((12, 10, 3), np.uint8)).save(buf, format="JPEG")
    data = bytearray(buf.getvalue())
    sof = data.find(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", 512, 65000)  # 33 MP, under MAX_PIXELS: libjpeg would fill it with grey
    (tmp_path / "big.jpg").write_bytes(data)
    start = time.perf_counter()
    with pytest.raises(ImageError, match="big.jpg is truncated or corrupted: its header claims 65000x512"):
        read_image(tmp_path / "big.jpg")
    assert time.perf_counter() - start < 0.2


def test_formats_outside_the_benchmark_ones_are_refused_before_decoding(tmp_path):
    Image.fromarray(np.zeros((12, 10, 3), np.uint8)).save(tmp_path / "a.gif")  # a GIF claiming 6000x5900 took 1 s
    with pytest.raises(ImageError, match="a.gif: unsupported image format GIF"):
        read_image(tmp_path / "a.gif")


# --- 7. messages -----------------------------------------------------------------------------------------------------
def test_tiny_image_reports_its_real_size(tmp_path):
    Image.fromarray(np.zeros((3, 3, 3), np.uint8)).save(tmp_path / "tiny.png")
    with pytest.raises(ImageError, match="3x3 is too small for x4"):
        list(BenchmarkFolder(tmp_path, 4))


# --- 8. minor --------------------------------------------------------------------------------------------------------
def test_written_files_get_the_umask_mode(tmp_path, saved_model):
    from srquant.data import write_image
    from srquant.results import write_text_atomic

    old = os.umask(0o022)
    try:
        api.save(srquant.load(saved_model), tmp_path / "m.pt")
        write_text_atomic(tmp_path / "t.txt", "x")
        write_image(tmp_path / "i.png", np.zeros((4, 4, 3), np.uint8))
    finally:
        os.umask(old)
    for name in ("m.pt", "t.txt", "i.png"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o644, name


def test_quiet_hides_the_reconstruction_bar(tmp_path, folders, capsys):
    args = quantize_args(folders, tmp_path / "run", "--option", "iters=1", "--option", "grid=2")
    args[args.index("minmax")] = "brecq"
    code, _, err = run(capsys, args)
    assert code == 0 and "reconstruct" not in err and "%|" not in err


def test_bench_and_train_check_their_folders_first(tmp_path, capsys, no_calibration):
    sweep = tmp_path / "sweep.yaml"
    base = "models: [{name: abpn, scale: 4}]\nmethods: [minmax]\nbits: [8]\n"
    sweep.write_text(base + f"datasets: [{tmp_path / 'typo'}]\n")
    clear_error(*run(capsys, ["bench", sweep, "--out", tmp_path / "o", "--executor", "inline"])[::2],
                "dataset folder of", "typo")
    sweep.write_text(base + f"calib: {{folder: {tmp_path / 'nocalib'}}}\n")
    clear_error(*run(capsys, ["bench", sweep, "--out", tmp_path / "o", "--executor", "inline"])[::2],
                "calibration folder of", "nocalib")
    clear_error(*run(capsys, ["train", "--data", tmp_path / "nodata", "--out", tmp_path / "w.pt"])[::2],
                "training folder (--data) not found")
