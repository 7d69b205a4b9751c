// tests/readme/tour_test.cpp: README.md's tour of the API, compiled and run. Each TEST_CASE holds
// one of the tour's code blocks verbatim, after the variables the tour leaves to the reader, and is
// followed by checks of the values its comments give. The last TEST_CASE reads README.md and fails
// when a line of the tour's code is not a line of this file: the tour cannot drift from code that
// compiles and runs.
#include <lowbit/lowbit.hpp>

#include <lowbit/datapath/portable_chain.hpp>  // which kernels this machine has, for a check
#include <lowbit/datapath/scaled_chain.hpp>

#include <catch2/catch.hpp>

#include <Eigen/Core>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <random>
#include <set>
#include <span>
#include <string>
#include <vector>

namespace {

std::vector<float> normal_values(std::size_t n, unsigned seed) {
    std::mt19937 gen(seed);
    std::normal_distribution<float> normal;
    std::vector<float> v(n);
    for (float& x : v) x = normal(gen);
    return v;
}

std::string trimmed(const std::string& line) {
    const auto first = line.find_first_not_of(" \t"), last = line.find_last_not_of(" \t\r");
    return first == std::string::npos ? std::string() : line.substr(first, last - first + 1);
}

std::vector<std::string> lines_of(const std::filesystem::path& file) {
    std::ifstream in(file);
    REQUIRE(in);
    std::vector<std::string> lines;
    for (std::string line; std::getline(in, line);) lines.push_back(trimmed(line));
    return lines;
}

}  // namespace

TEST_CASE("tour: formats, rounding, arrays, storage and the datapath", "[readme]") {
    // what the tour leaves to the reader
    const std::vector<float> in = normal_values(100, 1);
    std::vector<float> out(in.size()), data = in;
    const float x = 0.7f;
    std::vector<float> floats{1.0f, std::numeric_limits<float>::quiet_NaN(), -2.0f};
    std::vector<lowbit::minifloat<lowbit::fp4_e2m1>> fp4_values(floats.size());
    std::mt19937 gen(2);
    std::normal_distribution<float> normal;
    Eigen::MatrixXf A(8, 64), B(64, 5);
    for (float& v : A.reshaped()) v = normal(gen);
    for (float& v : B.reshaped()) v = normal(gen);
    const Eigen::VectorXf a = A.row(0).transpose(), b = B.col(0);
    Eigen::MatrixXf dC(8, 5);
    for (float& v : dC.reshaped()) v = normal(gen);

    // Formats: one literal type that is both runtime data and a template argument.
    lowbit::float_format acc{.exp_bits = 4, .man_bits = 7, .bias = 10, .subnormals = false,
                             .specials = lowbit::special_values::none};  // the paper's M7E4
    auto g = lowbit::float_format::parse("m7e4,bias=10,subnormals=off,specials=none");  // same
    lowbit::to_string(g);                 // "lba_m7e4_acc" (a preset's name; parse reads it back)
    lowbit::fp8_e4m3.max_finite();        // 448; also emin(), emax(), min_normal(), min_subnormal(),
                                          // epsilon(), codes(), bits()
    lowbit::float_format::parse("float8_e4m3fnuz");  // ml_dtypes' names too: max 240, no -0, NaN at 0x80

    // One value, correctly rounded, any mode and overflow policy:
    float y = lowbit::quantize(1.0625f, lowbit::fp8_e4m3);               // 1.0 (tie to even)
    float z = lowbit::quantize(1000.0f, lowbit::fp8_e4m3, lowbit::rounding::toward_zero,
                               lowbit::overflow::saturate);               // 448
    float s = lowbit::quantize(1.09375f, lowbit::fp8_e5m2, lowbit::rounding::stochastic,
                               lowbit::overflow::infinity, /*random bits*/ 0xC0000000u);  // 1.25

    // Arrays: vectorized; stochastic rounding draws from Philox keyed by (seed, element index),
    // so results never depend on threads or on how an array is split.
    lowbit::float_quantizer q{.format = lowbit::bf16, .mode = lowbit::rounding::stochastic, .seed = 42};
    q(std::span<const float>(in), std::span<float>(out));   // or q(data) in place; double too
    float e = q(in[7], 7);                                   // = out[7]: element 7 of an array call

    // Storage: real bits, operators that compute exactly and round once, numeric_limits, Eigen.
    lowbit::minifloat<lowbit::fp8_e4m3> h(0.3f);             // h.bits() == 0x2A
    Eigen::Matrix<lowbit::minifloat<lowbit::fp16>, 4, 4> M;  // Eigen matrix of fp16 values
    // NaN has no code in FP4/FP6 (specials none) and is stored as +0; to see it instead:
    auto f4 = lowbit::minifloat<lowbit::fp4_e2m1>::from(x, lowbit::nan_policy::raise);  // throws on NaN
    std::size_t lost = lowbit::convert(floats, fp4_values);  // arrays: how many NaN became +0

    // The accelerator datapath: every product and partial sum rounded like the hardware does.
    lowbit::float_quantizer e4m3{.format = lowbit::fp8_e4m3};
    lowbit::float_quantizer q_prod{.format = lowbit::lba_m7e4_prod, .mode = lowbit::rounding::toward_zero};
    lowbit::float_quantizer q_acc{.format = lowbit::lba_m7e4_acc, .mode = lowbit::rounding::toward_zero};
    lowbit::gemm_spec spec{.input_a = e4m3, .input_b = e4m3, .product = q_prod, .accumulator = q_acc,
                           .chunk = 16, .chunk_accumulator = q_acc};
    spec.model = lowbit::accumulation::sequential;  // or fma, pairwise, fused, aligned (window, group, cut)
    spec.threads = 0;                               // OpenMP's default; results identical for any count
                                                    // (more than the processors present are capped to them)
    lowbit::gemm_stats stats;                       // overflows, underflows, swamps, inexact additions, ...
                                                    // and the inputs': NaN, infinities, overflows (1e30 into
                                                    // e4m3), underflows, inexact; off-grid products of an
                                                    // integer accumulator fed unscaled floats
    Eigen::MatrixXf C = lowbit::gemm(A, B, spec, &stats);   // A: M x K, B: K x N, any Eigen expression
    float d = lowbit::dot(a, b, spec);                       // a, b: Eigen vectors, or spans of floats
    lowbit::gemm_report report;                     // which kernel ran, for which ISA, and why no faster one
    lowbit::gemm(A, B, C, spec, nullptr, &report);  // report.kernel == lowbit::gemm_kernel::scaled_chain_avx512
    // Gradients through the quantized accumulation: a product that was swamped, flushed or saturated
    // passes none (immediate); nor, with recursive, do the products before a step that lost the sum.
    lowbit::gemm_gradients gr = lowbit::gemm_backward(A, B, dC, spec, lowbit::gradient_mode::recursive);
    // gr.a = dL/dA, gr.b = dL/dB; also ste, overflow_only, immediate; layers: datapath.gradient
    // Specs and quantizers as text (to_string writes it, parse reads it back; command lines, CSV files):
    auto parsed = lowbit::gemm_spec::parse("input_a=e4m3 input_b=e4m3 accumulator=fp16:toward_zero chunk=16");
    std::string text = to_string(parsed);  // "input_a=fp8_e4m3 input_b=fp8_e4m3 product=exact accumulator=fp16:toward_zero ..."
    lowbit::quantizer iq = lowbit::quantizer::parse("int32:frac=10:saturate");
    // Integer accumulators that wrap or saturate (A2Q, WrapNet):
    spec.accumulator = lowbit::int_quantizer{.format = {.bits = 16}, .on_overflow = lowbit::int_overflow::wrap};
    lowbit::int_quantizer{.format = {.bits = 8}, .fraction_bits = 5}(std::span<float>(data));  // arrays too
    // Real matrix units, bit for bit (NVIDIA Volta..Blackwell tensor cores, AMD CDNA1-3; datapath/hardware.hpp):
    lowbit::gemm_spec h100 = lowbit::hw::preset(lowbit::hw::unit::hopper, lowbit::fp8_e4m3);  // D in fp32
    auto mi300 = lowbit::hw::preset("cdna3:bf16");                 // unit:inputs[:output]
    Eigen::MatrixXf D = lowbit::gemm_add(A, B, C, h100);            // D = A B + C, C the chain's start
    // (presets are gemm_specs: model aligned with align = operands, subnormal_exponent = min_normal,
    // zero_exponent = -126 and an fp32 result truncated with overflow::infinity_always; two_level
    // for CDNA3; see hardware.hpp for what each unit does)

    CHECK(g == acc);
    CHECK(lowbit::to_string(g) == "lba_m7e4_acc");
    CHECK(lowbit::fp8_e4m3.max_finite() == 448.0);
    CHECK(lowbit::float_format::parse("float8_e4m3fnuz").max_finite() == 240.0);
    CHECK(y == 1.0f);
    CHECK(z == 448.0f);
    CHECK(s == 1.25f);
    CHECK(std::bit_cast<std::uint32_t>(e) == std::bit_cast<std::uint32_t>(out[7]));
    CHECK(h.bits() == 0x2A);
    CHECK(M.rows() == 4);
    CHECK(double(f4) == 0.5);  // 0.7 to FP4 (E2M1: 0, 0.5, 1, 1.5, ...)
    CHECK(lost == 1);
    CHECK(stats.macs == 8u * 64u * 5u);
    CHECK(C.rows() == 8);
    CHECK(C.cols() == 5);
    CHECK(d == C(0, 0));  // the same dot product on the same datapath
    CHECK(report.kernel == (lowbit::detail::has_scaled_chain     ? lowbit::gemm_kernel::scaled_chain_avx512
                            : lowbit::detail::has_portable_chain ? lowbit::gemm_kernel::scaled_chain_portable
                                                                 : lowbit::gemm_kernel::vectorized_chain));
    CHECK(gr.a.rows() == 8);
    CHECK(gr.a.cols() == 64);
    CHECK(gr.b.rows() == 64);
    CHECK(gr.b.cols() == 5);
    CHECK(text.rfind("input_a=fp8_e4m3 input_b=fp8_e4m3 product=exact accumulator=fp16:toward_zero ", 0) == 0);
    CHECK(lowbit::gemm_spec::parse(text) == parsed);
    CHECK(iq.as_int() != nullptr);
    CHECK(spec.accumulator.as_int()->format.bits == 16);
    for (float v : data) CHECK(v * 32 == std::round(v * 32));  // on the grid of 2^-5
    CHECK(D.rows() == 8);
    CHECK(D.cols() == 5);
    CHECK(lowbit::gemm_add(A, B, Eigen::MatrixXf::Zero(8, 5), h100) == lowbit::gemm(A, B, h100));  // C = +0
    CHECK(mi300.model == lowbit::accumulation::two_level);
    CHECK(h100.group == 32);  // wgmma's 32 bytes of FP8 per step
}

TEST_CASE("tour: calibration, scaled integers and block-scaled matrices", "[readme]") {
    const std::size_t rows = 16, cols = 64, batch = 8;
    const std::vector<float> weights = normal_values(1000, 3), w = normal_values(rows * cols, 4);
    const std::vector<float> x = normal_values(cols * batch, 5);
    std::vector<float> factors(x.size()), q(x.size()), dequantized(w.size());
    const std::vector<std::int64_t> row{3, -7, 120, -128, 5};
    lowbit::gemm_spec spec{.accumulator = lowbit::fp32};
    lowbit::gemm_stats stats;
    lowbit::gemm_report report;

    auto r = lowbit::octav(std::span<const float>(weights), {.bits = 4});  // also .sign, .iterations,
    double clip = r.scale;                     // .start, .step; the MSE-optimal clipping scalar (Newton-
                                               // Raphson, Sakr et al.) with the density term the paper drops
                                               // (exact at B = 2-3); .step = lowbit::octav_step::paper: the paper's
    lowbit::calibrate_mse_sweep(x, 4, lowbit::signedness::unsigned_values);   // brute-force minimum
    lowbit::calibrate_percentile(x, 99.9);  lowbit::calibrate_max(x);
    auto per_row = lowbit::octav_per_channel(w.data(), rows, cols, /*axis*/ 1, {.bits = 4});  // a scale a row
    lowbit::mad_factor(x, float(clip), factors);  // gradient factors per element: ste_, pwl_, mad_factor
    lowbit::quantize_clipped(x, clip, 4, lowbit::signedness::signed_values, q);  // Q(x) itself, as floats
    lowbit::a2q_min_accumulator_bits(row, /*input bits*/ 8, /*signed*/ false);  // A2Q: no-overflow width

    // Scaled integers and block-scaled matrices (OCP MX, NVFP4, VS-Quant two-level scales):
    lowbit::int_scaling int4{.bits = 4};                                // int_scaling.hpp, every mode
    auto scales = lowbit::scales_per_channel(w, rows, cols, /*axis*/ 1, int4);
    lowbit::quantize_per_channel(w, rows, cols, 1, scales, int4, dequantized);
    auto W4 = lowbit::quantize_blocks(w.data(), rows, cols, lowbit::vsquant(4, 4, 16), /*k_axis*/ 1);
    auto X4 = lowbit::quantize_blocks(x.data(), cols, batch, lowbit::vsquant(4, 4, 16), /*k_axis*/ 0);
    auto X8 = lowbit::quantize_blocks(x.data(), cols, batch, lowbit::mxfp8_e4m3, 0);  // also mxfp4, nvfp4, ...
    auto Wc = lowbit::quantize_blocks(w.data(), rows, cols, lowbit::per_channel_int(4), 1);  // block 0: a line
    auto Wo = lowbit::quantize_blocks(w.data(), rows, cols, lowbit::vsquant(4, 6, 16, lowbit::coarse_scope::per_line,
                                                                             lowbit::vector_clip::octav), 1);
    lowbit::dequantize(W4, dequantized.data());
    // ... and multiplied on the datapath: exact block dot products, times the product of the block
    // scales (optionally rounded), reduced by the spec's model / accumulator / chunks (chunk counts
    // blocks), coarse scales applied once at the end. An int accumulator of P bits wraps or saturates.
    Eigen::MatrixXf Y = lowbit::block_scaled_gemm(W4, X4, spec, /*scale_product*/ {}, &stats);
    Y = lowbit::block_scaled_gemm(W4, X4, spec, {}, nullptr, &report);  // report.kernel: vectorized_chain
    // where block dots and terms are exact floats (MXFP4/6, MXINT8, NVFP4, VS-Quant with scales of <= 4
    // bits: fp32 or integer lanes, as gemm's), else block_terms_per_output, with the reason

    CHECK(clip > 0);
    CHECK(per_row.size() == rows);
    for (std::size_t i = 0; i < x.size(); ++i) CHECK(factors[i] == lowbit::mad_factor(x[i], float(clip)));
    CHECK(lowbit::a2q_min_accumulator_bits(row, 8, false) > 8);
    CHECK(scales.size() == rows);
    CHECK(X8.rows == cols);
    CHECK(Wc.block_size() == int(cols));  // one block per row
    CHECK(Wc.coarse_scales.size() == rows);
    CHECK(Wo.format.clip == lowbit::vector_clip::octav);
    CHECK(Y.rows() == Eigen::Index(rows));
    CHECK(Y.cols() == Eigen::Index(batch));
    CHECK(stats.macs == rows * cols * batch);
    CHECK(report.kernel == lowbit::gemm_kernel::vectorized_chain);
}

TEST_CASE("tour: the logarithmic number system", "[readme]") {
    std::mt19937 gen(6);
    std::normal_distribution<float> normal;
    Eigen::MatrixXf A(4, 32), B(32, 3);
    for (float& v : A.reshaped()) v = normal(gen);
    for (float& v : B.reshaped()) v = normal(gen);
    lowbit::gemm_stats stats;
    const std::vector<float> initial_weights = normal_values(50, 7);
    std::vector<float> weights = initial_weights;
    const std::vector<float> gradients = normal_values(50, 8);

    double v = lowbit::lns_quantize(0.3, lowbit::lns8, lowbit::lns_rounding::nearest_log);  // 2^(k/8)
    lowbit::lns<lowbit::lns8> a(0.3), b(2.0);
    auto c = a * b;                        // exact: the logs add
    auto d = a + b;                        // exact-then-round; lns<F, lns_table_add<B>> uses a Gaussian-log table

    // The LNS datapath: exact product logs, conversion to linear by a table of T bits or Mitchell's
    // 1 + r/gamma, accumulated per product by any gemm_spec, or in exact integer buckets per remainder.
    lowbit::lns_gemm_spec ls;                                        // lns8 inputs, per-tensor scales
    ls.conversion = {.method = lowbit::lns_conversion::mitchell};    // or {.table_bits = T}
    ls.datapath.accumulator = lowbit::float_quantizer{.format = lowbit::bf16};  // per product (the default)
    Eigen::MatrixXf L = lowbit::lns_gemm(A, B, ls, &stats);
    lowbit::lns_gemm_spec lb = ls;                                   // or integer buckets, summed exactly
    lb.accumulation = lowbit::lns_accumulation::bucketed;            // (int or unset accumulators), and
    lb.datapath.accumulator = {};                                    // the buckets' scaled sum rounded
    lb.bucket_sum = lowbit::float_quantizer{.format = lowbit::bf16};  // by bucket_sum
    Eigen::MatrixXf Lb = lowbit::lns_gemm(A, B, lb, &stats);
    // lns_gemm(A, B, ls, nullptr, &report): vectorized_chain per product (float or double lanes),
    // integer_sum_lanes for exact sums, integer_buckets for the bucket shortcut, else exact (and why).

    // Madam / LNS-Madam (multiplicative updates that stay on the LNS grid):
    lowbit::madam opt(initial_weights, {.learning_rate = 1.0 / 8, .integer_steps = true, .lns_grid = lowbit::lns8});
    opt.step(weights, gradients);
    lowbit::madam sr(initial_weights, {.learning_rate = 1.0 / 128, .integer_steps = true, .lns_grid = lowbit::lns8,
                                       .grid_rounding = lowbit::lns_rounding::stochastic_log});  // 1/16 code on average

    std::vector<float> moved = weights;
    sr.step(moved, gradients);
    for (const float w : moved) CHECK(float(lowbit::lns_quantize(double(w), lowbit::lns8)) == w);  // floats of the grid
    const double k = std::log2(v) * 8;
    CHECK(k == std::round(k));
    CHECK(double(c) == double(a) * 2.0);  // 2.0 is on the lns8 grid: the product is exact
    CHECK(std::isfinite(double(d)));
    CHECK(L.rows() == 4);
    CHECK(Lb.cols() == 3);
    CHECK(stats.macs == 2u * 4u * 32u * 3u);
    CHECK(weights != initial_weights);
}

TEST_CASE("tour: networks on the datapath", "[readme]") {
    const lowbit::float_quantizer q_prod{.format = lowbit::lba_m7e4_prod, .mode = lowbit::rounding::toward_zero};
    const lowbit::float_quantizer q_acc{.format = lowbit::lba_m7e4_acc, .mode = lowbit::rounding::toward_zero};
    lowbit::gemm_stats stats;

    namespace nn = lowbit::nn;
    nn::network net({1, 28, 28});                                   // input: channels x height x width
    net.add("conv1", nn::conv2d({.channels = 1, .height = 28, .width = 28, .kernel = 3, .padding = 1}, 32));
    net.add("bn1", nn::batch_norm(32)).add("relu1", nn::relu{}).add("pool1", nn::max_pool2d({32, 28, 28}, 2));
    net.add("flatten", nn::flatten{}).add("fc", nn::linear(32 * 14 * 14, 10));   // also avg_pool2d
    nn::adam opt(net.parameters(/*trainable only*/ true), {.learning_rate = 1e-3});  // or nn::sgd, nn::madam_optimizer
    auto data = nn::load_fashion_mnist();                           // /usr/share/datasets/fashion-mnist
    nn::tensor x{data.train.images.topRows(64), {1, 28, 28}};
    net.zero_grad();
    nn::tensor y = net.forward(x, nn::pass::training);             // fp32: micro-batches of 16, threads
    auto loss = nn::softmax_cross_entropy(y.values, std::span(data.train.labels).first(64));
    net.backward({loss.gradient, y.shape});
    opt.step();
    net.save("cnn.weights");                                         // atomic, CRC-checked; net.load(...)

    nn::network inference = nn::fold_batch_norm(net);                // BN folded into conv/linear
    inference.set_datapath({.spec = lowbit::gemm_spec{.product = q_prod, .accumulator = q_acc,  // each conv2d
                                                  .chunk = 16, .chunk_accumulator = q_acc},  // and linear
                            .weights = nn::range_biased_float{},     // FP8 M4E3, per-tensor bias
                            .activations = nn::range_biased_float{},
                            .stats = &stats});                       // events, counted as it runs
    nn::gemm_datapath vs_quant{.spec = lowbit::gemm_spec{.accumulator = lowbit::int_quantizer{.format = {.bits = 32}}},
                                .blocks = nn::block_scaled_inputs{.weights = lowbit::vsquant(4, 6, 16),  // W4A4 on
                                    .activations = lowbit::vsquant(4, 6, 16, lowbit::coarse_scope::per_tensor)}};  // blocks
    nn::gemm_datapath qat{.clipping = nn::clipped_inputs{              // OCTAV's clipped quantizer,
        .weights = {.bits = 4, .per_channel = true, .gradient = lowbit::clip_gradient::mad},  // scales
        .activations = {.bits = 4, .sign = lowbit::signedness::unsigned_values,              // each step
                        .gradient = lowbit::clip_gradient::pwl}}};   // (nn::calibrate_clipping: static)
    nn::gemm_datapath lns{.lns = nn::lns_inputs{.spec = {.accumulation = lowbit::lns_accumulation::bucketed},  // LNS: W, X
                                                .gradients = {.quantizer = {.format = lowbit::lns8}}}};  // and dL/dC, lns8
    nn::gemm_datapath h100_layers{.spec = lowbit::hw::preset("hopper:e4m3"),  // a real unit, each layer's
                                  .bias_as_addend = true};          // bias its C (D = A B + C)

    CHECK(loss.loss > 0);
    const nn::tensor z = inference.forward(x, nn::pass::inference);
    CHECK(z.values.rows() == 64);
    CHECK(z.values.cols() == 10);
    inference.set_datapath(h100_layers);  // (FP8 inputs: the spec's own input quantizers)
    const nn::tensor h = inference.forward(x, nn::pass::inference);
    CHECK(h.values.rows() == 64);
    CHECK((h.values - z.values).cwiseAbs().maxCoeff() > 0);  // another datapath, other bits
    CHECK(stats.macs > 0);
    inference.set_datapath(vs_quant);
    const nn::tensor v = inference.forward(x, nn::pass::inference);
    CHECK(v.values.rows() == 64);
    CHECK((v.values - z.values).cwiseAbs().maxCoeff() < 0.5f * z.values.cwiseAbs().maxCoeff());  // near M7E4's
    net.set_datapath(qat);  // quantization-aware training: one scale per output channel of each conv
    const nn::tensor t = net.forward(x, nn::pass::training);
    net.backward({nn::softmax_cross_entropy(t.values, std::span(data.train.labels).first(64)).gradient, t.shape});
    CHECK(dynamic_cast<nn::gemm_layer&>(net.at("conv1")).last_clip_scales().weights.size() == 32);
    CHECK(dynamic_cast<nn::gemm_layer&>(net.at("fc")).last_clip_scales().activations.size() == 1);
    net.set_datapath(lns);  // logarithmic training: the forward and both backward GEMMs on lns_gemm
    net.zero_grad();
    const nn::tensor l = net.forward(x, nn::pass::training);
    net.backward({nn::softmax_cross_entropy(l.values, std::span(data.train.labels).first(64)).gradient, l.shape});
    CHECK(l.values.allFinite());
    CHECK(net.parameters(true).front()->grad.allFinite());
    CHECK(net.parameters(true).front()->grad.cwiseAbs().maxCoeff() > 0);
    std::remove("cnn.weights");
}

TEST_CASE("tour: every line of the README's tour is compiled above", "[readme]") {
    const std::filesystem::path self = __FILE__;  // (CMake gives the compiler absolute paths)
    const auto readme = lines_of(self.parent_path().parent_path().parent_path() / "README.md");
    const auto source = lines_of(self);
    const std::set<std::string> here(source.begin(), source.end());
    const auto tour = std::find(readme.begin(), readme.end(), "## A tour of the API");
    REQUIRE(tour != readme.end());
    int checked = 0;
    bool code = false;
    for (auto line = tour + 1; line != readme.end() && line->rfind("## ", 0) != 0; ++line) {
        if (line->rfind("```", 0) == 0) {
            code = *line == "```cpp";
            continue;
        }
        if (!code || line->empty()) continue;
        ++checked;
        INFO("README.md's tour: " << *line);
        CHECK(here.count(*line) == 1);
    }
    CHECK(checked >= 100);  // the four blocks (a layout change would make this check nothing)
}
