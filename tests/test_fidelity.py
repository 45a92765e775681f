"""variant="official": each choice of the authors' released code, checked on tiny models (docs/fidelity.md)."""
import numpy as np
import pytest
import torch
from torch import nn

import srquant
from conftest import TinyBlock, tiny_calib, tiny_model
from srquant.methods import DBDCConfig, DFSQConfig, OutlierAwareConfig, PTQ4SRConfig
from srquant.methods.official import apply_official, cosine_lr, official_overrides
from srquant.methods.outlier_aware import OFFICIAL, release_schedule
from srquant.methods.ptq4sr import density_clip_range, release_pac
from srquant.quant.dual_region import ReleaseDualRegionQuantizer, grid_codes, release_codes
from srquant.quant.walk import quant_layers


class TinyUpNet(nn.Module):
    """head, two blocks, a 1x1 fusion conv outside the blocks (IMDN's c / LR_conv), conv + PixelShuffle, last conv."""

    def __init__(self, c: int = 8):
        super().__init__()
        self.head = nn.Conv2d(3, c, 3, padding=1)
        self.body = nn.Sequential(TinyBlock(c), TinyBlock(c))
        self.fuse = nn.Conv2d(c, c, 1)
        self.up = nn.Conv2d(c, 4 * c, 3, padding=1)
        self.shuffle = nn.PixelShuffle(2)
        self.last = nn.Conv2d(c, 3, 3, padding=1)

    def forward(self, x):
        f = self.head(x)
        return self.last(self.shuffle(self.up(self.fuse(self.body(f)) + f)))


@pytest.fixture(scope="module")
def up_model():
    torch.manual_seed(0)
    return TinyUpNet().eval()


def distinct_outputs(q: nn.Module, lo: float, hi: float) -> int:
    with torch.no_grad():
        return len(torch.unique(q(torch.linspace(lo, hi, 200_001))))


def release_quantizer(bits: int, l_a: float, u_a: float, bp: float, fair: bool = False) -> ReleaseDualRegionQuantizer:
    q = ReleaseDualRegionQuantizer(bits, fair)
    q.set_range(l_a, u_a, bp)
    return q


@pytest.mark.parametrize("bits", [3, 4])
@pytest.mark.parametrize("l_a", [-3.0, -0.5])  # two-sided (l_a < -bp) and the one-sided split (l_a >= -bp)
def test_release_grid_is_one_bit_wider(bits, l_a):
    """The release's "b-bit" grid has 2^(b+1) codes (2^(b+1) - 1 distinct values: the dense region never reaches its
    -2^(b-1) code / the two one-sided grids share bp): more than any b-bit code can hold."""
    used = distinct_outputs(release_quantizer(bits, l_a, 4.0, 1.0), l_a, 4.0)
    assert release_codes(bits) == 2 ** (bits + 1)
    assert used == 2 ** (bits + 1) - 1 > 2**bits


def test_fair_release_grid_fits_b_bits():
    q = release_quantizer(4, -3.0, 4.0, 1.0, fair=True)
    assert q.code_bits == 4 and distinct_outputs(q, -3.0, 4.0) == 2**4 - 1
    assert grid_codes(4, "summary") == 13 and grid_codes(4, "full") == 16  # the spec grids, for the table


def test_official_outlier_aware_calibration(up_model):
    """bp = the signed 0.99 quantile of the last calibration batch (numpy's interpolation), l_a / u_a = EMA of the
    batch min / max, per-tensor symmetric weights, head and tail at W8A8 (--fq)."""
    calib = tiny_calib()
    calib[4:] = calib[4:] * 3 - 1  # the second batch differs from the first
    config = OutlierAwareConfig(w_bits=4, a_bits=4, variant="official", batch_size=4, finetune=False)
    qmodel = srquant.quantize(up_model, config, calib)
    bits = {n: (l.weight_quant.bits, l.input_quant.bits) for n, l in quant_layers(qmodel)}
    assert bits == {"head": (8, 8), "body.0.conv1": (4, 4), "body.0.conv2": (4, 4), "body.1.conv1": (4, 4),
                    "body.1.conv2": (4, 4), "fuse": (4, 4), "up": (8, 8), "last": (8, 8)}
    head = qmodel.head.input_quant  # the head's input is the calibration batch itself
    last = calib[4:].double().numpy()
    assert float(head.bp) == pytest.approx(np.quantile(last, 0.99), rel=1e-6)
    mins = [float(calib[:4].min()), float(calib[4:].min())]
    assert float(head.l_a) == pytest.approx(0.9 * mins[0] + 0.1 * mins[1], rel=1e-5)
    wq = qmodel.body[0].conv1.weight_quant
    assert wq.axis is None and wq.symmetric and float(wq.lo) == pytest.approx(-float(wq.hi))


def test_official_outlier_aware_runs_and_reloads(tmp_path):
    model, calib = tiny_model(), tiny_calib()
    qmodel = srquant.quantize(model, OutlierAwareConfig(w_bits=4, a_bits=4, variant="official"), calib)
    assert len(qmodel.tuning_losses) == 9 * (len(calib) // OFFICIAL["tune_batch_size"])  # 9 epochs, one pass each
    srquant.save(qmodel, tmp_path / "q.pt")
    with torch.no_grad():
        assert torch.equal(srquant.load(tmp_path / "q.pt", model=model)(calib), qmodel(calib))


def test_release_schedule_cycles_groups_with_step_decay():
    config = OutlierAwareConfig(variant="official")
    schedule = release_schedule(config, n_calib=8, input_range=1.0)
    assert [g for g, _ in schedule[::4]] == ["weight", "act", "bp"] * 3
    assert schedule[0][1] == pytest.approx(1e-3) and schedule[4][1] == pytest.approx(1e-3 / 255)
    assert schedule[12][1] == pytest.approx(0.9e-3) and schedule[24][1] == pytest.approx(0.81e-3)


def test_dbdc_clip_mass_per_width():
    """The release never passes the configured p: 1e-4 at every width but 8 (1e-5); the spec follows the paper."""
    official, spec = DBDCConfig(variant="official"), DBDCConfig()
    assert [official.clip_mass(b) for b in (3, 4, 6, 8)] == [1e-4, 1e-4, 1e-4, 1e-5]
    assert spec.clip_mass(4) == 5e-4 and spec.clip_mass(8) == 1e-5
    assert not official.w_symmetric and official.batch_size == 16


def test_release_lower_clip_edge_is_one_bin_up():
    counts, edges = torch.tensor([1.0, 5, 5, 5, 1]), torch.arange(6.0)
    assert density_clip_range(counts, edges, 0.0) == (0.0, 5.0)
    assert density_clip_range(counts, edges, 0.0, "release") == (1.0, 5.0)


def test_official_pac_trains_on_l1_only(up_model):
    """The release's feature hooks detach both outputs: only L1 trains. The official config has no feature term and
    the release loop's first loss is the L1 between outputs; first and last conv at W8A8, the upsampler conv not."""
    config = PTQ4SRConfig(w_bits=4, a_bits=4, variant="official", iters_act=3, iters_weight=2, batch_size=8)
    assert config.feature_weight == 0 and config.lr_mode == "absolute" and config.lr_floor == 0.4
    with pytest.raises(ValueError, match="L1 only"):
        PTQ4SRConfig(variant="official", feature_weight=1.0)
    calib = tiny_calib()
    qmodel = srquant.quantize(up_model, config, calib)
    assert len(qmodel.tuning_losses) == 5
    bits = {n: l.input_quant.bits for n, l in quant_layers(qmodel)}
    assert bits["head"] == bits["last"] == 8 and bits["up"] == bits["fuse"] == 4


def test_release_pac_first_loss_is_l1(up_model):
    config = PTQ4SRConfig(w_bits=4, a_bits=4, variant="official", iters_act=1, iters_weight=0, batch_size=8,
                          tune_batch_size=8)
    qmodel = srquant.quantize(up_model, DBDCConfig(w_bits=4, a_bits=4, variant="official", batch_size=8), tiny_calib())
    calib = tiny_calib()
    with torch.no_grad():
        expected = float(nn.functional.l1_loss(qmodel(calib), up_model(calib)))
    losses = release_pac(qmodel, up_model, calib, config)
    assert losses[0] == pytest.approx(expected, rel=1e-5)
    assert cosine_lr(5e-3, 2e-3, 250)[0] == 5e-3 and cosine_lr(5e-3, 2e-3, 250)[-1] == pytest.approx(2e-3, rel=1e-3)


def test_official_dfsq_leaves_non_block_layers_in_float(up_model):
    """zysxmu/DFSQ quantizes EDSR's ResBlock convs only: layers outside blocks (here ``fuse``) stay float."""
    calib = tiny_calib()
    spec = srquant.quantize(up_model, DFSQConfig(w_bits=4, a_bits=4, restarts=1), calib)
    official = srquant.quantize(up_model, DFSQConfig(w_bits=4, a_bits=4, restarts=1, variant="official"), calib)
    assert "fuse" in dict(quant_layers(spec))
    assert set(dict(quant_layers(official))) == {"body.0.conv1", "body.0.conv2", "body.1.conv1", "body.1.conv2"}
    assert official.srquant_config.overrides["fuse"] == "fp"


def test_official_overrides_by_rule(up_model):
    config = DBDCConfig(w_bits=4, a_bits=4)
    ends8 = official_overrides(up_model, config, "ends8")
    first_last = official_overrides(up_model, config, "first-last8")
    eight = {"w_bits": 8, "a_bits": 8}
    assert {n for n, r in ends8.items() if r == eight} == {"head", "up", "last"}
    assert {n for n, r in first_last.items() if r == eight} == {"head", "last"}


def test_spec_stays_default_and_explicit_fields_win():
    assert OutlierAwareConfig().grid == "spec" and OutlierAwareConfig().loop == "spec"
    assert OutlierAwareConfig(variant="official", lr_abs=2e-3).lr_abs == 2e-3
    config = DBDCConfig(bins=512)
    apply_official(config, {"bins": 4096, "lower_edge": "release"})
    assert config.bins == 512 and config.lower_edge == "release"
    with pytest.raises(ValueError, match="variant"):
        OutlierAwareConfig(variant="paper")


def test_release_loss_rows_take_layer_weights_by_row_number():
    """Two blocks, two samples: row r = k N + n is weighted by the r-th layer's sensitivity; per-sample normalized."""
    from srquant.methods.outlier_aware import release_loss

    out = torch.zeros(2, 3, 4, 4)
    fp = [torch.ones(2, 1, 2, 2), torch.ones(2, 1, 2, 2)]
    q = [torch.ones(2, 1, 2, 2), torch.ones(2, 1, 2, 2)]
    q[1][1, 0, 0, 0] = -1.0  # block 1, sample 1 differs: row 3
    dist = float((nn.functional.normalize(fp[1][1].flatten(), dim=0) - nn.functional.normalize(q[1][1].flatten(), dim=0)).norm())
    weights = torch.tensor([0.1, 0.2, 0.3, 0.4, 0.5])
    assert float(release_loss(out, out, q, fp, weights, 10.0, 5.0)) == pytest.approx(10 * 0.4 * dist / 2 / 4)


def test_official_dfsq_layers_on_imdn_and_pan():
    """docs/fidelity.md: on IMDN x4 the release's layer set leaves c.0 and LR_conv float; on PAN x4 it is the body."""
    from conftest import need_shared
    from srquant.quant.scope import plan

    config = DFSQConfig(w_bits=4, a_bits=4)
    left_out = {}
    for name in ("imdn", "pan"):
        model = srquant.create(name, scale=4, weights=str(need_shared("weights", f"{name}_x4.pth")))
        official = {n for n, rule in official_overrides(model, config, "blocks").items() if rule != "fp"}
        left_out[name] = set(plan(model, "body", 4, 4)) - official
    assert left_out == {"imdn": {"c.0", "LR_conv"}, "pan": set()}
