"""Generator comparison summaries: per-space rankings of generators and rank agreement (Kendall τ)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import kendalltau

from bench.reports.kinds import ordered_unique


def generator_scores(results: pd.DataFrame, metric: str = "fd") -> pd.DataFrame:
    """Generators (variant) × spaces matrix of `metric` values, in first-appearance order."""
    rows = results[results["metric"] == metric]
    if rows.empty:
        raise ValueError(f"no rows with metric {metric!r} to rank generators by")
    generators = ordered_unique(rows["variant"])
    spaces = ordered_unique(rows["space"])
    scores = pd.DataFrame(np.nan, index=pd.Index(generators, name="generator"), columns=spaces)
    for row in rows.itertuples(index=False):
        scores.loc[row.variant, row.space] = row.value
    scores.columns.name = "space"
    return scores


def generator_rankings(results: pd.DataFrame, metric: str = "fd") -> pd.DataFrame:
    """Rank of each generator within each space (1 = smallest distance); ties share the lower rank."""
    scores = generator_scores(results, metric)
    return scores.rank(axis=0, method="min", ascending=True).astype("Int64")


def kendall_tau_matrix(results: pd.DataFrame, metric: str = "fd") -> pd.DataFrame:
    """Spaces × spaces Kendall τ-b between the generators' scores (NaN where fewer than 2 are shared)."""
    scores = generator_scores(results, metric)
    spaces = list(scores.columns)
    tau = pd.DataFrame(np.nan, index=pd.Index(spaces, name="space"), columns=spaces)
    for i, first in enumerate(spaces):
        for second in spaces[i:]:
            both = scores[[first, second]].dropna()
            if len(both) < 2:
                continue
            value = 1.0 if first == second else float(kendalltau(both[first], both[second])[0])
            tau.loc[first, second] = tau.loc[second, first] = value
    return tau
