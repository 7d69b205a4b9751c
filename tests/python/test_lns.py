"""lowbit.lns_quantize against exact integer comparisons: k = round or floor of gamma log2|x| is
decided by comparing |x|^(2 gamma) or |x|^gamma with powers of two (fractions), and the float
result must be the correctly rounded 2^(k / gamma): (r - ulp/2)^gamma <= 2^k <= (r + ulp/2)^gamma."""
from fractions import Fraction
import math

import numpy as np
import pytest

import lowbit


def exact_k(x, gamma, mode):
    m = abs(Fraction(float(x)))
    k = math.floor(gamma * math.log2(m))  # a guess, then made exact
    if mode == "toward_zero":  # the largest k with 2^k <= m^gamma
        while m ** gamma < Fraction(2) ** k:
            k -= 1
        while m ** gamma >= Fraction(2) ** (k + 1):
            k += 1
        return k
    # nearest_log: 2^(2k - 1) < m^(2 gamma) < 2^(2k + 1) (never equal: the midpoints are irrational)
    k = round(gamma * math.log2(m))
    while m ** (2 * gamma) < Fraction(2) ** (2 * k - 1):
        k -= 1
    while m ** (2 * gamma) > Fraction(2) ** (2 * k + 1):
        k += 1
    return k


def correctly_rounded(r, k, gamma):
    """r (a float32 > 0) is 2^(k / gamma) rounded to nearest."""
    r = Fraction(float(r))
    half_ulp = Fraction(2) ** (math.frexp(float(r))[1] - 1 - 24)
    return (r - half_ulp) ** gamma <= Fraction(2) ** k <= (r + half_ulp) ** gamma


@pytest.mark.parametrize("fmt,gamma,k_max", [("lns8", 8, 63), ("lns:9:5", 32, 255)])
@pytest.mark.parametrize("mode", ["nearest_log", "toward_zero"])
def test_lns_quantize_equals_the_exact_decisions(fmt, gamma, k_max, mode):
    rng = np.random.default_rng(3)
    x = (rng.standard_normal(400) * np.exp2(rng.uniform(-12, 12, 400))).astype(np.float32)
    y = lowbit.lns_quantize(x, fmt, rounding=mode)
    for v, r in zip(x, y):
        k = exact_k(v, gamma, mode)
        if k < -k_max:
            assert r == 0, (v, r)
            continue
        k = min(k, k_max)
        assert math.copysign(1, r) == math.copysign(1, v)
        assert correctly_rounded(abs(r), k, gamma), (v, r, k)


def test_stochastic_log_is_reproducible_and_between_the_neighbours():
    x = np.full(2000, 0.3, dtype=np.float32)
    a = lowbit.lns_quantize(x, "lns8", rounding="stochastic_log", seed=5)
    np.testing.assert_array_equal(a, lowbit.lns_quantize(x, "lns8", rounding="stochastic_log", seed=5))
    lower = lowbit.lns_quantize(np.float32([0.3]), "lns8", rounding="toward_zero")[0]
    upper = lowbit.lns_quantize(np.float32([lower * 1.1]), "lns8", rounding="toward_zero")[0]  # 2^(1/8) < 1.1 < 2^(2/8)
    assert set(a.tolist()) == {float(lower), float(upper)}


def test_bad_formats_and_modes_raise():
    with pytest.raises(ValueError, match="not an LNS format"):
        lowbit.lns_quantize(np.ones(2, np.float32), "lns7")
    with pytest.raises(ValueError, match="rounding 'odd'"):
        lowbit.lns_quantize(np.ones(2, np.float32), "lns8", rounding="odd")
    with pytest.raises(ValueError, match="underflow"):
        lowbit.lns_quantize(np.ones(2, np.float32), "lns8", underflow="nan")
