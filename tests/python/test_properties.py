"""Property tests (hypothesis): lowbit.quantize and lowbit.gemm on formats, modes, values and shapes
that hypothesis draws, against the exact reference of oracle.py, whose formats are built here from
their definitions (exponent and mantissa widths, bias, subnormals, special values), never from
lowbit's own description of them.

Derandomized, with no example database: the same examples on every run, and nothing written to
the working directory.
"""
from fractions import Fraction
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import lowbit
import oracle

settings.register_profile("lowbit", derandomize=True, database=None, deadline=None, max_examples=300,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.load_profile("lowbit")
# A value rounded up past float32's largest is infinity in float32, as in lowbit's result.
pytestmark = pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")

DETERMINISTIC = oracle.MODES
FLOAT32_MAX = Fraction(float(np.finfo(np.float32).max))


class Spec:
    """A binary format as a format text's options define it: E exponent bits, M mantissa bits,
    the bias, subnormals on or off, and which codes are special:
      ieee: the top exponent field holds infinities and NaN (largest (2 - 2^-M) 2^(2^E - 2 - bias))
      fn:   only the top code is NaN (largest (2 - 2^(1-M)) 2^(2^E - 1 - bias))
      none: every code a number (largest (2 - 2^-M) 2^(2^E - 1 - bias))
      fnuz: as none, with no negative zero (its code is the NaN)."""

    def __init__(self, e, m, bias, subnormals, specials):
        self.e, self.m, self.bias, self.subnormals, self.specials = e, m, bias, subnormals, specials
        top = 2**e - 1 - bias
        if specials == "ieee":
            largest = (2 - Fraction(1, 2**m)) * Fraction(2) ** (top - 1)
        elif specials == "fn":
            largest = (2 - Fraction(2, 2**m)) * Fraction(2) ** top
        else:
            largest = (2 - Fraction(1, 2**m)) * Fraction(2) ** top
        self.fmt = oracle.Fmt(m, 1 - bias, largest, subnormals)
        self.emin, self.emax = 1 - bias, math.floor(math.log2(largest))

    def text(self):
        return (f"m{self.m}e{self.e},bias={self.bias},subnormals={'on' if self.subnormals else 'off'},"
                f"specials={self.specials}")

    def __repr__(self):
        return self.text()


@st.composite
def formats(draw, e_range=(2, 8), m_range=(1, 12)):
    e = draw(st.integers(*e_range))
    m = draw(st.integers(*m_range))
    default_bias = 2 ** (e - 1) - 1
    # biases around the usual one, keeping every value inside float32's normal range
    bias = default_bias if e >= 7 else default_bias + draw(st.integers(-2, 3))
    specials = draw(st.sampled_from(["ieee", "fn", "none", "fnuz"]))
    return Spec(e, m, bias, draw(st.booleans()), specials)


@st.composite
def values_for(draw, spec, count=(1, 40)):
    """float32 values: anything finite, and values on and between the format's grid points
    (ties and quarter points), around its subnormal, normal and overflow edges."""
    def near_grid():
        e = draw(st.integers(spec.emin - spec.m - 3, spec.emax + 2))
        k = draw(st.integers(2**spec.m, 2 ** (spec.m + 1) - 1))
        f = draw(st.sampled_from([Fraction(0), Fraction(1, 4), Fraction(1, 2), Fraction(3, 4), Fraction(1, 8)]))
        v = float(min((k + f) * Fraction(2) ** (e - spec.m), FLOAT32_MAX))
        return -v if draw(st.booleans()) else v
    n = draw(st.integers(*count))
    out = []
    for _ in range(n):
        if draw(st.booleans()):
            out.append(draw(st.floats(width=32, allow_nan=False, allow_infinity=False)))
        else:
            out.append(near_grid())
    return np.array(out, dtype=np.float32)


def expected_quantize(x, spec, mode):
    r = [oracle.round_float(float(v), spec.fmt, mode) for v in x]
    if spec.specials == "fnuz":  # no negative zero: a zero result is +0
        r = [0.0 if v == 0 else v for v in r]
    return np.array(r, dtype=np.float32)


def same_bits(a, b):
    return np.array_equal(np.asarray(a, np.float32).view(np.uint32), np.asarray(b, np.float32).view(np.uint32))


@given(st.data(), formats(), st.sampled_from(DETERMINISTIC))
def test_quantize_saturating_equals_the_exact_rounding(data, spec, mode):
    x = data.draw(values_for(spec))
    y = lowbit.quantize(x, spec.text(), rounding=mode, overflow="saturate")
    assert same_bits(y, expected_quantize(x, spec, mode)), (spec, mode, x, y)


def ieee_overflow(v, spec, mode):
    """IEEE 754 7.4: rounded as if the exponent range were unbounded; beyond the largest finite
    value the nearest modes give infinity, the directed ones infinity or the largest finite value
    by their direction."""
    big = oracle.Fmt(spec.m, spec.emin, Fraction(2) ** 4096, spec.subnormals)
    r = oracle.round_fraction(Fraction(float(v)), big, mode)
    if abs(r) <= spec.fmt.max:
        return oracle.round_float(float(v), spec.fmt, mode)
    positive = r > 0
    to_infinity = {"nearest_even": True, "nearest_away": True, "toward_zero": False,
                   "toward_positive": positive, "toward_negative": not positive}[mode]
    magnitude = math.inf if to_infinity else float(spec.fmt.max)
    return magnitude if positive else -magnitude


@given(st.data(), formats(e_range=(3, 8)), st.sampled_from([m for m in DETERMINISTIC if m != "odd"]))
def test_quantize_overflow_to_infinity_follows_ieee_754(data, spec, mode):
    spec = Spec(spec.e, spec.m, spec.bias, spec.subnormals, "ieee")
    x = data.draw(values_for(spec))
    y = lowbit.quantize(x, spec.text(), rounding=mode, overflow="infinity")
    expected = np.array([ieee_overflow(v, spec, mode) for v in x], dtype=np.float32)
    assert same_bits(y, expected), (spec, mode, x, y)


@given(st.data(), formats(), st.sampled_from(DETERMINISTIC))
def test_quantize_is_monotone_and_idempotent(data, spec, mode):
    x = np.sort(data.draw(values_for(spec, count=(2, 40))))
    y = lowbit.quantize(x, spec.text(), rounding=mode, overflow="saturate")
    assert np.all(y[1:] >= y[:-1]), (spec, mode, x, y)
    assert same_bits(lowbit.quantize(y, spec.text(), rounding=mode, overflow="saturate"), y)


@given(st.data(), formats(), st.integers(0, 2**32 - 1))
def test_stochastic_rounding_lands_on_a_neighbour_and_repeats_with_its_seed(data, spec, seed):
    x = data.draw(values_for(spec))
    y = lowbit.quantize(x, spec.text(), rounding="stochastic", overflow="saturate", seed=seed)
    down = expected_quantize(x, spec, "toward_negative")
    up = expected_quantize(x, spec, "toward_positive")
    assert np.all((y == down) | (y == up)), (spec, x, y)
    assert same_bits(lowbit.quantize(x, spec.text(), rounding="stochastic", overflow="saturate", seed=seed), y)


@given(formats(), st.sampled_from(DETERMINISTIC))
def test_nan_stays_nan(spec, mode):
    y = lowbit.quantize(np.array([np.nan, -np.nan], dtype=np.float32), spec.text(), rounding=mode,
                        overflow="saturate")
    assert np.all(np.isnan(y))


def quantizer_text(spec, mode):
    return f"{spec.text()}:{mode}:saturate"


@st.composite
def gemm_cases(draw):
    inputs = draw(formats(e_range=(3, 5), m_range=(1, 4)))
    accumulator = draw(formats(e_range=(4, 7), m_range=(2, 12)))
    acc_mode = draw(st.sampled_from(DETERMINISTIC))
    product = draw(st.one_of(st.none(), formats(e_range=(4, 7), m_range=(2, 10))))
    prod_mode = draw(st.sampled_from(DETERMINISTIC))
    chunk = draw(st.sampled_from([0, 1, 2, 3, 4, 8, 16]))
    chunk_acc = draw(st.one_of(st.none(), formats(e_range=(5, 7), m_range=(4, 12)))) if chunk else None
    chunk_mode = draw(st.sampled_from(DETERMINISTIC))
    m, k, n = draw(st.integers(1, 4)), draw(st.integers(1, 40)), draw(st.integers(1, 4))
    scale = 2.0 ** draw(st.integers(-6, 4))
    seed = draw(st.integers(0, 2**31))
    rng = np.random.default_rng(seed)
    a = (rng.standard_normal((m, k)) * scale).astype(np.float32)
    b = (rng.standard_normal((k, n)) * scale).astype(np.float32)
    text = f"input_a={quantizer_text(inputs, 'nearest_even')} input_b={quantizer_text(inputs, 'nearest_even')}"
    if product is not None:
        text += f" product={quantizer_text(product, prod_mode)}"
    text += f" accumulator={quantizer_text(accumulator, acc_mode)} chunk={chunk}"
    if chunk_acc is not None:
        text += f" chunk_accumulator={quantizer_text(chunk_acc, chunk_mode)}"
    q = lambda s, mode: None if s is None else (s.fmt, mode)
    return text, a, b, (q(inputs, "nearest_even"), q(product, prod_mode), q(accumulator, acc_mode), chunk,
                        q(chunk_acc, chunk_mode))


@settings(max_examples=200)
@given(gemm_cases())
def test_gemm_equals_the_sequential_reference_on_drawn_specs(case):
    text, a, b, (q_in, q_prod, q_acc, chunk, q_chunk) = case
    c = lowbit.gemm(a, b, text)
    for i in range(a.shape[0]):
        for j in range(b.shape[1]):
            expected = oracle.sequential_dot(a[i, :], b[:, j], q_in, q_prod, q_acc, chunk, q_chunk)
            assert Fraction(float(c[i, j])) == expected, (text, i, j, float(c[i, j]), float(expected))
