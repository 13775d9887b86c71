"""`fdbench masks SRC OUT`: face-region label maps for an image source, plus colour-overlay previews.

Label maps come from the BiSeNet parser (default), from existing CelebAMask-HQ label-map files
(`--labels-from DIR`, matched by basename and scaled with nearest-neighbour), or from CelebAMask-HQ's
per-class annotation files (`--annotations DIR`, `{id:05d}_{class}.png`). They are written as
single-channel PNGs in the CelebAMask-HQ numbering, mirroring the source's ids, with a `masks.json`
that records the convention, the source's manifest hash and what was skipped.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path, PurePosixPath


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `masks` sub-command."""
    parser = subparsers.add_parser(
        "masks",
        help="write face-region label maps (and colour previews) for an image source",
        description=__doc__,
    )
    parser.add_argument("source", help="image folder, .zip, .npz, or e.g. dcgan-faces:count=64,seed=0")
    parser.add_argument("out", type=Path, help="output folder (labels/, preview/, masks.json)")
    parser.add_argument(
        "--labels-from",
        type=Path,
        default=None,
        help="folder of CelebAMask-HQ label maps (same basename as each image) instead of the parser",
    )
    parser.add_argument(
        "--annotations",
        type=Path,
        default=None,
        help="CelebAMask-HQ-mask-anno folder ({id:05d}_{class}.png files); image names must be the ids",
    )
    parser.add_argument("--device", default=None, help="parser device (default: CUDA if present, else CPU)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--weights", type=Path, default=None, help="path to 79999_iter.pth")
    parser.add_argument("--no-preview", action="store_true", help="skip the colour-overlay previews")
    parser.add_argument("--strict", action="store_true", help="stop at the first unreadable image")
    parser.set_defaults(handler=run_masks)


def label_file_name(image_id: str) -> PurePosixPath:
    """Relative output path for an image id: same folders, `.png` instead of the image suffix."""
    relative = PurePosixPath(image_id)
    if relative.is_absolute() or ".." in relative.parts:
        raise ValueError(f"refusing to write outside the output folder for id {image_id!r}")
    return relative.with_suffix(".png") if relative.suffix else relative.with_name(relative.name + ".png")


def run_masks(args: argparse.Namespace) -> int:
    """Handler: one pass over the source, label maps and previews out."""
    import numpy as np
    from PIL import Image

    from bench.decode import DecodeError
    from bench.errors import UserError
    from bench.masks import (
        BISENET,
        CELEBAMASK_HQ,
        colour_overlay,
        convert_labels,
    )
    from bench.sources import open_source

    if args.batch_size < 1:
        raise UserError(f"--batch-size must be at least 1, got {args.batch_size}")
    if args.labels_from is not None and args.annotations is not None:
        raise UserError("give either --labels-from or --annotations, not both")
    for option, folder in (("--labels-from", args.labels_from), ("--annotations", args.annotations)):
        if folder is not None and not folder.is_dir():
            raise UserError(f"{option} folder not found: {folder}")
    source = open_source(args.source, strict=args.strict)
    parser = None
    if args.labels_from is None and args.annotations is None:
        from bench.face_parser import FaceParser

        parser = FaceParser(weights=args.weights, device=args.device)
    labels_dir, preview_dir = args.out / "labels", args.out / "preview"
    missing_labels: list[str] = []
    written = 0
    try:
        for ids, batch in source.iter_batches(args.batch_size):
            if parser is not None:
                maps = convert_labels(parser.parse(batch).cpu().numpy(), BISENET, CELEBAMASK_HQ)
            else:
                size = tuple(batch.shape[2:])
                maps = [read_file_labels(args, image_id, size) for image_id in ids]
                missing_labels.extend(
                    image_id for image_id, found in zip(ids, maps, strict=True) if found is None
                )
            images = batch.permute(0, 2, 3, 1).cpu().numpy()
            for image_id, image, label_map in zip(ids, images, maps, strict=True):
                if label_map is None:
                    continue
                name = label_file_name(image_id)
                target = labels_dir / name
                target.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(np.asarray(label_map, dtype=np.uint8), "L").save(target)
                if not args.no_preview:
                    preview = preview_dir / name.with_suffix(".jpg")
                    preview.parent.mkdir(parents=True, exist_ok=True)
                    Image.fromarray(colour_overlay(image, label_map, CELEBAMASK_HQ)).save(preview, quality=90)
                written += 1
    except DecodeError as error:
        raise UserError(f"unreadable image (--strict): {error}") from error
    report = {
        "convention": CELEBAMASK_HQ.name,
        "class_names": list(CELEBAMASK_HQ.names),
        "labels_from": str(args.labels_from or args.annotations or "bisenet-79999_iter"),
        "source": str(args.source),
        "source_manifest_hash": source.manifest_hash(),
        "written": written,
        "missing_label_files": missing_labels,
        "decode": source.decode_log.summary(),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "masks.json").write_text(json.dumps(report, indent=2) + "\n")
    skipped = len(source.decode_log.skipped)
    print(
        f"wrote {written} label maps to {labels_dir}"
        + (f", previews to {preview_dir}" if not args.no_preview else "")
        + f"; {skipped} files skipped, {len(missing_labels)} without a label file (see masks.json)"
    )
    return 0


def read_file_labels(args: argparse.Namespace, image_id: str, size: tuple[int, int]):
    """CelebAMask-HQ labels for one image from --labels-from or --annotations, or None when absent."""
    from bench.masks import find_label_map, read_annotation_layout, read_label_map

    if args.labels_from is not None:
        found = find_label_map(image_id, args.labels_from)
        return None if found is None else read_label_map(found, size=size).labels
    stem = PurePosixPath(image_id).stem
    if not stem.isdigit():
        return None
    try:
        return read_annotation_layout(args.annotations, int(stem), size=size).labels
    except FileNotFoundError:
        return None
