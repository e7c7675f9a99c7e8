"""Per-layer profiles: the readers of each runtime's format (hand-made files in the real layouts, tests/fixtures/
layer_profile/README.md), the mapping from runtime layers back to model layers on real zoo exports run by ONNX
Runtime, and the per-layer realization table. No test asserts a wall-clock time."""

from __future__ import annotations

import json
import types
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from ticketbench.bench.layers import COLUMNS, LayerRow, biggest_losses, dense_key, format_table, layer_rows, to_csv
from ticketbench.bench.suite import SuiteError, parse_suite
from ticketbench.devices.cpu import OrtCpuSession
from ticketbench.devices.layer_profile import (
    LayerProfile,
    LayerTime,
    OnnxGraph,
    metadata_nodes,
    ort_layer_nodes,
    read_layer_info,
    read_ort_profile,
    read_trtexec_profile,
    resolve_ort_layers,
    resolve_trt_layers,
    trt_layer_nodes,
)
from ticketbench.models.cost import analyze
from ticketbench.models.decompose import GroupedConv2d
from ticketbench.models.export import export_onnx, node_module, onnx_layer_map, to_onnx_bytes
from ticketbench.models.zoo import create_model

FIXTURES = Path(__file__).parent / "fixtures" / "layer_profile"
DOCS = Path(__file__).resolve().parents[1] / "docs" / "results.md"


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


# -- readers ----------------------------------------------------------------------------------------------------------
def test_ort_profile_reader_takes_each_nodes_median_run_after_the_warmup():
    layers, runs = read_ort_profile(fixture("ort_1.32_small_cnn.json"), skip_runs=1)
    assert runs == 3
    by = {lt.name: lt for lt in layers}
    # per node, the median of its kernel time over the three kept runs (µs → ms); fence events ignored
    assert by["/features/features.2/Relu_output_0_nchwc"].ms == pytest.approx(0.012)  # 10, 12, 100 µs: not the mean
    assert by["/features/features.9/Relu_output_0_nchwc"].ms == pytest.approx(0.007)  # the warm-up's 40 µs is left out
    assert by["/features/features.6/MaxPool"].ms == pytest.approx(0.003)
    assert by["/classifier/Gemm"].op == "Gemm" and by["ReorderOutput"].op == "ReorderOutput"
    assert [lt.name for lt in layers][:3] == ["/features/features.2/Relu_output_0_nchwc", "ReorderOutput",
                                              "/features/features.6/MaxPool"]  # fmt: skip
    with pytest.raises(ValueError, match="none after the 4 skipped"):
        read_ort_profile(fixture("ort_1.32_small_cnn.json"), skip_runs=4)


def test_trtexec_profile_reader_follows_each_versions_layout():
    old, count = read_trtexec_profile(fixture("trtexec_profile_trt82.json"))  # 8.0-8.5: no medianMs
    assert count == 10 and len(old) == 9
    assert old[1].name == "/features/features.0/Conv + /features/features.2/Relu"
    assert old[1].ms == pytest.approx(0.08192)  # averageMs = timeMs / count
    new, count = read_trtexec_profile(fixture("trtexec_profile_trt10.json"))  # 8.6+: medianMs, not averageMs
    assert count == 10 and new[1].ms == pytest.approx(0.08192) and new[4].ms == pytest.approx(0.0768)
    text = '[\n  { "count" : 2 }\n, { "name" : "a", "timeMs" : 0.4, "percentage" : nan }\n]\n'  # no averageMs; nan
    (only,), _ = read_trtexec_profile(text)
    assert only.ms == pytest.approx(0.2)
    with pytest.raises(ValueError, match="count"):
        read_trtexec_profile('[{"name": "a", "timeMs": 1}]')


def test_layer_information_names_only_and_detailed_with_metadata():
    names = read_layer_info(fixture("trtexec_layers_trt84_names.json"))
    assert len(names) == 9 and all(li.layer_type == "" and not li.onnx_nodes for li in names.values())
    detailed = read_layer_info(fixture("trtexec_layers_trt10_detailed.json"))
    fused = detailed["/features/features.0/Conv + /features/features.2/Relu"]
    assert fused.layer_type == "CaskConvolution"
    assert fused.onnx_nodes == ["/features/features.0/Conv", "/features/features.2/Relu"]
    assert detailed["{ForeignNode[/features/features.7/Conv.../classifier/Gemm]}"].onnx_nodes[-1] == "/classifier/Gemm"
    # TensorRT 8.6 joins Metadata entries with \x1e; a raw control byte in the string is read, not refused
    meta = "[ONNX Layer: /a/Conv]\x1e[ONNX Layer: /b/Relu]"
    layer = json.dumps({"Name": "x", "LayerType": "CaskConvolution"})[:-1] + f', "Metadata": "{meta}"}}'
    raw = '{"Layers": [' + layer + "]}"
    assert read_layer_info(raw)["x"].onnx_nodes == ["/a/Conv", "/b/Relu"]
    assert metadata_nodes("") == []


# -- runtime names → ONNX nodes ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def small_graph(onnx_model) -> OnnxGraph:
    return OnnxGraph.load(onnx_model)


def test_ort_fused_kernel_named_after_its_activation_output_is_its_conv(small_graph):
    assert ort_layer_nodes("/features/features.2/Relu_output_0_nchwc", "Conv", small_graph) == [
        "/features/features.0/Conv",
        "/features/features.2/Relu",
    ]
    assert ort_layer_nodes("/features/features.6/MaxPool_output_0_nchwc", "MaxPool", small_graph) == [
        "/features/features.6/MaxPool"
    ]
    assert ort_layer_nodes("/classifier/Gemm", "Gemm", small_graph) == ["/classifier/Gemm"]
    assert ort_layer_nodes("ReorderOutput_token_10", "ReorderOutput", small_graph) == []


def test_trt_layer_names_map_to_their_onnx_nodes(small_graph):
    g = small_graph
    assert trt_layer_nodes("/features/features.0/Conv + /features/features.2/Relu", g) == (
        ["/features/features.0/Conv", "/features/features.2/Relu"],
        False,
    )
    assert trt_layer_nodes("PWN(/features/features.2/Relu, /features/features.3/Conv)", g) == (
        ["/features/features.3/Conv", "/features/features.2/Relu"],  # compute node first
        False,
    )
    nodes, inserted = trt_layer_nodes("Reformatting CopyNode for Input Tensor 0 to /features/features.3/Conv", g)
    assert inserted and nodes == ["/features/features.3/Conv"]  # the layer it feeds
    assert trt_layer_nodes("(Unnamed Layer* 12) [Shuffle]", g) == ([], True)
    nodes, _ = trt_layer_nodes("{ForeignNode[/features/features.7/Conv.../classifier/Gemm]}", g)
    assert nodes == ["/features/features.7/Conv", "/classifier/Gemm"]  # a Myelin region names its ends only
    meta = ["/features/features.10/Conv", "/features/features.12/Relu"]
    assert trt_layer_nodes("fused_block_7", g, meta)[0] == meta  # Metadata wins over an opaque name


def test_trtexec_profile_with_layer_information_resolves_to_model_layers(small_graph):
    layers, _ = read_trtexec_profile(fixture("trtexec_profile_trt10.json"))
    resolve_trt_layers(layers, small_graph, read_layer_info(fixture("trtexec_layers_trt10_detailed.json")))
    assert layers[0].inserted and layers[0].op == "Reformat"
    assert [lt.onnx_nodes[0] for lt in layers[1:]] == [
        "/features/features.0/Conv",
        "/features/features.3/Conv",
        "/features/features.6/MaxPool",
        "/features/features.7/Conv",  # the Myelin region: its Metadata lists every node, its first conv leads
    ]


def test_node_module_follows_the_exporters_scope_names():
    model = create_model("resnet18_cifar", num_classes=10)
    graph = onnx.load_from_string(to_onnx_bytes(model, (3, 32, 32))).graph
    modules = dict(model.named_modules())
    for node in graph.node:
        if node.op_type in ("Conv", "Gemm"):
            owner = modules[node_module(node.name)]  # KeyError if the rule were wrong
            assert isinstance(owner, nn.Conv2d | nn.Linear), node.name
    assert node_module("/layer1/layer1.0/conv1/Conv") == "layer1.0.conv1"
    assert node_module("/feature.4/conv/Conv") == "feature.4.conv"  # compaction's FX modules call feature.4 directly
    assert node_module("/Flatten") == "" and node_module("Identity_0") == ""
    assert node_module("/conv1/Conv", ["layer1.0.conv1", "conv"]) == "layer1.0.conv1"  # a call that skipped a parent


# -- real profiles of real exports ------------------------------------------------------------------------------------
def _profile(model: nn.Module, shape: tuple[int, ...], tmp: Path, name: str, batch: int = 1) -> LayerProfile:
    path = tmp / f"{name}.onnx"
    path.write_bytes(to_onnx_bytes(model.eval(), shape))
    session = OrtCpuSession(path, 1)
    x = np.random.default_rng(0).standard_normal((batch, *shape), dtype=np.float32)
    return session.profile_layers(x, 6)


def test_every_conv_of_a_real_resnet_maps_to_its_module_once(tmp_path):
    """ONNX Runtime fuses each conv with its BN/ReLU/residual Add into NCHWc kernels named after various tensors:
    each of ResNet-18's 20 convs and its fc must come back as exactly one row of its own, with a time."""
    torch.manual_seed(0)
    model = create_model("resnet18_cifar", num_classes=10)
    prof = _profile(model, (3, 32, 32), tmp_path, "resnet")
    assert prof.iterations >= 6 and prof.plain_ms and prof.profiled_ms and "onnxruntime" in prof.source
    cost = analyze(model, (3, 32, 32)).layers
    rows = layer_rows(prof, cost)
    compute = {r.layer: r for r in rows if r.kind in ("conv", "linear")}
    assert set(compute) == {lc.name for lc in cost} and len(cost) == 21
    assert all(r.ticket_ms is not None and len(r.ticket_runtime_layers) == 1 for r in compute.values())
    assert all(r.macs == lc.macs for lc in cost for r in [compute[lc.name]])
    assert {r.kind for r in rows} <= {"conv", "linear", "other", "overhead"}
    mapped = [n for r in rows for n in r.ticket_runtime_layers]
    assert sorted(mapped) == sorted(lt.name for lt in prof.layers)  # every runtime layer in exactly one row


@pytest.mark.e2e
def test_a_compacted_fx_models_convs_are_paired_with_their_layers_by_order_and_weight_shape(tmp_path):
    """Compaction returns FX modules, whose calls skip their parents' forward: the exporter names ResNet-18's convs
    /conv1/Conv, /conv1_1/Conv, /conv2/Conv, ... and names cannot say which layer is which. The export's node map
    (models/export.onnx_layer_map: execution order, checked by weight shape) must."""
    torch.manual_seed(0)
    model = torch.fx.symbolic_trace(create_model("resnet18_cifar", num_classes=10).eval())
    shape = (3, 32, 32)
    path = tmp_path / "fx.onnx"
    path.write_bytes(to_onnx_bytes(model, shape))
    cost = analyze(model, shape).layers
    nodes = onnx_layer_map(path, cost)
    assert len(nodes) == 21 and nodes["/conv1/Conv"] == "conv1" and nodes["/conv1_1/Conv"] == "layer1.0.conv1"
    assert node_module("/conv1_1/Conv") == "conv1_1"  # what the name alone says
    prof = OrtCpuSession(path, 1).profile_layers(np.zeros((1, *shape), np.float32), 6)
    rows = layer_rows(prof, cost, ticket_nodes=nodes)
    compute = {r.layer: r for r in rows if r.kind in ("conv", "linear")}
    assert set(compute) == {lc.name for lc in cost}
    assert all(len(r.ticket_runtime_layers) == 1 for r in compute.values())
    slimmed = export_onnx(model, model, shape, tmp_path / "slim.onnx").path  # as the runner exports a ticket
    convs = [n.name for n in onnx.load(str(slimmed)).graph.node if n.op_type in ("Conv", "Gemm")]
    assert {n: onnx_layer_map(slimmed, cost)[n] for n in convs} == {n: nodes[n] for n in convs}  # reordered, same
    swapped = [cost[1], cost[0], *cost[2:]]  # rows out of order: each node still takes the row of its shape
    assert onnx_layer_map(path, swapped) == nodes
    assert "/conv1/Conv" not in onnx_layer_map(path, cost[1:])  # no row of the stem's shape: left to its name


class _Dense(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.pool(self.features(x)).flatten(1))


def test_a_grouped_conv_with_its_gathers_counts_under_its_dense_layer(tmp_path):
    """Compaction replaces features.2 by a GroupedConv2d (Gather → grouped conv → Gather): its conv `features.2.conv`
    and its Gathers (module features.2) are one row, `features.2`, with the grouped conv's MACs."""
    torch.manual_seed(0)
    dense = _Dense()
    ticket = _Dense()
    perm = torch.tensor([1, 0, 3, 2, 5, 4, 7, 6])
    ticket.features[2] = GroupedConv2d(nn.Conv2d(8, 8, 3, padding=1, groups=2), perm, perm)
    shape = (3, 8, 8)
    dp, tp = _profile(dense, shape, tmp_path, "dense"), _profile(ticket, shape, tmp_path, "ticket")
    rows = layer_rows(tp, analyze(ticket, shape).layers, dp, analyze(dense, shape).layers)
    by = {r.layer: r for r in rows}
    grouped = by["features.2"]
    assert grouped.kind == "conv" and grouped.mac_reduction == pytest.approx(2.0)
    assert any("Gather" in n for n in grouped.ticket_runtime_layers)
    assert len(grouped.ticket_runtime_layers) == 3 and len(grouped.dense_runtime_layers) == 1
    assert by["features.0"].mac_reduction == pytest.approx(1.0) and by["classifier"].kind == "linear"
    assert grouped.realization == pytest.approx(grouped.time_reduction / 2.0)


# -- the table ---------------------------------------------------------------------------------------------------------
def _lt(name: str, ms: float, nodes: list[str], ops: list[str], inserted: bool = False, op: str = "") -> LayerTime:
    return LayerTime(name, op or (ops[0] if ops else ""), ms, nodes, ops, inserted)


def _cost(name: str, macs: int, kind: str = "conv"):
    return types.SimpleNamespace(name=name, macs=macs, kind=kind)


def test_realization_and_losses_per_layer():
    dense = LayerProfile("b", 1, 10, [
        _lt("/f/f.0/Conv", 4.0, ["/f/f.0/Conv"], ["Conv"]),
        _lt("/f/f.1/Conv", 2.0, ["/f/f.1/Conv"], ["Conv"]),
        _lt("ReorderOutput", 0.5, [], [], True, "ReorderOutput"),
    ], None, None, "test")  # fmt: skip
    ticket = LayerProfile("b", 1, 10, [
        _lt("/f.0/Conv", 2.0, ["/f.0/Conv"], ["Conv"]),  # 4× fewer MACs, 2× faster: realization 0.5, 1 ms lost
        _lt("/f.1/conv/Conv", 0.5, ["/f.1/conv/Conv"], ["Conv"]),  # 4× fewer MACs, 4× faster
        _lt("ReorderOutput_token_3", 0.75, [], [], True, "ReorderOutput"),
        _lt("Reformatting CopyNode for Input Tensor 0 to /f.0/Conv", 0.25, ["/f.0/Conv"], ["Conv"], True, "Reformat"),
    ], None, None, "test")  # fmt: skip
    rows = layer_rows(ticket, [_cost("f.0", 100), _cost("f.1.conv", 50)], dense, [_cost("f.0", 400), _cost("f.1", 200)])
    by = {r.layer: r for r in rows}
    assert set(by) == {"f.0", "f.1", "ReorderOutput", "Reformat → f.0"}
    assert by["f.0"].mac_reduction == 4 and by["f.0"].time_reduction == 2 and by["f.0"].realization == 0.5
    assert by["f.0"].lost_ms == pytest.approx(1.0) and by["f.1"].lost_ms == pytest.approx(0.0)
    assert by["ReorderOutput"].kind == "overhead" and by["ReorderOutput"].lost_ms == pytest.approx(0.25)
    assert by["Reformat → f.0"].dense_ms is None and by["Reformat → f.0"].lost_ms == pytest.approx(0.25)
    assert [r.layer for r in biggest_losses(rows)] == ["f.0", "ReorderOutput", "Reformat → f.0"]
    assert sum(r.ticket_share or 0 for r in rows) == pytest.approx(1.0)
    text = to_csv(rows)
    assert text.splitlines()[0] == ",".join(COLUMNS)
    assert "f.0,conv,400,100,4,4,2,2,0.5,1," in text
    assert "realiz." in format_table(rows, limit=2) and len(format_table(rows, limit=2).splitlines()) == 3


def test_dense_key_takes_the_longest_dotted_prefix():
    assert dense_key("feature.4.conv", ["feature.4", "feature.40", "feature"]) == "feature.4"
    assert dense_key("feature.40", ["feature.4"]) == "feature.40"  # a prefix must end at a dot
    assert LayerRow("x", "conv", 10, 0, 1.0, 0.0).realization is None  # a removed layer: no ratio, no error


def test_layers_csv_columns_are_documented_in_order():
    text = DOCS.read_text().split("## Per-layer profiles")[1].split("\n## ")[0]
    import re

    documented = []
    for cell in re.findall(r"^\| (`[a-z_]+`(?:, `[a-z_]+`)*) \|", text, flags=re.M):
        documented += re.findall(r"`([a-z_]+)`", cell)
    assert documented == list(COLUMNS)


def test_layer_profile_setting_is_a_checked_bool():
    doc = {"cases": [{"model": "small_cnn", "dataset": "digits", "method": "dense"}]}
    assert parse_suite({**doc, "measure": {"layer_profile": False}}, "t").measure.layer_profile is False
    assert parse_suite(doc, "t").measure.layer_profile is True
    with pytest.raises(SuiteError, match="layer_profile must be true or false"):
        parse_suite({**doc, "measure": {"layer_profile": "no"}}, "t")


def test_layer_profile_off_never_touches_the_session():
    from ticketbench.bench.runner import Runner

    class Untouchable:
        def profile_layers(self, x, calls):
            raise AssertionError("profiled although [measure] layer_profile is false")

    fake = types.SimpleNamespace(suite=types.SimpleNamespace(measure=types.SimpleNamespace(layer_profile=False)))
    bm = types.SimpleNamespace(batch_size=1, columns={})
    assert Runner._layer_profile(fake, "c", bm, Untouchable(), None, (1, 8, 8), ([], [])) == {}


def test_resolve_marks_ort_reorders_inserted(small_graph):
    layers, _ = read_ort_profile(fixture("ort_1.32_small_cnn.json"), skip_runs=1)
    resolve_ort_layers(layers, small_graph)
    by = {lt.name: lt for lt in layers}
    assert by["ReorderOutput"].inserted and by["ReorderOutput_token_10"].inserted
    assert by["/features/features.9/Relu_output_0_nchwc"].onnx_nodes[0] == "/features/features.7/Conv"
    assert by["/features/features.14/Flatten"].onnx_ops == ["Flatten"] and not by["/classifier/Gemm"].inserted
    assert json.loads(json.dumps([lt.ms for lt in layers]))  # plain floats


def test_bench_measure_layers_prints_the_table_of_one_onnx(onnx_model, capsys):
    from ticketbench.bench.cli import main

    args = ["measure", str(onnx_model), "--min-seconds", "0.05", "--rounds", "1", "--threads", "1", "--layer-profile"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "per-layer profile: onnxruntime" in out and "profiling slowed a call by" in out
    table = out.split("per-layer profile:")[1].splitlines()[1:]
    assert table[0].split() == ["layer", "kind", "ms", "share", "%", "runtime", "layers"]
    layers = {ln.split()[0]: ln.split()[1] for ln in table[1:] if ln and not ln.startswith("profiling")}
    assert {k for k, v in layers.items() if v == "conv"} == {"features.0", "features.3", "features.7", "features.10"}
    assert layers["classifier"] == "linear" and layers["ReorderOutput"] == "overhead"
    assert main([*args, "--json"]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["layers_coverage"] > 0 and row["layers_profile_overhead"] is not None and "layers" not in row


def test_torch_profiler_times_each_leaf_module_and_maps_it_to_its_layer():
    """The torch-cuda session's profiler, on a CPU device (no GPU here): one record_function range per leaf module
    (CPU time there, kernel time on CUDA), each module its own row; convs and the linear layer on their cost rows."""
    from ticketbench.devices.gpu import TorchCudaSession

    torch.manual_seed(0)
    model = create_model("small_cnn", num_classes=10, in_channels=1, width=8).eval()
    prof = TorchCudaSession(model, "cpu", "fp32").profile_layers(np.zeros((2, 1, 8, 8), np.float32), 4)
    leaves = {n for n, m in model.named_modules() if n and not list(m.children())}
    assert {lt.module for lt in prof.layers} == leaves and prof.iterations == 6  # 3 windows of ceil(4 / 3) calls
    assert "CPU time of each module's forward" in prof.source and prof.plain_ms and prof.profiled_ms
    assert all(lt.ms >= 0 for lt in prof.layers)
    cost = analyze(model, (1, 8, 8)).layers
    rows = {r.layer: r for r in layer_rows(prof, cost)}
    assert {r.layer for r in rows.values() if r.kind in ("conv", "linear")} == {lc.name for lc in cost}
    assert rows["features.6:MaxPool2d"].kind == "other"
