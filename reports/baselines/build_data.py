"""Build the images and label maps the committed baselines read (run once; the outputs are committed).

    python reports/baselines/build_data.py            # from the repository root

Writes, under reports/baselines/data/:
  faces/base/NNNNNN.png          the 64 DCGAN faces of `dcgan-faces:count=64,seed=0`, as generated (CPU)
  faces/cf_pixelated/NNNNNN.png  the same faces pixelated: each 2×2 block replaced by its mean, rounded
                                 half up in integer arithmetic (the counterfactual of the attribute-
                                 proportion baseline, and a set with up-sampling artifacts in its spectrum)
  masks/NNNNNN.png               BiSeNet label maps of the base faces (parser input 512², BiSeNet numbering)

The baselines read these files instead of regenerating them, so the generator's uint8 rounding and the
parser's argmax, which amplify floating-point round-off, are not on a baseline's path (docs/regression.md).
Rerunning this script on another machine may change a few generated pixels or label-map boundary pixels;
the committed files are the reference, regenerate them only together with the baselines.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
DATA = HERE / "data"
COUNT, SEED, PARSER_INPUT = 64, 0, 512


def pixelated(image: np.ndarray) -> np.ndarray:
    """An H×W×3 uint8 image (even sides) with each 2×2 block set to its mean, rounded half up."""
    height, width, channels = image.shape
    sums = image.astype(np.int64).reshape(height // 2, 2, width // 2, 2, channels).sum(axis=(1, 3))
    means = ((sums + 2) // 4).astype(np.uint8)
    return np.repeat(np.repeat(means, 2, axis=0), 2, axis=1)


def main() -> int:
    import torch

    sys.path.insert(0, str(HERE.parents[1]))
    from bench.face_parser import FaceParser
    from bench.sources import open_source

    source = open_source(f"dcgan-faces:count={COUNT},seed={SEED}")
    images = np.stack([image for _, image in source.iter_images()])
    parser = FaceParser(device="cpu", input_size=PARSER_INPUT, cache=False)
    labels = parser.parse_uncached(torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()).numpy()
    for folder in ("faces/base", "faces/cf_pixelated", "masks"):
        (DATA / folder).mkdir(parents=True, exist_ok=True)
    for index, (image, label_map) in enumerate(zip(images, labels, strict=True)):
        name = f"{index:06d}.png"
        Image.fromarray(image).save(DATA / "faces/base" / name, optimize=True)
        Image.fromarray(pixelated(image)).save(DATA / "faces/cf_pixelated" / name, optimize=True)
        Image.fromarray(label_map.astype(np.uint8)).save(DATA / "masks" / name, optimize=True)
    print(f"wrote {len(images)} faces, their pixelated copies and BiSeNet label maps under {DATA}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
