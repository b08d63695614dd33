"""The model registry: catalog freshness, seed models, torchvision builders as published, user
models by import path, error messages and offline published metadata."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch
from torchvision import models as tvm

from cnnbench.measure.counting import count_params
from cnnbench.core.errors import UnknownModelError, UserError
from cnnbench.models import catalog
from cnnbench.models._torchvision_catalog import TORCHVISION_MODELS
from cnnbench.models.registry import (
    ModelBuildError,
    aux_heads_included,
    build_model,
    builder_kwargs,
    published_metadata,
)
from cnnbench.models.seeds import SEED_BUILDERS


def _meta(name: str) -> dict:
    return tvm.get_model_weights(name).DEFAULT.meta


def test_generated_catalog_matches_installed_torchvision():
    # Fails after a torchvision upgrade: run tools/gen_catalog.py and review the diff.
    assert TORCHVISION_MODELS == catalog.torchvision_catalog_from_torchvision()


def test_import_is_light():
    code = (
        "import sys, cnnbench.models, cnnbench.models.catalog, cnnbench.models.registry, cnnbench.measure.counting;"
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_seed_builders_are_the_catalog_seeds():
    assert set(SEED_BUILDERS) == {n for n, info in catalog.MODELS.items() if info.source == "seeds"}


SEED_OUTPUTS = {
    "lenet5": (10,),
    "mnist_cnn_bn": (10,),
    "mnist_cnn": (10,),
    "mnist_fcn": (10,),
    "inception_naive": (128 + 192 + 96 + 256, 28, 28),
    "inception_bottleneck": (128 + 192 + 96 + 64, 28, 28),
}


@pytest.mark.parametrize("name", sorted(SEED_OUTPUTS))
def test_seed_model_builds_and_runs(name):
    model = build_model(name)
    assert not model.training
    size = catalog.get_info(name).input_size
    with torch.inference_mode():
        out = model(torch.randn(2, *size))
    assert tuple(out.shape) == (2, *SEED_OUTPUTS[name])


def test_googlenet_as_published_has_no_aux_heads():
    model = build_model("googlenet")
    total, _ = count_params(model)
    assert total == _meta("googlenet")["num_params"] == 6_624_904
    assert not aux_heads_included(model)
    assert model.transform_input  # the published weights expect this
    # torchvision's default builds the auxiliary classifiers: 13.0M parameters.
    with_aux = tvm.googlenet(weights=None, aux_logits=True, init_weights=False)
    assert aux_heads_included(with_aux)
    assert count_params(with_aux)[0] == 13_004_888


def test_inception_v3_published_num_params_counts_its_aux_head():
    # torchvision's inception_v3 `num_params` (27,161,264) includes the AuxLogits head, which
    # the builder drops from the published model; googlenet's figure excludes its aux heads.
    published = _meta("inception_v3")["num_params"]
    assert published_metadata("inception_v3")["num_params_includes_aux"] is True
    assert published_metadata("googlenet")["num_params_includes_aux"] is False

    as_published = build_model("inception_v3")
    assert not aux_heads_included(as_published)
    with_aux = build_model("inception_v3", kwargs={"aux_logits": True})
    assert aux_heads_included(with_aux)
    aux_params = count_params(with_aux.AuxLogits)[0]
    assert count_params(with_aux)[0] == published
    assert count_params(as_published)[0] == published - aux_params == 23_834_568


def test_resnet18_params_equal_published():
    model = build_model("resnet18")
    assert count_params(model) == (_meta("resnet18")["num_params"],) * 2


def test_resolution_bound_builders_get_the_input_size():
    # vit_h_14's DEFAULT weights are SWAG at 518x518; the builder's own default is 224.
    assert builder_kwargs("vit_h_14")["image_size"] == 518
    assert builder_kwargs("vit_b_16", input_size=(3, 384, 384))["image_size"] == 384
    assert builder_kwargs("vit_b_16", kwargs={"image_size": 160})["image_size"] == 160
    assert builder_kwargs("maxvit_t", input_size=(3, 256, 256))["input_size"] == (256, 256)
    assert builder_kwargs("googlenet", kwargs={"aux_logits": True}) == {
        "aux_logits": True,
        "transform_input": True,
        "init_weights": False,
    }
    assert builder_kwargs("resnet18") == {}


def test_vit_runs_at_a_non_default_size():
    model = build_model("vit_b_32", input_size=(3, 160, 160))
    with torch.inference_mode():
        assert tuple(model(torch.randn(1, 3, 160, 160)).shape) == (1, 1000)


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    (tmp_path / "cnnbench_test_usermodels.py").write_text(
        textwrap.dedent(
            """
            from torch import nn

            def tiny(width=4):
                return nn.Sequential(nn.Conv2d(3, width, 3), nn.ReLU(), nn.Flatten())

            class Zoo:
                @staticmethod
                def linear(n=5):
                    return nn.Linear(n, 2)

            def broken():
                raise ValueError("first line\\nsecond line")

            def not_a_model():
                return 42
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "cnnbench_test_usermodels"
    sys.modules.pop("cnnbench_test_usermodels", None)


def test_user_model_by_import_path(user_module):
    model = build_model("mine", source=f"{user_module}:tiny", kwargs={"width": 6})
    assert not model.training
    assert count_params(model)[0] == 6 * (3 * 3 * 3 + 1)
    nested = build_model("mine", source=f"{user_module}:Zoo.linear", kwargs={"n": 3})
    assert count_params(nested)[0] == 2 * (3 + 1)


@pytest.mark.parametrize(
    "source, kwargs, fragment",
    [
        ("no_such_package_xyz.models:build", None, "cannot import 'no_such_package_xyz.models'"),
        ("{mod}", None, "must look like 'package.module:callable'"),
        ("{mod}:missing", None, "has no attribute 'missing'"),
        ("{mod}:broken", None, "ValueError: first line second line"),
        ("{mod}:tiny", {"depth": 3}, "TypeError"),
        ("{mod}:not_a_model", None, "not a torch.nn.Module"),
    ],
)
def test_bad_user_model_raises_one_line_user_error(user_module, source, kwargs, fragment):
    with pytest.raises(ModelBuildError) as info:
        build_model("mine", source=source.format(mod=user_module), kwargs=kwargs)
    assert isinstance(info.value, UserError)
    message = str(info.value)
    assert "\n" not in message
    assert fragment in message


def test_bad_builder_kwargs_raise_user_error():
    with pytest.raises(ModelBuildError, match="lenet5: building failed with {'nope': 1}: TypeError"):
        build_model("lenet5", kwargs={"nope": 1})


def test_unknown_name_suggests_near_names():
    with pytest.raises(UnknownModelError) as info:
        build_model("resnet19")
    assert "resnet18" in info.value.suggestions
    assert "did you mean" in str(info.value) and "resnet18" in str(info.value)


def test_published_metadata_is_read_offline_from_torchvision():
    meta = published_metadata("resnet18")
    tv = tvm.ResNet18_Weights.DEFAULT
    assert meta["acc@1"] == tv.meta["_metrics"]["ImageNet-1K"]["acc@1"]
    assert meta["acc@1"] == pytest.approx(69.758)
    assert meta["acc@5"] == tv.meta["_metrics"]["ImageNet-1K"]["acc@5"]
    assert meta["num_params"] == tv.meta["num_params"]
    assert meta["gmacs"] == tv.meta["_ops"]
    assert meta["gflops"] == pytest.approx(2 * tv.meta["_ops"])
    assert meta["weights"] == "ResNet18_Weights.IMAGENET1K_V1"
    assert (meta["crop_size"], meta["resize_size"]) == (224, 256)
    assert meta["mean"] == pytest.approx([0.485, 0.456, 0.406])
    assert meta["std"] == pytest.approx([0.229, 0.224, 0.225])
    assert published_metadata("inception_v3")["crop_size"] == 299
    assert published_metadata("lenet5") is None
    with pytest.raises(UnknownModelError):
        published_metadata("resnet19")


def test_list_models_command_sorts_naturally_and_refuses_a_glob_that_matches_nothing(capsys):
    from cnnbench.cli import main

    assert main(["list", "models", "resnet*"]) == 0
    assert capsys.readouterr().out.split() == ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152"]
    assert main(["list", "models", "resnett*"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no model matches 'resnett*'" in err
