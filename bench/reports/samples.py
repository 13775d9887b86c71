"""The report's sample strip: a few images as the run saw them (clean, mask, each perturbed variant)."""

from __future__ import annotations

from collections.abc import Sequence

from bench.experiments.common import SamplePanel
from bench.reports.html import ReportSection
from bench.reports.plots import new_figure

CAPTION = (
    "Each row is one image of the run at its own resolution: the clean image, its label map over it, and "
    "the image with each region blurred (a region covering too little of an image is absent and the image "
    "is left as it is)."
)


def sample_strip_section(samples: Sequence[Sequence[SamplePanel]]) -> ReportSection | None:
    """A report section showing every sample row as a grid of captioned pictures; None without samples."""
    if not samples:
        return None
    columns = max(len(row) for row in samples)
    figure = new_figure(1.6 * columns, 1.75 * len(samples))
    for row_index, row in enumerate(samples):
        for column_index in range(columns):
            axes = figure.add_subplot(len(samples), columns, row_index * columns + column_index + 1)
            axes.set_axis_off()
            if column_index < len(row):
                panel = row[column_index]
                axes.imshow(panel.image, interpolation="nearest")
                axes.set_title(panel.caption, fontsize=7)
    return ReportSection(
        "What the perturbations look like", f"<p>{CAPTION}</p>", (("sample images", figure),)
    )
