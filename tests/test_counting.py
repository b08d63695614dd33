"""Parameter and MAC counting: figures worked out by hand from the layer definitions, the
cross-check between counters, torchvision's published figures and the on-disk cache."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from cnnbench.measure import counting
from cnnbench.measure.counting import count_macs, count_params, counts_for
from cnnbench.models.catalog import get_info
from cnnbench.models.registry import build_model, published_metadata
from cnnbench.core.spec import CaseSpec


def conv(cin, cout, k):
    """Parameters of a Conv2d with bias: cout filters of cin*k*k weights and one bias each."""
    return cout * (cin * k * k + 1)


def fc(n_in, n_out):
    return n_out * (n_in + 1)


def bn(c):
    return 2 * c  # gamma and beta; running mean/var are buffers, not parameters


PARAMS_BY_HAND = {
    # C1 6@5x5 on 1 ch, C3 16@5x5 on 6 ch (full connection), C5 400->120, F6 120->84, out 84->10
    "lenet5": 6 * (5 * 5 * 1 + 1) + 16 * (5 * 5 * 6 + 1) + 120 * (400 + 1) + 84 * (120 + 1) + 10 * (84 + 1),
    "mnist_cnn_bn": conv(1, 16, 5) + bn(16) + conv(16, 32, 5) + bn(32) + fc(7 * 7 * 32, 10),
    "mnist_cnn": conv(1, 32, 3) + conv(32, 64, 3) + fc(64 * 7 * 7, 128) + fc(128, 10),
    "mnist_fcn": conv(1, 32, 3) + conv(32, 64, 3) + conv(64, 128, 3) + conv(128, 10, 1),
    "inception_naive": conv(256, 128, 1) + conv(256, 192, 3) + conv(256, 96, 5),
    "inception_bottleneck": (
        conv(256, 128, 1)
        + conv(256, 64, 1) + conv(64, 192, 3)
        + conv(256, 64, 1) + conv(64, 96, 5)
        + conv(256, 64, 1)
    ),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(PARAMS_BY_HAND))
def test_params_by_hand(name):
    assert count_params(build_model(name)) == (PARAMS_BY_HAND[name], PARAMS_BY_HAND[name])


def test_lenet5_has_the_standard_61706_params():
    assert PARAMS_BY_HAND["lenet5"] == 61_706


def test_trainable_excludes_frozen_parameters():
    model = build_model("lenet5")
    for p in model.c1.parameters():
        p.requires_grad_(False)
    assert count_params(model) == (61_706, 61_706 - 6 * (5 * 5 + 1))


def conv_macs(cout, h_out, w_out, cin, k):
    """Output elements times the kernel volume each one needs."""
    return cout * h_out * w_out * cin * k * k


MACS_BY_HAND = {
    "lenet5": (
        conv_macs(6, 28, 28, 1, 5)  # C1: 32-5+1 = 28
        + conv_macs(16, 10, 10, 6, 5)  # C3 after 2x2 pooling: 14-5+1 = 10
        + 400 * 120  # C5
        + 120 * 84  # F6
        + 84 * 10  # output
    ),
    "mnist_cnn": conv_macs(32, 28, 28, 1, 3) + conv_macs(64, 14, 14, 32, 3) + 3136 * 128 + 128 * 10,
    "mnist_fcn": conv_macs(32, 28, 28, 1, 3) + conv_macs(64, 14, 14, 32, 3) + conv_macs(128, 5, 5, 64, 3) + 128 * 10,
    # The slides' "Conv Ops" lines: 854M for the naive module ...
    "inception_naive": 28 * 28 * (128 * 1 * 1 * 256 + 192 * 3 * 3 * 256 + 96 * 5 * 5 * 256),
    # ... and 271M with bottlenecks (the slide's own lines; its "Total: 358M" is a slip).
    "inception_bottleneck": 28 * 28 * (
        64 * 1 * 1 * 256 + 64 * 1 * 1 * 256 + 128 * 1 * 1 * 256
        + 192 * 3 * 3 * 64 + 96 * 5 * 5 * 64 + 64 * 1 * 1 * 256
    ),
}  # fmt: skip


def _macs(name: str, **kwargs) -> dict:
    model = build_model(name)
    return count_macs(model, torch.randn(1, *get_info(name).input_size), **kwargs)


@pytest.mark.parametrize("name", sorted(MACS_BY_HAND))
def test_macs_by_hand(name):
    # mnist_cnn/mnist_fcn use padding='same' (aten::_convolution_mode), which plain fvcore
    # counts as zero: this is the regression test for the handle counting.py adds.
    result = _macs(name)
    assert result["counter"] == "fvcore"
    assert round(result["gmacs"] * 1e9) == MACS_BY_HAND[name]
    assert round(result["crosscheck_gmacs"] * 1e9) == MACS_BY_HAND[name]
    assert result["gflops"] == pytest.approx(2 * result["gmacs"])
    assert result["warnings"] == []


def test_lenet5_macs_are_416520():
    assert MACS_BY_HAND["lenet5"] == 416_520


def test_fvcore_also_counts_batchnorm_the_crosscheck_does_not():
    result = _macs("mnist_cnn_bn")
    convs_and_fc = conv_macs(16, 28, 28, 1, 5) + conv_macs(32, 14, 14, 16, 5) + 7 * 7 * 32 * 10
    bn_elements = 16 * 28 * 28 + 32 * 14 * 14  # fvcore: one multiply and one add per element
    assert round(result["crosscheck_gmacs"] * 1e9) == convs_and_fc
    assert round(result["gmacs"] * 1e9) == convs_and_fc + 2 * bn_elements
    assert result["disagreement"] < counting.DISAGREEMENT_WARN_THRESHOLD


def test_attention_is_counted_by_both_counters():
    # nn.MultiheadAttention takes a fused fast path in inference that neither counter sees;
    # counting switches it off, and both counters are taught scaled_dot_product_attention.
    class Attn(nn.Module):
        def __init__(self):
            super().__init__()
            self.mha = nn.MultiheadAttention(32, 4, batch_first=True)

        def forward(self, x):
            return self.mha(x, x, x, need_weights=False)[0]

    model = Attn().eval()
    length, dim, heads = 10, 32, 4
    projections = length * dim * 3 * dim + length * dim * dim  # in_proj (q, k, v) + out_proj
    attention = heads * (length * length * (dim // heads)) * 2  # Q K^T and attn V
    before = torch.backends.mha.get_fastpath_enabled()
    result = count_macs(model, torch.randn(1, length, dim))
    assert torch.backends.mha.get_fastpath_enabled() == before
    assert round(result["gmacs"] * 1e9) == projections + attention
    assert round(result["crosscheck_gmacs"] * 1e9) == projections + attention


def test_resnet18_gmacs_match_published_and_crosscheck():
    result = _macs("resnet18")
    published = published_metadata("resnet18")["gmacs"]  # torchvision's `_ops`: 1.814
    assert result["gmacs"] == pytest.approx(published, rel=0.01)
    assert result["crosscheck_gmacs"] == pytest.approx(published, rel=0.01)
    assert result["disagreement"] < 0.05
    assert result["warnings"] == []


def test_lenet5_crosscheck_agrees():
    result = _macs("lenet5")
    assert result["disagreement"] < 0.05
    # tanh and average pooling are unsupported by fvcore but do no MACs: no warning.
    assert result["warnings"] == []


def test_disagreement_warns_and_names_the_counters(monkeypatch):
    monkeypatch.setattr(counting, "_crosscheck_macs", lambda model, example: 0.8 * MACS_BY_HAND["lenet5"])
    result = _macs("lenet5")
    assert result["disagreement"] == pytest.approx(0.2)
    (warning,) = result["warnings"]
    assert "20.0%" in warning and "fvcore higher than torch.utils.flop_counter" in warning


def test_unsupported_mac_ops_are_summarized_not_logged(capfd):
    class Bil(nn.Module):
        def __init__(self):
            super().__init__()
            self.bil = nn.Bilinear(4, 5, 3)

        def forward(self, x):
            return torch.tanh(self.bil(x[:, :4], x[:, 4:]))

    result = count_macs(Bil(), torch.randn(1, 9))
    assert result["warnings"] == ["fvcore counted zero MACs for unsupported ops: aten::bilinear x1"]
    out, err = capfd.readouterr()
    assert out == "" and err == ""


def test_counts_for_is_cached_on_disk(tmp_path, monkeypatch):
    monkeypatch.setenv("CNNBENCH_CACHE_DIR", str(tmp_path))
    first = counts_for("lenet5")
    assert first["params"] == first["trainable_params"] == 61_706
    assert round(first["gmacs"] * 1e9) == MACS_BY_HAND["lenet5"]
    assert first["gflops"] == pytest.approx(2 * first["gmacs"])
    assert first["counter"] == "fvcore"
    assert first["crosscheck"]["counter"] == "torch.utils.flop_counter"
    assert first["input_size"] == [1, 32, 32]
    assert first["aux_heads_included"] is False
    (cached,) = (tmp_path / "counts").iterdir()
    assert cached.suffix == ".json" and json.loads(cached.read_text())["counts"] == first

    def boom(*args, **kwargs):
        raise AssertionError("counted again instead of reading the cache")

    monkeypatch.setattr(counting, "count_macs", boom)
    assert counts_for("lenet5") == first
    spec = CaseSpec(model="lenet5", batch_size=64, input_size=(1, 32, 32))
    assert counts_for(spec) == first  # the batch size is not part of the key
    with pytest.raises(AssertionError, match="counted again"):
        counts_for("lenet5", kwargs={"num_classes": 5})
    with pytest.raises(AssertionError, match="counted again"):
        counts_for("mnist_cnn", input_size=(1, 28, 28))
    assert not list((tmp_path / "counts").glob("*.tmp"))


def test_corrupt_cache_file_is_recomputed(tmp_path, monkeypatch):
    monkeypatch.setenv("CNNBENCH_CACHE_DIR", str(tmp_path))
    first = counts_for("mnist_fcn")
    (cached,) = (tmp_path / "counts").iterdir()
    cached.write_text("{not json")
    assert counts_for("mnist_fcn") == first
    assert json.loads(cached.read_text())["counts"] == first
