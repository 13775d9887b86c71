"""Significance of generator rankings (METHODS §3): the paired-bootstrap interval of FD(G_a, R) − FD(G_b, R),
the fraction of replicates keeping the order, Kendall τ with an interval, and how reports mark pairs that
this n cannot tell apart. Planted truths on Gaussian features (fast), then the experiment on images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bench.experiments.generator_comparison import (
    NOT_DISTINGUISHABLE,
    ExtractedSet,
    FeatureSet,
    GeneratorComparisonConfig,
    compare_sets,
    run_generator_comparison,
)
from bench.reports.results import validate_results
from bench.reports.tables import experiment_tables, significance_table
from tests.oracles import fd_sqrtm_oracle


def features_set(label: str, spaces: dict[str, np.ndarray]) -> ExtractedSet:
    return ExtractedSet(
        label, label, "features", {space: FeatureSet.from_features(x) for space, x in spaces.items()}
    )


def gaussian(rng: np.random.Generator, n: int, d: int = 8, shift: float = 0.0) -> np.ndarray:
    x = rng.standard_normal((n, d))
    x[:, 0] += shift
    return x


def pair_of(outcome, first: str, second: str, space: str = "z"):
    return next(p for p in outcome.pairs if (p.space, p.first, p.second) == (space, first, second))


def test_same_distribution_intervals_contain_zero_in_at_least_90_percent_of_repeats() -> None:
    contained, repeats = 0, 40
    for seed in range(repeats):
        rng = np.random.default_rng(seed)
        reference = features_set("reference", {"z": gaussian(rng, 120)})
        generated = {name: features_set(name, {"z": gaussian(rng, 120)}) for name in ("a", "b")}
        outcome = compare_sets(reference, generated, ["z"], ["fd"], num_boot=100, seed=seed)
        pair = pair_of(outcome, "a", "b")
        assert pair.estimate.interval.contains(pair.estimate.estimate)
        contained += pair.estimate.interval.contains(0.0)
    assert contained / repeats >= 0.9


def test_clearly_different_generators_are_told_apart() -> None:
    for seed in range(8):
        rng = np.random.default_rng(100 + seed)
        reference = features_set("reference", {"z": gaussian(rng, 150)})
        generated = {
            "close": features_set("close", {"z": gaussian(rng, 150, shift=0.1)}),
            "far": features_set("far", {"z": gaussian(rng, 150, shift=1.5)}),
        }
        outcome = compare_sets(reference, generated, ["z"], ["fd"], num_boot=100, seed=seed)
        pair = pair_of(outcome, "close", "far")
        assert not pair.estimate.interval.contains(0.0)
        assert pair.estimate.interval.high < 0  # FD(close) − FD(far) < 0
        assert pair.verdict == "close closer" and pair.distinguishable
        assert pair.order_kept >= 0.95


def test_estimates_are_the_fds_and_replicates_are_counted() -> None:
    rng = np.random.default_rng(7)
    ref, a, b = gaussian(rng, 120), gaussian(rng, 100, shift=0.3), gaussian(rng, 90, shift=0.6)
    reference = features_set("reference", {"z": ref})
    outcome = compare_sets(
        reference,
        {"a": features_set("a", {"z": a}), "b": features_set("b", {"z": b})},
        ["z"],
        ["fd"],
        num_boot=60,
    )
    oracle = {
        name: fd_sqrtm_oracle(ref.mean(0), np.cov(ref, rowvar=False), x.mean(0), np.cov(x, rowvar=False))
        for name, x in (("a", a), ("b", b))
    }
    fds = {distance.generator: distance for distance in outcome.distances}
    for name in ("a", "b"):
        assert fds[name].fd.value == pytest.approx(oracle[name], rel=1e-9)
        assert fds[name].fd_interval.estimate == fds[name].fd.value
        assert fds[name].fd_interval.interval.method == "basic"
    pair = pair_of(outcome, "a", "b")
    assert pair.estimate.estimate == pytest.approx(oracle["a"] - oracle["b"], rel=1e-9)
    assert pair.estimate.valid == 60
    kept = np.mean(np.sign(pair.estimate.replicates) == np.sign(pair.estimate.estimate))
    assert pair.order_kept == pytest.approx(kept)


def test_the_reference_is_resampled_once_for_both_generators() -> None:
    """With a small reference and large generated sets, most of each FD's spread comes from the reference
    draw; shared by both FDs of a replicate, it cancels in their difference. Drawing the reference
    separately for each generator would leave the difference as spread out as the FDs themselves."""
    rng = np.random.default_rng(3)
    reference = features_set("reference", {"z": gaussian(rng, 40, d=4)})
    generated = {name: features_set(name, {"z": gaussian(rng, 2000, d=4, shift=0.5)}) for name in ("a", "b")}
    outcome = compare_sets(reference, generated, ["z"], ["fd"], num_boot=100)
    spread_of_fd = min(distance.fd_interval.std for distance in outcome.distances)
    assert pair_of(outcome, "a", "b").estimate.std < 0.3 * spread_of_fd


def test_rank_agreement_carries_a_percentile_interval() -> None:
    rng = np.random.default_rng(5)
    latent = {
        name: gaussian(rng, 200, d=6, shift=shift) for name, shift in (("a", 0.0), ("b", 0.7), ("c", 1.5))
    }
    reference_latent = gaussian(rng, 200, d=6)
    mixing = rng.standard_normal((6, 6))

    def spaces(x: np.ndarray) -> dict[str, np.ndarray]:
        return {"z": x, "mixed": x @ mixing}

    reference = features_set("reference", spaces(reference_latent))
    generated = {name: features_set(name, spaces(x)) for name, x in latent.items()}
    outcome = compare_sets(reference, generated, ["z", "mixed"], ["fd"], num_boot=50)
    (agreement,) = outcome.agreements
    assert (agreement.first_space, agreement.second_space, agreement.generators) == ("z", "mixed", 3)
    assert agreement.tau == pytest.approx(1.0)
    assert agreement.interval.method == "percentile" and agreement.interval.contains(agreement.tau)
    assert -1.0 <= agreement.interval.low <= agreement.interval.high <= 1.0


def test_tables_and_heatmap_mark_pairs_this_n_cannot_tell_apart() -> None:
    rng = np.random.default_rng(11)
    reference = features_set("reference", {"z": gaussian(rng, 150)})
    generated = {
        "a": features_set("a", {"z": gaussian(rng, 150)}),
        "b": features_set("b", {"z": gaussian(rng, 150)}),
        "far": features_set("far", {"z": gaussian(rng, 150, shift=1.5)}),
    }
    outcome = compare_sets(reference, generated, ["z"], ["fd"], num_boot=100, seed=1)
    undecided = {(p.first, p.second) for p in outcome.pairs if not p.distinguishable}
    assert ("a", "b") in undecided and ("a", "far") not in undecided and ("b", "far") not in undecided
    results = validate_results(pd_frame(outcome))
    table = significance_table(results).frame.set_index("pair (a − b)")
    for pair in outcome.pairs:
        verdict = table.loc[f"{pair.first} − {pair.second}", "verdict"]
        assert (verdict == NOT_DISTINGUISHABLE) == ((pair.first, pair.second) in undecided)
    titles = [t.title for t in experiment_tables(results)]
    assert any("can this n tell" in title for title in titles)

    from bench.reports.plots import plot_fd_differences

    figure = plot_fd_differences(results)
    marks = [text.get_position() for text in figure.axes[0].texts if text.get_text() == "n.d."]
    assert sorted(marks) == [(0.5, 1.5), (1.5, 0.5)]  # cells (a, b) and (b, a) of generators a, b, far


def pd_frame(outcome):
    from bench.experiments.common import results_frame

    return results_frame(outcome.rows())


@pytest.mark.slow
def test_experiment_reports_intervals_kid_standardisation_and_significance(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FDBENCH_CACHE", str(tmp_path / "cache"))
    config = GeneratorComparisonConfig(
        reference="dcgan-faces:count=48,seed=0",
        generators={"seed-1": "dcgan-faces:count=48,seed=1", "seed-2": "dcgan-faces:count=48,seed=2"},
        spaces=["pixels-randproj", "spectrum-durall"],
        kid_subsets=10,
        bootstrap=40,
        progress=False,
    )
    table = validate_results(run_generator_comparison(config).results)
    fd = table[table.metric == "fd"]
    assert len(fd) == 4 and (fd.ci_low <= fd.value).all() and (fd.value <= fd.ci_high).all()
    assert fd.ci_method.str.startswith("basic").all() and (fd.n == 48).all()
    kid = table[table.metric == "kid"]
    assert kid.diagnostics.str.contains("standardised").all()  # pixels and spectral families
    differences = table[table.metric == "fd_difference"]
    assert set(zip(differences.space, differences.variant, differences.region, strict=True)) == {
        ("pixels-randproj", "seed-1", "seed-2"),
        ("spectrum-durall", "seed-1", "seed-2"),
    }
    kept = table[table.metric == "fd_order_kept"]
    assert kept.value.between(0.5, 1.0).all()  # a fraction of replicates, at least the observed sign's
    tau = table[table.metric == "kendall_tau"]
    assert list(zip(tau.space, tau.region, strict=True)) == [("pixels-randproj", "spectrum-durall")]
