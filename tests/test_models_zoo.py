"""Zoo tests for EDSR, RDN, MSRResNet, ESPCN, FSRCNN and XCAT-R.

The "official" key layouts below are written out independently of srquant's modules, as the reference code names
them (EDSR-PyTorch ``edsr.py``/``rdn.py``, BasicSR ``edsr_arch.py``/``srresnet_arch.py``, yjn870 ESPCN/FSRCNN), and
saved in each project's own container format.
"""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from srquant.models import CheckpointError, create, get_spec
from srquant.models.fsrcnn import deconv_padding

Shapes = dict[str, tuple[int, ...]]


pytestmark = pytest.mark.usefixtures("one_thread")


# ---------------------------------------------------------------------------------------------------------------
# Official key layouts (name -> shape), restated from the reference code


def _conv(prefix: str, cin: int, cout: int, k: int, groups: int = 1) -> Shapes:
    return {f"{prefix}.weight": (cout, cin // groups, k, k), f"{prefix}.bias": (cout,)}


def _pixel_shuffle_convs(prefix: str, feat: int, scale: int) -> Shapes:
    """EDSR-PyTorch ``Upsampler`` / BasicSR ``Upsample``: convs at Sequential indices 0, 2, ..."""
    if scale == 3:
        return _conv(f"{prefix}.0", feat, 9 * feat, 3)
    out: Shapes = {}
    for i in range(int(math.log2(scale))):
        out |= _conv(f"{prefix}.{2 * i}", feat, 4 * feat, 3)
    return out


def edsr_official(n_resblocks: int, n_feats: int, scale: int) -> Shapes:
    keys: Shapes = {}
    for name in ("sub_mean", "add_mean"):
        keys |= _conv(name, 3, 3, 1)
    keys |= _conv("head.0", 3, n_feats, 3)
    for i in range(n_resblocks):
        keys |= _conv(f"body.{i}.body.0", n_feats, n_feats, 3) | _conv(f"body.{i}.body.2", n_feats, n_feats, 3)
    keys |= _conv(f"body.{n_resblocks}", n_feats, n_feats, 3)
    return keys | _pixel_shuffle_convs("tail.0", n_feats, scale) | _conv("tail.1", n_feats, 3, 3)


def edsr_basicsr(num_block: int, num_feat: int, scale: int) -> Shapes:
    keys = _conv("conv_first", 3, num_feat, 3)
    for i in range(num_block):
        keys |= _conv(f"body.{i}.conv1", num_feat, num_feat, 3) | _conv(f"body.{i}.conv2", num_feat, num_feat, 3)
    keys |= _conv("conv_after_body", num_feat, num_feat, 3)
    return keys | _pixel_shuffle_convs("upsample", num_feat, scale) | _conv("conv_last", num_feat, 3, 3)


def rdn_official(scale: int, G0: int = 64, D: int = 16, C: int = 8, G: int = 64, k: int = 3) -> Shapes:
    keys = _conv("SFENet1", 3, G0, k) | _conv("SFENet2", G0, G0, k)
    for d in range(D):
        for c in range(C):
            keys |= _conv(f"RDBs.{d}.convs.{c}.conv.0", G0 + c * G, G, k)
        keys |= _conv(f"RDBs.{d}.LFF", G0 + C * G, G0, 1)
    keys |= _conv("GFF.0", D * G0, G0, 1) | _conv("GFF.1", G0, G0, k)
    if scale == 4:
        keys |= _conv("UPNet.0", G0, 4 * G, k) | _conv("UPNet.2", G, 4 * G, k) | _conv("UPNet.4", G, 3, k)
    else:
        keys |= _conv("UPNet.0", G0, G * scale * scale, k) | _conv("UPNet.2", G, 3, k)
    return keys


def msrresnet_basicsr(scale: int, num_feat: int = 64, num_block: int = 16) -> Shapes:
    keys = _conv("conv_first", 3, num_feat, 3)
    for i in range(num_block):
        keys |= _conv(f"body.{i}.conv1", num_feat, num_feat, 3) | _conv(f"body.{i}.conv2", num_feat, num_feat, 3)
    if scale == 4:
        keys |= _conv("upconv1", num_feat, 4 * num_feat, 3) | _conv("upconv2", num_feat, 4 * num_feat, 3)
    else:
        keys |= _conv("upconv1", num_feat, num_feat * scale * scale, 3)
    return keys | _conv("conv_hr", num_feat, num_feat, 3) | _conv("conv_last", num_feat, 3, 3)


def espcn_yjn870(scale: int, channels: int = 3) -> Shapes:
    return (
        _conv("first_part.0", channels, 64, 5)
        | _conv("first_part.2", 64, 32, 3)
        | _conv("last_part.0", 32, channels * scale * scale, 3)
    )


def fsrcnn_yjn870(scale: int, d: int = 56, s: int = 12, m: int = 4) -> Shapes:
    keys = _conv("first_part.0", 3, d, 5) | {"first_part.1.weight": (d,)}
    widths = [(d, s, 1)] + [(s, s, 3)] * m + [(s, d, 1)]
    for i, (cin, cout, k) in enumerate(widths):
        keys |= _conv(f"mid_part.{2 * i}", cin, cout, k) | {f"mid_part.{2 * i + 1}.weight": (cout,)}
    return keys | {"last_part.weight": (d, 3, 9, 9), "last_part.bias": (3,)}  # ConvTranspose2d: (in, out, k, k)


def xcat_r_layout(scale: int) -> Shapes:
    keys = _conv("head.0", 3, 32, 3)
    for i in range(3):
        keys |= _conv(f"blocks.{i}.conv_p", 8, 8, 3) | _conv(f"blocks.{i}.conv_q", 24, 24, 3, groups=3)
    return keys | _conv("tail", 32, 3 * scale * scale, 3)


# ---------------------------------------------------------------------------------------------------------------
# helpers


def random_state(shapes: Shapes, seed: int = 0) -> dict[str, torch.Tensor]:
    """Fan-in scaled random weights (deep nets stay finite), small biases, PReLU slopes near 0.25."""
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for name, shape in shapes.items():
        value = torch.randn(shape, generator=gen)
        if len(shape) >= 2:
            value *= 0.5 / math.sqrt(math.prod(shape[1:]))
        elif name.endswith("bias"):
            value *= 0.05
        else:
            value = 0.25 + 0.05 * value
        state[name] = value
    for name, sign in (("sub_mean", -1), ("add_mean", 1)):  # EDSR mean shift: official values, slightly perturbed
        if f"{name}.weight" in state:
            state[f"{name}.weight"] = torch.eye(3).view(3, 3, 1, 1)
            mean = torch.tensor([0.4488, 0.4371, 0.4040]) + 0.01 * torch.randn(3, generator=gen)
            state[f"{name}.bias"] = sign * 255 * mean
    return state


def meta_state_shapes(name: str, scale: int, **kwargs) -> Shapes:
    spec = get_spec(name)
    with torch.device("meta"):
        model = spec.builder(scale=scale, **{**spec.kwargs, **kwargs})
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def direct(name: str, scale: int, state: dict[str, torch.Tensor], **kwargs) -> torch.nn.Module:
    spec = get_spec(name)
    model = spec.builder(scale=scale, **{**spec.kwargs, **kwargs})
    model.load_state_dict(state, strict=True)
    return model.eval()


def lr_input(name: str, size: int = 8, seed: int = 1) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(1, 3, size, size, generator=gen) * get_spec(name).input_range


# ---------------------------------------------------------------------------------------------------------------
# (a) forward shapes at random init

LIGHT = ["edsr_baseline", "msrresnet", "espcn", "fsrcnn", "xcat_r"]


@pytest.mark.parametrize("name", LIGHT)
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_forward_shape(name, scale):
    model = create(name, scale)
    with torch.no_grad():
        out = model(lr_input(name, 6))
    assert out.shape == (1, 3, 6 * scale, 6 * scale)
    assert torch.isfinite(out).all()
    assert model.sr_info.scale == scale and model.sr_info.input_range == get_spec(name).input_range


@pytest.mark.parametrize("name", ["edsr", "rdn"])
def test_forward_shape_heavy(name):
    model = create(name, 4)
    with torch.no_grad():
        out = model(lr_input(name, 4))
    assert out.shape == (1, 3, 16, 16)


# ---------------------------------------------------------------------------------------------------------------
# (b) official layouts: full-size key/shape equality, then a saved file loads and matches direct loading


FULL_LAYOUTS = {
    "edsr_baseline": lambda s: edsr_official(16, 64, s),
    "edsr": lambda s: edsr_official(32, 256, s),
    "rdn": lambda s: rdn_official(s),
    "msrresnet": lambda s: msrresnet_basicsr(s),
    "espcn": lambda s: espcn_yjn870(s),
    "fsrcnn": lambda s: fsrcnn_yjn870(s),
    "xcat_r": lambda s: xcat_r_layout(s),
}


@pytest.mark.parametrize("name", sorted(FULL_LAYOUTS))
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_official_layout_matches(name, scale):
    assert meta_state_shapes(name, scale) == FULL_LAYOUTS[name](scale)


# (name, scale, layout, builder overrides to keep the file small, container)
ROUND_TRIPS = [
    ("edsr_baseline", 2, edsr_official(16, 64, 2), {}, None),
    ("edsr_baseline", 3, edsr_official(16, 64, 3), {}, None),
    ("edsr", 4, edsr_official(2, 32, 4), {"n_resblocks": 2, "n_feats": 32}, None),
    ("rdn", 2, rdn_official(2, G0=16, D=2, C=3, G=8), {"G0": 16, "D": 2, "C": 3, "G": 8}, None),
    ("rdn", 4, rdn_official(4, G0=16, D=2, C=3, G=8), {"G0": 16, "D": 2, "C": 3, "G": 8}, None),
    ("msrresnet", 4, msrresnet_basicsr(4), {}, "params"),
    ("msrresnet", 3, msrresnet_basicsr(3), {}, "params_ema"),
    ("espcn", 3, espcn_yjn870(3), {}, None),
    ("fsrcnn", 2, fsrcnn_yjn870(2), {}, None),
    ("xcat_r", 3, xcat_r_layout(3), {}, None),
]


@pytest.mark.parametrize(
    "name,scale,layout,overrides,container", ROUND_TRIPS, ids=[f"{r[0]}-x{r[1]}" for r in ROUND_TRIPS]
)
def test_official_file_loads(tmp_path, name, scale, layout, overrides, container):
    state = random_state(layout)
    path = tmp_path / f"{name}_x{scale}.pth"
    torch.save({container: state} if container else state, path)
    model = create(name, scale, weights=path, **overrides)
    x = lr_input(name)
    with torch.no_grad():
        torch.testing.assert_close(model(x), direct(name, scale, state, **overrides)(x))


def edsr_reference(state, x: torch.Tensor, n_blocks: int, res_scale: float, scale: int) -> torch.Tensor:
    """EDSR-PyTorch forward written functionally from the official keys (input and output in [0, 255])."""

    def conv(t: torch.Tensor, k: str) -> torch.Tensor:
        weight = state[f"{k}.weight"]
        return F.conv2d(t, weight, state[f"{k}.bias"], padding=weight.shape[-1] // 2)

    h = conv(conv(x, "sub_mean"), "head.0")
    r = h
    for i in range(n_blocks):
        r = r + res_scale * conv(F.relu(conv(r, f"body.{i}.body.0")), f"body.{i}.body.2")
    r = conv(r, f"body.{n_blocks}") + h
    if scale == 3:
        r = F.pixel_shuffle(conv(r, "tail.0.0"), 3)
    else:
        for j in range(int(math.log2(scale))):
            r = F.pixel_shuffle(conv(r, f"tail.0.{2 * j}"), 2)
    return conv(conv(r, "tail.1"), "add_mean")


def basicsr_edsr_reference(state, x01: torch.Tensor, n_blocks: int, scale: int, img_range: float = 255.0):
    """BasicSR EDSR forward written functionally from its keys (input and output in [0, 1])."""
    mean = torch.tensor([0.4488, 0.4371, 0.4040]).view(1, 3, 1, 1)
    conv = lambda t, k: F.conv2d(t, state[f"{k}.weight"], state[f"{k}.bias"], padding=1)  # noqa: E731
    h = conv((x01 - mean) * img_range, "conv_first")
    r = h
    for i in range(n_blocks):
        r = r + conv(F.relu(conv(r, f"body.{i}.conv1")), f"body.{i}.conv2")
    r = conv(r, "conv_after_body") + h
    for j in range(1 if scale == 3 else int(math.log2(scale))):
        r = F.pixel_shuffle(conv(r, f"upsample.{2 * j}"), 3 if scale == 3 else 2)
    return conv(r, "conv_last") / img_range + mean


def msrresnet_reference(state, x: torch.Tensor, scale: int, n_blocks: int = 16) -> torch.Tensor:
    conv = lambda t, k: F.conv2d(t, state[f"{k}.weight"], state[f"{k}.bias"], padding=1)  # noqa: E731
    lrelu = lambda t: F.leaky_relu(t, 0.1)  # noqa: E731
    r = lrelu(conv(x, "conv_first"))
    for i in range(n_blocks):
        r = r + conv(F.relu(conv(r, f"body.{i}.conv1")), f"body.{i}.conv2")
    for key in ("upconv1", "upconv2") if scale == 4 else ("upconv1",):
        r = lrelu(F.pixel_shuffle(conv(r, key), 2 if scale == 4 else scale))
    out = conv(lrelu(conv(r, "conv_hr")), "conv_last")
    return out + F.interpolate(x, scale_factor=scale, mode="bilinear", align_corners=False)


@pytest.mark.parametrize("scale", [3, 4])
def test_edsr_matches_functional_reference(tmp_path, scale):
    state = random_state(edsr_official(3, 16, scale))
    torch.save(state, tmp_path / "edsr.pt")
    model = create("edsr", scale, weights=tmp_path / "edsr.pt", n_resblocks=3, n_feats=16)
    x = lr_input("edsr")
    with torch.no_grad():
        torch.testing.assert_close(model(x), edsr_reference(state, x, 3, 0.1, scale), rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_basicsr_edsr_file_loads(tmp_path, scale):
    state = random_state(edsr_basicsr(2, 16, scale))
    torch.save({"params": state}, tmp_path / "edsr_basicsr.pth")
    model = create("edsr_baseline", scale, weights=tmp_path / "edsr_basicsr.pth", n_resblocks=2, n_feats=16)
    x01 = lr_input("msrresnet")  # BasicSR feeds [0, 1]; srquant's EDSR takes [0, 255]
    with torch.no_grad():
        expected = basicsr_edsr_reference(state, x01, 2, scale)
        torch.testing.assert_close(model(x01 * 255) / 255, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("scale", [2, 4])
def test_msrresnet_matches_functional_reference(tmp_path, scale):
    state = random_state(msrresnet_basicsr(scale))
    torch.save({"params": state}, tmp_path / "msrresnet.pth")
    model = create("msrresnet", scale, weights=tmp_path / "msrresnet.pth")
    x = lr_input("msrresnet")
    with torch.no_grad():
        torch.testing.assert_close(model(x), msrresnet_reference(state, x, scale), rtol=1e-4, atol=1e-5)


def test_edsr_file_without_mean_shift_loads(tmp_path):
    state = random_state(edsr_official(16, 64, 2))
    for name, sign in (("sub_mean", -1), ("add_mean", 1)):
        state[f"{name}.weight"] = torch.eye(3).view(3, 3, 1, 1)
        state[f"{name}.bias"] = sign * 255 * torch.tensor([0.4488, 0.4371, 0.4040])
    torch.save(state, tmp_path / "full.pt")
    torch.save({k: v for k, v in state.items() if "_mean." not in k}, tmp_path / "stripped.pt")
    x = lr_input("edsr_baseline")
    with torch.no_grad():
        full = create("edsr_baseline", 2, weights=tmp_path / "full.pt")(x)
        stripped = create("edsr_baseline", 2, weights=tmp_path / "stripped.pt")(x)
    torch.testing.assert_close(full, stripped)


# ---------------------------------------------------------------------------------------------------------------
# (c) a wrong checkpoint names its missing and unexpected keys

# (name, layout, key renamed in the file, key the error reports missing, container, builder overrides)
BROKEN = [
    ("edsr_baseline", edsr_official(16, 64, 2), "head.0.weight", "head.0.weight", None, {}),
    ("edsr_baseline", edsr_basicsr(16, 64, 2), "conv_last.bias", "tail.1.bias", "params", {}),  # reported translated
    ("rdn", rdn_official(2, G0=16, D=2, C=3, G=8), "RDBs.1.LFF.weight", "RDBs.1.LFF.weight", None,
     {"G0": 16, "D": 2, "C": 3, "G": 8}),
    ("msrresnet", msrresnet_basicsr(2), "conv_hr.weight", "conv_hr.weight", "params", {}),
    ("espcn", espcn_yjn870(2), "first_part.2.bias", "first_part.2.bias", None, {}),
    ("fsrcnn", fsrcnn_yjn870(2), "mid_part.3.weight", "mid_part.3.weight", None, {}),
    ("xcat_r", xcat_r_layout(2), "blocks.1.conv_q.weight", "blocks.1.conv_q.weight", None, {}),
]


@pytest.mark.parametrize(
    "name,layout,victim,reported,container,overrides", BROKEN, ids=[f"{b[0]}-{b[2]}" for b in BROKEN]
)
def test_wrong_key_raises(tmp_path, name, layout, victim, reported, container, overrides):
    state = random_state(layout)
    renamed = victim.replace(".", "_") + "_renamed"
    state[renamed] = state.pop(victim)
    torch.save({container: state} if container else state, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError) as err:
        create(name, 2, weights=tmp_path / "bad.pth", **overrides)
    message = str(err.value)
    assert "missing keys" in message and reported in message
    assert "unexpected keys" in message and renamed in message


def test_y_channel_checkpoint_is_a_shape_error(tmp_path):
    torch.save(random_state(espcn_yjn870(3, channels=1)), tmp_path / "espcn_y.pth")
    with pytest.raises(CheckpointError, match="shape mismatch"):
        create("espcn", 3, weights=tmp_path / "espcn_y.pth")


# ---------------------------------------------------------------------------------------------------------------
# (d) parameter counts (models.md §8) and architecture details


def trainable(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@pytest.mark.parametrize(
    "name,counts",
    [
        ("abpn", {2: 33_464, 3: 42_539, 4: 62_048}),
        ("espcn", {2: 26_796, 3: 31_131, 4: 37_200}),
        ("fsrcnn", {2: 24_683, 3: 24_683, 4: 24_683}),
        ("xcat_r", {2: 11_372, 3: 15_707, 4: 21_776}),
    ],
)
def test_mobile_param_counts(name, counts):
    for scale, expected in counts.items():
        assert trainable(create(name, scale)) == expected, (name, scale)


def test_large_param_counts():
    assert trainable(create("edsr_baseline", 2)) == 1_369_859  # "1.37M"; mean shift is a buffer, not a parameter
    assert trainable(create("msrresnet", 4)) == 1_517_571


def test_xcat_anchor_is_frozen_and_not_saved():
    model = create("xcat_r", 3)
    assert not any("anchor" in n for n, _ in model.named_parameters())
    assert not any("anchor" in k for k in model.state_dict())
    x = lr_input("xcat_r", 5)
    torch.testing.assert_close(model.anchor(x), torch.repeat_interleave(x, 9, dim=1))
    with torch.no_grad():
        model.tail.weight.zero_()
        model.tail.bias.zero_()
        torch.testing.assert_close(model(x), F.interpolate(x, scale_factor=3, mode="nearest"))


@pytest.mark.parametrize("name", ["espcn", "fsrcnn", "xcat_r"])
def test_clip_output_option(name):
    clipped = create(name, 2, clip_output=True)
    free = create(name, 2, clip_output=False)
    free.load_state_dict(clipped.state_dict())
    x = lr_input(name) * 4 - 1.5  # drive the output outside [0, 1]
    with torch.no_grad():
        a, b = clipped(x), free(x)
    assert clipped.sr_info.clip_output and not free.sr_info.clip_output
    assert a.min() >= 0 and a.max() <= 1
    torch.testing.assert_close(a, b.clamp(0, 1))


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_fsrcnn_deconv_alignment(scale):
    padding, output_padding = deconv_padding(scale)
    assert 0 <= output_padding < scale
    model = create("fsrcnn", scale)
    deconv = model.last_part
    assert (deconv.padding[0], deconv.output_padding[0]) == (padding, output_padding)
    with torch.no_grad():
        deconv.weight.zero_()
        deconv.bias.zero_()
        deconv.weight[0, 0, 4, 4] = 1.0  # centre tap
        feat = torch.zeros(1, 56, 5, 5)
        feat[0, 0, 2, 2] = 1.0
        out = deconv(feat)
    assert out.shape[-1] == 5 * scale
    peak = int(out[0, 0].flatten().argmax()) % out.shape[-1]
    centre = 2 * scale + (scale - 1) / 2  # centre of LR pixel 2's HR block
    assert abs(peak - centre) == (0 if scale % 2 else 0.5)
