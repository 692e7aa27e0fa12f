"""A battery run over every registered model (timm style), plus builder-specific checks."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

import mobilenets
from mobilenets import create_model, list_models, parse_name, profile
from mobilenets.models.spec import make_divisible

pytestmark = pytest.mark.unit  # the sub-minute tier: python -m pytest -m unit

ALL = list_models()
# One model per distinct architecture (the resolution only changes the default input size).
ARCHS = sorted({n.rsplit("-", 1)[0] if n.split("-")[-1].isdigit() else n for n in ALL})
ARCH_NAMES = [next(n for n in ALL if n == a or n.startswith(a + "-")) for a in ARCHS]


def test_registry_contents() -> None:
    assert len([n for n in ALL if "V2" not in n and n.count("-") == 2]) == 16
    assert len([n for n in ALL if "V2" in n and n.count("-") == 2]) == 30
    assert "0.75-MobileNet-128" in ALL and "1.4-MobileNetV2-224" in ALL
    assert list_models("*V2-96") == [f"{a}-MobileNetV2-96" for a in ("1.4", "1.3", "1.0", "0.75", "0.5", "0.35")]


@pytest.mark.parametrize("name", ALL)
def test_flop_counter_matches_cost_model(name: str) -> None:
    """torch's own FLOP counter on the real module == the analytic count from the spec."""
    model = create_model(name).eval()
    res = parse_name(name).resolution
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        model(torch.randn(1, 3, res, res))
    assert fc.get_total_flops() == 2 * profile(name).madds
    assert sum(p.numel() for p in model.parameters()) == profile(name).trainable_params


@pytest.mark.parametrize("name", ARCH_NAMES)
def test_forward_sizes(name: str) -> None:
    model = create_model(name, num_classes=7).eval()
    for size in (32, 33, 97, 130):
        with torch.no_grad():
            out = model(torch.randn(2, 3, size, size))
        assert out.shape == (2, 7) and torch.isfinite(out).all()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 64, 100)).shape == (1, 7)


@pytest.mark.parametrize("name", ARCH_NAMES)
def test_backward_reaches_every_parameter(name: str) -> None:
    model = create_model(name, num_classes=5).train()
    out = model(torch.randn(2, 3, 64, 64))
    F.cross_entropy(out, torch.tensor([0, 3])).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing
    assert all(p.grad.abs().sum() > 0 for p in model.parameters())


@pytest.mark.parametrize("name", ARCH_NAMES)
@pytest.mark.parametrize("padding", ["symmetric", "tf_same"])
def test_torch_export(name: str, padding: str) -> None:
    model = create_model(name, padding=padding).eval()
    x = torch.randn(1, 3, 65, 64)
    with torch.no_grad():
        ref = model(x)
        ep = torch.export.export(model, (x,))
        torch.testing.assert_close(ep.module()(x), ref)


@pytest.mark.parametrize(
    ("name", "channels"),
    [("1.0-MobileNet-224", [64, 128, 256, 512, 1024]), ("1.0-MobileNetV2-224", [16, 24, 32, 96, 320])],
)
def test_features_only(name: str, channels: list[int]) -> None:
    model = create_model(name, features_only=True).eval()
    assert [f.channels for f in model.feature_info] == channels
    assert [f.reduction for f in model.feature_info] == [2, 4, 8, 16, 32]
    with torch.no_grad():
        feats = model(torch.randn(1, 3, 224, 224))
    assert [tuple(f.shape[1:]) for f in feats] == [(c, 224 // r, 224 // r) for c, r in zip(channels, [2, 4, 8, 16, 32])]
    sub = create_model(name, features_only=True, out_indices=(3, 1)).eval()
    assert [f.reduction for f in sub.feature_info] == [4, 16]
    with torch.no_grad():
        out = sub(torch.randn(1, 3, 96, 96))
    assert [o.shape[1] for o in out] == [channels[1], channels[3]]
    # blocks after the last requested feature are not built
    assert len(sub.blocks) < len(model.blocks)
    # features equal the full model's intermediate activations
    full = create_model(name).eval()
    full.load_state_dict(model.state_dict(), strict=False)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        y = full.stem(x)
        for i, b in enumerate(full.blocks):
            y = b(y)
            if f"blocks.{i}" == model.feature_info[-1].module:
                break
        torch.testing.assert_close(model(x)[-1], y)


def test_forward_features_and_head() -> None:
    model = create_model("0.5-MobileNetV2-96", num_classes=3).eval()
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        f = model.forward_features(x)
        assert f.shape == (2, 1280, 3, 3)
        assert model.forward_head(f, pre_logits=True).shape == (2, 1280)
        torch.testing.assert_close(model.forward_head(f), model(x))
    model.reset_classifier(0)
    assert model(x).shape == (2, 1280)
    model.reset_classifier(11)
    assert model(x).shape == (2, 11) and model.config.num_classes == 11


def test_state_dict_keys_are_readable() -> None:
    v2 = create_model("1.0-MobileNetV2-224").state_dict()
    assert "stem.conv.weight" in v2 and "head.conv.weight" in v2 and "classifier.weight" in v2
    assert "blocks.0.depthwise.conv.weight" in v2 and "blocks.0.expand.conv.weight" not in v2
    assert {"blocks.3.expand.conv.weight", "blocks.3.depthwise.bn.running_var",
            "blocks.3.project.conv.weight"} <= set(v2)
    v1 = create_model("1.0-MobileNet-224").state_dict()
    assert "blocks.12.pointwise.conv.weight" in v1 and not any(k.startswith("head.") for k in v1)
    assert v1["blocks.12.depthwise.conv.weight"].shape == (1024, 1, 3, 3)


def test_architecture_rules() -> None:
    v1 = create_model("1.0-MobileNet-224")
    # the last depthwise conv has stride 1 (the paper's table misprints it as s2)
    assert v1.blocks[12].depthwise.conv.stride == (1, 1)
    assert v1.blocks[11].depthwise.conv.stride == (2, 2)
    v2 = mobilenets.build_arch(parse_name("1.0-MobileNetV2-224"))
    assert len(v2.blocks) == 17  # the paper's text says 19; its table has 17
    assert [b.residual for b in v2.blocks].count(True) == 10
    assert v2.blocks[0].hidden == 32 and len(v2.blocks[0].layers) == 2  # t=1: no expansion conv
    assert not v2.blocks[0].layers[-1].act  # linear bottleneck
    assert mobilenets.build_arch(parse_name("0.35-MobileNetV2-224")).head.out_ch == 1280
    assert mobilenets.build_arch(parse_name("1.4-MobileNetV2-224")).head.out_ch == 1792
    assert mobilenets.build_arch(parse_name("1.4-MobileNetV2-224")).stem.out_ch == 48  # not 44
    assert make_divisible(32 * 1.4) == 48 and make_divisible(16 * 0.35) == 8
    assert mobilenets.build_arch(parse_name("0.25-MobileNet-224")).stem.out_ch == 8


def test_v2_ablations() -> None:
    nl = create_model("1.0-MobileNetV2-224-nonlinear")
    assert isinstance(nl.blocks[3].project.act, torch.nn.ReLU6)
    ns = mobilenets.build_arch(parse_name("1.0-MobileNetV2-224-noshortcut"))
    assert not any(b.residual for b in ns.blocks)
    t4 = mobilenets.build_arch(parse_name("1.0-MobileNetV2-224", ) .replace(expansion=4))
    assert t4.blocks[1].hidden == 16 * 4 and t4.blocks[0].hidden == 32  # the t=1 row is kept
    assert create_model("1.0-MobileNetV2-224", expansion=10).config.name == "1.0-MobileNetV2-224-t10"


def test_options() -> None:
    m = create_model("0.5-MobileNet-160", activation="relu", bn_eps=1e-3, bn_momentum=0.003, dropout=0.0, in_chans=1)
    assert isinstance(m.stem.act, torch.nn.ReLU) and m.stem.bn.eps == 1e-3 and m.stem.bn.momentum == 0.003
    assert m.stem.conv.in_channels == 1 and m.dropout.p == 0.0
    assert create_model("1.0-MobileNet-224").dropout.p == pytest.approx(0.001)  # TF keep_prob 0.999
    assert create_model("1.0-MobileNetV2-224").dropout.p == pytest.approx(0.2)  # TF keep_prob 0.8
    assert create_model("1.0-MobileNet-224", num_classes=1001).classifier.out_features == 1001


def test_tf_same_padding_matches_tensorflow_rule() -> None:
    """SAME: extra row/col at the bottom/right; equal to explicit F.pad(0,1,0,1) on even sizes."""
    sym = create_model("0.25-MobileNet-224").eval()
    same = create_model("0.25-MobileNet-224", padding="tf_same").eval()
    same.load_state_dict(sym.state_dict())
    x = torch.randn(1, 3, 64, 64)
    conv = same.stem.conv
    ref = F.conv2d(F.pad(x, (0, 1, 0, 1)), conv.weight, stride=2)
    torch.testing.assert_close(conv(x), ref)
    odd = torch.randn(1, 3, 65, 65)  # odd size: TF pads 1 on each side, like symmetric
    torch.testing.assert_close(conv(odd), F.conv2d(odd, conv.weight, stride=2, padding=1))
    with torch.no_grad():
        assert (same(x) - sym(x)).abs().max() > 1e-4  # they really differ on even sizes
    assert same.stem.conv.padding == (0, 0) and same.blocks[0].depthwise.conv.padding == (1, 1)


@pytest.mark.parametrize("padding", [(1, 1), (0, 0)])  # symmetric; tf_same pads the input first
def test_upsampled_input_grad_equals_the_transposed_conv_in_float64(padding: tuple[int, int]) -> None:
    """The fast input gradient of a strided depthwise conv is exact: float64 against torch's own."""
    from mobilenets.training.fast_backward import _upsampled_input_grad

    g = torch.Generator().manual_seed(0)
    w = torch.randn(6, 1, 3, 3, dtype=torch.float64, generator=g)
    for h in range(5, 20):
        for wd in (5, h, 19):
            shape = torch.Size((2, 6, h, wd))
            out = F.conv2d(torch.zeros(shape, dtype=torch.float64), w, None, 2, padding, 1, 6)
            grad = torch.randn(out.shape, dtype=torch.float64, generator=g)
            ref = torch.nn.grad.conv2d_input(shape, w, grad, 2, padding, 1, 6)
            torch.testing.assert_close(_upsampled_input_grad(grad, w, shape, (2, 2), padding), ref,
                                       rtol=1e-12, atol=1e-12)


def test_strided_depthwise_function_passes_gradcheck() -> None:
    from mobilenets.training.fast_backward import _StridedDepthwiseConv

    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 3, 7, 6, dtype=torch.float64, generator=g, requires_grad=True)
    w = torch.randn(3, 1, 3, 3, dtype=torch.float64, generator=g, requires_grad=True)
    for padding in ((1, 1), (0, 0)):
        assert torch.autograd.gradcheck(lambda a, b, p=padding: _StridedDepthwiseConv.apply(a, b, (2, 2), p), (x, w))


def _fake_cpu(monkeypatch: pytest.MonkeyPatch, *flags: str) -> None:
    """Pretend to run on a CPU with these /proc/cpuinfo flags (paths chosen by capability)."""
    from mobilenets.utils import device

    fake = device.CpuFeatures("fake CPU", "x86_64", frozenset(flags))
    monkeypatch.setattr(device, "cpu_features", lambda: fake)


def _grad_fn(dw: torch.nn.Module, amp: bool, size: int = 9) -> str:
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
        return type(dw(torch.randn(1, dw.in_channels, size, size, requires_grad=True)).grad_fn).__name__


def test_fast_strided_depthwise_backward_only_for_native_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    """bf16 training on a CPU that computes bf16 natively takes the fast path; nothing else does."""
    from mobilenets.training.fast_backward import FastBackwardConv2d, use_fast_depthwise_backward

    model = create_model("0.5-MobileNetV2-224", num_classes=10).train()
    use_fast_depthwise_backward(model)  # what training applies
    assert sum(isinstance(m, FastBackwardConv2d) for m in model.modules()) == 4
    dw = model.blocks[1].depthwise.conv
    _fake_cpu(monkeypatch, "avx2", "avx512f", "avx512_bf16")
    assert _grad_fn(dw, amp=True) == "_StridedDepthwiseConvBackward"
    assert _grad_fn(dw, amp=False) == "ConvolutionBackward0"  # fp32: the native kernel is fast
    assert _grad_fn(dw, amp=True, size=3) == "_StridedDepthwiseConvBackward"
    assert _grad_fn(dw, amp=True, size=2) != "_StridedDepthwiseConvBackward"  # smaller than the kernel
    dw.eval()
    assert _grad_fn(dw, amp=True) != "_StridedDepthwiseConvBackward"
    dw.train()
    _fake_cpu(monkeypatch, "avx2", "fma")  # emulated bf16: the native kernel
    assert _grad_fn(dw, amp=True) != "_StridedDepthwiseConvBackward"
    _fake_cpu(monkeypatch, "avx2", "avx512f", "avx512_vnni")  # AVX-512 without BF16 emulates it too
    assert _grad_fn(dw, amp=True) != "_StridedDepthwiseConvBackward"


@pytest.mark.parametrize("padding", ["symmetric", "tf_same"])
def test_fast_backward_bf16_error_is_the_plain_bf16_error(padding: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """End to end in bf16: the fast path's gradients are as close to fp32 as the plain bf16 path's.

    The tolerance is measured here: the plain bf16 path's own distance to the fp32 gradients (it
    depends on how this CPU computes bf16), not a constant.
    """
    from mobilenets.training.fast_backward import FastBackwardConv2d, use_fast_depthwise_backward

    _fake_cpu(monkeypatch, "avx512f", "avx512_bf16")  # take the fast path whatever this CPU is
    torch.manual_seed(0)
    model = create_model("0.5-MobileNetV2-224", num_classes=10, padding=padding, dropout=0.0).train()
    use_fast_depthwise_backward(model)
    for m in model.modules():  # BN on fixed statistics: well-conditioned gradients to compare
        if isinstance(m, torch.nn.BatchNorm2d):
            m.eval()
    x, y = torch.randn(4, 3, 67, 66).contiguous(memory_format=torch.channels_last), torch.tensor([1, 2, 3, 4])

    def grads(amp: bool) -> dict[str, torch.Tensor]:
        model.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            F.cross_entropy(model(x), y).backward()
        return {n: p.grad.double().clone() for n, p in model.named_parameters()}

    ref = grads(False)
    fast = grads(True)
    monkeypatch.setattr(FastBackwardConv2d, "_conv_forward", torch.nn.Conv2d._conv_forward)
    plain = grads(True)

    def err(g: dict[str, torch.Tensor], names: list[str]) -> float:
        return float(sum((g[n] - ref[n]).norm() ** 2 for n in names) ** 0.5)

    names = list(ref)
    assert 0 < err(fast, names) <= 1.1 * err(plain, names)
    for n in names:  # every tensor, with a floor for those whose plain bf16 error happens to be tiny
        assert err(fast, [n]) <= 1.5 * err(plain, [n]) + 0.01 * float(ref[n].norm()), n


def test_init_divides_fanout_by_groups() -> None:
    torch.manual_seed(0)
    m = create_model("1.0-MobileNet-224")
    std = m.blocks[12].depthwise.conv.weight.std().item()
    assert std == pytest.approx((2 / 9) ** 0.5, rel=0.05)  # not sqrt(2 / (9 * 1024))


def test_zero_init_residual_starts_each_residual_block_as_the_identity() -> None:
    from mobilenets.models import zero_init_residual

    torch.manual_seed(0)
    m = create_model("0.5-MobileNetV2-96").train()
    assert zero_init_residual(m) == sum(b.residual for b in mobilenets.build_arch(m.config).blocks) == 10
    seen = []
    for block in m.blocks:
        if block.residual:
            block.register_forward_hook(lambda mod, i, o: seen.append(torch.equal(o, i[0])))
    m(torch.randn(2, 3, 96, 96)).sum().backward()
    assert seen == [True] * 10
    assert all(b.project.bn.weight.grad.abs().sum() > 0 for b in m.blocks if b.residual)  # and they learn
    assert zero_init_residual(create_model("0.5-MobileNet-96")) == 0  # V1 has no shortcut
    cfg = mobilenets.TrainConfig(task="segmentation").resolved()
    assert cfg.zero_init_residual and not mobilenets.TrainConfig().resolved().zero_init_residual


@pytest.mark.parametrize(
    ("name", "canonical"),
    [
        ("0.75-MobileNet-128", "0.75-MobileNet-128"),
        ("1.4-MobileNetV2-224", "1.4-MobileNetV2-224"),
        ("mobilenet_v1_0.25_128", "0.25-MobileNet-128"),
        ("mobilenet_v1_0.50_160", "0.5-MobileNet-160"),
        ("mobilenet_v2_0.35_96", "0.35-MobileNetV2-96"),
        ("mobilenet_v2_1.0_224_quant", "1.0-MobileNetV2-224"),
        ("mobilenetv2_140", "1.4-MobileNetV2-224"),
        ("mobilenetv1_100.ra4_e3600_r224_in1k", "1.0-MobileNet-224"),
        ("mobilenet_v2", "1.0-MobileNetV2-224"),
        ("MobileNetV2", "1.0-MobileNetV2-224"),
        ("Shallow-MobileNet-224", "1.0-MobileNet-224-shallow"),
        ("0.6-MobileNet-200", "0.6-MobileNet-200"),
        ("1.0-MobileNetV2-224-noshortcut", "1.0-MobileNetV2-224-noshortcut"),
    ],
)
def test_names(name: str, canonical: str) -> None:
    assert parse_name(name).name == canonical
    assert parse_name(canonical).name == canonical


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: create_model("MobileNetV3"), "closest"),
        (lambda: create_model("0.75-MobileNet-12"), ">= 32"),
        (lambda: create_model("0-MobileNet-224"), "alpha"),
        (lambda: create_model("1.0-MobileNet-224", alpha=-1), "alpha"),
        (lambda: create_model("1.0-MobileNet-224", variant="wide"), "standard, conv, shallow"),
        (lambda: create_model("1.0-MobileNetV2-224", variant="conv"), "nonlinear"),
        (lambda: create_model("1.0-MobileNet-224", activation="gelu"), "relu6, relu"),
        (lambda: create_model("1.0-MobileNet-224", padding="same"), "symmetric, tf_same"),
        (lambda: create_model("1.0-MobileNet-224", num_clases=3), "num_classes"),
        (lambda: create_model("1.0-MobileNet-224", dropout=0.999 + 0.001), "drop probability"),
        (lambda: create_model("1.0-MobileNet-224", bn_momentum=0.9997 * 2), "1 - d"),
        (lambda: create_model("1.0-MobileNet-224", expansion=6), "only to MobileNetV2"),
        (lambda: create_model("1.0-MobileNetV2-224-wide"), "unknown suffix"),
        (lambda: create_model("1.0-MobileNet-224", features_only=True, out_indices=[7]), "0..4"),
    ],
)
def test_bad_input_is_explained(call, match: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=match):
        call()
