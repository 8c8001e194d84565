"""genbench.core.rng.seeded_rng: the same draws for the same seed, the caller's RNG untouched."""

import torch

from genbench.core.rng import seeded_rng


def test_a_seeded_block_draws_the_same_and_leaves_the_callers_rng_as_it_was():
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    with seeded_rng(7):
        first = torch.randn(4)
    with seeded_rng(7, "cpu"):
        second = torch.randn(4)
    with seeded_rng(8):
        other = torch.randn(4)
    assert torch.equal(first, second) and not torch.equal(first, other)
    assert torch.equal(torch.rand(3), expected_next)  # as if the blocks had never run


def test_the_callers_rng_is_restored_when_the_block_raises():
    torch.manual_seed(5)
    expected_next = torch.rand(2)
    torch.manual_seed(5)
    try:
        with seeded_rng(1):
            torch.rand(10)
            raise RuntimeError("inside")
    except RuntimeError:
        pass
    assert torch.equal(torch.rand(2), expected_next)
