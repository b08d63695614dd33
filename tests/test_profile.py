"""The per-layer profile: the textbook VGG table, receptive fields, totals, bad inputs, the CLI."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys

import pytest
import torch
from torch import nn

from cnnbench.cli import main
from cnnbench.core.errors import UserError
from cnnbench.measure.profile import InputShapeError, activation_bytes, param_bytes, profile_model, time_layers

LENET5_PARAMS = 61_706


def _fast_vgg16() -> nn.Module:
    """torchvision's VGG-16 with zeroed weights: its 138M-parameter init takes seconds and the
    table depends on shapes only."""
    from torchvision.models import vgg16

    with torch.device("meta"):
        model = vgg16(weights=None)
    model = model.to_empty(device="cpu")
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
    return model.eval()


@pytest.fixture(scope="module")
def vgg16_profile():  # ~5 s: the tests that use it are marked slow
    return profile_model(_fast_vgg16(), torch.zeros(1, 3, 224, 224))


@pytest.fixture(scope="module")
def lenet5():
    from cnnbench.models.registry import build_model

    return build_model("lenet5")


# --- VGG-16 against the textbook's "VGG memory and compute calculation" table ----------------


@pytest.mark.slow
def test_vgg16_first_layers_match_the_textbook_table(vgg16_profile):
    p = vgg16_profile
    # (name in torchvision, textbook name, output CxHxW, activations, weights (k*k*Cin)*Cout, bias)
    expected = [
        ("features.0", "conv1_1", (64, 224, 224), 224 * 224 * 64, (3 * 3 * 3) * 64, 64),
        ("features.2", "conv1_2", (64, 224, 224), 224 * 224 * 64, (3 * 3 * 64) * 64, 64),
        ("features.4", "pool1", (64, 112, 112), 112 * 112 * 64, 0, 0),
        ("features.5", "conv2_1", (128, 112, 112), 112 * 112 * 128, (3 * 3 * 64) * 128, 128),
        ("features.7", "conv2_2", (128, 112, 112), 112 * 112 * 128, (3 * 3 * 128) * 128, 128),
    ]
    for name, label, chw, acts, weights, bias in expected:
        row = p.row(name)
        assert row.output_shape == (1, *chw), label
        assert row.activations == acts, label
        assert row.activation_bytes == 4 * acts, label
        assert row.params == weights + bias, label
    conv1_1 = p.row("features.0")
    assert conv1_1.activations == 3_211_264
    assert conv1_1.params == 1_792  # (3x3x3)x64 = 1,728 weights + 64 biases
    assert conv1_1.type == "Conv2d"
    assert (conv1_1.kernel, conv1_1.stride, conv1_1.padding) == ((3, 3), (1, 1), (1, 1))
    assert conv1_1.macs == 224 * 224 * 64 * (3 * 3 * 3)  # one MAC per weight per output pixel


@pytest.mark.slow
def test_vgg16_receptive_field_grows_as_the_textbook_says(vgg16_profile):
    rf = {r.name: (r.receptive_field, r.jump) for r in vgg16_profile.layers}
    assert rf["features.0"] == ((3, 3), (1, 1))  # first 3x3 conv: 3
    assert rf["features.2"] == ((5, 5), (1, 1))  # second 3x3 conv: 5
    assert rf["features.4"] == ((6, 6), (2, 2))  # 2x2/2 pool: +1, and the jump doubles
    assert rf["features.5"] == ((10, 10), (2, 2))  # a 3x3 conv now adds 2 * jump = 4
    assert rf["features.9"][1] == (4, 4)
    last = vgg16_profile.layers[-1]
    assert last.rf_global and last.receptive_field == (224, 224)


@pytest.mark.slow
def test_vgg16_totals(vgg16_profile):
    p = vgg16_profile
    assert p.params == 138_357_544 == sum(r.params for r in p.rows)
    assert p.macs == sum(r.macs for r in p.rows)
    assert round(p.gmacs, 2) == 15.47  # torchvision publishes 15.47 "GFLOPS" (MACs)
    # In-place ReLUs and eval-mode Dropout allocate nothing: shown, not added to the total.
    relu = p.row("features.1")
    assert relu.shares_input_memory and relu.activations == 3_211_264
    fresh = sum(r.activation_bytes for r in p.layers if not r.shares_input_memory)
    assert p.activation_bytes == fresh


# --- receptive field recurrence ----------------------------------------------------------------


def test_three_stacked_3x3_convs_see_7x7():
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 8, 3), nn.ReLU(), nn.Conv2d(8, 8, 3), nn.ReLU()
    )
    p = profile_model(model, torch.randn(1, 3, 32, 32))
    convs = [r for r in p.layers if r.type == "Conv2d"]
    assert [c.receptive_field for c in convs] == [(3, 3), (5, 5), (7, 7)]
    assert all(c.jump == (1, 1) for c in convs)
    assert p.layers[-1].receptive_field == (7, 7)  # ReLU keeps it


def test_stride_and_dilation_follow_the_recurrence():
    model = nn.Sequential(nn.Conv2d(1, 2, 7, stride=2), nn.Conv2d(2, 2, 3, dilation=2), nn.MaxPool2d(3, 2))
    p = profile_model(model, torch.randn(1, 1, 64, 64))
    # 7x7/2: r=7, j=2; 3x3 d=2: r = 7 + 2*2*2 = 15; 3x3/2 pool: r = 15 + 2*2 = 19, j = 4
    assert [(r.receptive_field, r.jump) for r in p.layers] == [((7, 7), (2, 2)), ((15, 15), (2, 2)), ((19, 19), (4, 4))]
    assert p.layers[1].dilation == (2, 2)


def test_non_square_kernels_keep_one_field_per_axis():
    model = nn.Sequential(nn.Conv2d(1, 2, (1, 7), padding=(0, 3)), nn.Conv2d(2, 2, (7, 1), padding=(3, 0)))
    p = profile_model(model, torch.randn(1, 1, 17, 17))
    assert [r.receptive_field for r in p.layers] == [(1, 7), (7, 7)]


class _Branches(nn.Module):
    """A 1x1 and a 5x5 branch meet (added, then concatenated) before a 3x3 conv."""

    def __init__(self, combine: str):
        super().__init__()
        self.combine = combine
        self.a = nn.Conv2d(4, 4, 1)
        self.b = nn.Conv2d(4, 4, 5, padding=2)
        self.head = nn.Conv2d(8 if combine == "cat" else 4, 4, 3, padding=1)

    def forward(self, x):
        a, b = self.a(x), self.b(x)
        y = torch.cat([a, b], 1) if self.combine == "cat" else a + b
        return self.head(y)


@pytest.mark.parametrize("combine", ["add", "cat"])
def test_branches_meet_at_their_largest_field(combine):
    p = profile_model(_Branches(combine), torch.randn(1, 4, 16, 16))
    assert p.row("a").receptive_field == (1, 1)  # each branch from the same input
    assert p.row("b").receptive_field == (5, 5)
    head = p.row("head")
    assert head.receptive_field == (7, 7)  # max(1, 5) + 2
    assert not head.rf_approx


def test_inception_bottleneck_branches_each_keep_their_field():
    from cnnbench.models.seeds import InceptionBottleneck

    p = profile_model(InceptionBottleneck(), torch.randn(1, 256, 28, 28))
    assert p.row("branch3x3.1.0").receptive_field == (3, 3)  # 1x1 then 3x3
    assert p.row("branch5x5.1.0").receptive_field == (5, 5)
    assert p.row("branch_pool.0").receptive_field == (3, 3)  # pool 3x3/1
    assert p.row("branch_pool.1.0").receptive_field == (3, 3)  # then 1x1


def test_functional_global_pooling_makes_the_field_global():
    class SqueezeExcite(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)
            self.fc = nn.Conv2d(4, 4, 1)
            self.out = nn.Conv2d(4, 4, 3)

        def forward(self, x):
            x = self.conv(x)
            gate = torch.sigmoid(self.fc(x.mean((2, 3), keepdim=True)))  # squeeze: every position
            return self.out(x * gate)

    p = profile_model(SqueezeExcite(), torch.randn(1, 3, 12, 12))
    assert p.row("conv").receptive_field == (3, 3) and not p.row("conv").rf_global
    assert p.row("fc").rf_global and p.row("fc").receptive_field == (12, 12)
    assert p.row("out").rf_global  # x * gate depends on the whole input


def test_flatten_then_linear_is_global_and_flatten_is_not():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(2 * 6 * 6, 3))
    p = profile_model(model, torch.randn(2, 1, 8, 8))
    conv, flat, fc = p.layers
    assert flat.receptive_field == (3, 3) and not flat.rf_global  # a reshape: each element sees 3x3
    assert flat.shares_input_memory  # a view, no new memory
    assert fc.rf_global and fc.receptive_field == (8, 8)


# --- totals: parameters and MACs ---------------------------------------------------------------


def test_lenet5_profile_totals_equal_its_parameter_count(lenet5):
    from cnnbench.measure.counting import count_params

    p = profile_model(lenet5, torch.randn(1, 1, 32, 32))
    assert p.params == LENET5_PARAMS == count_params(lenet5)[0]
    assert sum(r.params for r in p.rows) == LENET5_PARAMS
    assert [r.name for r in p.layers] == ["c1", "s2", "c3", "s4", "c5", "f6", "output"]
    assert [r.params for r in p.layers] == [156, 0, 2_416, 0, 48_120, 10_164, 850]
    assert p.row("c1").output_shape == (1, 6, 28, 28)
    assert p.row("s4").output_shape == (1, 16, 5, 5)
    assert p.macs == sum(r.macs for r in p.rows) == 416_520


def test_module_called_twice_gets_two_rows_and_its_parameters_once():
    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 3, 3, padding=1)
            self.pool = nn.MaxPool2d(2)

        def forward(self, x):
            return self.conv(self.pool(self.conv(x)))

    model = Twice()
    p = profile_model(model, torch.randn(1, 3, 16, 16))
    first, second = p.row("conv", 0), p.row("conv", 1)
    assert (first.params, second.params) == (84, 0)
    assert first.output_shape == (1, 3, 16, 16) and second.output_shape == (1, 3, 8, 8)
    assert first.macs == 16 * 16 * 3 * 27 and second.macs == 8 * 8 * 3 * 27
    assert second.receptive_field == (3 + 1 + 2 * 2,) * 2  # conv, pool 2/2, conv at jump 2
    assert p.params == 84


def test_functional_ops_and_unexecuted_modules_get_their_own_rows():
    class Odd(nn.Module):
        def __init__(self):
            super().__init__()
            self.scale = nn.Parameter(torch.ones(4, 1, 1))  # a direct parameter
            self.conv = nn.Conv2d(3, 4, 3)
            self.unused = nn.Linear(10, 10)  # never called (like an aux head in eval)
            self.proj = nn.Linear(4 * 6 * 6, 5)  # used, but never called (as attention layers do)

        def forward(self, x):
            y = self.conv(x) * self.scale
            return torch.nn.functional.linear(y.flatten(1), self.proj.weight)  # fvcore counts it here

    p = profile_model(Odd(), torch.randn(1, 3, 8, 8))
    kinds = {r.kind: r for r in p.rows}
    assert kinds["functional"].name == "" and kinds["functional"].macs == 5 * 4 * 6 * 6
    assert kinds["functional"].params == 4 + 5 * 144  # the scale and the weight its ops read
    # Parameters no op read: the uncalled module, and proj's bias.
    assert set(kinds["not_executed"].name.split(", ")) == {"unused", "proj"}
    assert kinds["not_executed"].params == 110 + 5 and "unused" in kinds["not_executed"].name  # + proj.bias
    assert p.params == sum(r.params for r in p.rows) == sum(q.numel() for q in Odd().parameters())
    assert p.macs == sum(r.macs for r in p.rows)


@pytest.mark.slow
def test_resnet18_totals_equal_the_case_counts():
    from torchvision.models import resnet18

    from cnnbench.measure.counting import count_macs, count_params

    model = resnet18(weights=None).eval()
    example = torch.randn(1, 3, 224, 224)
    p = profile_model(model, example)
    counted = count_macs(model, example)
    assert p.macs == round(counted["gmacs"] * 1e9) == sum(r.macs for r in p.rows)
    assert p.params == count_params(model)[0] == sum(r.params for r in p.rows)
    assert p.layers[-2].type == "AdaptiveAvgPool2d" and p.layers[-2].rf_global
    assert p.row("layer4.1.conv2").receptive_field == (435, 435)  # the known ResNet-18 figure


@pytest.mark.slow
@pytest.mark.parametrize(
    "name",
    ["alexnet", "googlenet", "inception_v3", "densenet121", "squeezenet1_1", "mobilenet_v3_large",
     "efficientnet_b0", "convnext_tiny", "regnet_y_400mf", "shufflenet_v2_x0_5", "vit_b_16", "swin_t"],
)  # fmt: skip
def test_every_family_of_the_registry_profiles_with_totals_equal_to_the_case_counts(name):
    """The profile works for the zoo's families (branches, dense blocks, depthwise convs,
    squeeze-excitation, attention, windowed attention) and its totals are the case's counts."""
    from cnnbench.measure.counting import count_macs, count_params
    from cnnbench.models.catalog import get_info
    from cnnbench.models.registry import build_model

    size = get_info(name).input_size
    model = build_model(name, input_size=size).eval()
    example = torch.randn(1, *size)
    p = profile_model(model, example)
    assert p.params == count_params(model)[0] == sum(r.params for r in p.rows)
    assert p.macs == pytest.approx(count_macs(model, example)["gmacs"] * 1e9, rel=1e-6)
    assert p.macs == sum(r.macs for r in p.rows)
    assert 1000 in p.layers[-1].output_shape  # the classifier (or its pooling) is the last row


def test_padding_same_convolutions_are_counted():
    from cnnbench.models.seeds import MnistCNN

    p = profile_model(MnistCNN(), torch.randn(1, 1, 28, 28))
    assert p.row("conv1").padding == "same"
    assert p.row("conv1").macs == 28 * 28 * 32 * 9


# --- analytic memory -----------------------------------------------------------------------------


def test_activation_and_param_bytes_scale_with_batch_and_precision(lenet5):
    one = activation_bytes(lenet5, torch.randn(1, 1, 32, 32), "fp32")
    assert one == 4 * (4_704 + 1_176 + 1_600 + 400 + 120 + 84 + 10)  # tanh is functional here
    assert activation_bytes(lenet5, torch.randn(8, 1, 32, 32), "fp32") == 8 * one
    assert activation_bytes(lenet5, torch.randn(1, 1, 32, 32), "bf16") == one // 2
    assert param_bytes(lenet5, "fp32") == 4 * LENET5_PARAMS
    assert param_bytes(lenet5, "fp16") == 2 * LENET5_PARAMS
    with pytest.raises(UserError, match="precision"):
        param_bytes(lenet5, "int3")


# --- bad input -------------------------------------------------------------------------------------


def test_bad_input_size_names_the_layer_in_one_line(lenet5):
    with pytest.raises(InputShapeError) as info:
        profile_model(lenet5, torch.randn(1, 1, 28, 28))
    msg = str(info.value)
    assert isinstance(info.value, UserError) and "\n" not in msg
    assert "'c5' (Linear)" in msg and "got input 1x256" in msg and "1x1x28x28" in msg


def test_bad_input_in_a_functional_op_names_the_layer_before_it():
    from cnnbench.models.seeds import MnistCNN

    with pytest.raises(InputShapeError, match=r"MnistCNN.forward after layer 'pool' \(MaxPool2d, output 1x64x8x8\)"):
        profile_model(MnistCNN(), torch.randn(1, 1, 32, 32))


def test_kernel_larger_than_the_map_names_the_layer():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.MaxPool2d(2), nn.Conv2d(2, 2, 5))
    with pytest.raises(InputShapeError, match=r"layer '2' \(Conv2d\) got input 1x2x3x3"):
        profile_model(model, torch.randn(1, 1, 8, 8))


# --- time ----------------------------------------------------------------------------------------


@pytest.mark.measured
def test_time_layers_adds_profiler_time_per_layer(lenet5):
    """Each layer's region runs inside the forward's region, one after another on one thread and
    one clock (the profiler's, in ns), so in every run the layers' times add up to at most the
    forward's: the sum can exceed it only by float rounding, never by the machine's load."""
    example = torch.randn(1, 1, 32, 32)
    p = time_layers(lenet5, example, profile_model(lenet5, example), warmup=1, runs=2)
    assert p.forward_time_ms and p.forward_time_ms > 0
    assert all(r.time_ms is not None and r.time_ms >= 0 for r in p.layers)
    assert sum(r.time_ms for r in p.layers) <= p.forward_time_ms + 1e-9


# --- the command ---------------------------------------------------------------------------------


def test_cli_json_output_parses(capsys):
    assert main(["profile", "lenet5", "--json", "-"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["model"] == "lenet5" and data["input_shape"] == [1, 1, 32, 32]
    assert data["totals"]["params"] == LENET5_PARAMS
    assert data["totals"]["flops"] == 2 * data["totals"]["macs"]
    assert [r["name"] for r in data["rows"]][:2] == ["c1", "s2"]
    assert data["rows"][0]["receptive_field"] == [5, 5]


def test_cli_csv_and_batch_and_precision(capsys):
    assert main(["profile", "lenet5", "-b", "4", "--precision", "fp16", "--csv", "-"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert rows[0]["name"] == "c1" and rows[0]["output_shape"] == "4x6x28x28"
    assert int(rows[0]["activation_bytes"]) == 4 * 4_704 * 2
    assert rows[-1]["kind"] == "total" and int(rows[-1]["params"]) == LENET5_PARAMS


def test_cli_table_has_units_in_headers(capsys):
    assert main(["profile", "lenet5", "--input-size", "1x32x32"]) == 0
    out = capsys.readouterr().out
    assert "MACs (K)" in out and "Act. memory (KiB, fp32)" in out and "RF (px)" in out
    assert "FLOPs = 2 x MACs" in out and "61,706" in out


@pytest.mark.parametrize("size", ["32", "32x32", "1x32x32", [1, 32, 32]])
def test_cli_input_size_takes_the_suites_grammar(capsys, size):
    """One grammar for sizes everywhere: `--input-size 32` as a suite's `input_size: 32`, the
    channels from the model's default (lenet5: 1)."""
    text = "x".join(map(str, size)) if isinstance(size, list) else size
    assert main(["profile", "lenet5", "--input-size", text, "--json", "-"]) == 0
    assert json.loads(capsys.readouterr().out)["input_shape"] == [1, 1, 32, 32]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["profile", "lenett"], "did you mean: lenet5"),
        (["profile", "lenet5", "--batch-size", "0"], "--batch-size must be at least 1"),
        (["profile", "lenet5", "--batch-size", "two"], "--batch-size must be a whole number"),
        (["profile", "lenet5", "--input-size", "thirty"], "--input-size: malformed input size 'thirty'"),
        (["profile", "lenet5", "--input-size", "1x0x32"], "--input-size: height and width must be between 1"),
        (["profile", "lenet5", "--input-size", "train"], "train is only known for timm models"),
        (["profile", "mine", "--source", "x.y:z", "--input-size", "32"], "user model 'mine' has none; give CxHxW"),
        (["profile", "lenet5", "--input-size", "1x28x28"], "layer 'c5' (Linear) got input 1x256"),
        (["profile", "mine", "--source", "x.y:z"], "--input-size is required with --source"),
    ],
)
def test_cli_errors_are_one_line_with_exit_2(capsys, argv, message):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_command_module_does_not_import_torch():
    code = "import sys, cnnbench.commands.profile; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
