"""Train LeNet-5 on scikit-learn's handwritten digits in seconds on a CPU, and save its weights.

    python examples/digits/train_lenet5.py             # writes examples/digits/lenet5_digits.pt
    python bench.py run suites/digits-accuracy.yaml    # evaluates them through eager, compile, onnxrt

The data are `cnnbench.accuracy.digits_tensors`: the documented split of `load_digits` (1,347
training and 450 test images), each 8x8 image divided by 16, resized bilinearly to LeNet-5's
32x32 input and normalized to [-1, 1], exactly as the `digits` dataset of a suite feeds them.
Training is seeded (Adam, cross-entropy, mini-batches in a seeded order, one thread), so a rerun
on the same machine writes the same weights. The weights this script wrote are committed beside it
(`lenet5_digits.pt`, 245 KiB) with their checksum (`lenet5_digits.pt.sha256`, verified whenever
cnnbench loads them), so the README's accuracy line works on a fresh clone; rerunning the script
rewrites both.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "lenet5_digits.pt"

try:
    import cnnbench  # noqa: F401
except ImportError:  # run from a checkout without installing: the repository root on the path
    sys.path.insert(0, str(HERE.parents[1]))


def train(
    *,
    epochs: int = 10,
    seed: int = 0,
    batch_size: int = 32,
    lr: float = 2e-3,
    out: str | Path | None = DEFAULT_OUT,
    log=print,
) -> dict:
    """Train `lenet5` on the digits training split; save the state dict to `out` (if given).

    Returns:
        {"test_top1": percent, "test_correct": int, "test_total": int, "train_loss": float,
         "seconds": float, "path": str | None}.
    """
    import torch
    from torch.nn import functional as F

    from cnnbench.accuracy import digits_tensors
    from cnnbench.models.registry import build_model

    started = time.perf_counter()
    torch.set_num_threads(1)
    torch.manual_seed(seed)
    x_train, y_train = digits_tensors("train", input_size=(1, 32, 32))
    x_test, y_test = digits_tensors("test", input_size=(1, 32, 32))
    model = build_model("lenet5").train()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    order = torch.Generator().manual_seed(seed)
    loss_sum = 0.0
    for epoch in range(epochs):
        perm = torch.randperm(len(x_train), generator=order)
        loss_sum, steps = 0.0, 0
        for start in range(0, len(perm), batch_size):
            idx = perm[start : start + batch_size]
            loss = F.cross_entropy(model(x_train[idx]), y_train[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            loss_sum, steps = loss_sum + loss.item(), steps + 1
        loss_sum /= steps
    model.eval()
    with torch.inference_mode():
        correct = int((model(x_test).argmax(1) == y_test).sum())
    result = {
        "test_top1": 100.0 * correct / len(y_test),
        "test_correct": correct,
        "test_total": len(y_test),
        "train_loss": loss_sum,
        "seconds": time.perf_counter() - started,
        "path": None,
    }
    if out is not None:
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        torch.save(model.state_dict(), out)
        from cnnbench.results.checksums import write_sidecar

        write_sidecar(out)  # FILE.sha256: cnnbench verifies it on every load
        result["path"] = str(out)
    log(
        f"lenet5 on digits: {epochs} epochs in {result['seconds']:.1f} s, final train loss {loss_sum:.4f}; "
        f"test top-1 {result['test_top1']:.2f}% ({correct}/{len(y_test)})"
        + (f"; weights saved to {out} (and its .sha256)" if out is not None else "")
    )
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(DEFAULT_OUT), help=f"where to save the state dict (default: {DEFAULT_OUT})")
    args = p.parse_args(argv)
    train(epochs=args.epochs, seed=args.seed, out=args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
