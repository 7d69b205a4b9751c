"""lowbit.quantize_blocks against the OCP MX v1.0 and NVFP4 recipes written out with fractions
(oracle.py), the axis, and bad input."""
from fractions import Fraction

import numpy as np
import pytest

import lowbit
import oracle


def data(shape, seed):
    rng = np.random.default_rng(seed)
    # lines of very different magnitudes, and a few outliers per line
    x = rng.standard_normal(shape) * np.exp2(rng.integers(-20, 20, size=(shape[0], 1)))
    x[:, ::13] *= 40
    return x.astype(np.float32)


@pytest.mark.parametrize("name", sorted(oracle.MX_ELEMENTS) + ["mxint8"])
def test_mx_formats_equal_the_ocp_recipe(name):
    x = data((4, 70), 1)  # 70 = two blocks of 32 and a short one of 6
    # blocks whose amax is just below a power of two: for MXINT8 x / X rounds to -128 / 64 (the -2
    # code) or, positive, saturates to 127 / 64
    x[0, 0], x[2, 0] = -1.999 * 2.0**3, 1.999 * 2.0**3
    x[0, 1:32] /= np.abs(x[0, 1:32]).max()
    x[2, 1:32] /= np.abs(x[2, 1:32]).max()
    x[1, 32:64] = 0.0  # an all-zero block
    y = lowbit.quantize_blocks(x, name)
    for r in range(x.shape[0]):
        expected = []
        for start in range(0, x.shape[1], 32):
            expected += oracle.mx_block(x[r, start:start + 32], name)
        assert [Fraction(float(v)) for v in y[r]] == expected, r


def test_mx_along_axis_0_cuts_columns():
    x = data((4, 70), 2)
    np.testing.assert_array_equal(lowbit.quantize_blocks(x.T.copy(), "mxfp4", axis=0),
                                  lowbit.quantize_blocks(x, "mxfp4").T)


def test_nvfp4_equals_its_recipe_per_line():
    x = data((1, 80), 3)
    y = lowbit.quantize_blocks(x[0], "nvfp4")  # one line: the fp32 scale is the line's (the whole x)
    assert [Fraction(float(v)) for v in y] == oracle.nvfp4(x[0])


def test_vsquant_vectors_are_4_bit_integers_times_one_scale():
    x = data((3, 64), 4)
    y = lowbit.quantize_blocks(x, "vsquant:4:6:16")
    for r in range(3):
        for start in range(0, 64, 16):
            block, q = x[r, start:start + 16], y[r, start:start + 16]
            # narrow-range 4-bit integers (-7..7) times one positive scale: at most 8 magnitudes,
            # each k * step with k <= 7, and no sign flipped
            magnitudes = sorted(set(np.abs(q).tolist()) - {0.0})
            assert len(magnitudes) <= 7
            def integers_of(step):
                return all(abs(m / step - round(m / step)) < 1e-5 and round(m / step) <= 7 for m in magnitudes)
            assert any(integers_of(magnitudes[0] / j) for j in range(1, 8))  # the smallest is j steps
            assert np.all((q == 0) | (np.sign(q) == np.sign(block)))


def test_vsquant_with_one_vector_per_line_is_per_channel_scaling():
    # V = 0: one vector per row, 1-bit vector scales: each row's scale is float32(amax / 7), the
    # exact quotients round half to even (0.05f / 0.1f is exactly 0.5 -> 0) and clip to +-7 steps.
    # (The quotients in float64: in float32, -0.35f / 0.1f = -3.49999994 rounds to the tie -3.5.)
    x = np.array([[3.5, -1.2, 0.26, 0.0], [0.7, 0.05, -0.35, 0.0]], np.float32)
    y = lowbit.quantize_blocks(x, "vsquant:4:1:0")
    s = (np.abs(x).max(axis=1, keepdims=True).astype(np.float64) / 7).astype(np.float32)
    codes = np.clip(np.round(x.astype(np.float64) / s.astype(np.float64)), -7, 7)
    assert np.array_equal(y, (codes * s).astype(np.float32))
    assert np.array_equal(np.round(y[1] / s[1]), [7, 0, -3, 0])


def test_bad_formats_and_input_raise():
    with pytest.raises(ValueError, match="not a block format"):
        lowbit.quantize_blocks(np.ones((2, 4), np.float32), "mxfp3")
    with pytest.raises(ValueError):
        lowbit.quantize_blocks(np.ones((2, 4), np.float32), "vsquant:1:6:16")
    with pytest.raises(TypeError, match="float32 or float64"):
        lowbit.quantize_blocks(np.ones((2, 4), np.int32), "mxfp4")
