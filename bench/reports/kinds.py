"""Which experiment a block of results comes from, so tables and plots pick the right layout."""

from __future__ import annotations

import pandas as pd

REGION_BLUR = "region_blur"
ATTRIBUTE_PROPORTION = "attribute_proportion"
GENERATOR_COMPARISON = "generator_comparison"
STYLE_PROBE = "style_probe"
SEVERITY_SWEEP = "severity_sweep"
SEMANTIC_ATTACK = "semantic_attack"
GENERIC = "generic"

FD_TERM_METRICS: tuple[str, ...] = ("fd", "fd_mean_term", "fd_trace_term")
# Region blur's other FDs: the denominator on the same ids, and the population form's FDs and terms.
REGION_BLUR_FD_METRICS: tuple[str, ...] = (
    "fd_all_blurred",
    "fd_population",
    "fd_mean_term_population",
    "fd_trace_term_population",
    "fd_all_blurred_population",
)


def experiment_kind(block: pd.DataFrame) -> str:
    """The layout of one experiment's rows: by its name first, by the metrics it holds otherwise."""
    names = {str(name).lower().replace("-", "_").replace(" ", "_") for name in block["experiment"].unique()}
    name = " ".join(sorted(names))
    metrics = set(block["metric"])
    if "spectral" in name:
        return GENERIC
    if name in (SEVERITY_SWEEP, SEMANTIC_ATTACK):
        return name
    if "nfd" in metrics or "region_blur" in name:
        return REGION_BLUR
    if "fd_ratio" in metrics or "style" in name:
        return STYLE_PROBE
    if "proportion" in name or "attribute" in name:
        return ATTRIBUTE_PROPORTION
    if "generator" in name:
        return GENERATOR_COMPARISON
    fd_rows = block[block["metric"] == "fd"]
    if fd_rows.empty:
        return GENERIC
    numeric_levels = {level for level in fd_rows["level"] if isinstance(level, float)}
    if len(numeric_levels) > 1:
        return ATTRIBUTE_PROPORTION
    if fd_rows["variant"].nunique() > 1:
        return GENERATOR_COMPARISON
    return GENERIC


def split_experiments(results: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """(experiment name, its rows) in the order experiments first appear in the table."""
    order = list(dict.fromkeys(results["experiment"]))
    return [(name, results[results["experiment"] == name]) for name in order]


def ordered_unique(values: pd.Series) -> list:
    """Distinct values in first-appearance order, numeric levels sorted ascending."""
    distinct = list(dict.fromkeys(values))
    if distinct and all(isinstance(v, float) for v in distinct):
        return sorted(distinct)
    return distinct
