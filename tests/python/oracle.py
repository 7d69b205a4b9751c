"""An independent reference for lowbit's Python tests: exact rounding with fractions.Fraction.

Written from the definitions (a binary format with p = man_bits + 1 significant bits, smallest
normal exponent emin, largest finite value `max`), not from lowbit's code. Deterministic modes only.
"""
from fractions import Fraction
import math

MODES = ["nearest_even", "nearest_away", "toward_zero", "toward_positive", "toward_negative", "odd"]


class Fmt:
    def __init__(self, man_bits, emin, max_value, subnormals=True):
        self.man_bits, self.emin, self.max, self.subnormals = man_bits, emin, Fraction(max_value), subnormals


# The formats the tests use, from their specifications (OCP FP8, IEEE 754, the LBA paper's M7E4).
E4M3 = Fmt(3, -6, 448)             # float8_e4m3fn
E5M2 = Fmt(2, -14, 57344)          # float8_e5m2
FP16 = Fmt(10, -14, 65504)
BF16 = Fmt(7, -126, Fraction(2**127) * (2 - Fraction(1, 2**7)))
FP32 = Fmt(23, -126, Fraction(2**127) * (2 - Fraction(1, 2**23)))
# M7E4 with bias 10: exponent fields 1..15 (no specials), emin = -9, largest (2 - 2^-7) 2^5
M7E4_ACC = Fmt(7, -9, Fraction(2**5) * (2 - Fraction(1, 2**7)), subnormals=False)


def _floor_log2(x):
    """floor(log2(x)) for a positive Fraction."""
    e = x.numerator.bit_length() - x.denominator.bit_length()
    if Fraction(2) ** e > x:
        e -= 1
    elif Fraction(2) ** (e + 1) <= x:
        e += 1
    return e


def round_fraction(x, fmt, mode, saturate=True):
    """x (a Fraction) rounded to fmt in `mode`; overflow saturates. Returns a Fraction (0 for zero)."""
    if x == 0:
        return Fraction(0)
    sign = -1 if x < 0 else 1
    m = abs(x)
    e = max(_floor_log2(m), fmt.emin)
    quantum = Fraction(2) ** (e - fmt.man_bits)
    n = m / quantum
    low = math.floor(n)
    rest = n - low
    # the magnitude's rounding; the directed modes by the sign of x
    if mode == "toward_zero":
        up = False
    elif mode == "toward_positive":
        up = rest > 0 and sign > 0
    elif mode == "toward_negative":
        up = rest > 0 and sign < 0
    elif mode == "nearest_even":
        up = rest > Fraction(1, 2) or (rest == Fraction(1, 2) and low % 2 == 1)
    elif mode == "nearest_away":
        up = rest >= Fraction(1, 2)
    elif mode == "odd":
        up = rest > 0 and low % 2 == 0
    else:
        raise ValueError(mode)
    r = (low + (1 if up else 0)) * quantum
    if r > fmt.max:
        if not saturate:
            raise OverflowError
        r = fmt.max
    if not fmt.subnormals and r < Fraction(2) ** fmt.emin:
        r = Fraction(0)
    return sign * r


def round_float(v, fmt, mode, saturate=True):
    """The same for a Python float (NaN and infinities are not handled here)."""
    r = round_fraction(Fraction(v), fmt, mode, saturate)
    return math.copysign(float(r), v) if r == 0 else float(r)


def sequential_dot(a, b, q_in, q_prod, q_acc, chunk, q_chunk=None, addend=Fraction(0)):
    """One output of the sequential datapath: inputs rounded by q_in, each product by q_prod, the
    running sum by q_acc in chunks of `chunk` products (0: one chunk), the first chunk's starting
    from `addend` (gemm_add's C, already rounded), the chunk results summed by q_chunk, and the
    total rounded to fp32 (nearest even) as the float result. Each q is (fmt, mode), or None for
    no rounding (exact)."""
    def rnd(x, q):
        return x if q is None else round_fraction(x, q[0], q[1])
    products = [rnd(rnd(Fraction(float(x)), q_in) * rnd(Fraction(float(y)), q_in), q_prod) for x, y in zip(a, b)]
    size = chunk if chunk > 0 else max(len(products), 1)
    total = Fraction(0)
    for start in range(0, max(len(products), 1), size):
        s = Fraction(addend) if start == 0 else Fraction(0)
        for p in products[start:start + size]:
            s = rnd(s + p, q_acc)
        total = rnd(total + s, q_chunk)
    return round_fraction(total, FP32, "nearest_even")


# OCP MX element formats (emax: the exponent of the top binade) and NVFP4's.
FP6_E2M3 = Fmt(3, 0, 7.5)
FP6_E3M2 = Fmt(2, -2, 28)
FP4_E2M1 = Fmt(1, 0, 6)
MX_ELEMENTS = {"mxfp8_e4m3": (E4M3, 8), "mxfp8_e5m2": (E5M2, 15), "mxfp6_e2m3": (FP6_E2M3, 2),
               "mxfp6_e3m2": (FP6_E3M2, 4), "mxfp4": (FP4_E2M1, 2)}


def _int8_element(x):
    """MXINT8's element: 8-bit two's complement with an implied scale 2^-6 (k / 64, k in
    [-128, 127]); x * 64 rounded to nearest even, then clamped to the codes."""
    n = x * 64
    low = math.floor(n)
    rest = n - low
    k = low + (1 if rest > Fraction(1, 2) or (rest == Fraction(1, 2) and low % 2 == 1) else 0)
    return Fraction(max(-128, min(127, k)), 64)


def mx_block(values, name):
    """One OCP MX block (v1.0): X = 2^(floor(log2 amax) - emax_elem), clamped to E8M0's
    [-127, 127]; elements x / X rounded to nearest even, saturating; returns element * X.
    MXINT8's emax_elem is 0."""
    fmt, emax = MX_ELEMENTS[name] if name != "mxint8" else (None, 0)
    amax = max(abs(Fraction(float(v))) for v in values)
    e = -127 if amax == 0 else max(-127, min(127, _floor_log2(amax) - emax))
    scale = Fraction(2) ** e
    if fmt is None:
        return [_int8_element(Fraction(float(v)) / scale) * scale for v in values]
    return [round_fraction(Fraction(float(v)) / scale, fmt, "nearest_even") * scale for v in values]


def nvfp4(values, block=16):
    """NVFP4 on one line: g = fp32(amax / (6 * 448)) for the whole input, per block of 16
    s = ue4m3(amax_b / (6 g)) (nearest even, saturating), elements fp4(x / (s g)); returns
    element * s * g rounded once to fp32."""
    xs = [Fraction(float(v)) for v in values]
    amax = max(abs(x) for x in xs)
    g = Fraction(1) if amax == 0 else round_fraction(amax / (6 * 448), FP32, "nearest_even")
    out = []
    for start in range(0, len(xs), block):
        part = xs[start:start + block]
        s = round_fraction(max(abs(x) for x in part) / (6 * g), E4M3, "nearest_even")
        for x in part:
            element = Fraction(0) if s == 0 else round_fraction(x / (s * g), FP4_E2M1, "nearest_even")
            out.append(round_fraction(element * s * g, FP32, "nearest_even"))
    return out
