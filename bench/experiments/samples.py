"""Sample pictures for a report: a few images as the run saw them, clean, masked and perturbed.

A reader of a region-blur table should see what "Hair blurred" means at the run's resolution: for the
first few images of the source, the clean image, its label map over it, and each blurred variant.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from bench.decode import DecodeError
from bench.engine.masking import MaskProvider
from bench.experiments.common import SamplePanel
from bench.masks import colour_overlay, region_mask, region_present
from bench.sources import ImageSource

if TYPE_CHECKING:
    from bench.experiments.region_blur import RegionBlurDesign


def region_blur_samples(
    source: ImageSource, masks: MaskProvider, design: RegionBlurDesign, count: int, min_fraction: float
) -> list[list[SamplePanel]]:
    """For the first `count` decodable images: clean, mask overlay, and every region's blur (a region
    covering less than `min_fraction` of an image counts as absent, as in the run)."""
    strips = []
    ids = source.ids()
    for index, image_id in enumerate(ids):
        if len(strips) == count:
            break
        try:
            image = source.load(index)
        except DecodeError:
            continue
        batch = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))[None]
        labels, has_labels = masks.labels([image_id], batch)
        panels = [SamplePanel(f"{image_id}: clean", image)]
        if bool(has_labels[0]):
            overlay = colour_overlay(image, labels[0].cpu().numpy(), masks.convention)
            panels.append(SamplePanel("mask", overlay))
        for region, variant in design.blurred.items():
            assert variant.perturbation is not None
            if region == "All":
                blurred = variant.perturbation(batch, None, offset=index)
                caption = "All blurred"
            else:
                mask = region_mask(labels, masks.convention, region)
                present = bool(region_present(labels, masks.convention, region, min_fraction)[0]) and bool(
                    has_labels[0]
                )
                blurred = variant.perturbation(batch, mask, offset=index) if present else batch
                caption = f"{region} blurred" if present else f"{region} (absent)"
            panels.append(SamplePanel(caption, blurred[0].permute(1, 2, 0).cpu().numpy()))
        strips.append(panels)
    return strips
