"""`fdbench fid PATH PATH`: a drop-in for `python -m pytorch_fid` (same flags, same number).

pytorch-fid's command line — two positional paths (image folders or `.npz` statistics), `--batch-size`,
`--device`, `--dims` 64/192/768/2048, `--num-workers`, `--save-stats` — and its numbers: the FID
Inception network (`inception-fid`, or the block `--dims` names, `feature_spaces.inception`), its
preprocessing (torch bilinear resize to 299² without antialias, input scaled to [−1, 1]) and its file
selection (the folder's own files with the extensions it globs, lower case, not its sub-folders). The
distance is fdbench's float64 FD (no `scipy.linalg.sqrtm`, so no crash on scipy ≥ 1.18), printed as
pytorch-fid prints it (`FID:  <value>`); everything else goes to stderr.

Where fdbench reads images differently (README, "Coming from pytorch-fid"): an EXIF orientation tag is
applied, an alpha channel is composited on black rather than dropped, 16-bit images are scaled rather
than clipped, and a file that cannot be decoded is skipped and counted instead of ending the run.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from bench.errors import UserError

# pytorch-fid 0.3.0's fid_score.IMAGE_EXTENSIONS: the files of a folder it reads (`folder.glob("*.ext")`).
PYTORCH_FID_EXTENSIONS = ("bmp", "jpg", "jpeg", "pgm", "png", "ppm", "tif", "tiff", "webp")
DIMS = (64, 192, 768, 2048)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `fid` sub-command (pytorch-fid's flags)."""
    parser = subparsers.add_parser(
        "fid",
        help="drop-in for `python -m pytorch_fid`: FID of two folders or statistics files",
        description=(
            "FID as pytorch-fid computes it (same network, preprocessing, file selection and number), "
            "without its scipy.linalg.sqrtm. PATH is an image folder or an .npz statistics file; with "
            "--save-stats the first path's statistics are written to the second (pytorch-fid's mu/sigma "
            "format). Features are cached, so a second call is served from the cache."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--batch-size", type=int, default=50, help="Batch size to use")
    parser.add_argument(
        "--num-workers",
        type=int,
        help="processes decoding images (default: every CPU but one on a GPU, the CPUs torch leaves free "
        "on a CPU)",
    )
    parser.add_argument(
        "--jpeg-decoder",
        choices=["pil", "device"],
        default="pil",
        help="'device': decode plain JPEGs with torchvision's decode_jpeg on the device (nvjpeg on a GPU: "
        "several times PIL's rate; pixels may differ from PIL's by a grey level)",
    )
    parser.add_argument("--device", type=str, default=None, help="Device to use. Like cuda, cuda:0 or cpu")
    parser.add_argument(
        "--dims",
        type=int,
        default=2048,
        choices=list(DIMS),
        help="Dimensionality of Inception features to use",
    )
    parser.add_argument(
        "--save-stats",
        action="store_true",
        help="Generate an npz archive from a directory of samples. The first path is used as input and the "
        "second as output.",
    )
    parser.add_argument(
        "path", type=str, nargs=2, help="Paths to the generated images or to .npz statistic files"
    )
    parser.set_defaults(handler=run)


def pytorch_fid_files(folder: Path) -> tuple[list[str], int]:
    """The file names pytorch-fid reads in `folder` (sorted), and how many other entries it passes over."""
    chosen = sorted({path.name for ext in PYTORCH_FID_EXTENSIONS for path in folder.glob(f"*.{ext}")})
    return chosen, len(os.listdir(folder)) - len(chosen)


def fid_input(text: str) -> object:
    """What pytorch-fid would read at `text`: its files of a folder, else the path for fdbench to resolve."""
    from bench.sources import PathListSource

    path = Path(text)
    if not path.exists():
        raise FileNotFoundError(f"Invalid path: {text}")
    if path.is_dir():
        names, passed_over = pytorch_fid_files(path)
        if passed_over:
            print(
                f"note: {text}: {passed_over} other entries not read (sub-folders, upper-case or other "
                "extensions), as in pytorch-fid; `fdbench fd` reads folders recursively",
                file=sys.stderr,
            )
        return PathListSource(names, base=path)
    return text


def run(args: argparse.Namespace) -> int:
    """FID of the two paths (or their statistics saved), printed as pytorch-fid prints it."""
    from bench import api
    from feature_spaces.inception import pytorch_fid_space

    space = pytorch_fid_space(args.dims)
    first, second = args.path
    if args.save_stats:
        if os.path.exists(second):
            raise UserError(f"Existing output file: {second}")
        result = api.stats(
            fid_input(first),
            space,
            batch_size=args.batch_size,
            device=args.device,
            workers=args.num_workers,
            jpeg_decoder=args.jpeg_decoder,
            progress=True,
        )
        written = result.save(second, format="pytorch-fid")
        print(
            f"Saving statistics for {first}: n = {result.n}, d = {result.stats.dim} -> {written}",
            file=sys.stderr,
        )
        _print_notes(result.input.notes())
        return 0
    result = api.fd(
        fid_input(first),
        fid_input(second),
        space,
        batch_size=args.batch_size,
        device=args.device,
        workers=args.num_workers,
        jpeg_decoder=args.jpeg_decoder,
        progress=True,
    )
    distance = result.distance(space)
    sizes = f"n = {distance.fd.n1} and {distance.fd.n2}, d = {distance.fd.d}, space {space}"
    cached = [s.label for s in (result.a, result.b) if s.served_from_cache]
    if cached:
        sizes += f"; {' and '.join(cached)} served from cache"
    print(sizes, file=sys.stderr)
    _print_notes(result.notes)
    print("FID: ", distance.fd.value)
    return 0


def _print_notes(notes: list[str]) -> None:
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
