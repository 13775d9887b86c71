"""Attribute-proportion curves (METHODS §3): how FD grows as two sets differ in one attribute's share.

Input: paired folders `base/` and `cf_<attribute>/` whose files match by basename (a counterfactual image
with one attribute changed). For each Δ in the grid, N pairs are drawn; set A takes the base image for a
fraction (1 + Δ)/2 of the pairs and the counterfactual for the rest, set B the complementary choice. The
curve is FD(Δ) mean ± std over draws, with its mean and trace terms.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench.engine import CLEAN, run_engine
from bench.experiments.common import (
    EngineSettings,
    ExperimentOutput,
    ResultRow,
    engine_config,
    engine_notes,
    results_frame,
)
from bench.experiments.region_blur import OFFLINE_SPACES
from bench.experiments.runner import register_experiment
from bench.metrics import frechet_distance
from bench.parallel import map_small_linalg
from bench.sources import FolderSource

EXPERIMENT = "attribute_proportion"


@dataclass
class AttributeProportionConfig(EngineSettings):
    """Settings of an attribute-proportion run."""

    root: str = ""  # folder holding base/ and cf_<attribute>/ subfolders
    attributes: list[str] = field(default_factory=list)  # default: every cf_* subfolder
    spaces: list[str] = field(default_factory=lambda: list(OFFLINE_SPACES))
    deltas: list[float] = field(default_factory=lambda: [float(d) for d in range(0, 101, 5)])  # percent
    pairs: int = 1000
    draws: int = 10
    reservoir_size: int = 100_000


def _pair_key(image_id: str) -> str:
    name = Path(image_id).name
    return name.split(".")[0]


def run_attribute_proportion(config: AttributeProportionConfig) -> ExperimentOutput:
    """Features of every base and counterfactual image, then FD(Δ) curves per attribute and space."""
    root = Path(config.root)
    if not (root / "base").is_dir():
        raise FileNotFoundError(
            f"attribute-proportion root {root} needs a base/ folder (and cf_<attribute>/)"
        )
    attributes = config.attributes or sorted(p.name[3:] for p in root.glob("cf_*") if p.is_dir())
    if not attributes:
        raise FileNotFoundError(f"no cf_<attribute>/ folders in {root}")
    notes: list[str] = []
    settings = engine_config(config)
    clean = [CLEAN]
    base = FolderSource(root / "base")
    base_result = run_engine(base, clean, config.spaces, None, settings)
    notes.extend(engine_notes(base_result))
    skipped = list(base_result.decode_skips)
    rows: list[ResultRow] = []
    manifest: dict[str, Any] = {"sources": {"base": base.manifest_hash()}}
    for attribute in attributes:
        folder = root / f"cf_{attribute}"
        if not folder.is_dir():
            notes.append(f"attribute {attribute}: no folder {folder}; skipped")
            continue
        counterfactual = FolderSource(folder)
        manifest["sources"][f"cf_{attribute}"] = counterfactual.manifest_hash()
        cf_result = run_engine(counterfactual, clean, config.spaces, None, settings)
        notes.extend(note for note in engine_notes(cf_result) if note not in notes)
        skipped.extend((f"cf_{attribute}/{name}", reason) for name, reason in cf_result.decode_skips)
        for space in config.spaces:
            base_cell, cf_cell = base_result.cell("clean", space), cf_result.cell("clean", space)
            if base_cell is None or cf_cell is None or base_cell.features is None or cf_cell.features is None:
                continue
            listed = len({_pair_key(i) for i in base.ids()} & {_pair_key(i) for i in counterfactual.ids()})
            rows.extend(_curve_rows(config, attribute, space, base_cell, cf_cell, listed, notes))
    manifest["config"] = asdict(config)
    return ExperimentOutput(results_frame(rows), notes, manifest, skipped_files=skipped)


def _curve_rows(config, attribute, space, base_cell, cf_cell, listed: int, notes) -> list[ResultRow]:
    """FD(Δ) mean ± std over draws; `listed` pairs match by file name, those without a feature on both
    sides (a face space finding no face in one of the pair) are counted as lost."""
    base_rows = {_pair_key(i): k for k, i in enumerate(base_cell.ids)}
    cf_rows = {_pair_key(i): k for k, i in enumerate(cf_cell.ids)}
    keys = sorted(set(base_rows) & set(cf_rows))
    lost = max(0, listed - len(keys))
    if len(keys) < 4:
        notes.append(
            f"attribute {attribute}, space {space}: only {len(keys)} matched pairs; needs 4, skipped"
        )
        return []
    count = min(config.pairs, len(keys))
    if count < config.pairs:
        notes.append(
            f"attribute {attribute}: {len(keys)} matched pairs, fewer than the {config.pairs} asked; used all"
        )
    base_index = np.array([base_rows[k] for k in keys])
    cf_index = np.array([cf_rows[k] for k in keys])
    rng = np.random.default_rng(config.seed)
    # All draws first, in the seeded order; then the FDs, in threads (bench.parallel).
    draws = [
        (delta, rng.choice(len(keys), count, replace=False))
        for delta in config.deltas
        for _ in range(config.draws)
    ]

    def draw_fd(draw: tuple[float, np.ndarray]) -> tuple[float, float, float]:
        delta, chosen = draw
        take_base = round((1 + delta / 100.0) / 2 * count)
        first = np.concatenate(
            [
                base_cell.features[base_index[chosen[:take_base]]],
                cf_cell.features[cf_index[chosen[take_base:]]],
            ]
        )
        second = np.concatenate(
            [
                cf_cell.features[cf_index[chosen[:take_base]]],
                base_cell.features[base_index[chosen[take_base:]]],
            ]
        )
        fd = frechet_distance(first, second)
        return fd.value, fd.mean_term, fd.trace_term

    fds = map_small_linalg(draw_fd, draws)
    rows = []
    for index, delta in enumerate(config.deltas):
        values = fds[index * config.draws : (index + 1) * config.draws]
        values_array = np.array(values)
        for column, metric in enumerate(("fd", "fd_mean_term", "fd_trace_term")):
            mean, std = values_array[:, column].mean(), values_array[:, column].std()
            rows.append(
                ResultRow(
                    EXPERIMENT,
                    space,
                    metric,
                    mean,
                    count,
                    variant=attribute,
                    region="All",
                    level=float(delta),
                    mean=mean,
                    std=std,
                    lost=lost,
                )
            )
    return rows


register_experiment(EXPERIMENT, AttributeProportionConfig, run_attribute_proportion)
