"""int8: static post-training quantization with calibration, one path per runtime.

Dynamic quantization barely changes a CNN (its time is in convolutions, whose activations it
leaves in float); static quantization, with activation ranges calibrated on representative
images, is what a deployment ships. Three real paths, each the runtime's own tool:

- ONNX Runtime (`onnxrt`, `tensorrt`): `onnxruntime.quantization.quantize_static` on the cached
  fp32 export (after `quant_pre_process`: symbolic shape inference and graph optimisation), QDQ
  format, uint8 activations and int8 per-channel weights (U8S8: ORT's x86 fast path, u8 x s8
  VNNI products), MinMax calibration. On an x86 CPU without VNNI (AVX2 or AVX-512 only) the
  weights are quantized to 7 bits (`reduce_range`, `ort_reduce_range`): there ORT's U8S8 kernels
  multiply with VPMADDUBSW, whose int16 sums saturate (ORT's quantization guide); measured on an
  AVX2-only AMD EPYC, random-weight lenet5 calibrated on digits had a parity error of 0.265 of
  the output scale with 8-bit weights and 0.060 with 7-bit ones. S8S8, ORT's documented default, ran resnet18 at batch 1
  in 236 ms against 83 ms for U8S8 and 192 ms for fp32 on this machine (one thread, loaded):
  slower than fp32, so not what a deployment would ship here.
- OpenVINO (`openvino`): `nncf.quantize` on the converted OpenVINO model (preset
  performance: symmetric activations and weights, per-channel weights, fast bias correction).
- PyTorch (`compile`, `aoti`): PT2E, `torch.export` then torchao's `prepare_pt2e` with the
  `X86InductorQuantizer` (its default config: static, per-channel weights), calibration
  forwards, `convert_pt2e`; inductor (with freezing) then lowers the quantize/dequantize
  pattern to oneDNN int8 kernels. torch 2.14 no longer ships `torch.ao.quantization.quantize_pt2e`:
  the package `torchao` is needed (a dev-extra dependency of cnnbench; without it these cases
  are `unsupported` with that reason). x86 CPUs only: int8 PT2E on CUDA is `unsupported`.

Calibration data (`calibration_data`): the training split of the case's accuracy dataset when
the suite configures one that has a training split (`digits`: its 1,347-image train split,
never the test images accuracy is measured on), the first `calibration_images` images (default
`DEFAULT_CALIBRATION_IMAGES`, suite option `calibration_images` on the int8 backends). Other
datasets (an `imagefolder` or `tensors` file is the evaluation set itself, and calibrating on
it would flatter the result) and cases without a dataset calibrate on seeded random normal
images (`CALIBRATION_SEED`, never the parity example's seed) and carry the loud label
`RANDOM_LABEL` in `backend_info.calibration.label`: the int8 timing is real, its accuracy is
not known.

Every quantized artefact is cached next to its fp32 source, keyed by everything the fp32
artefact's key holds plus the calibration (source, images, seed, the dataset's transforms) and
the quantizer's version and settings (`QUANTIZE_FORMAT_VERSION`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cnnbench.backends.artifacts import output_to, package_version, write_json
from cnnbench.core.errors import ExportFailed, Unsupported
from cnnbench.core.safeio import atomic_file, temp_file_beside
from cnnbench.accuracy import evaluate, load_dataset

__all__ = [
    "RANDOM_LABEL",
    "DEFAULT_CALIBRATION_IMAGES",
    "Calibration",
    "calibration_data",
    "ort_qdq",
    "ort_reduce_range",
    "nncf_quantize",
    "pt2e_quantize",
    "pt2e_available",
    "accuracy_change",
]

RANDOM_LABEL = "calibrated on random data: accuracy unknown"
DEFAULT_CALIBRATION_IMAGES = 128
CALIBRATION_SEED = 1  # the parity example batch uses seed 0: calibration never sees it
CALIBRATION_BATCH = 8  # images per calibration forward (ORT, PT2E); NNCF takes one image per item
QUANTIZE_FORMAT_VERSION = 2  # 2: ORT activations uint8 (U8S8)
ORT_SETTINGS = {
    "format": "QDQ",
    "activation_type": "QUInt8",
    "weight_type": "QInt8",
    "per_channel": True,
    "calibrate_method": "MinMax",
    "pre_process": "quant_pre_process",
}
NNCF_SETTINGS = {"preset": "performance", "fast_bias_correction": True}
PT2E_SETTINGS = {"quantizer": "X86InductorQuantizer", "config": "get_default_x86_inductor_quantization_config()"}


@dataclass
class Calibration:
    """Calibration images (CPU float32) and what they are."""

    images: Any  # Tensor [N, C, H, W]
    info: dict[str, Any]  # source, images, seed, random, label (recorded in backend_info)
    key: dict[str, Any] = field(default_factory=dict)  # what decides them (cache keys)

    def batches(self, size: int = CALIBRATION_BATCH) -> list[Any]:
        return [self.images[i : i + size] for i in range(0, int(self.images.shape[0]), size)]


def calibration_images(spec: Any) -> int:
    return int(spec.option_dict.get("calibration_images", DEFAULT_CALIBRATION_IMAGES))


def calibration_data(spec: Any) -> Calibration:
    """The images an int8 case calibrates on (see the module docstring)."""
    import torch

    n = calibration_images(spec)
    config = json.loads(spec.evaluation) if spec.evaluation else {}
    dataset = config.get("dataset") or {}
    if dataset.get("kind") == "digits":

        train = load_dataset({**dataset, "split": "train"}, input_size=tuple(spec.input_size))
        images = train.images[:n].contiguous()  # type: ignore[attr-defined]
        info = {
            "source": "dataset",
            "dataset": "digits train split",
            "images": int(images.shape[0]),
            "random": False,
            "label": f"calibrated on {int(images.shape[0])} images of the digits train split",
        }
        key = {"source": "digits:train", "images": int(images.shape[0]), "transforms": dataset.get("transforms")}
        return Calibration(images, info, key)
    gen = torch.Generator().manual_seed(CALIBRATION_SEED)
    images = torch.randn((n, *spec.input_size), generator=gen)
    why = (
        f"the {dataset.get('kind')} dataset configured is the evaluation set, with no training split to calibrate on"
        if dataset
        else "no accuracy dataset is configured"
    )
    info = {
        "source": "random",
        "images": n,
        "seed": CALIBRATION_SEED,
        "random": True,
        "label": RANDOM_LABEL if not dataset else "calibrated on random data (accuracy measured on the dataset)",
        "why": why,
    }
    return Calibration(images, info, {"source": "random", "images": n, "seed": CALIBRATION_SEED})


def _digest(key: dict[str, Any]) -> tuple[str, str]:
    blob = json.dumps(key, sort_keys=True, default=repr)
    return blob, hashlib.sha256(blob.encode()).hexdigest()[:24]


def _read_meta(meta_path: Path, blob: str, artefact: Path) -> dict[str, Any] | None:
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(meta, dict) or meta.get("key") != blob or not artefact.is_file():
        return None
    return meta





def _first_line(exc: BaseException) -> str:
    text = next((ln.strip() for ln in str(exc).splitlines() if ln.strip()), "")
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# ---------------------------------------------------------------------------------------------
# ONNX Runtime QDQ


VNNI_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")  # /proc/cpuinfo flags of a u8 x s8 -> s32 dot product


def ort_reduce_range(cpuinfo: str = "/proc/cpuinfo") -> tuple[bool, str]:
    """(reduce_range, why) for a QDQ model run by ONNX Runtime's CPU provider on this machine.

    ORT's U8S8 path on x86 without VNNI uses VPMADDUBSW, which adds pairs of u8 x s8 products
    in int16 and saturates; 7-bit weights keep those sums in range (ORT's quantization guide,
    "When to use reduce-range"). With VNNI, or off x86, the full 8 bits are used."""
    machine = platform.machine().lower()
    if machine not in ("x86_64", "amd64", "i686", "i386", "x86"):
        return False, f"{machine}: not x86, 8-bit weights"
    try:
        with open(cpuinfo, encoding="utf-8", errors="replace") as fh:
            flags = next((line.split(":", 1)[1].split() for line in fh if line.startswith("flags")), None)
    except OSError as exc:
        return False, f"CPU flags unreadable ({exc.strerror or exc}): 8-bit weights"
    if flags is None:
        return False, "no CPU flags in /proc/cpuinfo: 8-bit weights"
    vnni = [f for f in VNNI_FLAGS if f in flags]
    if vnni:
        return False, f"CPU has {vnni[0]}: 8-bit weights"
    return True, "x86 CPU without VNNI: 7-bit weights (U8S8 VPMADDUBSW saturates at 8 bits)"


def ort_qdq(export: dict[str, Any], calibration: Calibration, *, log_path: Path, reduce_range: bool = False) -> dict[str, Any]:
    """The QDQ int8 model of a cached fp32 export, from the cache or made now.

    Args:
        export: `onnxrt.export_onnx`'s dict for the fp32 file (its `cache_key` keys this one).
        calibration: from `calibration_data`.
        reduce_range: 7-bit weights (`ort_reduce_range`: for ORT's CPU provider on x86 without
            VNNI); part of the cache key.

    Returns:
        `path`, `quantize_ms` (of the run that made the file), `quantize_cached`, `file_bytes`,
        `cache_key`, `settings`, `pre_process` (what `quant_pre_process` did).

    Raises:
        ExportFailed: ORT's quantizer rejected the graph (its one-line reason).
    """
    import numpy as np
    import onnxruntime as ort


    src = Path(export["path"])
    key = {
        "format": QUANTIZE_FORMAT_VERSION,
        "fp32_export": export["cache_key"],
        "calibration": calibration.key,
        "onnxruntime": ort.__version__,
        "settings": {**ORT_SETTINGS, "reduce_range": bool(reduce_range)},
    }
    blob, digest = _digest(key)
    path = src.with_name(f"{src.stem}-int8-qdq-{digest}.onnx")
    meta_path = path.with_suffix(".json")
    meta = _read_meta(meta_path, blob, path)
    if meta is not None:
        return {**meta["quantize"], "path": str(path), "quantize_cached": True}

    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static

    input_name = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"]).get_inputs()[0].name
    feeds = [{input_name: np.ascontiguousarray(b.numpy())} for b in calibration.batches()]

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter(feeds)

        def get_next(self) -> dict[str, Any] | None:
            return next(self._it, None)

    # Both files the quantizer writes are ours before it runs (cnnbench.core.safeio: fresh random
    # names, created with O_EXCL|O_NOFOLLOW): the pre-processed graph, a scratch file removed
    # afterwards, and the int8 model, renamed over `path` only when the quantizer succeeded.
    pre = temp_file_beside(path, suffix=".pre.onnx")
    try:
        with atomic_file(path, what="write the int8 model") as tmp:
            t0 = time.perf_counter()
            try:
                with output_to(log_path):
                    try:
                        from onnxruntime.quantization.shape_inference import quant_pre_process

                        quant_pre_process(str(src), str(pre))
                        source, pre_note = pre, "quant_pre_process (symbolic shape inference + ORT optimisation)"
                    except Exception as exc:  # noqa: BLE001 - the quantizer still runs without it
                        source, pre_note = src, f"quant_pre_process failed ({_first_line(exc)}); quantized the export as is"
                    quantize_static(
                        str(source),
                        str(tmp),
                        Reader(),
                        quant_format=QuantFormat.QDQ,
                        per_channel=True,
                        activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax,
                        reduce_range=bool(reduce_range),
                    )
            except Exception as exc:
                raise ExportFailed(f"onnxruntime quantize_static: {_first_line(exc)}") from exc
            quantize_ms = (time.perf_counter() - t0) * 1e3
    finally:
        pre.unlink(missing_ok=True)
    record = {
        "quantize_ms": quantize_ms,
        "file_bytes": path.stat().st_size,
        "cache_key": digest,
        "settings": {**ORT_SETTINGS, "reduce_range": bool(reduce_range)},
        "pre_process": pre_note,
    }
    write_json(meta_path, {"key": blob, "quantize": record})
    return {**record, "path": str(path), "quantize_cached": False}


# ---------------------------------------------------------------------------------------------
# OpenVINO NNCF


def nncf_quantize(ov_model: Any, calibration: Calibration, *, log_path: Path) -> tuple[Any, dict[str, Any]]:
    """`nncf.quantize` of an OpenVINO model; returns (quantized model, record).

    Raises:
        Unsupported: nncf is not installed.
        ExportFailed: nncf could not quantize the model (its reason).
    """
    try:
        import nncf
    except ImportError as exc:
        raise Unsupported(f"int8 on openvino needs the package nncf (pip install nncf): {exc}") from None

    items = [calibration.images[i : i + 1].numpy() for i in range(int(calibration.images.shape[0]))]
    t0 = time.perf_counter()
    try:
        with output_to(log_path):
            quantized = nncf.quantize(
                ov_model,
                nncf.Dataset(items),
                preset=nncf.QuantizationPreset.PERFORMANCE,
                subset_size=len(items),
                fast_bias_correction=True,
            )
    except Exception as exc:
        raise ExportFailed(f"nncf.quantize: {_first_line(exc)}") from exc
    return quantized, {
        "quantize_ms": (time.perf_counter() - t0) * 1e3,
        "settings": NNCF_SETTINGS,
        "nncf": nncf.__version__,
    }


# ---------------------------------------------------------------------------------------------
# PT2E (torchao's X86InductorQuantizer)


@contextlib.contextmanager
def _torchao_import_quiet():
    """Importing torchao 0.18 on torch 2.14 logs a deprecation warning from torch.utils._pytree
    (torchao registers an Enum as a pytree constant) on every import, to stderr: noise in `list
    backends` and every int8 worker log. Only that logger, only during the import."""
    logger = logging.getLogger("torch.utils._pytree")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def pt2e_available() -> str | None:
    """None when PT2E int8 can run here, else why not (one line)."""
    try:
        import torch.ao.quantization.quantize_pt2e

        return None
    except ImportError:
        pass
    try:
        with _torchao_import_quiet():
            from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e  # noqa: F401
            from torchao.quantization.pt2e.quantizer.x86_inductor_quantizer import X86InductorQuantizer  # noqa: F401
    except ImportError as exc:
        import torch

        return (
            f"PT2E int8 needs torchao (torch {torch.__version__} has no torch.ao.quantization.quantize_pt2e): "
            f"pip install torchao ({exc})"
        )
    return None


def _pt2e_api():
    try:
        with _torchao_import_quiet():
            from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
            from torchao.quantization.pt2e.quantizer import x86_inductor_quantizer as xiq
    except ImportError:
        from torch.ao.quantization.quantize_pt2e import convert_pt2e, prepare_pt2e  # type: ignore[no-redef]
        from torch.ao.quantization.quantizer import x86_inductor_quantizer as xiq  # type: ignore[no-redef]
    return prepare_pt2e, convert_pt2e, xiq


def pt2e_quantize(model: Any, calibration: Calibration, *, device: str, log_path: Path) -> tuple[Any, dict[str, Any]]:
    """The PT2E-quantized model (a GraphModule with a dynamic batch axis) and its record.

    Raises:
        Unsupported: not on CPU, or torchao missing.
        ExportFailed: torch.export or the quantizer rejected the model (its reason).
    """
    if device != "cpu":
        raise Unsupported(f"PT2E int8 (X86InductorQuantizer) targets x86 CPUs, not {device}")
    missing = pt2e_available()
    if missing:
        raise Unsupported(missing)
    import torch


    prepare_pt2e, convert_pt2e, xiq = _pt2e_api()
    batches = calibration.batches()
    example = batches[0] if int(batches[0].shape[0]) >= 2 else calibration.images[:1].expand(2, -1, -1, -1)
    t0 = time.perf_counter()
    try:
        with output_to(log_path), torch.no_grad():
            exported = torch.export.export(
                model.eval(), (example.contiguous(),), dynamic_shapes=({0: torch.export.Dim("batch", min=1)},)
            ).module()
            quantizer = xiq.X86InductorQuantizer()
            quantizer.set_global(xiq.get_default_x86_inductor_quantization_config())
            prepared = prepare_pt2e(exported, quantizer)
            for b in batches:
                prepared(b)
            converted = convert_pt2e(prepared)
    except Exception as exc:
        raise ExportFailed(f"PT2E quantization: {_first_line(exc)}") from exc
    return converted, {
        "quantize_ms": (time.perf_counter() - t0) * 1e3,
        "settings": PT2E_SETTINGS,
        "torchao": package_version("torchao"),
    }


# ---------------------------------------------------------------------------------------------
# Accuracy against fp32 eager


def accuracy_change(out: dict[str, Any], model: Any, evaluation: Any, *, batch_size: int) -> None:
    """For an int8 case with a measured accuracy: evaluate the same model in eager fp32 on the
    same images and put `fp32_eager` (its top-1/top-5 and counts) and `change_vs_fp32_eager`
    (percentage points, int8 minus fp32) into `out["accuracy"]`. Never fails the case."""
    acc = out.get("accuracy")
    if not isinstance(acc, dict) or evaluation is None or evaluation.dataset is None:
        return
    import torch

    model = model.to("cpu").float().eval()

    def predict(batch):
        with torch.inference_mode():
            return model(batch).float()

    limit = (evaluation.config.get("dataset") or {}).get("limit")
    try:
        ref = evaluate(predict, evaluation.dataset, batch_size=batch_size, limit=limit, fixed_batch=True, progress=False)
    except Exception as exc:  # noqa: BLE001
        out.setdefault("warnings", []).append(f"int8 accuracy: the fp32 eager reference failed: {_first_line(exc)}")
        return
    acc["fp32_eager"] = {k: ref[k] for k in ("top1", "top5", "correct1", "correct5", "total")}
    acc["change_vs_fp32_eager"] = {
        "top1_pp": acc["top1"] - ref["top1"],
        "top5_pp": acc["top5"] - ref["top5"],
        "correct1": int(acc["correct1"]) - int(ref["correct1"]),
    }


def parity_example(spec: Any, example: Any) -> tuple[Any, str | None]:
    """The inputs an int8 case's parity check runs on, and what they are (None: the example).

    int8 calibrated on a dataset has activation ranges for images like that dataset's; the
    seeded standard-normal example batch lies outside them (digits images are in [-1, 1]) and
    would measure clipping, not the quantized model (trained lenet5: 0.37 of the output scale
    through every int8 path). So parity runs on the case's batch of that dataset's training
    images that calibration did not see (the ones after the calibration subset, repeated if the
    split runs out). Random calibration keeps the example batch, which is what it calibrated on.
    """
    config = json.loads(spec.evaluation) if spec.evaluation else {}
    dataset = config.get("dataset") or {}
    if spec.precision != "int8" or dataset.get("kind") != "digits":
        return example, None
    import torch

    train = load_dataset({**dataset, "split": "train"}, input_size=tuple(spec.input_size)).images  # type: ignore[attr-defined]
    n, total = calibration_images(spec), int(train.shape[0])
    idx = torch.arange(n, n + spec.batch_size) % total
    return train[idx].contiguous(), f"{spec.batch_size} digits train images not used for calibration"
