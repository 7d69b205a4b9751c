"""lowbit.lns_quantize against exact decisions: k = round or floor of gamma log2|x| is decided by
comparing |x|^(2 gamma) or |x|^gamma with powers of two (fractions); nearest_linear compares |x|
with the arithmetic midpoint 2^(k/gamma) (1 + 2^(1/gamma)) / 2 to 80 decimal digits (an irrational
number for gamma >= 2, whose distance to any float is far larger than 10^-80 times it; for
gamma = 1 the midpoint 1.5 * 2^k is a tie, to the even k). The float result must be the correctly
rounded 2^(k / gamma): (r - ulp/2)^gamma <= 2^k <= (r + ulp/2)^gamma."""
from decimal import Decimal, localcontext
from fractions import Fraction
import math

import numpy as np
import pytest

import lowbit


def exact_k(x, gamma, mode):
    m = abs(Fraction(float(x)))
    k = math.floor(gamma * math.log2(m))  # a guess, then made exact
    if mode in ("toward_zero", "nearest_linear"):  # the largest k with 2^k <= m^gamma
        while m ** gamma < Fraction(2) ** k:
            k -= 1
        while m ** gamma >= Fraction(2) ** (k + 1):
            k += 1
        if mode == "toward_zero":
            return k
        with localcontext() as context:
            context.prec = 80
            step = Decimal(2) ** (Decimal(1) / Decimal(gamma))
            midpoint = Decimal(2) ** (Decimal(k) / Decimal(gamma)) * (1 + step) / 2
            exact = Decimal(m.numerator) / Decimal(m.denominator)
        if gamma == 1 and exact == midpoint:
            return k + (k % 2)  # the tie, to the even k
        return k + 1 if exact > midpoint else k
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


@pytest.mark.parametrize("fmt,gamma,k_max", [("lns8", 8, 63), ("lns:9:5", 32, 255), ("lns:6:0", 1, 31),
                                             ("lns16", 2**8, 2**14 - 1)])
@pytest.mark.parametrize("mode", ["nearest_log", "toward_zero", "nearest_linear"])
def test_lns_quantize_equals_the_exact_decisions(fmt, gamma, k_max, mode):
    rng = np.random.default_rng(3)
    x = (rng.standard_normal(400) * np.exp2(rng.uniform(-12, 12, 400))).astype(np.float32)
    # gamma = 1's linear ties 1.5 * 2^k, and the values next to them
    ties = np.float32(1.5) * np.exp2(np.arange(-8, 8, dtype=np.float32))
    # the floats nearest to the decision boundaries (arithmetic and geometric midpoints) and their
    # neighbours, where the modes differ and a wrong decision would show
    k = np.arange(-60, 60)
    arithmetic = np.exp2(k / gamma) * (1 + 2 ** (1 / gamma)) / 2
    geometric = np.exp2((2 * k + 1) / (2 * gamma))
    near = np.concatenate([arithmetic, geometric]).astype(np.float32)
    x = np.concatenate([x, ties, np.nextafter(ties, 0), np.nextafter(ties, np.float32(np.inf)), -ties,
                        near, np.nextafter(near, 0), np.nextafter(near, np.float32(np.inf)), -near])
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
