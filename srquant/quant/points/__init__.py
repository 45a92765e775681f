"""Runtime quantization points: simulate every tensor an INT8 runtime quantizes, not only the layer inputs.

srquant's default simulation (``act_points="inputs"``) quantizes weights and the input of each quantized layer.
An integer runtime (ONNX Runtime QDQ with QLinearConv, QLinearAdd, QLinearMul, QLinearConcat, QLinearSigmoid,
QLinearLeakyRelu, QLinearGlobalAveragePool) also rounds conv outputs, residual sums, concatenations and
attention products to 8 bits. With ``act_points="runtime"`` :func:`insert_points` adds those roundings to the
simulation so that the simulated model and the exported INT8 model compute the same thing.

How it works, on the prepared model (QuantLayers in place):

* Each non-leaf module is FX-traced one level deep (its children are leaves), and the per-module graphs are
  stitched into one logical graph evaluated on a small example, so that every op knows its users across module
  boundaries.
* Ops are classified: ``conv`` (a QuantLayer), ``int`` (tensor+tensor add/mul, cat, sigmoid, leaky ReLU,
  global/avg pooling: ONNX Runtime has integer kernels for them), ``relu`` (folded into the producer's output
  range when it is the producer's only user), ``same`` (split, slices, reshapes, pixel shuffle, nearest resize,
  max pooling: the output stays on its input's grid) and ``float`` (everything else: sub, pow, sqrt, bilinear
  resize, ... run in float between a dequantize and a quantize).
* Every QuantLayer's output and every integer op's output gets a quantizer, and so does every tensor an integer
  op or a QuantLayer reads (the model input, a bilinear resize feeding an add, ...). Integer ops whose result
  reaches only float ops or the model output stay float (PAN's and ABPN's final ``+ base``): that is both
  cheaper and more accurate.
* One quantizer per tensor: the QuantLayers that read a tensor share one input quantizer (the first reader's
  ``input_quant`` is *tied* into the others), and tensors no QuantLayer reads get an 8-bit per-tensor
  :class:`UniformQuantizer` of their own. The quantizers are applied by :class:`ActPoint` modules that live in
  the root's ``act_points`` ModuleDict; each traced module whose graph gained a point gets a regenerated
  ``forward`` (bound to the instance: classes, names, parameters and the module tree are unchanged, so block
  reconstruction and save/load keep working).
* Rewrites that make the graph integer-friendly: a spatial ``mean(dim=(2, 3), keepdim=True)`` becomes
  ``adaptive_avg_pool2d(x, 1)`` (ONNX GlobalAveragePool, which has an integer kernel; ReduceMean has none) and,
  with ``rewrite_variance``, IMDN's contrast ``mean((x - m)^2)`` becomes ``relu(gap(x * x) - m * m)`` so that the
  full-resolution work runs as QLinearMul + QLinearGlobalAveragePool instead of float Sub/Pow/ReduceMean.

Calibration observes each tensor once (at its primary point) with the same observer and range function as the
layer inputs (see :func:`srquant.quant.model.observe_inputs`).
"""
from .insert import insert_points
from .plan import PointPlan, plan_points
from .trace import GNode, GraphBuilder

__all__ = ["GNode", "GraphBuilder", "PointPlan", "insert_points", "plan_points"]
