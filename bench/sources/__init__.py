"""Image sources: where the uint8 RGB batches come from (DESIGN "ImageSource").

`open_source(spec)` turns anything a user holds into a source (a folder, zip, tar, `.npz`/`.npy` array,
`@list.txt`, list of paths, generator spec such as `dcgan-faces:count=500,seed=0`, or an in-memory
tensor); `resolve_input(spec)` also accepts saved statistics and returns them as `GaussianStats`.
"""

from __future__ import annotations

from bench.sources.archives import TarSource, ZipSource, is_safe_member_name
from bench.sources.arrays import NpySource, NpzSource, TensorSource
from bench.sources.base import ImageSource, stack_images
from bench.sources.files import FolderSource, PathListSource
from bench.sources.generator import (
    CHUNK,
    DCGANFacesSource,
    DCGANGenerator,
    GeneratorSource,
    find_dcgan_weights,
    load_dcgan_generator,
    to_uint8,
)
from bench.sources.names import display_path, printable_name
from bench.sources.resolve import open_source, parse_generator_spec, resolve_input

__all__ = [
    "CHUNK",
    "DCGANFacesSource",
    "DCGANGenerator",
    "FolderSource",
    "GeneratorSource",
    "ImageSource",
    "NpySource",
    "NpzSource",
    "PathListSource",
    "TarSource",
    "TensorSource",
    "ZipSource",
    "display_path",
    "find_dcgan_weights",
    "is_safe_member_name",
    "load_dcgan_generator",
    "open_source",
    "parse_generator_spec",
    "printable_name",
    "resolve_input",
    "stack_images",
    "to_uint8",
]
