"""The ONNX side of the QDQ export: a small graph editor, the clean-up pass, and the graph digest.

A clean-up pass on the ONNX graph then:

* turns Constant nodes into initializers;
* merges identical QuantizeLinear / DequantizeLinear nodes and drops ``DQ -> Q`` pairs with equal parameters
  (a tensor the simulation re-quantizes on its own grid, e.g. a QuantLayer re-applying the point in front of it);
* quantizes each conv bias to int32 with scale ``s_input * s_weight`` (what QLinearConv needs; the simulation keeps
  the float bias, a difference below ``s_input * s_weight / 2`` per output); an input activation with an almost
  empty calibration range (a dead ReLU: scale ~ 1e-8 / 255) first gets the coarser scale its convs' biases need to
  fit int32 (see ``_Graph.widen_degenerate_inputs``; a float bias would be converted by ONNX Runtime, and overflow);
* gives each conv with fewer than ``pad_out_channels`` (16) output filters zero filters up to that count and a
  ``Slice`` back to its real channels after its output QuantizeLinear (see ``_Graph.pad_narrow_convs``): ONNX
  Runtime's symmetric integer conv kernels on x86 (MLAS ``ConvSym``) take at least 16 output channels, and a
  narrower conv (PAN's 24 -> 3 output conv at the HR size) falls back to a slower generic path (docs/int8.md, Speed);
* removes unused initializers and stores srquant metadata (config, scale, input range) in ``metadata_props``.
"""
from __future__ import annotations

import hashlib
import warnings
from typing import Iterator

import numpy as np
import onnx
from onnx import helper, numpy_helper

from ..errors import ExportError

BIAS_CODE_LIMIT = 2**30  # |int32 bias code|: leaves the int32 accumulator room for the products (255 * 127 * K)
GRAPH_DIGEST_KEY = "srquant_graph_sha256"


def graph_digest(model: onnx.ModelProto) -> str:
    """SHA-256 of the graph (nodes and weights), stored in the file's metadata at export and verified on load.

    It is prefixed with the producer: a tool that rewrites the graph (ONNX Runtime's quantize_static) keeps the
    metadata but names itself the producer, so its output is not taken for a corrupted file."""
    digest = hashlib.sha256(model.graph.SerializeToString(deterministic=True)).hexdigest()
    return f"{model.producer_name}:{digest}"


class _Graph:
    """Small mutable view of an ONNX graph: initializers as numpy arrays, producers and consumers by name."""

    def __init__(self, model: onnx.ModelProto):
        self.model = model
        self.graph = model.graph
        self.inits = {t.name: numpy_helper.to_array(t) for t in self.graph.initializer}

    def constants_to_initializers(self) -> None:
        keep = []
        for node in self.graph.node:
            if node.op_type == "Constant" and len(node.attribute) == 1 and node.attribute[0].name == "value":
                self.inits[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
            else:
                keep.append(node)
        self._set_nodes(keep)

    def _set_nodes(self, nodes) -> None:
        del self.graph.node[:]
        self.graph.node.extend(nodes)

    def producers(self) -> dict[str, onnx.NodeProto]:
        return {o: n for n in self.graph.node for o in n.output}

    def consumers(self) -> dict[str, list[onnx.NodeProto]]:
        readers: dict[str, list[onnx.NodeProto]] = {}
        for node in self.graph.node:
            for name in node.input:
                readers.setdefault(name, []).append(node)
        return readers

    def const(self, name: str) -> np.ndarray | None:
        return self.inits.get(name)

    def qparams_key(self, node: onnx.NodeProto):
        scale = self.const(node.input[1])
        zp = self.const(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        if scale is None:
            return None
        axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
        zp_key = (zp.dtype.str, zp.tobytes()) if zp is not None else None
        return scale.tobytes(), zp_key, axis if scale.size > 1 else None

    def rename_input(self, old: str, new: str) -> None:
        for node in self.graph.node:
            for i, name in enumerate(node.input):
                if name == old:
                    node.input[i] = new

    def merge_duplicates(self) -> bool:
        """Merge Q/DQ nodes reading the same tensor with equal parameters; drop DQ -> Q identity pairs."""
        changed = False
        seen: dict[tuple, str] = {}
        keep = []
        graph_outputs = {o.name for o in self.graph.output}
        for node in self.graph.node:
            if node.op_type in ("QuantizeLinear", "DequantizeLinear") and node.output[0] not in graph_outputs:
                key = self.qparams_key(node)
                if key is not None:
                    full = (node.op_type, node.input[0], key)
                    if full in seen:
                        self.rename_input(node.output[0], seen[full])
                        changed = True
                        continue
                    seen[full] = node.output[0]
            keep.append(node)
        self._set_nodes(keep)
        producers = self.producers()
        keep = []
        for node in self.graph.node:
            if node.op_type == "QuantizeLinear" and node.output[0] not in graph_outputs:
                src = producers.get(node.input[0])
                if src is not None and src.op_type == "DequantizeLinear":
                    a, b = self.qparams_key(src), self.qparams_key(node)
                    if a is not None and a == b and self.const(src.input[1]).size == 1:
                        self.rename_input(node.output[0], src.input[0])
                        changed = True
                        continue
            keep.append(node)
        self._set_nodes(keep)
        return changed

    def float_bias_convs(self) -> Iterator[tuple[onnx.NodeProto, onnx.NodeProto, np.ndarray, np.ndarray]]:
        """(conv, input DQ, input scale, weight scale) of each Conv with a float bias initializer whose input and
        weight come from DequantizeLinear nodes with constant scales (per-tensor input scale)."""
        producers = self.producers()
        for node in list(self.graph.node):
            if node.op_type != "Conv" or len(node.input) != 3 or node.input[2] not in self.inits:
                continue
            x_dq, w_dq = producers.get(node.input[0]), producers.get(node.input[1])
            if x_dq is None or w_dq is None or x_dq.op_type != "DequantizeLinear" or w_dq.op_type != "DequantizeLinear":
                continue
            s_x, s_w = self.const(x_dq.input[1]), self.const(w_dq.input[1])
            if s_x is not None and s_w is not None and s_x.size == 1:
                yield node, x_dq, s_x, s_w

    def widen_degenerate_inputs(self) -> list[str]:
        """Raise the scale of an activation too finely quantized for the int32 bias of a conv that reads it.

        An activation whose calibration range was (almost) empty, e.g. a ReLU that never fired (IMDN x2's fourth
        channel-attention squeeze), gets a scale near ``1e-8 / 255``; a bias ``b`` in units of ``s_in * s_w`` is
        then far beyond int32. A float bias left in the graph is no way out: ONNX Runtime's basic-level
        ``WeightBiasQuantization`` converts it to int32 itself, without saturation, and every code becomes -2^31.
        The Q/DQ pair of such an activation gets the smallest scale at which every reading conv's bias codes stay
        within ``BIAS_CODE_LIMIT`` (zero point unchanged). Values the simulation keeps (at most ``255 * s_in``)
        then round to at most one step of the new grid: the conv outputs move by ``s_new * sum|w|``, orders of
        magnitude below one step of their own quantizer; a truly dead (all-zero) tensor is unchanged.
        Returns the names of the widened tensors.
        """
        producers = self.producers()
        needed: dict[str, float] = {}
        dq_nodes: dict[str, onnx.NodeProto] = {}
        for node, x_dq, s_x, s_w in self.float_bias_convs():
            bias = np.abs(self.inits[node.input[2]].astype(np.float64)).reshape(-1)
            s_w = np.broadcast_to(s_w.astype(np.float64).reshape(-1), bias.shape)
            need = float(np.max(bias / (np.maximum(s_w, np.finfo(np.float32).tiny) * BIAS_CODE_LIMIT), initial=0.0))
            if need > float(s_x.reshape(())):
                needed[x_dq.output[0]] = max(need, needed.get(x_dq.output[0], 0.0))
                dq_nodes[x_dq.output[0]] = x_dq
        widened = []
        consumers = self.consumers()
        for out, need in needed.items():
            dq = dq_nodes[out]
            q = producers.get(dq.input[0])
            key = self.qparams_key(dq)
            if q is None or q.op_type != "QuantizeLinear" or self.qparams_key(q) != key:
                continue  # no Q of our own in front (e.g. a DQ of a graph input): left alone
            readers = consumers.get(q.output[0], [])
            if any(r.op_type != "DequantizeLinear" or self.qparams_key(r) != key for r in readers):
                continue
            scale = np.float32(need)
            if float(scale) < need:
                scale = np.nextafter(scale, np.float32(np.inf))
            name = f"{q.output[0]}_widened_scale"
            self.inits[name] = np.asarray(scale, np.float32).reshape(self.const(q.input[1]).shape)
            for n in [q, *readers]:
                n.input[1] = name
            widened.append(q.input[0])
        return widened

    def quantize_biases(self) -> int:
        """Conv bias (float initializer) -> int32 initializer + DequantizeLinear(scale = s_in * s_w)."""
        new_nodes, done, made = [], 0, {}
        for node, _, s_x, s_w in self.float_bias_convs():
            bias = self.inits[node.input[2]].astype(np.float64)
            scale = (float(s_x.reshape(())) * s_w.astype(np.float64)).reshape(-1)
            if scale.size == 1:
                scale = np.full(bias.shape, scale[0])
            codes = np.round(bias / scale)
            if np.abs(codes).max(initial=0) > BIAS_CODE_LIMIT:
                warnings.warn(f"{node.name}: bias codes up to {np.abs(codes).max():.3g} do not fit int32 at "
                              "scale s_in * s_w; the bias stays float and ONNX Runtime's own int32 conversion "
                              "of it may overflow", stacklevel=4)
                continue
            key = (node.input[2], scale.astype(np.float32).tobytes())
            if key in made:  # a conv run more than once (shared weights) on the same grid: one bias DQ
                node.input[2] = made[key]
                done += 1
                continue
            base = node.input[2] + (f"_{len(made)}" if any(k[0] == node.input[2] for k in made) else "")
            names = (f"{base}_int32", f"{base}_int32_scale", f"{base}_int32_zero_point", f"{base}_dequantized")
            made[key] = names[3]
            self.inits[names[0]] = codes.astype(np.int32)
            self.inits[names[1]] = scale.astype(np.float32)
            self.inits[names[2]] = np.zeros(bias.shape, np.int32)
            new_nodes.append(helper.make_node("DequantizeLinear", list(names[:3]), [names[3]],
                                              name=f"{node.name}_bias_DequantizeLinear", axis=0))
            node.input[2] = names[3]
            done += 1
        if new_nodes:
            self._set_nodes(new_nodes + list(self.graph.node))
            self.toposort()
        return done

    def pad_narrow_convs(self, pad_to: int) -> list[str]:
        """Zero filters up to ``pad_to`` output channels on each narrow integer conv, sliced off after its output Q.

        Applies to a ``DQ(x) -> Conv -> Q`` whose weight (and int32 bias, if any) are per-channel DequantizeLinear
        of initializers read by this conv alone, with one group and input channels a multiple of 4 (otherwise ONNX
        Runtime's fast kernel is out of reach anyway). The real channels are computed as before: the padded filters
        are all-zero codes with the last real filter's scale, and ``Slice`` drops their outputs before anything reads them.
        Returns the names of the padded convs.
        """
        producers, consumers = self.producers(), self.consumers()
        graph_outputs = {o.name for o in self.graph.output}
        padded, slices = [], []
        for conv in list(self.graph.node):
            if conv.op_type != "Conv" or next((a.i for a in conv.attribute if a.name == "group"), 1) != 1:
                continue
            dqs = [producers.get(name) for name in conv.input[1:] if name]  # weight, then the int32 bias if any
            readers = consumers.get(conv.output[0], [])
            if (any(dq is None or dq.op_type != "DequantizeLinear" or len(consumers[dq.output[0]]) != 1 for dq in dqs)
                    or len(readers) != 1 or readers[0].op_type != "QuantizeLinear"
                    or conv.output[0] in graph_outputs or readers[0].output[0] in graph_outputs):
                continue
            arrays = [[self.const(name) for name in dq.input[:3]] for dq in dqs]
            if any(a is None for values in arrays for a in values):
                continue
            out_ch, in_ch = arrays[0][0].shape[:2]
            if out_ch >= pad_to or in_ch % 4 or any(values[1].size != out_ch for values in arrays):
                continue
            extra = pad_to - out_ch
            for dq, (codes, scale, zero) in zip(dqs, arrays):
                names = [f"{name}_padded{pad_to}" for name in dq.input[:3]]
                self.inits[names[0]] = np.concatenate([codes, np.zeros((extra, *codes.shape[1:]), codes.dtype)])
                self.inits[names[1]] = np.concatenate([scale, np.full(extra, scale[-1], scale.dtype)])
                self.inits[names[2]] = np.concatenate([zero, np.zeros(extra, zero.dtype)])
                dq.input[0], dq.input[1], dq.input[2] = names
            q = readers[0]
            sliced = f"{q.output[0]}_first{out_ch}"
            self.rename_input(q.output[0], sliced)
            for name, value in (("starts", 0), ("ends", out_ch), ("axes", 1)):
                self.inits[f"{sliced}_{name}"] = np.array([value], np.int64)
            bounds = [f"{sliced}_{name}" for name in ("starts", "ends", "axes")]
            slices.append(helper.make_node("Slice", [q.output[0], *bounds], [sliced], name=f"{conv.name}_unpad_Slice"))
            stale = {conv.output[0], q.output[0]}
            kept = [v for v in self.graph.value_info if v.name not in stale]
            del self.graph.value_info[:]
            self.graph.value_info.extend(kept)
            padded.append(conv.name)
        if slices:
            self._set_nodes(list(self.graph.node) + slices)
            self.toposort()
        return padded

    def toposort(self) -> None:
        available = set(self.inits) | {i.name for i in self.graph.input} | {""}
        pending, ordered = list(self.graph.node), []
        while pending:
            rest = []
            for node in pending:
                if all(i in available for i in node.input):
                    ordered.append(node)
                    available.update(node.output)
                else:
                    rest.append(node)
            if len(rest) == len(pending):
                raise ExportError("ONNX graph has a cycle or a dangling input after clean-up")
            pending = rest
        self._set_nodes(ordered)

    def prune(self) -> None:
        """Drop nodes whose outputs nobody reads, then unused initializers."""
        needed = {o.name for o in self.graph.output}
        keep = []
        for node in reversed(list(self.graph.node)):
            if any(o in needed for o in node.output):
                keep.append(node)
                needed.update(node.input)
        self._set_nodes(list(reversed(keep)))
        self.inits = {k: v for k, v in self.inits.items() if k in needed}

    def finish(self) -> onnx.ModelProto:
        del self.graph.initializer[:]
        self.graph.initializer.extend(numpy_helper.from_array(v, k) for k, v in self.inits.items())
        return self.model


def clean_qdq(model: onnx.ModelProto, pad_out_channels: int = 16) -> onnx.ModelProto:
    """The clean-up pass described in the module docstring (in place; returns the model)."""
    g = _Graph(model)
    g.constants_to_initializers()
    for _ in range(10):
        if not g.merge_duplicates():
            break
    widened = g.widen_degenerate_inputs()
    if widened:
        warnings.warn(f"{len(widened)} activation(s) with an almost empty calibration range (e.g. {widened[0]}) got "
                      "a coarser scale in the export so that the int32 biases of the convs reading them fit",
                      stacklevel=3)
    g.quantize_biases()
    if pad_out_channels:
        g.pad_narrow_convs(pad_out_channels)
    g.prune()
    g.toposort()
    return g.finish()
