"""An fp16 copy of an fp32 ONNX graph, for strongly typed TensorRT (11.x: no BuilderFlag.FP16, no --fp16).

Strongly typed networks take each tensor's type from the graph, so fp16 must be in the ONNX itself.
The conversion is deliberately small and explicit, for the convolutional graphs ticketbench exports:
- float32 initializers and Constant values become float16;
- Cast nodes to float32 inside the graph cast to float16 instead;
- graph inputs and outputs stay float32 (callers feed and read fp32): a Cast to float16 follows each
  float input, a Cast to float32 precedes each float output;
- value_info is dropped (its fp32 types would be stale); the checker and shape inference re-derive them.
NVIDIA's own route is ModelOpt AutoCast (mixed precision, keeps sensitive ops in fp32); this is plain fp16.
"""

from __future__ import annotations

import numpy as np


def convert(model):  # onnx.ModelProto -> onnx.ModelProto
    """The fp16 copy of `model` (see the module docstring); `model` is not modified."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    f32, f16 = TensorProto.FLOAT, TensorProto.FLOAT16

    def half(t):
        return numpy_helper.from_array(numpy_helper.to_array(t).astype(np.float16), t.name)

    for i, t in enumerate(g.initializer):
        if t.data_type == f32:
            g.initializer[i].CopyFrom(half(t))
    inits = {t.name for t in g.initializer}
    for node in g.node:
        for a in node.attribute:
            if node.op_type == "Constant" and a.name == "value" and a.t.data_type == f32:
                a.t.CopyFrom(half(a.t))
            if node.op_type == "Cast" and a.name == "to" and a.i == f32:
                a.i = f16
    casts_in = []
    for inp in g.input:
        if inp.name in inits or inp.type.tensor_type.elem_type != f32:
            continue
        inner = f"{inp.name}__fp16"
        for node in g.node:
            for k, name in enumerate(node.input):
                if name == inp.name:
                    node.input[k] = inner
        casts_in.append(helper.make_node("Cast", [inp.name], [inner], name=f"{inp.name}_to_fp16", to=f16))
    casts_out = []
    for out in g.output:
        if out.type.tensor_type.elem_type != f32:
            continue
        inner = f"{out.name}__fp16"
        for node in g.node:
            for k, name in enumerate(node.output):
                if name == out.name:
                    node.output[k] = inner
            for k, name in enumerate(node.input):
                if name == out.name:
                    node.input[k] = inner
        casts_out.append(helper.make_node("Cast", [inner], [out.name], name=f"{out.name}_to_fp32", to=f32))
    nodes = casts_in + list(g.node) + casts_out
    del g.node[:]
    g.node.extend(nodes)
    del g.value_info[:]
    return m


def convert_bytes(blob: bytes) -> bytes:
    """convert() on a serialized model; the result passes onnx.checker."""
    import onnx

    model = convert(onnx.load_from_string(blob))
    onnx.checker.check_model(model)
    return model.SerializeToString()
