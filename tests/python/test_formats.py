"""lowbit.format / lowbit.quantizer: the C++ parser's names, printing, comparison and bad text."""
import pytest

import lowbit


@pytest.mark.parametrize("name,bits,maximum,negative_zero", [
    ("float8_e4m3fn", 8, 448.0, True), ("float8_e5m2", 8, 57344.0, True), ("float8_e4m3fnuz", 8, 240.0, False),
    ("float8_e5m2fnuz", 8, 57344.0, False), ("float8_e4m3b11fnuz", 8, 30.0, False), ("bfloat16", 16, 3.3895313892515355e38, True),
    ("float16", 16, 65504.0, True), ("float4_e2m1fn", 4, 6.0, True), ("float6_e2m3fn", 6, 7.5, True),
    ("float6_e3m2fn", 6, 28.0, True), ("float8_e4m3", 8, 240.0, True), ("float8_e3m4", 8, 15.5, True),
])
def test_the_names_pytorch_and_ml_dtypes_use(name, bits, maximum, negative_zero):
    f = lowbit.format(name)
    assert f.bits == bits and f.max == maximum and f.has_negative_zero == negative_zero


def test_formats_print_parse_and_compare():
    f = lowbit.format("m7e4,bias=10,subnormals=off,specials=none")
    assert lowbit.format(str(f)) == f
    assert f.man_bits == 7 and f.exp_bits == 4 and f.bias == 10 and not f.subnormals
    assert repr(lowbit.float8_e4m3fn) == "lowbit.format('fp8_e4m3')"
    assert lowbit.format("e4m3") == lowbit.float8_e4m3fn != lowbit.float8_e5m2
    assert len({lowbit.format("e4m3"), lowbit.float8_e4m3fn}) == 1
    q = lowbit.quantizer("e4m3:toward_zero:saturate:seed=3")
    assert lowbit.quantizer(str(q)) == q and not q.is_exact and lowbit.quantizer("exact").is_exact


@pytest.mark.parametrize("make,text,message", [
    (lowbit.format, "e99m3", "exp_bits = 99"), (lowbit.format, "xyz", "'xyz' is not a preset name"),
    (lowbit.format, "e4m3,bias=x", "bias 'x' is not an integer"), (lowbit.quantizer, "int0", "bits = 0"),
    (lowbit.quantizer, "e4m3:sideways", "unknown option 'sideways'"),
])
def test_bad_text_raises_value_error_naming_it(make, text, message):
    with pytest.raises(ValueError, match=message):
        make(text)
