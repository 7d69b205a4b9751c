"""lowbit.quantize against an exact reference (oracle.py), the seeds of stochastic rounding, torch
tensors and bad input."""
import math

import numpy as np
import pytest

import lowbit
import oracle


def bits(a):
    return np.asarray(a, dtype=np.float32).view(np.uint32)


def every_fp16_value():
    """All 2^16 binary16 codes as float32 (NaN and infinities removed)."""
    v = np.arange(1 << 16, dtype=np.uint16).view(np.float16).astype(np.float32)
    return v[np.isfinite(v)]


@pytest.mark.parametrize("mode", oracle.MODES)
def test_e4m3_every_fp16_input(mode):
    x = every_fp16_value()
    y = lowbit.quantize(x, "float8_e4m3fn", rounding=mode, overflow="saturate")
    expected = np.array([oracle.round_float(float(v), oracle.E4M3, mode) for v in x], dtype=np.float32)
    assert y.dtype == np.float32 and y.shape == x.shape
    np.testing.assert_array_equal(bits(y), bits(expected))


@pytest.mark.parametrize("name,fmt", [("bfloat16", oracle.BF16), ("float16", oracle.FP16), ("e5m2", oracle.E5M2),
                                      ("float8_e4m3fn", oracle.E4M3),
                                      ("m7e4,bias=10,subnormals=off,specials=none", oracle.M7E4_ACC)])
@pytest.mark.parametrize("mode", oracle.MODES)
def test_random_floats_and_exponent_edges(name, fmt, mode):
    rng = np.random.default_rng(7)
    # random magnitudes over the format's range and beyond, and values next to each power of two
    x = (rng.standard_normal(3000) * np.exp2(rng.uniform(-30, 20, 3000))).astype(np.float32)
    powers = np.exp2(np.arange(-149, 128, dtype=np.float32))  # every float32 exponent, subnormals included
    edges = np.concatenate([powers, np.nextafter(powers, 0), np.nextafter(powers, np.float32(np.inf))])
    x = np.concatenate([x, edges, -edges, [0.0, -0.0]]).astype(np.float32)
    y = lowbit.quantize(x, name, rounding=mode, overflow="saturate")
    expected = np.array([oracle.round_float(float(v), fmt, mode) for v in x], dtype=np.float32)
    np.testing.assert_array_equal(bits(y), bits(expected))


def test_float64_arrays_round_in_double():
    x = np.array([1 + 2.0**-40, 1.0625, -3.75, 1e-9], dtype=np.float64)
    y = lowbit.quantize(x, "e4m3", overflow="saturate")
    assert y.dtype == np.float64
    assert list(y) == [oracle.round_float(float(v), oracle.E4M3, "nearest_even") for v in x]


def test_stochastic_rounding_is_reproducible_and_keyed_by_element():
    x = np.full(4096, 1.09375, dtype=np.float32)  # between 1.0 and 1.125 on e4m3's grid
    a = lowbit.quantize(x, "e4m3", rounding="stochastic", seed=3)
    b = lowbit.quantize(x, "e4m3", rounding="stochastic", seed=3)
    c = lowbit.quantize(x, "e4m3", rounding="stochastic", seed=4)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert set(np.unique(a)) == {np.float32(1.0), np.float32(1.125)}
    # 1.09375 is 3/4 of the way from 1 to 1.125: about 3/4 round up (4096 draws: sd 0.7%)
    assert abs(np.mean(a == 1.125) - 0.75) < 0.04
    # element e draws the random bits of index e: the same value at the same index rounds alike
    y = x.copy()
    y[::2] = 5.0
    d = lowbit.quantize(y, "e4m3", rounding="stochastic", seed=3)
    np.testing.assert_array_equal(d[1::2], a[1::2])


def test_quantize_leaves_its_input_and_quantize_underscore_rounds_in_place():
    x = np.array([0.3, 1000.0], dtype=np.float32)
    y = lowbit.quantize(x, lowbit.float8_e4m3fn, overflow="saturate")
    assert list(x) == [np.float32(0.3), 1000.0] and list(y) == [0.3125, 448.0]
    assert lowbit.quantize_(x, "e4m3:saturate") is x
    assert list(x) == [0.3125, 448.0]


def test_integer_quantizers():
    x = np.array([0.1, 3.3, -5.0, 100.0], dtype=np.float32)
    y = lowbit.quantize(x, "int8:frac=5:saturate")  # steps of 1/32, range [-4, 127/32]: 3.2, 105.6, -160, 3200 steps
    assert list(y) == [np.float32(3 / 32), np.float32(106 / 32), -4.0, np.float32(127 / 32)]


def test_torch_tensors_in_and_out():
    torch = pytest.importorskip("torch")
    t = torch.linspace(-3, 3, 101)
    y = lowbit.quantize(t, "bfloat16")
    assert isinstance(y, torch.Tensor) and y.dtype == torch.float32
    np.testing.assert_array_equal(y.numpy(), t.to(torch.bfloat16).to(torch.float32).numpy())  # torch's own bf16
    g = torch.ones(5, requires_grad=True)
    assert isinstance(lowbit.quantize(g * 0.3, "e4m3"), torch.Tensor)


@pytest.mark.parametrize("call,error,message", [
    (lambda: lowbit.quantize(np.zeros(3, np.float32), "e99m3"), ValueError, "exp_bits = 99"),
    (lambda: lowbit.quantize(np.zeros(3, np.float32), "e4m3", rounding="sideways"), ValueError, "sideways"),
    (lambda: lowbit.quantize(np.zeros(3, np.float32), "e4m3:toward_zero", rounding="nearest_even"), ValueError, ""),
    (lambda: lowbit.quantize(np.zeros(3, np.int32), "e4m3"), TypeError, "float32 or float64"),
    (lambda: lowbit.quantize([1.0, 2.0], "e4m3"), TypeError, "NumPy array"),
    (lambda: lowbit.quantize_(np.zeros((4, 4), np.float32)[:, 1], "e4m3"), ValueError, "C-contiguous"),
])
def test_bad_input_raises_with_a_message(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_out_receives_the_result_without_allocation():
    x = np.linspace(-2, 2, 17, dtype=np.float32)
    y = np.empty_like(x)
    assert lowbit.quantize(x, "e4m3", out=y) is y
    np.testing.assert_array_equal(y, lowbit.quantize(x, "e4m3"))
    with pytest.raises(ValueError, match="out must be a writeable array of x's dtype and size"):
        lowbit.quantize(x, "e4m3", out=np.empty(16, np.float32))
