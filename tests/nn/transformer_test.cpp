// The transformer layers of lowbit::nn (one test file for all of them: each file that includes the
// nn headers costs CI a minute or two of compiling).
//
// Oracles:
//  * PyTorch (Debian's python3-torch, run as /usr/bin/python3 tests/nn/torch_oracle.py): each
//    layer's forward, input gradient and parameter gradients, and a whole pre-LN transformer block
//    with its Mix-FFN, computed by torch.nn's modules in float64 from the same weights and inputs,
//    agree with lowbit's fp32 within float tolerance; so do the one-cycle schedule and AdamW.
//  * With an exact-fp32 datapath (products and a sequential accumulator rounded to fp32) the block
//    equals, bit for bit, the same block computed by plain loops here (each product rounded to
//    float, added in order, rounded to float).
//  * Structured skipping equals PyTorch on weights zeroed where the work is skipped (attention
//    channels, MLP channels), with no gradient for the skipped weights, and the datapath counts
//    only the MACs that ran.
//  * Shapes are checked when a network is built (the exception names both shapes); dropout is the
//    identity at inference and its backward uses its forward's mask.
#include <lowbit/nn/attention.hpp>
#include <lowbit/nn/depthwise_conv.hpp>
#include <lowbit/nn/dropout.hpp>
#include <lowbit/nn/gelu.hpp>
#include <lowbit/nn/layer_norm.hpp>
#include <lowbit/nn/linear.hpp>
#include <lowbit/nn/network.hpp>
#include <lowbit/nn/optimizers.hpp>
#include <lowbit/nn/patch_embedding.hpp>
#include <lowbit/nn/positional_embedding.hpp>
#include <lowbit/nn/residual.hpp>
#include <lowbit/nn/schedules.hpp>
#include <lowbit/nn/softmax.hpp>
#include <lowbit/nn/token_pooling.hpp>
#include <lowbit/nn/transformer_block.hpp>
#include <lowbit/rounding/quantize.hpp>

#include <catch2/catch.hpp>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <unistd.h>
#include <vector>

namespace {

namespace nn = lowbit::nn;
using nn::matrix;

matrix random_matrix(Eigen::Index rows, Eigen::Index cols, std::uint64_t seed, float scale = 1) {
    std::mt19937_64 engine(seed);
    matrix m(rows, cols);
    for (Eigen::Index i = 0; i < m.size(); ++i) m.data()[i] = scale * float(double(engine() >> 11) * 0x1p-52 - 1);
    return m;
}

// One case for the PyTorch oracle: a kind, options, named tensors.
struct torch_case {
    explicit torch_case(std::string k) : kind(std::move(k)) {}

    std::string kind;
    std::map<std::string, std::string> options;
    std::vector<std::pair<std::string, matrix>> tensors;

    torch_case& option(const std::string& key, double value) {
        std::ostringstream s;
        s.precision(17);
        s << value;
        options[key] = s.str();
        return *this;
    }
    torch_case& tensor(const std::string& name, const matrix& m) {
        tensors.emplace_back(name, m);
        return *this;
    }
};

// Runs tests/nn/torch_oracle.py on the case and returns its tensors by name.
std::map<std::string, matrix> run_torch(const torch_case& c) {
    namespace fs = std::filesystem;
    const fs::path script = fs::path(__FILE__).parent_path() / "torch_oracle.py";
    const fs::path dir = fs::temp_directory_path() / ("lowbit_torch_" + c.kind + "_" + std::to_string(::getpid()));
    fs::create_directories(dir);
    {
        std::ofstream f(dir / "case.txt");
        f << "case " << c.kind << "\n";
        for (const auto& [k, v] : c.options) f << "option " << k << " " << v << "\n";
        char buffer[32];
        for (const auto& [name, m] : c.tensors) {
            f << "tensor " << name << " " << m.rows() << " " << m.cols() << "\n";
            for (Eigen::Index i = 0; i < m.size(); ++i) {
                std::snprintf(buffer, sizeof buffer, "%.9g ", double(m.data()[i]));  // float round trip
                f << buffer;
            }
            f << "\n";
        }
    }
    const std::string command = "/usr/bin/python3 '" + script.string() + "' '" + (dir / "case.txt").string() + "' '" +
                                (dir / "result.txt").string() + "'";
    INFO("PyTorch oracle: " << command << " (python3-torch: scripts/install-deps.sh installs it)");
    REQUIRE(std::system(command.c_str()) == 0);
    std::map<std::string, matrix> out;
    std::ifstream f(dir / "result.txt");
    std::string word, name;
    Eigen::Index rows = 0, cols = 0;
    while (f >> word >> name >> rows >> cols) {
        REQUIRE(word == "tensor");
        matrix m(rows, cols);
        for (Eigen::Index i = 0; i < m.size(); ++i) {
            double v;
            f >> v;
            m.data()[i] = float(v);
        }
        out[name] = m;
    }
    fs::remove_all(dir);
    return out;
}

// lowbit's fp32 result against PyTorch's float64 one: within 2e-5 of the reference's largest
// magnitude (fp32 sums of at most a few hundred terms; an error in a formula is far larger).
void check_close(const std::string& what, const matrix& ours, const matrix& reference) {
    INFO(what);
    REQUIRE(ours.rows() == reference.rows());
    REQUIRE(ours.cols() == reference.cols());
    const double scale = std::max(1.0, double(reference.cwiseAbs().maxCoeff()));
    const double error = (ours - reference).cwiseAbs().maxCoeff();
    INFO("largest difference " << error << ", largest reference magnitude " << scale);
    CHECK(error <= 2e-5 * scale);
}

// Forward (training) and backward of a layer on x with output gradient dy, checked against the
// oracle: y, dx and every parameter's gradient ("grad:<name>").
void check_against_torch(nn::layer& l, torch_case c, const nn::tensor& x, std::uint64_t seed) {
    const nn::tensor y = l.forward(x, nn::pass::training);
    const nn::tensor dy{random_matrix(y.batch(), y.values.cols(), seed), y.shape};
    for (auto& [name, p] : l.named_parameters()) p->grad.setZero();
    const nn::tensor dx = l.backward(dy);
    c.option("batch", double(x.batch())).tensor("x", x.values).tensor("dy", dy.values);
    for (auto& [name, p] : l.named_parameters()) c.tensor(name, p->value);
    const auto reference = run_torch(c);
    check_close(c.kind + ": y", y.values, reference.at("y"));
    check_close(c.kind + ": dx", dx.values, reference.at("dx"));
    for (auto& [name, p] : l.named_parameters()) check_close(c.kind + ": d" + name, p->grad, reference.at("grad:" + name));
}

}  // namespace

TEST_CASE("transformer layers: layer_norm, GELU (erf and tanh), softmax, token pooling against PyTorch") {
    const nn::shape3 s = nn::token_shape(2, 3, 8);
    const nn::tensor x{random_matrix(5, s.size(), 11, 2.0f), s};
    SECTION("layer_norm") {
        nn::layer_norm ln(8);
        ln.parameters()[0]->value = random_matrix(1, 8, 12);
        ln.parameters()[1]->value = random_matrix(1, 8, 13);
        check_against_torch(ln, torch_case{"layer_norm"}.option("features", 8).option("eps", 1e-5), x, 14);
    }
    SECTION("gelu erf") {
        nn::gelu g;
        check_against_torch(g, torch_case{"gelu"}.option("features", 8), x, 15);
    }
    SECTION("gelu tanh") {
        nn::gelu g(nn::gelu_form::tanh);
        check_against_torch(g, torch_case{"gelu_tanh"}.option("features", 8), x, 16);
    }
    SECTION("softmax") {
        nn::softmax sm;
        check_against_torch(sm, torch_case{"softmax"}.option("features", 8), x, 17);
    }
    SECTION("token_mean_pool") {
        nn::token_mean_pool pool;
        CHECK(pool.output_shape(s) == nn::shape3{8, 1, 1});
        check_against_torch(pool, torch_case{"token_mean_pool"}.option("features", 8), x, 18);
    }
}

TEST_CASE("transformer layers: linear on tokens, patch embedding, positional embedding against PyTorch") {
    SECTION("linear applies to every token") {
        nn::linear l(8, 6, 21);
        l.bias().value = random_matrix(1, 6, 22);
        const nn::tensor x{random_matrix(4, 12 * 8, 23), nn::token_shape(3, 4, 8)};
        CHECK(l.output_shape(x.shape) == nn::token_shape(3, 4, 6));
        check_against_torch(l, torch_case{"linear"}.option("features", 8), x, 24);
    }
    SECTION("patch_embedding") {
        nn::patch_embedding pe({2, 8, 12}, 4, 5, 25);
        pe.bias().value = random_matrix(1, 5, 26);
        CHECK(pe.output_shape({2, 8, 12}) == nn::token_shape(2, 3, 5));
        const nn::tensor x{random_matrix(3, 2 * 8 * 12, 27), {2, 8, 12}};
        check_against_torch(pe,
                            torch_case{"patch_embedding"}.option("channels", 2).option("height", 8).option("width", 12)
                                .option("patch", 4),
                            x, 28);
    }
    SECTION("positional_embedding") {
        nn::positional_embedding pos(nn::token_shape(2, 2, 3), 29);
        const nn::tensor x{random_matrix(3, 12, 30), nn::token_shape(2, 2, 3)};
        check_against_torch(pos, torch_case{"positional_embedding"}.option("features", 3), x, 31);
    }
}

TEST_CASE("transformer layers: multi-head attention and the depth-wise conv against PyTorch") {
    const nn::shape3 s = nn::token_shape(3, 4, 8);
    const nn::tensor x{random_matrix(3, s.size(), 41), s};
    SECTION("attention, 2 heads") {
        nn::multi_head_attention a(8, 2, 42);
        a.qkv().bias().value = random_matrix(1, 24, 43);
        a.proj().bias().value = random_matrix(1, 8, 44);
        check_against_torch(a, torch_case{"attention"}.option("features", 8).option("heads", 2), x, 45);
    }
    SECTION("depthwise_conv 3x3 on a 3 x 4 grid") {
        nn::depthwise_conv dw(s, 46);
        dw.bias().value = random_matrix(1, 8, 47);
        check_against_torch(dw,
                            torch_case{"depthwise_conv"}.option("features", 8).option("height", 3).option("width", 4), x,
                            48);
    }
}

namespace {
// A network holding one pre-LN transformer block with Mix-FFN: 3 x 4 tokens of 8 features,
// 2 heads, 12 hidden channels; biases and layer-norm affines random (not their initial 0 and 1).
nn::network block_network() {
    nn::network net(nn::token_shape(3, 4, 8));
    nn::add_transformer_block(net, "blk", {.heads = 2, .mlp_hidden = 12, .seed = 51});
    std::uint64_t seed = 52;
    for (auto& [name, p] : net.named_parameters())
        if (name.find("weight") == std::string::npos) p->value = random_matrix(1, p->value.cols(), seed++, 0.5f);
    return net;
}
}  // namespace

TEST_CASE("transformer block: x + attn(LN(x)), x + fc2(GELU(dwconv(fc1(LN(x))))) against PyTorch") {
    nn::network net = block_network();
    const nn::tensor x{random_matrix(3, net.input_shape().size(), 61), net.input_shape()};
    const nn::tensor y = net.forward(x, nn::pass::training);
    const nn::tensor dy{random_matrix(3, y.values.cols(), 62), y.shape};
    net.zero_grad();
    const nn::tensor dx = net.backward(dy);
    torch_case c{"transformer_block"};
    c.option("batch", 3).option("features", 8).option("heads", 2).option("eps", 1e-5).option("height", 3).option("width", 4);
    c.tensor("x", x.values).tensor("dy", dy.values);
    for (auto& [name, p] : net.named_parameters()) c.tensor(name, p->value);
    const auto reference = run_torch(c);
    check_close("block y", y.values, reference.at("y"));
    check_close("block dx", dx.values, reference.at("dx"));
    CHECK(net.named_parameters().size() == 14);
    for (auto& [name, p] : net.named_parameters()) check_close("block d" + name, p->grad, reference.at("grad:" + name));
}

namespace {
// Plain fp32 GEMM: each product rounded to float, added in order of k, each sum rounded to float.
// (The product goes through a volatile: otherwise the compiler may contract the product and the
// sum into one FMA, one rounding instead of two.)
matrix sequential_gemm(const matrix& a, const matrix& b) {
    matrix c(a.rows(), b.cols());
    for (Eigen::Index i = 0; i < a.rows(); ++i)
        for (Eigen::Index j = 0; j < b.cols(); ++j) {
            float acc = 0;
            for (Eigen::Index k = 0; k < a.cols(); ++k) {
                const volatile float p = a(i, k) * b(k, j);
                acc = acc + p;
            }
            c(i, j) = acc;
        }
    return c;
}
// y = x W^T + b on rows of tokens
matrix sequential_linear(const matrix& x, nn::gemm_layer& l) {
    matrix y = sequential_gemm(l.weight().value, x.transpose()).transpose();
    y.rowwise() += l.bias().value.row(0);
    return y;
}
}  // namespace

TEST_CASE("transformer block: on an exact-fp32 datapath it equals plain fp32 loops bit for bit") {
    nn::network net = block_network();
    const lowbit::float_quantizer fp32{.format = lowbit::fp32};
    net.set_datapath({.spec = lowbit::gemm_spec{.product = fp32, .accumulator = fp32}});
    const int batch = 3, t = 12, d = 8, hidden = 12;
    const nn::tensor x{random_matrix(batch, net.input_shape().size(), 71), net.input_shape()};
    const nn::tensor y = net.forward(x, nn::pass::inference);

    auto& attn_body = dynamic_cast<nn::residual&>(net.at("blk_attn")).body();
    auto& mlp_body = dynamic_cast<nn::residual&>(net.at("blk_mlp")).body();
    auto& attn = dynamic_cast<nn::multi_head_attention&>(attn_body.at("attn"));
    // attention, by hand: the layer norms and GELU are fp32 code shared by both paths
    const matrix h = attn_body.at("ln").forward(x, nn::pass::inference).values.reshaped<Eigen::RowMajor>(batch * t, d);
    const matrix qkv = sequential_linear(h, attn.qkv());
    matrix heads(batch * t, d);
    for (int n = 0; n < batch; ++n)
        for (int head = 0; head < 2; ++head) {
            const matrix q = qkv.block(n * t, head * 4, t, 4), k = qkv.block(n * t, d + head * 4, t, 4),
                         v = qkv.block(n * t, 2 * d + head * 4, t, 4);
            matrix p = sequential_gemm(q, k.transpose()) * 0.5f;  // 1 / sqrt(4)
            nn::softmax_rows(p);
            heads.block(n * t, head * 4, t, 4) = sequential_gemm(p, v);
        }
    matrix x1 = sequential_linear(heads, attn.proj()) + x.values.reshaped<Eigen::RowMajor>(batch * t, d);
    // the MLP
    const nn::tensor x1_tensor{x1.reshaped<Eigen::RowMajor>(batch, t * d), net.input_shape()};
    const matrix h2 = mlp_body.at("ln").forward(x1_tensor, nn::pass::inference).values.reshaped<Eigen::RowMajor>(batch * t, d);
    const matrix f1 = sequential_linear(h2, dynamic_cast<nn::gemm_layer&>(mlp_body.at("fc1")));
    auto& dw = dynamic_cast<nn::gemm_layer&>(mlp_body.at("dwconv"));
    matrix conv(batch * t, hidden);
    for (int n = 0; n < batch; ++n)
        for (int yy = 0; yy < 3; ++yy)
            for (int xx = 0; xx < 4; ++xx)
                for (int c = 0; c < hidden; ++c) {
                    matrix taps = matrix::Zero(9, 1);  // zero outside the grid, multiplied all the same
                    for (int tap = 0; tap < 9; ++tap) {
                        const int sy = yy + tap / 3 - 1, sx = xx + tap % 3 - 1;
                        if (sy >= 0 && sy < 3 && sx >= 0 && sx < 4) taps(tap, 0) = f1(n * t + sy * 4 + sx, c);
                    }
                    conv(n * t + yy * 4 + xx, c) = sequential_gemm(dw.weight().value.row(c), taps)(0, 0) + dw.bias().value(0, c);
                }
    const nn::tensor g =
        mlp_body.at("gelu").forward({conv.reshaped<Eigen::RowMajor>(batch, t * hidden), nn::token_shape(3, 4, hidden)},
                                    nn::pass::inference);
    const matrix f2 = sequential_linear(g.values.reshaped<Eigen::RowMajor>(batch * t, hidden),
                                        dynamic_cast<nn::gemm_layer&>(mlp_body.at("fc2")));
    const matrix expected = (f2 + x1).reshaped<Eigen::RowMajor>(batch, t * d);
    REQUIRE(y.values.rows() == expected.rows());
    REQUIRE(y.values.cols() == expected.cols());
    int differing = 0;
    for (Eigen::Index i = 0; i < expected.size(); ++i)
        differing += std::bit_cast<std::uint32_t>(y.values.data()[i]) != std::bit_cast<std::uint32_t>(expected.data()[i]);
    CHECK(differing == 0);
    // and the exact-fp32 datapath is not the fp32 GEMM of Eigen by accident: the same within rounding
    nn::network plain = block_network();
    CHECK((plain.forward(x, nn::pass::inference).values - y.values).cwiseAbs().maxCoeff() < 1e-4f);
}

TEST_CASE("structured skipping: attention and MLP channels skipped equal PyTorch on zeroed weights") {
    const nn::shape3 s = nn::token_shape(3, 4, 8);
    const nn::tensor x{random_matrix(3, s.size(), 81), s};
    SECTION("attention: channels 1, 2, 3 of head 0 and all of head 1 skipped") {
        nn::multi_head_attention a(8, 2, 82);
        a.qkv().bias().value = random_matrix(1, 24, 83);
        a.proj().bias().value = random_matrix(1, 8, 84);
        a.set_active_channels({0});
        const nn::tensor y = a.forward(x, nn::pass::training);
        const nn::tensor dy{random_matrix(3, y.values.cols(), 85), y.shape};
        for (auto* p : a.parameters()) p->grad.setZero();
        const nn::tensor dx = a.backward(dy);
        // PyTorch: the same attention with Q, K, V rows (and biases) of skipped channels zero, and the
        // output projection's columns of skipped channels zero.
        matrix wqkv = a.qkv().weight().value, bqkv = a.qkv().bias().value, wproj = a.proj().weight().value;
        for (int c = 1; c < 8; ++c) {
            for (int part = 0; part < 3; ++part) wqkv.row(part * 8 + c).setZero(), bqkv(0, part * 8 + c) = 0;
            wproj.col(c).setZero();
        }
        torch_case tc{"attention"};
        tc.option("batch", 3).option("features", 8).option("heads", 2).tensor("x", x.values).tensor("dy", dy.values);
        tc.tensor("qkv.weight", wqkv).tensor("qkv.bias", bqkv).tensor("proj.weight", wproj).tensor("proj.bias", a.proj().bias().value);
        const auto reference = run_torch(tc);
        check_close("skipped attention y", y.values, reference.at("y"));
        check_close("skipped attention dx", dx.values, reference.at("dx"));
        // gradients of the weights that ran are PyTorch's; the skipped ones get none
        const std::vector<int> running_rows{0, 8, 16};
        check_close("dWqkv of running rows", a.qkv().weight().grad(running_rows, Eigen::all),
                    reference.at("grad:qkv.weight")(running_rows, Eigen::all));
        // every other row of dWqkv is exactly zero (a sum of the whole against the running rows' sum
        // differs in its last bit where Eigen reduces the two in different orders)
        std::vector<int> skipped_rows;
        for (int r = 0; r < 24; ++r)
            if (r % 8 != 0) skipped_rows.push_back(r);
        CHECK(a.qkv().weight().grad(skipped_rows, Eigen::all).cwiseAbs().maxCoeff() == 0);
        check_close("dWproj of the running column", a.proj().weight().grad.col(0), reference.at("grad:proj.weight").col(0));
        check_close("dbproj", a.proj().bias().grad, reference.at("grad:proj.bias"));
        CHECK(a.proj().weight().grad.rightCols(7).cwiseAbs().maxCoeff() == 0);
    }
    SECTION("MLP: the datapath counts only the MACs that ran, and the result is the smaller MLP's") {
        nn::linear fc1(8, 12, 86), fc2(12, 8, 87);
        nn::depthwise_conv dw(nn::token_shape(3, 4, 12), 88);
        const std::vector<int> kept{0, 1, 2, 3, 8, 9, 10, 11};
        fc1.set_active(kept, {});
        dw.set_active(kept, {});
        fc2.set_active({}, kept);
        lowbit::gemm_stats stats;
        const lowbit::float_quantizer fp32{.format = lowbit::fp32};
        const nn::gemm_datapath d{.spec = lowbit::gemm_spec{.product = fp32, .accumulator = fp32}, .stats = &stats};
        fc1.datapath = dw.datapath = fc2.datapath = d;
        const nn::tensor y = fc2.forward(dw.forward(fc1.forward(x, nn::pass::inference), nn::pass::inference),
                                         nn::pass::inference);
        const std::uint64_t tokens = 3 * 12;
        CHECK(stats.macs == tokens * (8 * 8 + 8 * 9 + 8 * 8));
        // the same from layers that have only the kept channels
        nn::linear small1(8, 8), small2(8, 8);
        nn::depthwise_conv small_dw(nn::token_shape(3, 4, 8));
        small1.weight().value = fc1.weight().value(kept, Eigen::all), small1.bias().value = fc1.bias().value(Eigen::all, kept);
        small_dw.weight().value = dw.weight().value(kept, Eigen::all), small_dw.bias().value = dw.bias().value(Eigen::all, kept);
        small2.weight().value = fc2.weight().value(Eigen::all, kept), small2.bias().value = fc2.bias().value;
        small1.datapath = small_dw.datapath = small2.datapath = {.spec = d.spec};
        const nn::tensor expected = small2.forward(
            small_dw.forward(small1.forward(x, nn::pass::inference), nn::pass::inference), nn::pass::inference);
        CHECK(y.values == expected.values);
    }
    SECTION("bad lists are rejected, naming the layer") {
        nn::linear l(8, 4);
        CHECK_THROWS_WITH(l.set_active({2, 1}, {}), Catch::Contains("linear 8->4") && Catch::Contains("must ascend"));
        CHECK_THROWS_WITH(l.set_active({}, {8}), Catch::Contains("active input 0 is 8"));
    }
}

TEST_CASE("transformer networks: shapes are checked when built, naming both shapes") {
    nn::network body(nn::token_shape(2, 2, 8));
    body.add("fc", nn::linear(8, 6));
    CHECK_THROWS_WITH(nn::residual(body), Catch::Contains("takes 4 tokens (2 x 2) x 8 features") &&
                                              Catch::Contains("makes 4 tokens (2 x 2) x 6 features"));
    nn::network same(nn::token_shape(2, 2, 8));
    same.add("ln", nn::layer_norm(8));
    nn::network net(nn::token_shape(2, 2, 6));
    CHECK_THROWS_WITH(net.add("res", nn::residual(same)), Catch::Contains("input shape 4 tokens (2 x 2) x 6 features") &&
                                                              Catch::Contains("4 tokens (2 x 2) x 8 features"));
    nn::network image({1, 28, 28});
    CHECK_THROWS_WITH(nn::add_transformer_block(image, "b", {}), Catch::Contains("1 x 28 x 28, which is not tokens"));
    CHECK_THROWS_WITH(nn::multi_head_attention(10, 4), Catch::Contains("heads must divide dim"));
    CHECK_THROWS_WITH(nn::patch_embedding({1, 28, 28}, 5, 16), Catch::Contains("patch = 5 must divide"));
    nn::network tokens(nn::token_shape(2, 2, 8));
    CHECK_THROWS_WITH(tokens.add("ln", nn::layer_norm(6)), Catch::Contains("does not have 6 features"));
    CHECK_THROWS_WITH(tokens.add("fc", nn::linear(6, 3)), Catch::Contains("does not have 6 features per token"));
    // a whole ViT builds, names its parameters uniquely, and set_datapath reaches every GEMM
    nn::network vit({1, 28, 28});
    vit.add("embed", nn::patch_embedding({1, 28, 28}, 7, 16)).add("pos", nn::positional_embedding(nn::token_shape(4, 4, 16)));
    nn::add_transformer_block(vit, "block1", {.heads = 2, .mlp_hidden = 32});
    vit.add("ln", nn::layer_norm(16)).add("pool", nn::token_mean_pool{}).add("head", nn::linear(16, 10));
    CHECK(vit.output_shape() == nn::shape3{10, 1, 1});
    vit.set_datapath({.spec = lowbit::gemm_spec{}});
    int layers_with_datapath = 0;
    for (std::size_t i = 0; i < vit.size(); ++i)
        nn::visit_layers(vit[i], [&](nn::layer& l) {
            if (auto* d = dynamic_cast<nn::datapath_layer*>(&l)) layers_with_datapath += d->datapath.spec.has_value();
        });
    CHECK(layers_with_datapath == 8);  // embed, attn (its products), qkv, proj, fc1, dwconv, fc2, head
    CHECK(vit.named_parameters()[3].first == "block1_attn.ln.gamma");
    CHECK(vit.named_parameters()[5].first == "block1_attn.attn.qkv.weight");
}

TEST_CASE("dropout: identity at inference, the forward's mask in backward, about the rate dropped") {
    nn::dropout drop(0.25, 3);
    const nn::tensor x{random_matrix(40, 50, 91), {50, 1, 1}};
    CHECK(drop.forward(x, nn::pass::inference).values == x.values);
    const nn::tensor y = drop.forward(x, nn::pass::training);
    const double dropped = (y.values.array() == 0).cast<double>().mean();
    CHECK(dropped > 0.2);
    CHECK(dropped < 0.3);
    const matrix kept_scaled = (y.values.array() != 0).select(x.values / 0.75f, 0.0f);
    CHECK((y.values - kept_scaled).cwiseAbs().maxCoeff() < 1e-6f);
    const nn::tensor dx = drop.backward({matrix::Ones(40, 50), x.shape});
    CHECK(((dx.values.array() == 0) == (y.values.array() == 0)).all());
    CHECK_THROWS_WITH(nn::dropout(1.0), Catch::Contains("rate = 1.0"));
}

TEST_CASE("AdamW and the one-cycle schedule against PyTorch") {
    SECTION("one_cycle: PyTorch's OneCycleLR, cosine") {
        const nn::one_cycle lr{.max = 3e-3, .steps = 50, .pct_start = 0.3, .div_factor = 25, .final_div_factor = 1e4};
        matrix ours(1, 50);
        for (int s = 0; s < 50; ++s) ours(0, s) = float(lr(s));
        torch_case c{"one_cycle"};
        c.option("max", 3e-3).option("steps", 50).option("pct_start", 0.3).option("div_factor", 25).option("final_div_factor", 1e4);
        check_close("one-cycle rates (x 1000)", ours * 1000, run_torch(c).at("rates") * 1000);
        CHECK_THROWS_WITH(lr(50), Catch::Contains("step 50 is outside [0, 50)"));
    }
    SECTION("adam with weight_decay is PyTorch's AdamW") {
        nn::parameter w{"w", random_matrix(3, 4, 101), matrix::Zero(3, 4)};
        nn::adam opt({&w}, {.learning_rate = 0.01, .weight_decay = 0.05});
        const matrix start = w.value;
        matrix grads(5, 12);
        for (int i = 0; i < 5; ++i) {
            w.grad = random_matrix(3, 4, 102 + std::uint64_t(i));
            grads.row(i) = w.grad.reshaped<Eigen::RowMajor>().transpose();
            opt.step();
        }
        torch_case c{"adamw"};
        c.option("lr", 0.01).option("weight_decay", 0.05).tensor("w", start).tensor("grads", grads);
        check_close("AdamW weights after 5 steps", w.value, run_torch(c).at("w"));
    }
}

TEST_CASE("fp32 units (layer norm, GELU, softmax) round their outputs by `output`, gradients straight through") {
    const nn::shape3 s = nn::token_shape(2, 2, 8);
    const nn::tensor x{random_matrix(3, s.size(), 111, 2.0f), s};
    const nn::tensor dy{random_matrix(3, s.size(), 112), s};
    const auto check = [&](auto plain) {
        auto rounded = plain;
        rounded.output = lowbit::quantizer(lowbit::float_quantizer{.format = lowbit::bf16});
        const nn::tensor y = plain.forward(x, nn::pass::training), yq = rounded.forward(x, nn::pass::training);
        INFO(plain.describe());
        int off_grid = 0;
        for (Eigen::Index i = 0; i < y.values.size(); ++i)
            off_grid += yq.values.data()[i] != lowbit::quantize(y.values.data()[i], lowbit::bf16);
        CHECK(off_grid == 0);
        CHECK(yq.values != y.values);  // bf16 did round something
        CHECK(rounded.backward(dy).values == plain.backward(dy).values);
    };
    check(nn::layer_norm(8));
    check(nn::gelu());
    check(nn::softmax());
}

TEST_CASE("attention's products and the depth-wise conv: fine-grained gradients, ste's where nothing is lost") {
    const nn::shape3 s = nn::token_shape(3, 4, 8);
    const nn::tensor x{random_matrix(3, s.size(), 61), s}, dy{random_matrix(3, s.size(), 62), s};
    const lowbit::float_quantizer fp32{.format = lowbit::fp32};
    // An 8-bit accumulator (M3E4, flush and saturate) in chunks of 4: swamps on most chains.
    const lowbit::float_quantizer m3e4{.format = {.exp_bits = 4, .man_bits = 3, .bias = 7, .subnormals = false,
                                                  .specials = lowbit::special_values::none},
                                       .on_overflow = lowbit::overflow::saturate};
    const lowbit::gemm_spec exact_sums{.accumulator = fp32}, lossy{.accumulator = m3e4, .chunk = 4, .chunk_accumulator = m3e4};
    // The gradients (dx and every parameter's) of one training step on `spec`, by gradient mode.
    const auto gradients = [&](auto make, const lowbit::gemm_spec& spec, lowbit::gradient_mode mode) {
        auto l = make();
        l.datapath = nn::gemm_datapath{.spec = spec, .gradient = mode};
        (void)l.forward(x, nn::pass::training);
        std::vector<matrix> g{l.backward(dy).values};
        for (auto& [name, p] : l.named_parameters()) g.push_back(p->grad);
        return g;
    };
    const auto max_difference = [](const std::vector<matrix>& a, const std::vector<matrix>& b) {
        double d = 0;
        for (std::size_t i = 0; i < a.size(); ++i) d = std::max(d, double((a[i] - b[i]).cwiseAbs().maxCoeff()));
        return d;
    };
    const auto check = [&](auto make) {
        // fp32 sums of these few products lose nothing: immediate and recursive are ste (summed in
        // double rather than float), which catches operands or transposes wired wrongly.
        const auto ste = gradients(make, exact_sums, lowbit::gradient_mode::ste);
        for (const auto mode : {lowbit::gradient_mode::immediate, lowbit::gradient_mode::recursive}) {
            CAPTURE(to_string(mode));
            CHECK(max_difference(gradients(make, exact_sums, mode), ste) <= 1e-5);
            // ... and the masks of a lossy accumulator change them.
            CHECK(max_difference(gradients(make, lossy, mode), gradients(make, lossy, lowbit::gradient_mode::ste)) > 1e-3);
        }
    };
    SECTION("attention, 2 heads") { check([] { return nn::multi_head_attention(8, 2, 42); }); }
    SECTION("depthwise_conv 3x3") { check([&] { return nn::depthwise_conv(s, 46); }); }
}
