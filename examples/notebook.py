# %% [markdown]
# # cnnbench from a notebook
#
# A CNN defined right here (a class in `__main__`), measured on eager PyTorch and ONNX Runtime,
# each case in its own worker process; the results as a pandas DataFrame and a plot.
# This file is in "percent" format: open it in Jupyter (jupytext), VS Code or Spyder as a
# notebook, or run it as a script (`python examples/notebook.py`; tests/test_api.py does).
# Needs the `pandas` extra: `pip install -c constraints.txt -e '.[pandas]'`.

# %%
import os
from pathlib import Path

import torch
from torch import nn

import cnnbench

OUT = Path(os.environ.get("CNNBENCH_EXAMPLE_OUT", "results/notebook"))  # where results and the plot go
OUT.mkdir(parents=True, exist_ok=True)


# %% [markdown]
# ## A model defined inline
# Nothing to import: `cnnbench.measure` pickles the object (cloudpickle) into the run's directory,
# and only the worker processes load it.

# %%
class TinyCNN(nn.Module):
    def __init__(self, classes: int = 10):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
        )
        self.head = nn.Linear(16, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.flatten(self.features(x), 1))


model = TinyCNN()

# %% [markdown]
# ## Measure it on eager and ONNX Runtime
# Short settings for a demonstration; leave `measure` out for the defaults (3 worker processes
# per case, adaptive length), which are what a comparison needs.

# %%
results = cnnbench.measure(
    model,
    input_size=(1, 28, 28),
    batch_sizes=[1, 8],
    backends=["eager", "onnxrt"],
    measure={"warmup": 2, "min_time_s": 0.1, "max_time_s": 0.5, "min_samples": 5, "repeats": 1},
    out=OUT / "tinycnn.json",
    replace=True,
)
results  # in a notebook: the table and its warnings

# %% [markdown]
# ## A DataFrame

# %%
df = results.to_pandas()
table = df[["backend", "batch_size", "status", "median_ms", "latency_p95_ms", "throughput_per_s", "params", "gmacs"]]
print(table.to_string(index=False))

# %% [markdown]
# ## A plot: throughput per backend and batch size

# %%
import matplotlib  # noqa: E402 - a notebook imports where it first needs it

matplotlib.use(os.environ.get("MPLBACKEND", "Agg"))
import matplotlib.pyplot as plt  # noqa: E402

ok = df[df["status"] == "ok"]
fig, ax = plt.subplots(figsize=(5, 3))
for backend, rows in ok.groupby("backend"):
    ax.plot(rows["batch_size"], rows["throughput_per_s"], marker="o", label=backend)
ax.set_xlabel("batch size")
ax.set_ylabel("images/s (batch / median)")
ax.set_title("TinyCNN, CPU")
ax.legend()
fig.tight_layout()
fig.savefig(OUT / "throughput.png")
print(f"plot: {OUT / 'throughput.png'}")
