"""Run by tests/test_api.py: model classes defined in this script's own `__main__`, measured
through the Python API. Prints one `RESULT {json}` line: the pids of every constructor call
made in this process, and the statuses. The instance is built here once (the user's own call);
`Crasher` is passed as a class, so its constructor and its crashing forward run in the worker."""

import json
import os
import sys
import torch
from torch import nn
import cnnbench

CALLS = []

class TinyNet(nn.Module):
    def __init__(self):
        super().__init__()
        CALLS.append(os.getpid())
        self.conv = nn.Conv2d(1, 4, 3)
        self.fc = nn.Linear(4 * 6 * 6, 10)

    def forward(self, x):
        return self.fc(torch.flatten(torch.relu(self.conv(x)), 1))

class Crasher(nn.Module):
    def __init__(self):
        super().__init__()
        CALLS.append(os.getpid())
        self.fc = nn.Linear(64, 2)

    def forward(self, x):
        os.abort()

net = TinyNet()
M = {"warmup": 1, "min_time_s": 0.05, "max_time_s": 0.2, "min_samples": 3, "repeats": 1, "timeout_s": 120}
out = sys.argv[1]
a = cnnbench.measure(net, input_size=(1, 8, 8), measure=M, out=os.path.join(out, "a.json"), progress=True)
b = cnnbench.measure(Crasher, input_size="1x8x8", measure=M, out=os.path.join(out, "b.json"), progress=True)
print("RESULT " + json.dumps({"calls": CALLS, "pid": os.getpid(), "a": [c.status for c in a], "b": [(c.status, c.error) for c in b], "keys": [c.key for c in a], "b_keys": [c.key for c in b]}))
