"""cnnbench: a benchmarking and profiling harness for CNN architectures.

`import cnnbench` is light (no torch): the library's heavy parts import torch inside the
functions that need it, so the CLI answers instantly. The Python API (docs/api.md):

    >>> import cnnbench
    >>> res = cnnbench.measure(MyNet, input_size=(3, 32, 32), backends=["eager", "onnxrt"])
    >>> res.to_pandas()

Three API names are also the names of layer packages (`cnnbench.measure`, the worker side;
`cnnbench.run`, the runner; `cnnbench.compare`, the verdicts). Python binds a subpackage as an
attribute of its parent whenever it is first imported, which would silently replace a plain
function of the same name. So those packages are imported here, first, and made callable: calling
the package calls the API function (`cnnbench.api.measure`, `run`, `compare`), and
`from cnnbench import compare` still gives the package to the code that uses it.

Command line: `cnnbench.cli.main` (`python bench.py ...`).
"""

import sys
import types

import cnnbench.compare
import cnnbench.measure
import cnnbench.run  # noqa: F401 - imported first, see the docstring
from cnnbench import api
from cnnbench.api import Comparison, ModelPickleError, ResultsFile, UserError, load, profile
from cnnbench.core import VERSION as __version__

__all__ = [
    "__version__",
    "measure",
    "run",
    "load",
    "compare",
    "profile",
    "ResultsFile",
    "Comparison",
    "UserError",
    "ModelPickleError",
]


class CallablePackage(types.ModuleType):
    """A package that is also an API function: `cnnbench.measure(...)` calls `api.measure`."""

    api_function: object

    def __call__(self, *args, **kwargs):
        return self.api_function(*args, **kwargs)  # type: ignore[operator]


for _name in ("measure", "run", "compare"):
    _package = sys.modules[f"cnnbench.{_name}"]
    _package.__class__ = CallablePackage
    _package.api_function = getattr(api, _name)  # type: ignore[attr-defined]
del _name, _package
