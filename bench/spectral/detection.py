"""Real-vs-generated separability from spectral features (METHODS §4, after Durall et al. 2020).

Protocol: label real images 0 and generated images 1; for each of 10 seeds draw a stratified 80/20
train/test split, standardize features on the training part only, fit the classifier and score accuracy on
the test part; report the mean ± std over seeds. Classifiers: logistic regression and a linear SVM on
profiles, kNN (k = 5) on the Dzanic decay features. The logistic regression's absolute standardized
coefficients, averaged over seeds, locate the most discriminative frequency band.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from bench.spectral.profiles import SpectralInputError

CLASSIFIERS = ("logreg", "svm", "knn")
DEFAULT_SEEDS = tuple(range(10))


@dataclass
class DetectionResult:
    """Accuracies of one classifier over seeded splits, with what it was trained on."""

    classifier: str
    accuracies: list[float]
    n_real: int
    n_generated: int
    n_test: int
    coefficients: np.ndarray | None = field(default=None, repr=False)

    @property
    def mean(self) -> float:
        """Mean test accuracy over seeds."""
        return float(np.mean(self.accuracies))

    @property
    def std(self) -> float:
        """Standard deviation of the test accuracy over seeds (ddof = 0, as numpy's default)."""
        return float(np.std(self.accuracies))

    def chance_interval(self, z: float = 1.96) -> tuple[float, float]:
        """Binomial interval around chance (0.5) for one test split of this size: accuracies inside it
        are indistinguishable from guessing."""
        half = z * np.sqrt(0.25 / self.n_test)
        return 0.5 - half, 0.5 + half


def _make_classifier(name: str, seed: int, knn_k: int):
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import LinearSVC

    if name == "logreg":
        model = LogisticRegression(max_iter=5000)
    elif name == "svm":
        model = LinearSVC(C=1.0, max_iter=20000, random_state=seed)
    elif name == "knn":
        model = KNeighborsClassifier(n_neighbors=knn_k)
    else:
        raise SpectralInputError(f"unknown classifier {name!r}; choose one of {', '.join(CLASSIFIERS)}")
    return make_pipeline(StandardScaler(), model)


def detection_accuracy(
    real_features: np.ndarray,
    generated_features: np.ndarray,
    classifier: str = "logreg",
    seeds: Sequence[int] = DEFAULT_SEEDS,
    test_fraction: float = 0.2,
    knn_k: int = 5,
) -> DetectionResult:
    """Test accuracy of ``classifier`` separating the two feature sets over seeded stratified splits."""
    from sklearn.model_selection import train_test_split

    real = np.asarray(real_features, dtype=np.float64)
    generated = np.asarray(generated_features, dtype=np.float64)
    if real.ndim != 2 or generated.ndim != 2 or real.shape[1] != generated.shape[1]:
        raise SpectralInputError(
            f"features must be (n, d) arrays of equal d, got {real.shape} and {generated.shape}"
        )
    minimum = max(5, knn_k + 1) if classifier == "knn" else 5
    if min(len(real), len(generated)) < minimum:
        raise SpectralInputError(
            f"detection needs at least {minimum} images per set, got {len(real)} real and {len(generated)}"
        )
    features = np.concatenate([real, generated])
    labels = np.concatenate([np.zeros(len(real), int), np.ones(len(generated), int)])
    accuracies: list[float] = []
    coefficients: list[np.ndarray] = []
    n_test = 0
    for seed in seeds:
        x_train, x_test, y_train, y_test = train_test_split(
            features, labels, test_size=test_fraction, random_state=seed, stratify=labels
        )
        model = _make_classifier(classifier, seed, knn_k).fit(x_train, y_train)
        accuracies.append(float(np.mean(model.predict(x_test) == y_test)))
        n_test = len(y_test)
        final = model[-1]
        if hasattr(final, "coef_"):
            coefficients.append(np.abs(np.ravel(final.coef_)))
    return DetectionResult(
        classifier=classifier,
        accuracies=accuracies,
        n_real=len(real),
        n_generated=len(generated),
        n_test=n_test,
        coefficients=np.mean(coefficients, axis=0) if coefficients else None,
    )


@dataclass
class FrequencyBand:
    """The contiguous run of profile bins with the largest summed |coefficient|."""

    first_bin: int
    last_bin: int
    peak_bin: int
    radius_low: float
    radius_high: float
    peak_radius: float
    nyquist_fraction_low: float
    nyquist_fraction_high: float
    share_of_weight: float


def standardized_mean_difference(real_features: np.ndarray, generated_features: np.ndarray) -> np.ndarray:
    """Per-feature |Cohen's d|: |mean difference| / pooled standard deviation (0 where both are constant)."""
    real = np.asarray(real_features, dtype=np.float64)
    generated = np.asarray(generated_features, dtype=np.float64)
    pooled = np.sqrt((real.var(axis=0, ddof=1) + generated.var(axis=0, ddof=1)) / 2.0)
    difference = np.abs(real.mean(axis=0) - generated.mean(axis=0))
    return np.divide(difference, pooled, out=np.zeros_like(difference), where=pooled > 0)


def most_discriminative_band(
    coefficients: np.ndarray, radii: np.ndarray, nyquist: float, width: int | None = None
) -> FrequencyBand:
    """Band of ``width`` consecutive bins (default 5 % of the profile, at least 3) with the largest summed
    absolute standardized coefficient; radii in frequency-index units, also as fractions of Nyquist."""
    weights = np.abs(np.asarray(coefficients, dtype=np.float64))
    radii = np.asarray(radii, dtype=np.float64)
    if weights.shape != radii.shape:
        raise SpectralInputError(f"{weights.shape[0]} coefficients for {radii.shape[0]} profile bins")
    width = width or max(3, round(0.05 * len(weights)))
    width = min(width, len(weights))
    window_sums = np.convolve(weights, np.ones(width), mode="valid")
    first = int(np.argmax(window_sums))
    last = first + width - 1
    peak = first + int(np.argmax(weights[first : last + 1]))
    total = float(weights.sum()) or 1.0
    return FrequencyBand(
        first_bin=first,
        last_bin=last,
        peak_bin=peak,
        radius_low=float(radii[first]),
        radius_high=float(radii[last]),
        peak_radius=float(radii[peak]),
        nyquist_fraction_low=float(radii[first] / nyquist),
        nyquist_fraction_high=float(radii[last] / nyquist),
        share_of_weight=float(window_sums[first] / total),
    )
