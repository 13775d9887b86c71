"""Pieces every experiment shares: typed configs from TOML, tidy result rows, FDs between engine cells."""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections import Counter
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd
import tomllib

from bench.engine import Cell, EngineConfig, EngineResult
from bench.metrics import FrechetResult, frechet_distance
from bench.metrics.bootstrap import BootstrapEstimate
from bench.schema import COLUMNS, DIAGNOSTICS_SEPARATOR
from bench.stats import FeatureError

ConfigT = TypeVar("ConfigT")

RESULT_COLUMNS = COLUMNS


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


@dataclasses.dataclass(frozen=True)
class ResultRow:
    """One number of a results table, built by keyword (bench.reports.results describes the columns).

    `n` is the number of image ids the value rests on (in each set, for a paired FD), `lost` the ids
    dropped from both sets because a perturbed copy gave no feature. `ci_low`/`ci_high` only ever hold an
    interval (`ci_method` says which); a mean ± std over repeated draws goes in `mean`/`std`.
    """

    experiment: str
    space: str
    metric: str
    value: float
    n: int
    variant: str = ""
    region: str = ""
    level: float | str | None = None
    ci_low: float = math.nan
    ci_high: float = math.nan
    ci_method: str = ""
    bias: float = math.nan
    mean: float = math.nan
    std: float = math.nan
    lost: int = 0
    diagnostics: tuple[str, ...] = ()

    def with_bootstrap(self, estimate: BootstrapEstimate | None) -> ResultRow:
        """This row with a bootstrap interval, bias and its diagnostics (unchanged when None)."""
        if estimate is None:
            return self
        low, high = estimate.interval.low, estimate.interval.high
        if estimate.interval.method != "none" and math.isfinite(self.value):
            # The row's value may come from another FD path than the bootstrap's own estimate (the exact
            # low-rank one, say) and differ from it in the last bits: the interval must still hold it.
            low, high = min(low, self.value), max(high, self.value)
        return dataclasses.replace(
            self,
            ci_low=low,
            ci_high=high,
            ci_method=estimate.interval.label if estimate.interval.method != "none" else "",
            bias=estimate.bias,
            std=estimate.std,
            diagnostics=(*self.diagnostics, *estimate.diagnostics()),
        )

    def to_dict(self) -> dict[str, Any]:
        """The row as a plain dict in the results table's column order."""
        record = {name: getattr(self, name) for name in RESULT_COLUMNS}
        record["value"], record["n"], record["lost"] = float(self.value), int(self.n), int(self.lost)
        record["diagnostics"] = DIAGNOSTICS_SEPARATOR.join(dict.fromkeys(self.diagnostics))
        return record


def results_frame(rows: list[ResultRow]) -> pd.DataFrame:
    """The tidy table in the standard column order (empty but well-formed when there are no rows)."""
    return pd.DataFrame([row.to_dict() for row in rows], columns=list(RESULT_COLUMNS))


def fd_between_cells(first: Cell, second: Cell) -> FrechetResult:
    """FD between two cells: from their features when both reservoirs are complete (exact low-rank path
    when n < d), else from their streaming statistics."""
    if first.stats is None or second.stats is None:
        raise FeatureError(f"no images in {first.variant.name} or {second.variant.name} ({first.space})")
    if first.reservoir_is_complete and second.reservoir_is_complete:
        return frechet_distance(first.features, second.features)
    return frechet_distance(first.stats, second.stats)


def fd_diagnostics(result: FrechetResult) -> tuple[str, ...]:
    """An FD's diagnostics as short phrases for the results table (n ≤ d, clamped mass, warnings)."""
    return tuple(result.notes())


@dataclasses.dataclass
class SamplePanel:
    """One picture of the report's sample strip: a caption and an H×W×3 uint8 image."""

    caption: str
    image: np.ndarray


@dataclasses.dataclass
class ExperimentOutput:
    """A tidy results table, problems found on the way, what the manifest should record, and pictures."""

    results: pd.DataFrame
    notes: list[str]
    manifest: dict[str, Any]
    engine: EngineResult | None = None
    skipped_files: list[tuple[str, str]] = dataclasses.field(default_factory=list)  # (file, reason)
    samples: list[list[SamplePanel]] = dataclasses.field(default_factory=list)  # one list per image


def engine_notes(result: EngineResult) -> list[str]:
    """Problems the engine met, as report lines: spaces that failed, undecodable files, images without
    features (per variant and space), damaged cache entries."""
    notes = [
        f"space {space} could not load and was left out: {reason}"
        for space, reason in result.space_errors.items()
    ]
    if result.decode_skips:
        reasons = Counter(reason for _, reason in result.decode_skips)
        detail = ", ".join(f"{count} {reason}" for reason, count in sorted(reasons.items()))
        notes.append(f"{len(result.decode_skips)} files were skipped while decoding ({detail})")
    for (variant, space), counter in sorted(result.feature_skips.items()):
        for reason, count in sorted(counter.items()):
            what = "clean images" if variant == "clean" else f"images in variant {variant}"
            consequence = (
                "left out of every value" if variant == "clean" else "lost from that variant's values"
            )
            notes.append(f"space {space}: {count} {what} gave no features ({reason}); {consequence}")
    if result.cache_damaged:
        notes.append(
            f"{len(result.cache_damaged)} damaged feature-cache entries were discarded and recomputed"
        )
    return notes
