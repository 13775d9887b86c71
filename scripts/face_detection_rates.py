"""Face detection rates of the face spaces' detectors (MTCNN and dlib's HOG) on generated and real faces.

Each image is brought to the face spaces' 256² working size exactly as they see it, and each detector is
asked for its largest face. Prints a Markdown table (detected / images, rate, ms per image) and writes
the same numbers as JSON. A second table checks that dlib's 5-point predictor works in MTCNN's boxes as
well as in HOG's: for images both detectors find, the distance between the dlib-face-id descriptors of
the two alignments (the same person is < 0.6 apart). The numbers in docs/faces.md come from:

    python scripts/face_detection_rates.py --demo-count 500 --json reports/face_detection_rates.json

Real photographs are read from $FDBENCH_TEST_DATA (default ../shared/data) when present.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

import feature_spaces
from bench.sources import open_source
from feature_spaces.faces import FaceAligner, HogDetector, MtcnnDetector, working_images

REPO = Path(__file__).resolve().parents[1]
REAL_FOLDERS = {
    "UTKFace crops (real, 200²)": "faces/utkface200_crop_part1",
    "CelebA-HQ (real, 1024²)": "faces/celebahq1024_interfacegan_fork",
    "CelebA-HQ-style GAN (generated, 1024²)": "faces_generated/gan_celebahq1024_interfacegan_fork",
}


def image_sets(demo_count: int, data_root: Path) -> dict[str, str]:
    """Set name → source spec: the demo's generated faces, then the real folders that exist here."""
    demo = f"dcgan-faces, demo seed (generated, 64²), first {demo_count}"
    sets = {demo: f"dcgan-faces:count={demo_count},seed=0"}
    for name, folder in REAL_FOLDERS.items():
        if (data_root / folder).is_dir():
            sets[name] = str(data_root / folder)
    return sets


def detectors() -> dict[str, object]:
    """The two detectors, built from the registered dlib-face-id space's weight files and settings."""
    space = feature_spaces.get("dlib-face-id")
    paths = space.weight_paths()
    return {
        "MTCNN (facenet-pytorch)": MtcnnDetector(paths[2:]),
        "dlib HOG (upsample 0, then 1)": HogDetector(space.spec.extra["detector_upsample"]),
    }


def measure(spec: str, detector, batch_size: int = 32) -> dict[str, float]:
    """Detected faces, images and milliseconds per image of one detector on one source."""
    working_spec = feature_spaces.get("dlib-face-id").spec
    found = total = 0
    seconds = 0.0
    for _, batch in open_source(spec).iter_batches(batch_size):
        images = working_images(batch, working_spec)
        started = time.perf_counter()
        boxes = detector.largest_faces(images)
        seconds += time.perf_counter() - started
        found += sum(box is not None for box in boxes)
        total += len(images)
    return {"detected": found, "images": total, "rate": found / total, "ms_per_image": 1000 * seconds / total}


def alignment_agreement(spec: str, found: dict[str, object], batch_size: int = 32) -> dict[str, float]:
    """Descriptor distances between the MTCNN-box and HOG-box alignments of the same images."""
    import dlib

    space = feature_spaces.get("dlib-face-id")
    extractor = space.load("cpu")
    predictor = space.weight_paths()[1]
    aligners = [FaceAligner(detector, predictor) for detector in found.values()]
    distances = []
    for _, batch in open_source(spec).iter_batches(batch_size):
        images = working_images(batch, space.spec)
        first, second = (aligner.landmarks(images) for aligner in aligners)
        for image, a, b in zip(images, first, second, strict=True):
            if a is None or b is None:
                continue
            chips = [dlib.get_face_chip(image, shape, size=150, padding=0.25) for shape in (a, b)]
            one, two = extractor.descriptors(chips)
            distances.append(float(((one - two) ** 2).sum() ** 0.5))
    values = torch.tensor(distances, dtype=torch.float64)
    return {"pairs": len(distances), "median": float(values.median()), "max": float(values.max())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demo-count", type=int, default=500)
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    data_root = Path(os.environ.get("FDBENCH_TEST_DATA", REPO.parent / "shared" / "data"))
    found = detectors()
    rows = []
    for set_name, spec in image_sets(args.demo_count, data_root).items():
        for detector_name, detector in found.items():
            rows.append({"set": set_name, "detector": detector_name, **measure(spec, detector)})
    print("| images | detector | detected | rate | ms / image |\n|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['set']} | {row['detector']} | {row['detected']} / {row['images']} | "
            f"{row['rate']:.1%} | {row['ms_per_image']:.1f} |"
        )
    agreement = {}
    for set_name, spec in image_sets(args.demo_count, data_root).items():
        agreement[set_name] = alignment_agreement(spec, found)
    print("\n| images | both found | descriptor distance, median | max |\n|---|---|---|---|")
    for set_name, values in agreement.items():
        print(f"| {set_name} | {values['pairs']} | {values['median']:.3f} | {values['max']:.3f} |")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"detection": rows, "alignment": agreement}, indent=1) + "\n")


if __name__ == "__main__":
    main()
