// gemm_spec and quantizer as text: what to_string writes, gemm_spec::parse / quantizer::parse read
// back (the same spec, field by field), and the errors for malformed text.
#include <lowbit/datapath/gemm_spec.hpp>

#include <catch2/catch.hpp>

#include <random>
#include <string>
#include <vector>

namespace {

using lowbit::quantizer;
using lowbit::rounding;

// A random quantizer: exact, float (presets, eXmY with other biases, unsigned, no subnormals) or
// integer, with random settings.
quantizer random_quantizer(std::mt19937& gen) {
    const auto pick = [&](int n) { return std::uniform_int_distribution<int>(0, n - 1)(gen); };
    const rounding modes[] = {rounding::nearest_even, rounding::nearest_away, rounding::toward_zero,
                              rounding::toward_positive, rounding::toward_negative, rounding::stochastic, rounding::odd};
    const rounding mode = modes[pick(7)];
    const std::uint64_t seed = pick(3) == 0 ? std::uint64_t(gen()) * 977 : 0;
    const int random_bits = pick(3) == 0 ? 1 + pick(32) : 32;
    switch (pick(3)) {
        case 0: return quantizer{};
        case 1: {
            const lowbit::float_format presets[] = {lowbit::fp32, lowbit::bf16, lowbit::fp16, lowbit::fp8_e4m3,
                                                    lowbit::fp8_e5m2, lowbit::lba_m7e4_acc, lowbit::lba_m7e4_prod,
                                                    lowbit::ue8m0};
            lowbit::float_format f = presets[pick(8)];
            if (pick(2) == 0) {
                f = {.exp_bits = 2 + pick(7), .man_bits = pick(20)};
                f.bias = f.exponent_bias() + pick(9) - 4;
                f.subnormals = pick(2) == 0;
                f.specials = pick(2) == 0 ? lowbit::special_values::ieee : lowbit::special_values::none;
            }
            return lowbit::float_quantizer{.format = f, .mode = mode,
                                           .on_overflow = lowbit::overflow(pick(3)),
                                           .seed = seed, .random_bits = random_bits};
        }
        default:
            return lowbit::int_quantizer{.format = {.bits = 2 + pick(40), .is_signed = pick(3) != 0}, .mode = mode,
                                         .on_overflow = pick(2) == 0 ? lowbit::int_overflow::wrap : lowbit::int_overflow::saturate,
                                         .fraction_bits = pick(40) - 20, .seed = seed, .random_bits = random_bits};
    }
}

}  // namespace

TEST_CASE("quantizer text: hand-written spellings") {
    CHECK(quantizer::parse("exact") == quantizer{});
    CHECK(quantizer::parse("e4m3") == quantizer(lowbit::fp8_e4m3));
    CHECK(quantizer::parse("M7E4,BIAS=10,subnormals=off,specials=none:Toward_Zero:saturate") ==
          quantizer(lowbit::float_quantizer{.format = lowbit::lba_m7e4_acc, .mode = rounding::toward_zero,
                                            .on_overflow = lowbit::overflow::saturate}));
    CHECK(quantizer::parse("fp16:stochastic:seed=7:random_bits=12") ==
          quantizer(lowbit::float_quantizer{.format = lowbit::fp16, .mode = rounding::stochastic, .seed = 7, .random_bits = 12}));
    CHECK(quantizer::parse("int8:frac=5") == quantizer(lowbit::int_quantizer{.format = {.bits = 8}, .fraction_bits = 5}));
    CHECK(quantizer::parse("uint4:saturate:frac=-3") ==
          quantizer(lowbit::int_quantizer{.format = {.bits = 4, .is_signed = false},
                                          .on_overflow = lowbit::int_overflow::saturate, .fraction_bits = -3}));
    CHECK(to_string(quantizer{}) == "exact");
    CHECK(to_string(quantizer(lowbit::float_quantizer{.format = lowbit::bf16, .mode = rounding::toward_zero})) ==
          "bf16:toward_zero");
    CHECK(to_string(quantizer(lowbit::int_quantizer{.format = {.bits = 32}, .on_overflow = lowbit::int_overflow::saturate,
                                                    .fraction_bits = 10})) == "int32:frac=10:saturate");
    // every float quantizer of the same format and settings compares equal, and none equals an integer one
    CHECK_FALSE(quantizer::parse("int8") == quantizer::parse("e4m3"));
    CHECK_FALSE(quantizer::parse("e4m3:toward_zero") == quantizer::parse("e4m3"));
}

TEST_CASE("quantizer text: malformed text is an error that says what is wrong") {
    const auto fails = [](const char* text, const char* says) {
        INFO(text);
        CHECK_THROWS_WITH(quantizer::parse(text), Catch::Contains(says));
    };
    fails("e4m3:toward_zero:nearest_even", "rounding mode twice");
    fails("e4m3:saturate:infinity", "overflow twice");
    fails("e4m3:seed=1:seed=2", "seed twice");
    fails("e4m3:wrap", "unknown option 'wrap'");
    fails("int8:infinity", "unknown option 'infinity'");
    fails("e4m3:frac=3", "unknown option 'frac=3'");
    fails("e4m3::toward_zero", "empty option");
    fails("exact:toward_zero", "'exact' does not take");
    fails("e9m99", "does not start with a format");
    fails("int8:frac=x", "where a number belongs");
    fails("intx", "where a number belongs");
    fails("e4m3:random_bits=40", "random_bits");  // validate: 1..32
    fails("int99", "bits");
}

TEST_CASE("gemm_spec text: the flagship's spec, hand-written") {
    const lowbit::float_quantizer e4m3{.format = lowbit::fp8_e4m3};
    const lowbit::float_quantizer prod{.format = lowbit::lba_m7e4_prod, .mode = rounding::toward_zero};
    const lowbit::float_quantizer acc{.format = lowbit::lba_m7e4_acc, .mode = rounding::toward_zero};
    const lowbit::gemm_spec spec{.input_a = e4m3, .input_b = e4m3, .product = prod, .accumulator = acc, .chunk = 16,
                                 .chunk_accumulator = acc};
    const std::string text =
        "input_a=fp8_e4m3 input_b=fp8_e4m3 product=lba_m7e4_prod:toward_zero accumulator=lba_m7e4_acc:toward_zero "
        "model=sequential chunk=16 chunk_accumulator=lba_m7e4_acc:toward_zero";
    CHECK(to_string(spec) == text);
    CHECK(lowbit::gemm_spec::parse(text) == spec);
    // any order, any spacing, defaults for what is left out
    CHECK(lowbit::gemm_spec::parse("  chunk=16   accumulator=LBA_M7E4_ACC:toward_zero ") ==
          lowbit::gemm_spec{.accumulator = acc, .chunk = 16});
    CHECK(lowbit::gemm_spec::parse("") == lowbit::gemm_spec{});
    CHECK(lowbit::gemm_spec::parse("model=aligned window=13 group=16 cut=toward_negative threads=2 record_lost=1") ==
          lowbit::gemm_spec{.model = lowbit::accumulation::aligned, .window = 13, .group = 16,
                            .cut = lowbit::alignment_cut::toward_negative, .threads = 2, .record_lost = true});
}

TEST_CASE("gemm_spec text: the matrix units' conventions and the addend, hand-written") {
    const lowbit::float_quantizer truncating{.format = lowbit::fp32, .mode = rounding::toward_zero,
                                             .on_overflow = lowbit::overflow::infinity_always};
    const lowbit::gemm_spec hopper{.input_a = lowbit::fp16, .input_b = lowbit::fp16, .accumulator = truncating,
                                   .model = lowbit::accumulation::aligned, .window = 25, .group = 16,
                                   .align = lowbit::alignment_exponent::operands,
                                   .subnormals = lowbit::subnormal_exponent::min_normal, .zero_exponent = -126,
                                   .addend = lowbit::fp32};
    const std::string text =
        "input_a=fp16 input_b=fp16 product=exact accumulator=fp32:infinity_always:toward_zero model=aligned chunk=0 "
        "chunk_accumulator=exact window=25 group=16 align=operands subnormal_exponent=min_normal zero_exponent=-126 "
        "addend=fp32";
    CHECK(to_string(hopper) == text);
    CHECK(lowbit::gemm_spec::parse(text) == hopper);
    const lowbit::gemm_spec cdna3{.accumulator = lowbit::fp32, .model = lowbit::accumulation::two_level, .window = 24,
                                  .group = 16, .sum_window = 31, .sub_dots = 2};
    CHECK(lowbit::gemm_spec::parse("model=two_level accumulator=fp32 window=24 group=16 sub_dots=2") == cdna3);
    CHECK(to_string(cdna3) == "input_a=exact input_b=exact product=exact accumulator=fp32 model=two_level chunk=0 "
                              "chunk_accumulator=exact window=24 group=16 sub_dots=2");
    CHECK(lowbit::gemm_spec::parse("model=aligned zero_exponent=none") == lowbit::gemm_spec{.model = lowbit::accumulation::aligned});
    CHECK(lowbit::quantizer::parse("fp32:toward_zero:INFINITY_ALWAYS") == quantizer(truncating));
}

TEST_CASE("gemm_spec text: parse(to_string(spec)) is the spec, for random specs") {
    std::mt19937 gen(5);
    const auto pick = [&](int n) { return std::uniform_int_distribution<int>(0, n - 1)(gen); };
    for (int trial = 0; trial < 2000; ++trial) {
        lowbit::gemm_spec spec{.input_a = random_quantizer(gen), .input_b = random_quantizer(gen),
                               .product = random_quantizer(gen), .accumulator = random_quantizer(gen),
                               .model = lowbit::accumulation(pick(6)), .chunk = pick(3) == 0 ? 0 : 1 + pick(128),
                               .chunk_accumulator = random_quantizer(gen), .window = 1 + pick(30), .group = 1 + pick(64),
                               .sum_window = 1 + pick(40), .cut = lowbit::alignment_cut(pick(2)),
                               .addend = random_quantizer(gen), .threads = pick(4), .record_lost = pick(2) == 0};
        // the matrix units' conventions belong to the aligned and two_level models
        if (spec.model == lowbit::accumulation::aligned || spec.model == lowbit::accumulation::two_level) {
            spec.align = lowbit::alignment_exponent(pick(2));
            spec.subnormals = lowbit::subnormal_exponent(pick(2));
            if (pick(2) == 0) spec.zero_exponent = pick(300) - 200;
            if (spec.align == lowbit::alignment_exponent::operands) spec.product = {};
        }
        if (spec.model == lowbit::accumulation::two_level) {
            spec.sub_dots = 1 + pick(3);
            spec.product = {};
        }
        const std::string text = to_string(spec);
        INFO(text);
        const lowbit::gemm_spec back = lowbit::gemm_spec::parse(text);
        CHECK(back == spec);
        CHECK(to_string(back) == text);
    }
}

TEST_CASE("gemm_spec text: malformed text is an error that says what is wrong") {
    const auto fails = [](const char* text, const char* says) {
        INFO(text);
        CHECK_THROWS_WITH(lowbit::gemm_spec::parse(text), Catch::Contains(says));
    };
    fails("chunk=16 chunk=32", "gives chunk twice");
    fails("chunks=16", "unknown field 'chunks'");
    fails("chunk", "not name=value");
    fails("=e4m3", "not name=value");
    fails("model=tree", "model 'tree'");
    fails("cut=up", "cut 'up'");
    fails("record_lost=yes", "record_lost 'yes'");
    fails("chunk=-1", "chunk = -1");           // validate()
    fails("chunk=1x", "where a number belongs");
    fails("accumulator=e4m3:wrap", "accumulator: ");
    fails("model=aligned align=largest", "align 'largest'");
    fails("model=aligned subnormal_exponent=zero", "subnormal_exponent 'zero'");
    fails("model=aligned zero_exponent=x", "where a number belongs");
    fails("align=operands", "option of the aligned and two_level models");        // validate()
    fails("zero_exponent=-126", "option of the aligned and two_level models");
    fails("model=aligned align=operands product=fp32", "leave the product unset");
    fails("model=two_level product=bf16", "leave the product unset");
    fails("sub_dots=2", "sub_dots = 2 is an option of the two_level model");
    fails("model=two_level sub_dots=0", "sub_dots = 0 must be in [1, 64]");
    fails("model=aligned zero_exponent=-5000", "zero_exponent = -5000");
    fails("addend=e4m3:wrap", "addend: ");
}
