"""Measured accuracy (cnnbench.accuracy): datasets, weights, evaluation, and how suites, the
worker and `bench.py accuracy` carry it. Expected answers are computed, never recorded."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from PIL import Image
from torch import nn

from cnnbench import accuracy
from cnnbench.accuracy import AccuracyError, evaluate, load_dataset, load_weights
from cnnbench.core.errors import SuiteError
from cnnbench.core.spec import CaseSpec, Measure
from cnnbench.suite.schema import load_suite

ROOT = Path(__file__).resolve().parent.parent
TINY = Measure(warmup=1, min_time_s=0.01, max_time_s=0.1, min_samples=2, max_samples=20, timeout_s=120)
N_CLASSES = 10
PER_CLASS = 5  # per class: 3 at their own level, 1 at the next class's level, 1 at a far class's


# ---------------------------------------------------------------------------------------------
# A model whose answer is known: it classifies an image by its mean intensity.


class IntensityNet(nn.Module):
    """Scores class k by -(mean - c_k)^2 with c_k = (k + 0.5) / K: an image whose mean pixel
    value (in [0, 1]) is c_k is class k, the next-nearest centres rank next."""

    def __init__(self, num_classes: int = N_CLASSES):
        super().__init__()
        self.register_buffer("centers", (torch.arange(num_classes, dtype=torch.float32) + 0.5) / num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = x.mean(dim=(1, 2, 3))
        return -((m[:, None] - self.centers[None, :]) ** 2)


def intensity_net(num_classes: int = N_CLASSES) -> nn.Module:
    """Imported by workers as 'tests.test_accuracy:intensity_net'."""
    return IntensityNet(num_classes)


def _level(k: int, n: int = N_CLASSES) -> int:
    return round((k + 0.5) / n * 255)


def make_folder(root: Path, *, classes: int = N_CLASSES, corrupt: bool = True) -> Path:
    """Class k holds 3 images at its own level (top-1 right), 1 at a neighbour's (top-1 wrong,
    top-5 right), 1 at class (k+5) % 10's (both wrong: 5 classes are nearer), in assorted sizes;
    plus an undecodable .png and a text file that is not an image."""
    sizes = [(40, 30), (64, 64), (33, 47), (50, 50), (36, 36)]
    for k in range(classes):
        d = root / f"class_{k:02d}"
        d.mkdir(parents=True)
        near = k + 1 if k + 1 < classes else k - 1
        shown = [k, k, k, near, (k + 5) % classes]
        for i, (j, size) in enumerate(zip(shown, sizes)):
            Image.new("RGB", size, (_level(j, classes),) * 3).save(d / f"img_{i}.png")
    if corrupt:
        (root / "class_03" / "zz_broken.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not a png")
        (root / "class_03" / "notes.txt").write_text("not an image")
    return root


EXPLICIT = {"resize": 32, "crop": 32, "mean": [0.0], "std": [1.0]}


def folder_dataset(path: Path, **config):
    cfg = {"kind": "imagefolder", "path": str(path), "transforms": EXPLICIT, **config}
    return load_dataset(cfg, input_size=(3, 32, 32))


def eager_predict(model: nn.Module):
    model.eval()

    def predict(x):
        with torch.inference_mode():
            return model(x)

    return predict


# ---------------------------------------------------------------------------------------------
# imagefolder


def test_imagefolder_on_generated_images_gives_the_computed_answer(tmp_path):
    ds = folder_dataset(make_folder(tmp_path / "val"))
    acc = evaluate(eager_predict(IntensityNet()), ds, batch_size=8, progress=False)
    assert acc["kind"] == "measured"
    assert (acc["total"], acc["skipped"]) == (50, 1)
    assert (acc["correct1"], acc["correct5"]) == (30, 40)
    assert acc["top1"] == pytest.approx(60.0) and acc["top5"] == pytest.approx(80.0)
    assert "zz_broken.png" in acc["skipped_examples"][0]
    d = acc["dataset"]
    assert d["classes"] == 10 and d["size"] == 51 and d["ignored_files"] == 1
    assert d["transforms"]["crop"] == [32, 32] and d["transforms"]["source"].startswith("defaults")


def test_limit_takes_a_balanced_prefix_and_padding_keeps_the_counts(tmp_path):
    ds = folder_dataset(make_folder(tmp_path / "val"))
    # round-robin order: the first 20 images are images 0 and 1 of every class, all at their level
    acc = evaluate(eager_predict(IntensityNet()), ds, batch_size=8, limit=20, progress=False)
    assert (acc["total"], acc["correct1"], acc["skipped"]) == (20, 20, 0)

    seen = []
    model = IntensityNet()

    def fixed(x):  # a backend prepared for one batch shape
        seen.append(x.shape[0])
        return model(x)

    acc = evaluate(fixed, ds, batch_size=16, fixed_batch=True, progress=False)
    assert set(seen) == {16}
    assert (acc["total"], acc["correct1"], acc["correct5"]) == (50, 30, 40)


def test_undecodable_image_is_an_error_when_strict(tmp_path):
    ds = folder_dataset(make_folder(tmp_path / "val"), strict=True)
    with pytest.raises(AccuracyError, match=r"cannot decode image .*zz_broken\.png.*strict"):
        evaluate(eager_predict(IntensityNet()), ds, batch_size=64, progress=False)


def test_class_count_that_does_not_match_the_outputs(tmp_path):
    ds = folder_dataset(make_folder(tmp_path / "val", classes=3, corrupt=False))
    with pytest.raises(AccuracyError) as info:
        evaluate(eager_predict(IntensityNet(10)), ds, batch_size=4, progress=False)
    assert str(info.value) == "the dataset has 3 class folders but the model outputs 10 classes"


def test_missing_or_empty_dataset_paths(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "no_images" / "cat").mkdir(parents=True)
    (tmp_path / "no_images" / "cat" / "readme.txt").write_text("x")
    (tmp_path / "zero.pt").write_bytes(b"")
    cases = [
        ("imagefolder", tmp_path / "nowhere", "dataset folder not found: "),
        ("imagefolder", tmp_path / "empty", "dataset folder is empty: no class subfolders in "),
        ("imagefolder", tmp_path / "no_images", "dataset folder is empty: no image files"),
        ("imagefolder", tmp_path / "zero.pt", "is a file"),
        ("tensors", tmp_path / "nowhere.pt", "dataset file not found: "),
        ("tensors", tmp_path / "zero.pt", "dataset file is empty: "),
        ("tensors", tmp_path / "empty", "is a folder"),
    ]
    for kind, path, fragment in cases:
        message = accuracy.check_dataset_path(kind, str(path))
        assert message and fragment in message and str(path) in message, (kind, path, message)
        with pytest.raises(AccuracyError) as info:
            load_dataset({"kind": kind, "path": str(path)}, input_size=(3, 32, 32))
        assert str(info.value) == message


def test_transforms_come_from_the_torchvision_weights_metadata(tmp_path):
    path = make_folder(tmp_path / "val", corrupt=False)
    ds = load_dataset({"kind": "imagefolder", "path": str(path)}, input_size=(3, 224, 224),
                      weights="ResNet18_Weights.IMAGENET1K_V1")  # fmt: skip
    t = ds.describe()["transforms"]
    assert (t["resize"], t["crop"], t["interpolation"]) == (256, [224, 224], "bilinear")
    assert t["mean"] == pytest.approx([0.485, 0.456, 0.406]) and t["std"] == pytest.approx([0.229, 0.224, 0.225])
    assert "ResNet18_Weights.IMAGENET1K_V1" in t["source"]
    # a torchvision model without named weights: its DEFAULT weights' metadata, scaled to the input
    ds = load_dataset({"kind": "imagefolder", "path": str(path)}, input_size=(3, 160, 160), model="resnet18")
    t = ds.describe()["transforms"]
    assert (t["resize"], t["crop"]) == (round(256 * 160 / 224), [160, 160])
    assert "ResNet18_Weights.IMAGENET1K_V1" in t["source"]  # resnet18's DEFAULT
    with pytest.raises(AccuracyError, match="crop 200x200 differs from the model's input 224x224"):
        load_dataset({"kind": "imagefolder", "path": str(path), "transforms": {"crop": 200}},
                     input_size=(3, 224, 224))  # fmt: skip


# ---------------------------------------------------------------------------------------------
# tensors


def test_tensors_dataset_and_its_bad_files(tmp_path):
    levels = torch.tensor([_level(k) / 255 for k in range(10)])
    labels = torch.tensor([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 0])
    images = levels[torch.tensor([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 1, 5])].view(-1, 1, 1, 1).expand(-1, 1, 8, 8).clone()
    good = tmp_path / "good.pt"
    torch.save({"images": images, "labels": labels}, good)
    ds = load_dataset({"kind": "tensors", "path": str(good)}, input_size=(1, 8, 8))
    acc = evaluate(eager_predict(IntensityNet()), ds, batch_size=5, progress=False)
    assert (acc["total"], acc["correct1"], acc["correct5"]) == (12, 10, 11)

    with pytest.raises(AccuracyError, match=r"images are 1x8x8, the model's input is 3x32x32"):
        load_dataset({"kind": "tensors", "path": str(good)}, input_size=(3, 32, 32))
    bad = tmp_path / "bad.pt"
    torch.save({"images": images}, bad)
    with pytest.raises(AccuracyError, match=r"must hold \{'images'.*got \['images'\]"):
        load_dataset({"kind": "tensors", "path": str(bad)}, input_size=(1, 8, 8))
    torch.save({"images": images, "labels": labels[:3]}, bad)
    with pytest.raises(AccuracyError, match="12 images but 3 labels"):
        load_dataset({"kind": "tensors", "path": str(bad)}, input_size=(1, 8, 8))
    torch.save({"images": images, "labels": labels + 10}, bad)
    ds = load_dataset({"kind": "tensors", "path": str(bad)}, input_size=(1, 8, 8))
    with pytest.raises(AccuracyError, match="label 19 is out of range: the model outputs 10 classes"):
        evaluate(eager_predict(IntensityNet()), ds, batch_size=64, progress=False)


# ---------------------------------------------------------------------------------------------
# weights


def lenet_state(tmp_path: Path, name: str = "w.pt", *, prefix: str = "", wrap: str | None = None) -> Path:
    from cnnbench.models.registry import build_model

    torch.manual_seed(1)
    state = {prefix + k: v for k, v in build_model("lenet5").state_dict().items()}
    path = tmp_path / name
    torch.save({wrap: state, "epoch": 3} if wrap else state, path)
    return path


def test_weights_file_loads_with_prefixes_stripped(tmp_path):
    from cnnbench.models.registry import build_model

    for path in (lenet_state(tmp_path), lenet_state(tmp_path, "m.pt", prefix="module."),
                 lenet_state(tmp_path, "c.pt", wrap="state_dict")):  # fmt: skip
        model = build_model("lenet5")
        info = load_weights(model, str(path))
        assert info == {"name": str(path), "source": "file", "path": str(path), "tensors": 10, "dropped_aux_keys": 0}
        torch.testing.assert_close(model.state_dict()["c1.weight"], torch.load(lenet_state(tmp_path, "ref.pt"))["c1.weight"])


def test_weights_missing_or_not_fitting(tmp_path):
    from cnnbench.models.registry import build_model

    missing = tmp_path / "nope.pt"
    with pytest.raises(AccuracyError) as info:
        load_weights(build_model("lenet5"), str(missing))
    assert str(info.value) == f"weights file not found: {missing}"

    with pytest.raises(AccuracyError) as info:  # lenet5 weights into another model
        load_weights(build_model("mnist_cnn"), str(lenet_state(tmp_path)))
    text = str(info.value)
    assert "\n" not in text and "does not fit the model" in text
    own = list(build_model("mnist_cnn").state_dict())
    assert f"missing {len(own)}: {', '.join(own[:3])}" in text
    assert "unexpected 10: c1.weight, c1.bias, c3.weight (+7 more)" in text

    state = torch.load(lenet_state(tmp_path))
    state["output.weight"] = torch.zeros(5, 84)
    state["output.bias"] = torch.zeros(5)
    del state["f6.bias"]
    torch.save(state, tmp_path / "odd.pt")
    with pytest.raises(AccuracyError) as info:
        load_weights(build_model("lenet5"), str(tmp_path / "odd.pt"))
    assert "missing 1: f6.bias;" in str(info.value)
    assert "shape mismatch 2: output.weight [5, 84] in the file, [10, 84] in the model" in str(info.value)

    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(AccuracyError, match=r"cannot read weights .*junk\.pt"):
        load_weights(build_model("lenet5"), str(tmp_path / "junk.pt"))


def test_torchvision_weights_come_only_from_the_hub_cache(tmp_path, monkeypatch):
    from torchvision.models import get_weight

    from cnnbench.models.registry import build_model

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    name = "SqueezeNet1_1_Weights.IMAGENET1K_V1"
    expected = tmp_path / "torch" / "hub" / "checkpoints" / os.path.basename(get_weight(name).url)
    assert accuracy.weights_path(name) == expected
    with pytest.raises(AccuracyError) as info:
        load_weights(build_model("squeezenet1_1"), name)
    assert str(expected) in str(info.value) and "nothing is downloaded" in str(info.value)
    assert not expected.exists()

    expected.parent.mkdir(parents=True)
    torch.manual_seed(3)
    torch.save(build_model("squeezenet1_1").state_dict(), expected)
    model = build_model("squeezenet1_1")
    info = load_weights(model, name)
    assert info["source"] == "torch hub cache" and info["path"] == str(expected)
    torch.testing.assert_close(model.state_dict()["features.0.weight"], torch.load(expected)["features.0.weight"])
    with pytest.raises(AccuracyError, match="unknown torchvision weights 'ResNet18_Weights.NOPE'"):
        accuracy.weights_path("ResNet18_Weights.NOPE")


# ---------------------------------------------------------------------------------------------
# digits and the example


def test_digits_split_is_fixed_and_documented():
    x_train, y_train = accuracy.digits_tensors("train", input_size=(1, 32, 32))
    x_test, y_test = accuracy.digits_tensors("test", input_size=(3, 16, 16))
    assert x_train.shape == (1347, 1, 32, 32) and x_test.shape == (450, 3, 16, 16)
    per_class = torch.bincount(torch.cat([y_train, y_test]))
    assert (torch.bincount(y_test) - 0.25 * per_class).abs().max() <= 1  # stratified
    assert x_train.min() >= -1.0 and x_train.max() <= 1.0
    again, _ = accuracy.digits_tensors("test", input_size=(3, 16, 16))
    assert torch.equal(x_test, again)
    ds = load_dataset({"kind": "digits", "split": "test"}, input_size=(1, 32, 32))
    assert len(ds) == 450 and ds.num_classes == 10


def _load_example():
    spec = importlib.util.spec_from_file_location("train_lenet5", ROOT / "examples" / "digits" / "train_lenet5.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def digits_weights(tmp_path_factory):
    """LeNet-5 trained by the example script for a few epochs (seconds)."""
    out = tmp_path_factory.mktemp("digits") / "lenet5_digits.pt"
    result = _load_example().train(epochs=5, out=out, log=lambda *a: None)
    assert result["test_top1"] >= 95.0, result
    return out, result


def test_digits_end_to_end_through_the_worker_steps(digits_weights, tmp_path, monkeypatch):
    """The example's weights, evaluated by the worker: the count the script printed, and the
    weights are in the model before the backend prepares it."""
    from cnnbench import backends
    from cnnbench.measure import worker
    from cnnbench.measure.worker import run_case

    path, trained = digits_weights
    file_state = torch.load(path)
    eager = backends.get_backend("eager")
    seen = {}

    class Checking:
        name = "eager"

        def prepare(self, model, example, spec, *, workdir):
            seen["weights_in"] = all(torch.equal(model.state_dict()[k], v) for k, v in file_state.items())
            return eager.prepare(model, example, spec, workdir=workdir)

    monkeypatch.setattr(worker, "get_backend", lambda name: Checking())  # the name the worker looks up
    evaluation = json.dumps({"dataset": {"kind": "digits", "split": "test"}, "weights": str(path)})
    spec = CaseSpec(model="lenet5", batch_size=64, input_size=(1, 32, 32), evaluation=evaluation, measure=TINY)
    out = run_case(spec, workdir=str(tmp_path))
    assert out["status"] == "ok" and seen["weights_in"]
    acc = out["accuracy"]
    assert (acc["correct1"], acc["total"]) == (trained["test_correct"], 450)
    assert acc["top1"] >= 95.0 and acc["weights"]["path"] == str(path)
    assert out["samples_ms"] and acc["duration_s"] > 0


# ---------------------------------------------------------------------------------------------
# The worker: failures become statuses, published and measured stay apart


def _worker_main(spec: CaseSpec, tmp_path: Path) -> dict:
    from cnnbench.measure import worker

    spec_file, result_file = tmp_path / "spec.json", tmp_path / "result.json"
    spec_file.write_text(json.dumps(spec.to_dict()))
    assert worker.main([str(spec_file), str(result_file)]) == 0
    return json.loads(result_file.read_text())


def test_worker_missing_weights_is_an_error_status_naming_the_path(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    evaluation = json.dumps({"dataset": {"kind": "digits"}, "weights": "SqueezeNet1_1_Weights.IMAGENET1K_V1"})
    spec = CaseSpec(model="squeezenet1_1", batch_size=1, input_size=(3, 64, 64), evaluation=evaluation, measure=TINY)
    result = _worker_main(spec, tmp_path)
    assert result["status"] == "error"
    assert "\n" not in result["error"]
    assert str(tmp_path / "torch" / "hub" / "checkpoints" / "squeezenet1_1-b8a52dc0.pth") in result["error"]


def test_worker_accuracy_failure_keeps_the_timing_on_the_run(tmp_path):
    from cnnbench.results.format import build_record

    folder = make_folder(tmp_path / "three", classes=3, corrupt=False)
    evaluation = json.dumps({"dataset": {"kind": "imagefolder", "path": str(folder), "transforms": EXPLICIT}})
    spec = CaseSpec(model="intensity", source="tests.test_accuracy:intensity_net", batch_size=4,
                    input_size=(3, 32, 32), evaluation=evaluation, measure=TINY)  # fmt: skip
    result = _worker_main(spec, tmp_path)
    assert result["status"] == "error"
    assert result["error"] == "accuracy: the dataset has 3 class folders but the model outputs 10 classes"
    assert result["samples_ms"]
    record = build_record(spec, [result])
    assert record["status"] == "error" and record["runs"][0]["samples_ms"] == result["samples_ms"]


def test_published_metadata_is_attached_and_labelled_apart_from_measured(tmp_path):
    from cnnbench.results.format import build_record
    from cnnbench.measure.worker import run_case

    data = tmp_path / "four.pt"
    torch.save({"images": torch.randn(4, 3, 64, 64), "labels": torch.tensor([1, 2, 3, 999])}, data)
    evaluation = json.dumps({"dataset": {"kind": "tensors", "path": str(data)}})
    spec = CaseSpec(model="squeezenet1_1", batch_size=2, input_size=(3, 64, 64), evaluation=evaluation, measure=TINY)
    out = run_case(spec, workdir=str(tmp_path))
    assert out["status"] == "ok", out.get("error")
    record = build_record(spec, [out])
    pub, acc = record["published"], record["accuracy"]
    assert pub["weights"] == "SqueezeNet1_1_Weights.IMAGENET1K_V1" and pub["acc@1"] == pytest.approx(58.178)
    assert acc["kind"] == "measured" and acc["total"] == 4 and acc["weights"] is None
    assert not {"acc@1", "acc@5"} & acc.keys() and not {"top1", "top5", "kind"} & pub.keys()


# ---------------------------------------------------------------------------------------------
# Suites


def write_suite(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "s.yaml"
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def suite_error(tmp_path: Path, text: str) -> SuiteError:
    with pytest.raises(SuiteError) as info:
        load_suite(write_suite(tmp_path, text))
    assert "\n" not in str(info.value)
    return info.value


def test_suite_accuracy_mapping_reaches_the_case_with_resolved_paths(tmp_path):
    make_folder(tmp_path / "data" / "val", classes=2, corrupt=False)
    (tmp_path / "w.pt").write_bytes(b"x")
    suite = load_suite(write_suite(tmp_path, """
        name: acc
        defaults:
          accuracy: {dataset: {kind: digits}}
        matrices:
          - models: [lenet5]
          - models: [mnist_cnn]
            accuracy: null
          - models: [resnet18]
            accuracy:
              dataset: {kind: imagefolder, path: data/val, limit: 10, transforms: {resize: [256, 256], mean: 0.5}}
              weights: w.pt
    """))
    lenet, mnist, resnet = suite.cases
    assert json.loads(lenet.evaluation) == {"dataset": {"kind": "digits", "split": "test"}}
    assert lenet.key.endswith("|acc=digits:test")
    assert mnist.evaluation is None and "acc=" not in mnist.key
    config = json.loads(resnet.evaluation)
    assert config == {
        "dataset": {"kind": "imagefolder", "path": str(tmp_path / "data" / "val"), "limit": 10,
                    "transforms": {"resize": [256, 256], "mean": [0.5]}},
        "weights": str(tmp_path / "w.pt"),
    }  # fmt: skip
    assert "|acc=imagefolder:val,limit=10,tf=" in resnet.key and resnet.key.endswith(",w=w.pt")
    assert CaseSpec.from_dict(json.loads(json.dumps(resnet.to_dict()))) == resnet
    assert "evaluation" not in mnist.to_dict()


def test_suite_keeps_torchvision_weights_names_for_the_worker(tmp_path):
    suite = load_suite(write_suite(tmp_path, """
        name: acc
        models: [resnet18]
        accuracy: {dataset: {kind: digits}, weights: ResNet18_Weights.IMAGENET1K_V1}
    """))
    assert json.loads(suite.cases[0].evaluation)["weights"] == "ResNet18_Weights.IMAGENET1K_V1"


def test_shipped_digits_suite_needs_the_trained_weights(tmp_path):
    (tmp_path / "suites").mkdir()
    suite = tmp_path / "suites" / "digits-accuracy.yaml"
    suite.write_text((ROOT / "suites" / "digits-accuracy.yaml").read_text())
    weights = tmp_path / "examples" / "digits" / "lenet5_digits.pt"
    with pytest.raises(SuiteError) as info:
        load_suite(suite)
    assert info.value.field == "accuracy.weights" and f"weights file not found: {weights}" in str(info.value)
    weights.parent.mkdir(parents=True)
    weights.write_bytes(b"x")
    cases = load_suite(suite).cases
    assert [c.backend for c in cases] == ["eager", "compile", "onnxrt"]
    assert all(json.loads(c.evaluation) == {"dataset": {"kind": "digits", "split": "test"}, "weights": str(weights)}
               for c in cases)  # fmt: skip


def test_suite_accuracy_applies_to_inference_cases_only(tmp_path):
    suite = load_suite(write_suite(tmp_path, """
        name: acc
        models: [lenet5]
        mode: [inference, train]
        accuracy: {dataset: {kind: digits}}
    """))
    assert [(c.mode, c.evaluation is not None) for c in suite.cases] == [("inference", True), ("train", False)]
    with pytest.raises(AccuracyError, match="accuracy is measured on inference cases, not train"):
        accuracy.prepare(nn.Linear(1, 1), suite.cases[0].replace(mode="train"))


@pytest.mark.parametrize(
    "body, line, field, fragment",
    [
        ("accuracy: {dataset: {kind: digits, colour: red}}", 3, "accuracy.dataset.colour", "unknown key 'colour'"),
        ("accuracy: {dataset: {kind: mnist}}", 3, "accuracy.dataset.kind", "unknown dataset kind 'mnist'"),
        ("accuracy: {weights: w.pt}", 3, "accuracy", "required key `dataset` is missing"),
        ("accuracy: {dataset: {kind: digits, path: x}}", 3, "accuracy.dataset.path", "takes no path"),
        ("accuracy: {dataset: {kind: imagefolder}}", 3, "accuracy.dataset", "required key `path` is missing"),
        ("accuracy: {dataset: {kind: imagefolder, path: nowhere}}", 3, "accuracy.dataset.path", "dataset folder not found: "),
        ("accuracy: {dataset: {kind: imagefolder, path: empty}}", 3, "accuracy.dataset.path", "dataset folder is empty"),
        ("accuracy: {dataset: {kind: tensors, path: zero.pt}}", 3, "accuracy.dataset.path", "dataset file is empty"),
        ("accuracy: {dataset: {kind: digits, limit: 0}}", 3, "accuracy.dataset.limit", "limit must be at least 1"),
        ("accuracy: {dataset: {kind: digits, split: val}}", 3, "accuracy.dataset.split", "unknown digits split 'val'"),
        ("accuracy: {dataset: {kind: digits, strict: true}}", 3, "accuracy.dataset.strict", "imagefolder images only"),
        ("accuracy: {dataset: {kind: digits, transforms: {resize: 3}}}", 3, "accuracy.dataset.transforms.resize",
         "unknown key 'resize'"),
        ("accuracy: {dataset: {kind: digits, transforms: {std: [0.5, 0]}}}", 3, "accuracy.dataset.transforms.std[1]",
         "std must be > 0"),
        ("accuracy: {dataset: {kind: digits}, weights: missing.pt}", 3, "accuracy.weights", "weights file not found: "),
        ("accuracy: {dataset: {kind: digits}, weights: 7}", 3, "accuracy.weights", "expected a weights file"),
        ("accuracy:\n  dataset:\n    kind: digits\n    limit: lots", 6, "accuracy.dataset.limit", "expected an integer"),
    ],
)
def test_suite_accuracy_errors_name_the_line_and_field(tmp_path, body, line, field, fragment):
    (tmp_path / "empty").mkdir()
    (tmp_path / "zero.pt").write_bytes(b"")
    err = suite_error(tmp_path, "name: acc\nmodels: [lenet5]\n" + body + "\n")
    assert (err.line, err.field) == (line, field), str(err)
    assert fragment in str(err), str(err)
    if "not found" in fragment or "empty" in fragment:
        assert str(tmp_path) in str(err)


def test_tensors_take_no_transforms(tmp_path):
    torch.save({"images": torch.zeros(1, 1, 32, 32), "labels": torch.zeros(1, dtype=torch.long)}, tmp_path / "t.pt")
    err = suite_error(tmp_path, """
        name: acc
        models: [lenet5]
        accuracy:
          dataset: {kind: tensors, path: t.pt, transforms: {mean: 0}}
    """)
    assert err.field == "accuracy.dataset.transforms" and "takes no transforms" in str(err)


# ---------------------------------------------------------------------------------------------
# Comparing backends, and `bench.py accuracy`


def test_tolerance_is_a_tenth_of_a_percent_and_at_least_one_image():
    from cnnbench.accuracy import accuracy_difference, tolerance_images

    assert [tolerance_images(n) for n in (450, 999, 1000, 2500, 50_000)] == [1, 1, 1, 2, 50]
    ref = {"total": 450, "correct1": 438, "correct5": 449}
    assert accuracy_difference({"total": 450, "correct1": 437, "correct5": 449}, ref) is None
    assert accuracy_difference({"total": 450, "correct1": 436, "correct5": 449}, ref) == (
        "top-1 -2 images vs eager (tolerance ±1)"
    )
    assert "not comparable" in accuracy_difference({"total": 449, "correct1": 438, "correct5": 449}, ref)


def test_cli_accuracy_in_process(digits_weights, capsys):
    from cnnbench.cli import main

    path, trained = digits_weights
    argv = ["accuracy", "lenet5", "--dataset", "digits", "--weights", str(path), "--backend", "eager",
            "--in-process", "--threads", "1"]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert f"{trained['test_correct']}/450" in out and "digits test (450 images)" in out
    assert main(["accuracy", "lenet5", "--dataset", "mnist"]) == 2
    assert "unknown kind 'mnist'" in capsys.readouterr().err
    assert main(["accuracy", "lenet5", "--dataset", "imagefolder:/nonexistent/val", "--backend", "eager"]) == 2
    assert "dataset folder not found: /nonexistent/val" in capsys.readouterr().err


def test_cli_rows_flag_a_backend_beyond_tolerance():
    from cnnbench.report.accuracy_table import table_rows

    def run(backend, c1, status="ok"):
        spec = CaseSpec(model="m", batch_size=1, input_size=(1, 8, 8), backend=backend)
        acc = {"top1": c1 / 10, "top5": 100.0, "correct1": c1, "correct5": 1000, "total": 1000, "skipped": 0}
        return spec, {"status": status, "error": None if status == "ok" else "boom", "accuracy": acc}

    rows = table_rows([run("eager", 900), run("compile", 899), run("onnxrt", 897)])
    assert [(r["backend"], r["delta_vs_eager"], r["flag"]) for r in rows] == [
        ("eager", None, None), ("compile", -1, None), ("onnxrt", -3, "top-1 -3 images vs eager (tolerance ±1)")]


def test_cli_table_drops_the_columns_that_carry_nothing():
    from rich.console import Console

    from cnnbench.report.accuracy_table import render_table, table_rows

    def run(backend, c1, skipped=0):
        spec = CaseSpec(model="m", batch_size=1, input_size=(1, 8, 8), backend=backend)
        acc = {"top1": c1 / 10, "top5": 100.0, "correct1": c1, "correct5": 1000, "total": 1000, "skipped": skipped}
        return spec, {"status": "ok", "error": None, "accuracy": acc}

    def header_and_text(runs):
        console = Console(width=200, record=True)
        console.print(render_table(table_rows(runs), title="t"))
        text = console.export_text()
        header = next(line for line in text.splitlines() if "backend" in line)
        return [c.strip() for c in header.strip().split("┃")[1:-1]], " ".join(text.split())

    # eager alone, nothing skipped or flagged: no skipped, no Δ and no flag column (no empty last one)
    header, text = header_and_text([run("eager", 900)])
    assert header == ["backend", "status", "top-1 %", "top-5 %", "correct top-1", "correct top-5"]
    assert "no image was skipped" in text
    # a flagged backend and skipped images bring their columns back
    header, text = header_and_text([run("eager", 900, skipped=2), run("onnxrt", 890, skipped=2)])
    assert header[-3:] == ["skipped", "Δ vs eager", ""] and "⚠ top-1 -10 images" in text
    assert "no image was skipped" not in text


def _available(backend: str) -> bool:
    from cnnbench.backends import BACKEND_MODULES

    return importlib.util.find_spec(BACKEND_MODULES[backend]) is not None


@pytest.mark.slow
def test_digits_suite_through_every_backend_agrees(digits_weights, tmp_path):
    """The example suite, run as a user runs it: every available backend within one image."""
    path, trained = digits_weights
    backends = [b for b in ("eager", "compile", "onnxrt") if _available(b)]
    text = (ROOT / "suites" / "digits-accuracy.yaml").read_text()
    text = text.replace("../examples/digits/lenet5_digits.pt", str(path))
    text = text.replace("backends: [eager, compile, onnxrt]", f"backends: [{', '.join(backends)}]")
    suite = tmp_path / "digits.yaml"
    suite.write_text(text)
    out = tmp_path / "digits.json"
    proc = subprocess.run([sys.executable, str(ROOT / "bench.py"), "run", str(suite), "--out", str(out), "--quiet"],
                          capture_output=True, text=True, timeout=900, cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    cases = json.loads(out.read_text())["cases"]
    assert [c["spec"]["backend"] for c in cases] == backends
    counts = [c["accuracy"]["correct1"] for c in cases]
    assert all(c["accuracy"]["top1"] >= 95.0 and c["accuracy"]["total"] == 450 for c in cases)
    assert counts[0] == trained["test_correct"] and max(counts) - min(counts) <= 1, counts


def test_an_evaluation_in_a_worker_reports_its_progress_through_the_file_it_is_given(tmp_path, monkeypatch):
    """A worker has no terminal: the manager names a file, the evaluation writes done/total."""
    levels = torch.tensor([_level(k) / 255 for k in range(10)])
    images = levels.view(-1, 1, 1, 1).expand(-1, 1, 8, 8).clone()
    data = tmp_path / "t.pt"
    torch.save({"images": images, "labels": torch.arange(10)}, data)
    ds = load_dataset({"kind": "tensors", "path": str(data)}, input_size=(1, 8, 8))
    progress = tmp_path / "progress.txt"
    monkeypatch.setenv(accuracy.PROGRESS_FILE_ENV, str(progress))
    evaluate(eager_predict(IntensityNet()), ds, batch_size=3, progress=False)
    assert accuracy.read_progress(progress) == (10, 10) and list(tmp_path.glob("*.tmp")) == []
    assert accuracy.read_progress(tmp_path / "nowhere.txt") is None
    (tmp_path / "torn.txt").write_text("7")
    assert accuracy.read_progress(tmp_path / "torn.txt") is None


def test_the_accuracy_command_names_the_progress_file_only_on_a_terminal_and_only_meanwhile(tmp_path, monkeypatch):
    from cnnbench.accuracy.progress import worker_progress

    monkeypatch.delenv(accuracy.PROGRESS_FILE_ENV, raising=False)
    with worker_progress("eager", str(tmp_path)):  # pytest's stderr is no terminal
        assert accuracy.PROGRESS_FILE_ENV not in os.environ
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    with worker_progress("onnxrt", str(tmp_path)):
        named = os.environ[accuracy.PROGRESS_FILE_ENV]
        assert named == str(tmp_path / "progress-onnxrt.txt")
    assert accuracy.PROGRESS_FILE_ENV not in os.environ
