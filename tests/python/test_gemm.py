"""lowbit.gemm against an exact reference of the sequential datapath (oracle.py), the event
counts, threads, torch tensors and bad input."""
from fractions import Fraction

import numpy as np
import pytest

import lowbit
import oracle

M7E4 = "m7e4,bias=10,subnormals=off,specials=none:toward_zero:saturate"
CASES = [
    # (spec text; the same for the oracle: input, product, accumulator quantizers, chunk, and the
    # chunk accumulator: exact unless the spec names one)
    ("input_a=e4m3 input_b=e4m3 accumulator=fp16 chunk=4",
     (oracle.E4M3, "nearest_even"), None, (oracle.FP16, "nearest_even"), 4, None),
    ("input_a=e4m3 input_b=e4m3 accumulator=bf16:toward_zero chunk=16",
     (oracle.E4M3, "nearest_even"), None, (oracle.BF16, "toward_zero"), 16, None),
    ("input_a=e5m2 input_b=e5m2 product=e4m3:saturate accumulator=fp16:nearest_away chunk=0",
     (oracle.E5M2, "nearest_even"), (oracle.E4M3, "nearest_even"), (oracle.FP16, "nearest_away"), 0, None),
    ("input_a=e4m3 input_b=e4m3 accumulator=e5m2:toward_positive chunk=3 chunk_accumulator=fp16:toward_negative",
     (oracle.E4M3, "nearest_even"), None, (oracle.E5M2, "toward_positive"), 3, (oracle.FP16, "toward_negative")),
    (f"input_a=e4m3 input_b=e4m3 accumulator={M7E4} chunk=16 chunk_accumulator={M7E4}",
     (oracle.E4M3, "nearest_even"), None, (oracle.M7E4_ACC, "toward_zero"), 16, (oracle.M7E4_ACC, "toward_zero")),
]


@pytest.mark.parametrize("text,q_in,q_prod,q_acc,chunk,q_chunk", CASES)
@pytest.mark.parametrize("shape", [(3, 37, 5), (2, 1, 3), (1, 16, 1)])
def test_gemm_equals_the_sequential_reference(text, q_in, q_prod, q_acc, chunk, q_chunk, shape):
    m, k, n = shape
    rng = np.random.default_rng(m * 100 + k)
    a = (rng.standard_normal((m, k)) * 0.5).astype(np.float32)
    b = (rng.standard_normal((k, n)) * 0.5).astype(np.float32)
    c = lowbit.gemm(a, b, text)
    assert c.dtype == np.float32 and c.shape == (m, n)
    for i in range(m):
        for j in range(n):
            expected = oracle.sequential_dot(a[i, :], b[:, j], q_in, q_prod, q_acc, chunk, q_chunk)
            assert Fraction(float(c[i, j])) == expected, (i, j)


def test_stats_count_the_events():
    spec = lowbit.spec("input_a=e4m3 input_b=e4m3 accumulator=fp16 chunk=16")
    a = np.array([[2.0**-20, 1.0, 300.0, 5.0]], dtype=np.float32)
    b = np.array([[1.0], [1.0], [1.0], [0.0]], dtype=np.float32)
    c, events = lowbit.gemm(a, b, spec, stats=True)
    # 2^-20 is below e4m3's smallest subnormal (2^-9): 0; 300 lies between 288 and 320: 288
    assert c[0, 0] == 1.0 + 288.0
    assert events["macs"] == 4
    assert events["input_underflows"] == 1
    assert events["inexact_inputs"] == 2
    assert events["zero_operand"] >= 1  # (the product with b = 0, and the underflowed input's)
    assert set(events) >= {"swamps", "product_underflows", "accumulator_overflows", "inexact_additions"}


def test_threads_never_change_a_bit():
    rng = np.random.default_rng(1)
    a = rng.standard_normal((64, 200)).astype(np.float32)
    b = rng.standard_normal((200, 48)).astype(np.float32)
    text = "input_a=e4m3 input_b=e4m3 accumulator=bf16:toward_zero chunk=8"
    one = lowbit.gemm(a, b, lowbit.spec(text, threads=1))
    two = lowbit.gemm(a, b, lowbit.spec(text, threads=2))
    np.testing.assert_array_equal(one.view(np.uint32), two.view(np.uint32))


def test_float64_inputs_are_cast_to_float():
    rng = np.random.default_rng(2)
    a = rng.standard_normal((4, 9))
    b = rng.standard_normal((9, 3))
    text = "input_a=e4m3 input_b=e4m3 accumulator=fp16 chunk=4"
    np.testing.assert_array_equal(lowbit.gemm(a, b, text), lowbit.gemm(a.astype(np.float32), b.astype(np.float32), text))


def test_torch_tensors():
    torch = pytest.importorskip("torch")
    a = torch.randn(5, 7, generator=torch.Generator().manual_seed(0))
    b = torch.randn(7, 2, generator=torch.Generator().manual_seed(1))
    c = lowbit.gemm(a, b, "")  # exact products, fp32 sums
    assert isinstance(c, torch.Tensor)
    torch.testing.assert_close(c, a @ b, rtol=1e-5, atol=1e-5)


def test_specs_print_parse_and_compare():
    text = "input_a=e4m3 input_b=e4m3 accumulator=fp16:toward_zero chunk=16"
    s = lowbit.spec(text)
    assert lowbit.spec(str(s)) == s
    assert str(s).startswith("input_a=fp8_e4m3 input_b=fp8_e4m3")
    assert s.chunk == 16
    assert lowbit.spec(text) != lowbit.spec(text.replace("chunk=16", "chunk=8"))


@pytest.mark.parametrize("call,error,message", [
    (lambda: lowbit.gemm(np.ones((2, 3), np.float32), np.ones((4, 2), np.float32), ""), ValueError, "M x K and K x N"),
    (lambda: lowbit.gemm(np.ones(3, np.float32), np.ones((3, 2), np.float32), ""), ValueError, "matrices"),
    (lambda: lowbit.gemm(np.ones((2, 3), np.float32), np.ones((3, 2), np.float32), "chunk=x"), ValueError, "chunk"),
    (lambda: lowbit.gemm(np.ones((2, 3), np.float32), np.ones((3, 2), np.int64), ""), TypeError, "float32 or float64"),
    (lambda: lowbit.gemm(np.ones((2, 3), np.float32).T, np.ones((2, 2), np.float32), ""), ValueError, "C-contiguous"),
])
def test_bad_input_raises_with_a_message(call, error, message):
    with pytest.raises(error, match=message):
        call()


@pytest.mark.parametrize("text,q_in,q_acc,q_addend", [
    ("input_a=e4m3 input_b=e4m3 accumulator=fp16 chunk=4 addend=fp16",
     (oracle.E4M3, "nearest_even"), (oracle.FP16, "nearest_even"), (oracle.FP16, "nearest_even")),
    # AMD's fp32 matrix instructions: a chain of IEEE fmas from C (lowbit.hw.preset("cdna3:fp32"))
    (str(lowbit.hw.preset("cdna3:fp32")), None, (oracle.FP32, "nearest_even"), None),
])
def test_gemm_add_starts_each_chain_from_c(text, q_in, q_acc, q_addend):
    rng = np.random.default_rng(7)
    a = rng.standard_normal((3, 21)).astype(np.float32)
    b = rng.standard_normal((21, 4)).astype(np.float32)
    c = (rng.standard_normal((3, 4)) * 4).astype(np.float32)
    d = lowbit.gemm_add(a, b, c, text)
    assert d.dtype == np.float32 and d.shape == (3, 4)
    chunk = lowbit.spec(text).chunk
    for i in range(3):
        for j in range(4):
            start = Fraction(float(c[i, j]))
            if q_addend is not None:
                start = oracle.round_fraction(start, q_addend[0], q_addend[1])
            expected = oracle.sequential_dot(a[i, :], b[:, j], q_in, None, q_acc, chunk, None, start)
            assert Fraction(float(d[i, j])) == expected, (i, j)
    # and C = 0 is gemm
    np.testing.assert_array_equal(lowbit.gemm_add(a, b, np.zeros((3, 4), np.float32), text), lowbit.gemm(a, b, text))


def test_hw_presets_are_specs_that_print_and_parse():
    assert lowbit.hw.units()[:3] == ["volta", "turing", "ampere"] and "cdna3" in lowbit.hw.units()
    assert "fp16" in lowbit.hw.inputs("ampere") and "fp32" in lowbit.hw.inputs("cdna1")
    h = lowbit.hw.preset("hopper:e4m3")
    assert isinstance(h, lowbit.Spec)
    assert lowbit.spec(str(h)) == h
    assert "align=operands" in str(h) and "model=aligned" in str(h)
    assert lowbit.hw.preset("Hopper:E4M3") == h  # (names are case-insensitive)
    assert lowbit.hw.preset("hopper:e4m3:fp16") != h


@pytest.mark.parametrize("call,message", [
    (lambda: lowbit.hw.preset("tpu:fp16"), "names no unit"),
    (lambda: lowbit.hw.preset("volta:bf16"), "its instructions take fp16"),
    (lambda: lowbit.hw.inputs("tpu"), "names no unit"),
    (lambda: lowbit.gemm_add(np.ones((2, 3), np.float32), np.ones((3, 2), np.float32), np.ones((2, 3), np.float32), ""),
     "c \\(\\(2, 3\\)\\) must be M x N"),
])
def test_hw_and_gemm_add_bad_input(call, message):
    with pytest.raises(ValueError, match=message):
        call()
