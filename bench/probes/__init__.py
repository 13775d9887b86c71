"""Classifier probes: targeted semantic attacks and semantic class hybrids (METHODS §7).

Each probe is one module that registers itself with `bench.experiments.runner`, so `fdbench run` runs it
from a TOML file like any experiment.
"""
