"""CPU micro-batches: the slice size follows the largest activation, slicing never changes the result
beyond float rounding, and batches on other devices are never split."""

from __future__ import annotations

import torch
from torch import nn

import feature_spaces as fs
from bench.microbatch import MicroBatcher, forward_recording_largest


def widening_net() -> nn.Module:
    """3 → 16 → 4 channels at 20²: the largest output is the first conv's, 16·20·20 float64 per image."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 4, 3, padding=1)).double()


def test_largest_output_is_the_widest_activation() -> None:
    net = widening_net()
    x = torch.randn(2, 3, 20, 20, dtype=torch.float64)
    output, largest = forward_recording_largest(net, net, x)
    assert largest == 2 * 16 * 20 * 20 * 8  # the Sequential's own output is smaller
    torch.testing.assert_close(output, net(x), rtol=0, atol=0)


def test_slices_fit_the_budget_and_give_the_whole_batch_result() -> None:
    net = widening_net()
    per_image = 16 * 20 * 20 * 8
    batcher = MicroBatcher(net, "cpu", budget=3 * per_image + 1)
    x = torch.randn(10, 3, 20, 20, dtype=torch.float64)
    sizes: list[int] = []

    def run(batch: torch.Tensor) -> torch.Tensor:
        sizes.append(batch.shape[0])
        return net(batch)

    with torch.no_grad():
        sliced, whole = batcher(run, x), net(x)
        assert sizes == [1, 3, 3, 3]  # the probe is the first image's result; the other 9 go in slices of 3
        again = batcher(run, x)
    assert sizes[4:] == [3, 3, 3, 1]  # the shape is known now: no probe
    torch.testing.assert_close(sliced, whole, rtol=1e-13, atol=1e-13)
    torch.testing.assert_close(again, whole, rtol=1e-13, atol=1e-13)


def test_batches_off_the_cpu_are_never_split() -> None:
    batcher = MicroBatcher(widening_net(), "cuda", budget=1)
    sizes: list[int] = []

    def run(batch: torch.Tensor) -> torch.Tensor:
        sizes.append(batch.shape[0])
        return batch

    batcher(run, torch.zeros(32, 3, 20, 20))
    assert sizes == [32]


def test_sliced_augnet_equals_one_batch() -> None:
    extractor = fs.get("augnet-r50").load("cpu")
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (3, 3, 48, 48), generator=generator, dtype=torch.uint8)
    budget = extractor.micro_batches.budget
    try:
        extractor.micro_batches.budget = 1  # one image per slice
        sliced = extractor(images).double()
        extractor.micro_batches.budget = 10**12
        whole = extractor(images).double()
    finally:
        extractor.micro_batches.budget = budget
    assert float((sliced - whole).norm() / whole.norm()) < 1e-5
