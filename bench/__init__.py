"""fdbench: what does each feature space see?

The engine: Gaussian statistics, distances, image sources, perturbations, experiments, reports and the CLI.
The front door for code is re-exported here from `bench.api` (loaded on first use, so that importing the
package, and `fdbench --help`, stay fast):

    import bench
    result = bench.fd("real_faces/", "generated.npz", spaces=["efficientnet-lite0-imagenet"])

`bench.stats` is the API call `bench.api.stats`. It shares its name with the statistics module
`bench/stats.py`, which stays importable (`from bench.stats import GaussianStats`) but is not bound as the
package attribute: the package class below keeps the import system from binding it over the call.
"""

import sys
import types
from typing import Any

__version__ = "0.1.0"

_API = ("stats", "fd", "compare", "StatsResult", "FDResult", "ComparisonResult")
__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    if name in _API:
        from bench import api

        return getattr(api, name)
    raise AttributeError(f"module 'bench' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_API})


class _Package(types.ModuleType):
    """The `bench` package: its API names are never replaced by submodules of the same name."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _API and isinstance(value, types.ModuleType):
            return  # the submodule stays reachable through sys.modules and `from bench.stats import ...`
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
