"""The kernel-width rule on synthetic timings (the measurement itself is timed on the target)."""

from compressor.measure.kernel_widths import favoured_multiple, realised_savings


def _times(penalty_unless_multiple_of: int) -> dict[int, float]:
    # Linear work plus a 2x penalty for widths off the favoured multiple.
    return {
        w: w * (1.0 if w % penalty_unless_multiple_of == 0 else 2.0)
        for w in (17, 20, 24, 28, 31, 32, 36, 40, 44, 47, 48, 56, 60, 63, 64)
    }


def test_linear_kernels_favour_any_width():
    realised = realised_savings(_times(1))
    assert all(abs(v - 1.0) < 1e-9 for v in realised.values())
    assert favoured_multiple(realised) == 1


def test_kernels_that_punish_misaligned_widths_favour_their_multiple():
    assert favoured_multiple(realised_savings(_times(8))) == 8
    assert favoured_multiple(realised_savings(_times(16))) == 16
    # 24 = 1.5 x 16 at the 2x penalty: no faster than 32, so no saving at all
    assert realised_savings(_times(16))[24] < 0
