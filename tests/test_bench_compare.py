"""``srquant bench compare`` on a hand-made results file: averages, losses against FP32 and margins."""
from __future__ import annotations

from srquant.cli import main
from srquant.results import ResultRecord, write_results


def _compare(capsys, *args: str) -> str:
    assert main(["bench", "compare", *args]) == 0
    return capsys.readouterr().out


def _record(method: str, bits: int | None, dataset: str, psnr: float) -> ResultRecord:
    return ResultRecord(model="net_x4", dataset=dataset, scale=4, method=method, w_bits=bits, a_bits=bits,
                        psnr_y=psnr, ssim_y=0.9, n_images=1, seconds=0.0)


def test_compare_prints_margins_over_best_baseline(tmp_path, capsys):
    records = [_record("fp32", None, "Set5", 32.0), _record("fp32", None, "Set14", 28.0)]
    for method, (a, b) in {"new": (31.0, 27.0), "base1": (30.0, 27.0), "base2": (31.5, 27.5)}.items():
        records += [_record(method, 4, "Set5", a), _record(method, 4, "Set14", b)]
    write_results(tmp_path / "results.json", records)
    out = _compare(capsys, str(tmp_path / "results.json"), "--methods", "new,missing", "--against", "base1,base2")
    row = next(line for line in out.splitlines() if "W4A4" in line)
    # new: Set5 31.0 (-1.0 vs FP32), average 29.0; best baseline base2 at 29.5; margin -0.5; missing method: "-"
    assert row == "| net_x4 | W4A4 | 31.000 (-1.000) | 29.000 | - | - | 29.500 (base2) | -0.500 | - |"
    # a second file (another part of the sweep) adds the missing method's cells
    write_results(tmp_path / "more.json", [_record("missing", 4, "Set5", 32.0), _record("missing", 4, "Set14", 28.0)])
    out = _compare(capsys, str(tmp_path / "results.json"), str(tmp_path / "more.json"), "--methods", "new,missing",
                   "--against", "base1,base2")
    row = next(line for line in out.splitlines() if "W4A4" in line)
    assert row.endswith("| 32.000 (+0.000) | 30.000 | 29.500 (base2) | -0.500 | +0.500 |")
