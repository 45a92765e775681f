"""``srquant bench CONFIG --estimate``: a sweep's CPU cost from short measurements, without running it."""
import json

from srquant.cli import main
from test_bench import write_tiny_set


def test_estimate_prints_a_cost_table_and_runs_no_cell(tmp_path, capsys):
    data = write_tiny_set(tmp_path / "tiny")
    config = tmp_path / "sweep.json"
    config.write_text(json.dumps({"name": "est", "models": [{"name": "abpn", "scale": 4}], "methods": ["minmax"],
                                  "bits": [8], "datasets": [data], "calib": {"n": 4, "patch": 16}}))
    assert main(["bench", str(config), "--estimate", "--set5", data, "--out", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert "| abpn_x4 | 3 |" in out and "total" in out and "minmax: on abpn_x4 at W8A8" in out
    assert not (tmp_path / "run").exists()
