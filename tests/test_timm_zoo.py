"""timm models by name (cnnbench.models.timm_zoo): resolution against timm's own registry and
pretrained configs, the input-size choice, the build without weights, the published figures
shipped as data and the cross-check of our counts against them, and the one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

timm = pytest.importorskip("timm")  # the `dev` extra installs it; CI runs these

from cnnbench import cli  # noqa: E402
from cnnbench.measure.counting import counts_for  # noqa: E402
from cnnbench.core.errors import SuiteError, UnknownModelError, UserError  # noqa: E402
from cnnbench.models import _timm_published as data  # noqa: E402
from cnnbench.models import catalog, timm_zoo  # noqa: E402
from cnnbench.models.registry import build_model, published_metadata  # noqa: E402
from cnnbench.suite.schema import expand  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _cases(models, **matrix):
    return expand({"models": models, **matrix})


def test_default_input_size_is_the_pretrained_configs_test_size():
    cfg = timm.models.get_pretrained_cfg("resnet18")  # its default tag
    assert cfg.test_input_size != cfg.input_size  # a1_in1k: trained at 224, tested at 288
    info = catalog.get_info("timm:resnet18")
    assert info.source == "timm"
    assert info.input_size == tuple(cfg.test_input_size)
    # a tag without a test size tests at its train size
    tv = timm.models.get_pretrained_cfg("resnet18.tv_in1k")
    assert tv.test_input_size is None
    assert catalog.get_info("timm:resnet18.tv_in1k").input_size == tuple(tv.input_size)


def test_suite_input_size_train_test_and_a_number():
    cfg = timm.models.get_pretrained_cfg("resnet18")
    sizes = [c.input_size for c in _cases(["timm:resnet18"], input_size=["train", "test", 96])]
    assert sizes == [tuple(cfg.input_size), tuple(cfg.test_input_size), (3, 96, 96)]
    # at the model entry too; the matrix's axis has the last word
    (case,) = _cases([{"name": "timm:resnet18", "input_size": "train"}])
    assert case.input_size == tuple(cfg.input_size)
    (case,) = _cases(["timm:resnet18"])
    assert case.input_size == tuple(cfg.test_input_size)


def test_input_size_train_is_refused_where_no_config_gives_one():
    with pytest.raises(SuiteError, match="only known for timm models"):
        _cases(["resnet18"], input_size="train")
    (case,) = _cases(["resnet18"], input_size="test")  # torchvision: the published crop size
    assert case.input_size == (3, 224, 224)
    with pytest.raises(SuiteError, match="needs a registry or timm model"):
        _cases([{"name": "m", "import": "pkg.mod:build", "input_size": "test"}])
    with pytest.raises(SuiteError, match="needs a registry or timm model"):
        _cases([{"name": "m", "import": "pkg.mod:build", "input_size": [3, 8, 8]}], input_size="train")


def test_tag_sets_the_class_count_without_weights():
    tags = timm.list_pretrained("convnext_nano.in12k*")
    name = next(t for t in tags if timm.models.get_pretrained_cfg(t).num_classes != 1000)
    want = timm.models.get_pretrained_cfg(name).num_classes
    m = timm_zoo.resolve(f"timm:{name}")
    assert m.num_classes == want
    model = build_model(f"timm:{name}", input_size=m.test_size)
    assert model.get_classifier().out_features == want
    assert not model.training


def test_build_never_asks_for_weights(monkeypatch):
    import timm.models._builder as builder

    def refuse(*a, **k):
        raise AssertionError("pretrained weights requested")

    monkeypatch.setattr(builder, "load_pretrained", refuse)
    monkeypatch.setattr(builder, "load_state_dict_from_hf", refuse, raising=False)
    import torch

    model = build_model("timm:test_vit", input_size=(3, 96, 96))  # fixed_input_size: gets img_size
    out = model(torch.randn(2, 3, 96, 96))
    assert out.shape == (2, 1000)


@pytest.mark.parametrize("arch", ["test_resnet", "test_vit", "test_efficientnet", "test_convnext", "resnet10t"])
def test_our_counts_agree_with_timms_published_figures(arch):
    size = timm_zoo.resolve(f"timm:{arch}").test_size
    pub = published_metadata(f"timm:{arch}", size)
    assert pub["gmacs"] is not None and pub["num_params"] is not None, "no published row at the test size"
    counts = counts_for(f"timm:{arch}", input_size=size)
    assert timm_zoo.check_counts(pub, params=counts["params"], gmacs_per_image=counts["gmacs"]) == []
    assert abs(counts["params"] - pub["num_params"]) <= 5_000 + 0.01 * pub["num_params"]


def test_cross_check_flags_a_real_disagreement():
    pub = published_metadata("timm:test_resnet")
    warnings = timm_zoo.check_counts(pub, params=2 * pub["num_params"], gmacs_per_image=3 * pub["gmacs"])
    assert len(warnings) == 2 and all("timm's published" in w for w in warnings)
    assert (
        timm_zoo.check_counts({"acc@1": 70.0}, params=1, gmacs_per_image=1.0) == []
    )  # torchvision's: not ours to check


def test_published_figures_are_labelled_with_their_source_and_size():
    pub = published_metadata("timm:resnet18.a1_in1k", (3, 224, 224))
    assert pub["label"] == "published" and pub["source"] == "timm"
    rows = dict((r[0], r) for r in data.ACCURACY["resnet18.a1_in1k"])
    assert pub["acc@1"] == rows[224][1] and pub["accuracy_img_size"] == 224
    assert pub["input_size_is"] == "train"
    assert published_metadata("timm:resnet18.a1_in1k")["input_size_is"] == "test"
    for src in (pub["accuracy_source"], pub["counts_source"]):
        assert src["repository"] == "huggingface/pytorch-image-models"
        assert len(src["commit"]) == 40 and src["date"][:2] == "20"
    # a size timm never benchmarked: no GMACs rather than a wrong one
    assert published_metadata("timm:resnet18", (3, 100, 100))["gmacs"] is None


def test_shipped_data_names_real_timm_models():
    for name in data.ACCURACY:
        assert timm.models.get_pretrained_cfg(name) is not None, name
    for arch in data.COUNTS:
        assert timm.is_model(arch), arch


def test_unknown_arch_suggests_timm_names():
    with pytest.raises(UnknownModelError) as err:
        catalog.get_info("timm:resnt18")
    assert "timm:resnet18" in err.value.suggestions
    with pytest.raises(SuiteError, match="did you mean: timm:resnet18"):
        _cases(["timm:resnt18"])


def test_unknown_tag_is_one_line_naming_the_tags():
    with pytest.raises(UserError, match=r"no pretrained config tagged 'nope' for resnet18 \(its tags: a1_in1k"):
        timm_zoo.resolve("timm:resnet18.nope")


def test_list_models_lists_timm_archs_and_tags(capsys):
    assert cli.main(["list", "models", "timm:resnet18.*"]) == 0
    out = capsys.readouterr().out.split()
    assert out == ["timm:" + n for n in sorted(timm.list_pretrained("resnet18.*"), key=catalog.natural_key)]
    assert cli.main(["list", "models", "timm:resnet1*", "--details"]) == 0
    assert "timm:resnet18 " in capsys.readouterr().out


def test_missing_timm_is_one_line_with_the_install_command(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(timm_zoo, "HAS_TIMM", False)
    timm_zoo.resolve.cache_clear()
    suite = tmp_path / "s.yaml"
    suite.write_text("name: s\nmatrices:\n  - models: [timm:resnet18]\n")
    assert cli.main(["run", str(suite), "--out", str(tmp_path / "r.json")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and timm_zoo.INSTALL_HINT in err[0] and "pip install" in err[0]
    timm_zoo.resolve.cache_clear()


def test_bad_names_on_the_command_line_exit_2_in_one_line(capsys):
    for name in ("timm:resnet18.nope", "timm:resnt18"):
        assert cli.main(["profile", name]) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and err.startswith("error: "), err


def test_accuracy_preprocessing_follows_the_pretrained_config():
    from cnnbench.accuracy.datasets import _weights_transforms

    tf, label = _weights_transforms(None, "timm:resnet18.tv_in1k")
    cfg = timm.models.get_pretrained_cfg("resnet18.tv_in1k")
    assert tf["crop"] == cfg.input_size[1] and tf["resize"] == int(cfg.input_size[1] / cfg.crop_pct)
    assert tf["interpolation"] == cfg.interpolation and tf["mean"] == list(cfg.mean)
    assert label.startswith("timm ")


@pytest.mark.slow
def test_run_a_timm_suite_records_size_published_figures_and_no_count_warning(tmp_path):
    suite = tmp_path / "timm.yaml"
    suite.write_text(
        textwrap.dedent("""\
        name: timm-tiny
        matrices:
          - models: [timm:test_resnet]
            input_size: test
            measure: {warmup: 1, min_time_s: 0.05, max_time_s: 0.2, min_samples: 3, repeats: 1}
        """)
    )
    out = tmp_path / "r.json"
    p = subprocess.run([sys.executable, "bench.py", "run", str(suite), "--out", str(out), "--no-peak", "-q"],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert p.returncode in (0, 1), p.stderr
    (record,) = json.loads(out.read_text())["cases"]
    cfg = timm.models.get_pretrained_cfg("test_resnet")
    assert record["status"] == "ok", record.get("error")
    assert record["spec"]["input_size"] == list(cfg.input_size)  # test_resnet has no separate test size
    pub = record["published"]
    assert pub["label"] == "published" and pub["pretrained_cfg"]["input_size"] == list(cfg.input_size)
    assert pub["input_size_is"] == "test"
    assert not [w for w in record["warnings"] if "published" in w]
    assert record["gmacs_per_image"] == pytest.approx(pub["gmacs"], abs=0.005 + 0.1 * pub["gmacs"])
    assert record["params"] == pytest.approx(pub["num_params"], abs=5_000 + 0.01 * pub["num_params"])


def test_reports_say_whose_published_figure_it_is():
    from cnnbench.report.accuracy_table import published_lines
    from cnnbench.report.model import published_figure

    pub = published_metadata("timm:resnet18.a1_in1k")
    fig = published_figure(pub)
    assert fig.kind == "published" and fig.top1 == pub["acc@1"]
    assert fig.detail.startswith("timm resnet18.a1_in1k") and f"{pub['accuracy_img_size']}px" in fig.detail
    (line,) = published_lines([(None, {"published": pub})], None)
    assert line.startswith("published (timm results table, not measured here)") and "torchvision" not in line


def test_weights_from_a_local_safetensors_file_load_into_the_timm_model(tmp_path):
    """timm's checkpoints (and the Hugging Face cache's) are .safetensors files."""
    import torch
    from safetensors.torch import save_file

    from cnnbench.accuracy import load_weights

    torch.manual_seed(1)
    source = build_model("timm:test_resnet")
    path = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(path))
    target = build_model("timm:test_resnet")
    info = load_weights(target, str(path))
    assert info["tensors"] == len(source.state_dict())
    x = torch.randn(1, 3, 64, 64)
    with torch.inference_mode():
        assert torch.equal(target(x), source(x))


def test_timms_copy_of_torchvisions_resnet18_counts_the_same():
    """suites/timm.yaml sets them side by side: the same architecture by two builders."""
    tv = counts_for("resnet18", input_size=(3, 224, 224))
    tm = counts_for("timm:resnet18.tv_in1k", input_size=(3, 224, 224))
    assert (tv["params"], tv["gmacs"]) == (tm["params"], tm["gmacs"])
