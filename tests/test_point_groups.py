"""``srquant analyze point-groups``: W8A8 with one group of activation points in float at a time."""
from srquant.cli import main
from test_bench import write_tiny_set


def test_point_groups_table(tmp_path, capsys):
    data = write_tiny_set(tmp_path / "tiny")
    out = tmp_path / "out"
    assert main(["analyze", "point-groups", "--model", "abpn", "--scale", "4", "--data", data, "--n-calib", "4",
                 "--patch", "16", "--threads", "1", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "abpn x4, minmax W8A8, all layers, runtime points, tiny: FP32" in text
    rows = [line.split("|")[1].strip() for line in (out / "point_groups.md").read_text().splitlines()[4:]]
    assert rows[-2:] == ["every activation point", "weights"] and any(r.endswith(" outputs") for r in rows)
    assert (out / "point_groups.csv").read_text().startswith("in float,points,PSNR,recovered dB\n")
