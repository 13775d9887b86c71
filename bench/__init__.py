"""fdbench: what does each feature space see?

The engine: Gaussian statistics, distances, image sources, perturbations, experiments, reports and the CLI.
"""

__version__ = "0.1.0"
