"""Unit tests of the runtime points' parts on tiny models: op classification, tracing, rewrites, planning, insertion."""
import torch
from torch import nn

from srquant.methods import MinMaxConfig
from srquant.quant.model import prepare
from srquant.quant.points import GraphBuilder, insert_points, plan_points
from srquant.quant.points.rewrite import rewrite_graphs
from srquant.quant.walk import act_points, graph_quantizers

X = torch.rand(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))


def conv(cin=4, cout=4):
    return nn.Conv2d(cin, cout, 3, padding=1)


class ConvReluConv(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1, self.relu, self.conv2 = conv(), nn.ReLU(), conv()

    def forward(self, x):
        return self.conv2(self.relu(self.conv1(x)))


class TwoReadersOutputAdd(nn.Module):
    """Two convs read the input; their sum only reaches the model output."""

    def __init__(self):
        super().__init__()
        self.conv1, self.conv2 = conv(), conv()

    def forward(self, x):
        return self.conv1(x) + self.conv2(x)


class Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1, self.conv2 = conv(), conv()

    def forward(self, x):
        return self.conv2(self.conv1(x) + x)


class SplitConcat(nn.Module):
    """chunk + cat: the halves re-apply the conv output's quantizer in front of the integer concat."""

    def __init__(self):
        super().__init__()
        self.conv1, self.conv2 = conv(), conv()

    def forward(self, x):
        a, b = self.conv1(x).chunk(2, 1)
        return self.conv2(torch.cat([b, a], 1))


class Contrast(nn.Module):
    """IMDN's contrast branch: spatial mean and a variance written as mean((x - m)^2)."""

    def __init__(self):
        super().__init__()
        self.conv1 = conv()

    def forward(self, x):
        y = self.conv1(x)
        m = y.mean(dim=(2, 3), keepdim=True)
        var = (y - m).pow(2).mean(dim=(2, 3), keepdim=True)
        return y * torch.sigmoid(var + m) - y.mean(dim=(-2, -1), keepdim=True)


def traced(model: nn.Module) -> tuple[nn.Module, GraphBuilder]:
    qmodel = prepare(model.eval(), MinMaxConfig(scope="all"))
    builder = GraphBuilder(qmodel)
    with torch.no_grad():
        builder.run(X)
    return qmodel, builder


def labels(gnodes) -> list[str]:
    return [g.label for g in gnodes]


def test_trace_classifies_ops():
    _, builder = traced(Contrast())
    kinds = {g.label: g.kind for g in builder.gnodes}
    assert kinds["input"] == "input" and kinds["conv1"] == "conv"
    assert kinds["mul"] == "int" and kinds["sigmoid"] == "int" and kinds["add"] == "int"
    assert kinds["sub"] == "float" and kinds["pow_1"] == "float" and kinds["mean"] == "float"
    _, builder = traced(SplitConcat())
    kinds = {g.label: g.kind for g in builder.gnodes}
    assert kinds["chunk"] == "same" and kinds["getitem"] == "same" and kinds["cat"] == "int"


def test_plan_fuses_relu_into_the_producer():
    _, builder = traced(ConvReluConv())
    plan = plan_points(builder.gnodes, builder.opaque)
    assert labels(plan.roots) == ["input", "relu", "conv2"]  # conv1's output is rounded after the ReLU
    assert {r.label: labels(c) for r, c in plan.readers.items()} == {"input": ["conv1"], "relu": ["conv2"], "conv2": []}
    assert plan.reapply == []


def test_plan_shares_a_tensor_quantizer_and_keeps_output_only_ops_float():
    _, builder = traced(TwoReadersOutputAdd())
    plan = plan_points(builder.gnodes, builder.opaque)
    assert labels(plan.roots) == ["input", "conv1", "conv2"]  # no point after the add: it only reaches the output
    assert labels(plan.readers[plan.roots[0]]) == ["conv1", "conv2"]
    add = next(g for g in builder.gnodes if g.label == "add")
    assert add.kind == "int" and not add.exec_int


def test_plan_quantizes_what_an_integer_op_reads_and_writes():
    _, builder = traced(Residual())
    plan = plan_points(builder.gnodes, builder.opaque)
    assert labels(plan.roots) == ["input", "conv1", "add", "conv2"]
    assert next(g for g in builder.gnodes if g.label == "add").exec_int


def test_plan_reapplies_a_root_after_split_ops():
    _, builder = traced(SplitConcat())
    plan = plan_points(builder.gnodes, builder.opaque)
    assert labels(plan.roots) == ["input", "conv1", "cat", "conv2"]
    assert sorted((a.label, r.label) for a, r in plan.reapply) == [("getitem", "conv1"), ("getitem_1", "conv1")]


def test_rewrite_spatial_means_and_variance_keep_the_values():
    qmodel, builder = traced(Contrast())
    with torch.no_grad():
        before = qmodel(X)
    assert rewrite_graphs(builder, rewrite_variance=True)
    code = builder.graphs[""].python_code(root_module="self").src
    assert ".mean(" not in code and "pow" not in code
    assert code.count("functional.adaptive_avg_pool2d(") == 3 and "clamp_min" in code  # two means, E[x^2] of the variance
    builder.reset()
    with torch.no_grad():
        builder.run(X)
    kinds = {g.label: g.kind for g in builder.gnodes}
    assert kinds["adaptive_avg_pool2d"] == "int" and kinds["mul_1"] == "int"  # x * x at full resolution, integer
    gm = torch.fx.GraphModule(qmodel, builder.graphs[""])
    with torch.no_grad():
        torch.testing.assert_close(gm(X), before, rtol=1e-5, atol=1e-5)


def test_rewrite_without_variance_keeps_the_float_pattern():
    _, builder = traced(Contrast())
    assert rewrite_graphs(builder, rewrite_variance=False)
    code = builder.graphs[""].python_code(root_module="self").src
    assert "pow" in code and "clamp_min" not in code


def test_insert_points_ties_readers_and_keeps_the_module_tree():
    qmodel = prepare(TwoReadersOutputAdd().eval(), MinMaxConfig(scope="all"))
    names = [n for n, _ in qmodel.named_modules(remove_duplicate=False)]
    insert_points(qmodel, example=X)
    assert qmodel.conv2.input_quant is qmodel.conv1.input_quant  # one quantizer per tensor
    after = [n for n, _ in qmodel.named_modules(remove_duplicate=False)]
    assert after[: len(names)] == names and all(n.startswith("act_points") for n in after[len(names):])
    points = dict(act_points(qmodel))
    assert sorted(points) == ["act_points.conv1", "act_points.conv2", "act_points.input"]
    assert points["act_points.input"].tied_to == "conv1.input_quant"
    assert [n for n, _ in graph_quantizers(qmodel)] == ["act_points.conv1.quant", "act_points.conv2.quant"]
    with torch.no_grad():  # quantizers off (not calibrated): the regenerated forward computes the float model
        torch.testing.assert_close(qmodel(X), TwoReadersOutputAdd.forward(qmodel, X))
