"""Pieces every experiment shares: typed configs from TOML, tidy result rows, FDs between engine cells."""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd
import tomllib

from bench.engine import Cell, EngineConfig
from bench.metrics import FrechetResult, frechet_distance
from bench.stats import FeatureError

ConfigT = TypeVar("ConfigT")

RESULT_COLUMNS = (
    "experiment",
    "space",
    "variant",
    "region",
    "level",
    "metric",
    "value",
    "ci_low",
    "ci_high",
    "n",
)


class ConfigError(ValueError):
    """A configuration file or value that does not fit the experiment's typed config."""


def load_config(config_type: type[ConfigT], path: str | Path, section: str | None = None) -> ConfigT:
    """Read a TOML file (optionally one table of it) into the dataclass `config_type`, checking keys."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path} is not valid TOML: {error}") from error
    if section is not None:
        data = data.get(section, {})
    return config_from_dict(config_type, data, where=str(path))


def config_from_dict(config_type: type[ConfigT], data: dict[str, Any], where: str = "config") -> ConfigT:
    """Build a dataclass from a plain dict; unknown keys and wrong value types are named in the error."""
    fields = {field.name: field for field in dataclasses.fields(config_type)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {unknown} for {config_type.__name__}; known: {sorted(fields)}"
        )
    hints = typing.get_type_hints(config_type)
    for key, value in data.items():
        if not _matches(value, hints[key]):
            raise ConfigError(f"{where}: {key} = {value!r} is not a {hints[key]}")
    return config_type(**data)


def _matches(value: Any, hint: Any) -> bool:
    origin = typing.get_origin(hint)
    if hint is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, option) for option in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if origin in (list, tuple):
        args = typing.get_args(hint)
        return (
            isinstance(value, (list, tuple)) and all(_matches(item, args[0]) for item in value)
            if args
            else True
        )
    if origin is dict:
        return isinstance(value, dict)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, hint)


@dataclasses.dataclass
class EngineSettings:
    """The run settings every experiment config carries (its own fields come after these)."""

    seed: int = 0
    batch_size: int = 32
    chunk_size: int = 256
    device: str | None = None
    reservoir_size: int = 2000  # feature rows kept per cell for KID, P/R, bootstrap and exact low-rank FD
    progress: bool = True


def engine_config(settings: EngineSettings) -> EngineConfig:
    """EngineConfig from the engine fields every experiment config carries."""
    return EngineConfig(
        batch_size=settings.batch_size,
        chunk_size=settings.chunk_size,
        device=settings.device,
        reservoir_size=settings.reservoir_size,
        reservoir_seed=settings.seed,
        progress=settings.progress,
    )


def row(
    experiment: str,
    space: str,
    variant: str,
    region: str,
    level: float | str | None,
    metric: str,
    value: float,
    n: int,
    ci: tuple[float, float] | None = None,
) -> dict[str, Any]:
    """One tidy result row."""
    low, high = ci if ci is not None else (math.nan, math.nan)
    return {
        "experiment": experiment,
        "space": space,
        "variant": variant,
        "region": region,
        "level": level,
        "metric": metric,
        "value": float(value),
        "ci_low": float(low),
        "ci_high": float(high),
        "n": int(n),
    }


def results_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """The tidy table in the standard column order (empty but well-formed when there are no rows)."""
    return pd.DataFrame(rows, columns=list(RESULT_COLUMNS))


def fd_between_cells(first: Cell, second: Cell) -> FrechetResult:
    """FD between two cells: from their features when both reservoirs are complete (exact low-rank path
    when n < d), else from their streaming statistics."""
    if first.stats is None or second.stats is None:
        raise FeatureError(f"no images in {first.variant}/{first.subset} or {second.variant}/{second.subset}")
    if first.reservoir_is_complete and second.reservoir_is_complete:
        return frechet_distance(first.features, second.features)
    return frechet_distance(first.stats, second.stats)
