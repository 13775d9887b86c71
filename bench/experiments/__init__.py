"""Experiments: one module each, a typed config in, a tidy results table out (DESIGN "Experiments").

`bench.experiments.runner.run_experiment(name, config)` runs any of them by name.
"""
