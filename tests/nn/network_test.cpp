// Tests of lowbit/nn/network.hpp.
//  * add: shapes checked when a layer is added (the message names both shapes, the network is
//    unchanged), names unique, non-empty and without '.'.
//  * forward and backward equal the layers run one after the other by hand (bit for bit, both
//    passes, gradients included); parameter names "<layer>.<parameter>"; zero_grad; set_datapath
//    reaches every conv2d and linear; copies are deep.
//  * fold_batch_norm: on a network with non-trivial running statistics and affine parameters the
//    folded network (no batch_norm left) gives the unfolded inference output within float
//    tolerance; a batch_norm after anything else is rejected by name.
//  * Training a small synthetic problem (horizontal, vertical or diagonal bar at a random place in a
//    6x6 image, with noise: no linear function of the pixels separates these) with Adam and with
//    SGD lowers the held-out loss to a fraction of its start and reaches high accuracy.
//  * Training in micro-batches (batch 45: three of 15): the same bits on one and two threads
//    (outputs, input gradient, every parameter's gradient, running statistics), and, against the
//    batch trained whole (set_micro_batch(0), the path the tests above check layer by layer), the
//    same outputs and gradients within float rounding; a network with a layer that needs the
//    whole batch (a datapath with a spec) trains it whole, bit for bit as set_micro_batch(0);
//    a gradient of the wrong batch and a negative micro-batch are rejected with a message.
//  * save then load into a freshly constructed network is bit for bit (values and outputs);
//    files of a network with another layer size or other layer names, and truncated files, are
//    rejected with a message saying what differs, and no weight changes.
#include <lowbit/nn/network.hpp>

#include <lowbit/nn/batch_norm.hpp>
#include <lowbit/nn/conv2d.hpp>
#include <lowbit/nn/flatten.hpp>
#include <lowbit/nn/linear.hpp>
#include <lowbit/nn/loss.hpp>
#include <lowbit/nn/optimizers.hpp>
#include <lowbit/nn/pooling.hpp>
#include <lowbit/nn/relu.hpp>

#include "support/exception_message.hpp"
#include "support/temporary_directory.hpp"

#include <catch2/catch.hpp>

#include <Eigen/Core>

#if defined(_OPENMP)
#include <omp.h>
#endif

#include <bit>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

using Catch::Contains;
using lowbit::conv_geometry;
using lowbit::nn::batch_norm;
using lowbit::nn::conv2d;
using lowbit::nn::flatten;
using lowbit::nn::linear;
using lowbit::nn::matrix;
using lowbit::nn::max_pool2d;
using lowbit::nn::network;
using lowbit::nn::pass;
using lowbit::nn::relu;
using lowbit::nn::shape3;
using lowbit::nn::tensor;
using lowbit_test::message_of;
using lowbit_test::temporary_directory;

const shape3 image_shape{1, 6, 6};
const conv_geometry conv1_geometry{.channels = 1, .height = 6, .width = 6, .kernel = 3, .stride = 1, .padding = 1};

bool same_bits(const matrix& a, const matrix& b) {
    if (a.rows() != b.rows() || a.cols() != b.cols()) return false;
    for (Eigen::Index i = 0; i < a.size(); ++i)
        if (std::bit_cast<std::uint32_t>(a.data()[i]) != std::bit_cast<std::uint32_t>(b.data()[i])) return false;
    return true;
}

matrix random_matrix(Eigen::Index rows, Eigen::Index cols, std::mt19937_64& engine, double lo = -1, double hi = 1) {
    matrix m(rows, cols);
    for (Eigen::Index i = 0; i < m.size(); ++i)
        m.data()[i] = float(lo + (hi - lo) * (double(engine() >> 11) * 0x1p-53));
    return m;
}

// The synthetic problem: class 0 a horizontal bar (a random row), class 1 a vertical bar (a random
// column), class 2 a diagonal or anti-diagonal, each of value 1 on uniform noise in [-0.3, 0.3].
struct labelled {
    matrix x;
    std::vector<std::uint8_t> labels;
};
labelled bars(int n, std::uint64_t seed) {
    std::mt19937_64 engine(seed);
    labelled d{random_matrix(n, 36, engine, -0.3, 0.3), std::vector<std::uint8_t>(std::size_t(n))};
    for (int i = 0; i < n; ++i) {
        const int c = int(engine() % 3), at = int(engine() % 6);
        d.labels[std::size_t(i)] = std::uint8_t(c);
        for (int t = 0; t < 6; ++t) {
            const int row = c == 0 ? at : t;
            const int col = c == 0 ? t : c == 1 ? at : (at % 2 == 0 ? t : 5 - t);
            d.x(i, row * 6 + col) += 1.0f;
        }
    }
    return d;
}

// conv1 (1->4, 3x3, pad 1) [bn1] relu1 pool1 (2x2 max) flat, then `head` (linear 36 -> classes).
network small_cnn(std::uint64_t seed, bool with_batch_norm, int classes = 3, const std::string& head = "fc") {
    network net(image_shape);
    net.add("conv1", conv2d(conv1_geometry, 4, seed));
    if (with_batch_norm) net.add("bn1", batch_norm(4));
    net.add("relu1", relu{});
    net.add("pool1", max_pool2d({4, 6, 6}, 2));
    net.add("flat", flatten{});
    net.add(head, linear(36, classes, seed + 1));
    return net;
}

// Every parameter's value, in order.
std::vector<matrix> snapshot(network& net) {
    std::vector<matrix> out;
    for (auto* p : net.parameters()) out.push_back(p->value);
    return out;
}
bool same_snapshot(const std::vector<matrix>& a, const std::vector<matrix>& b) {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i)
        if (!same_bits(a[i], b[i])) return false;
    return true;
}

// `steps` optimizer steps on batches of 32 of the bar problem (training-mode forwards: batch-norm
// statistics move too).
template <class Optimizer>
void train(network& net, Optimizer& opt, int steps, std::uint64_t seed) {
    for (int s = 0; s < steps; ++s) {
        const labelled batch = bars(32, seed + std::uint64_t(s));
        net.zero_grad();
        const tensor logits = net.forward({batch.x, image_shape}, pass::training);
        const auto loss = lowbit::nn::softmax_cross_entropy(logits.values, batch.labels);
        (void)net.backward({loss.gradient, logits.shape});
        opt.step();
    }
}

}  // namespace

TEST_CASE("network: add checks shapes and names") {
    network net(image_shape);
    CHECK(net.output_shape() == image_shape);
    CHECK_THAT(message_of([&] { net.add("fc", linear(10, 3)); }),
               Contains("input shape 1 x 6 x 6") && Contains("10 x 1 x 1"));
    CHECK_THAT(message_of([&] { net.add("conv", conv2d({.channels = 3, .height = 6, .width = 6}, 2)); }),
               Contains("input shape 1 x 6 x 6") && Contains("on 3 x 6 x 6"));
    CHECK(net.size() == 0);
    CHECK(net.output_shape() == image_shape);

    net.add("conv1", conv2d(conv1_geometry, 4));
    CHECK(net.output_shape() == shape3{4, 6, 6});
    CHECK_THAT(message_of([&] { net.add("bn", batch_norm(3)); }), Contains("batch_norm 3") && Contains("4 x 6 x 6"));
    CHECK_THAT(message_of([&] { net.add("pool", max_pool2d({4, 5, 5}, 2)); }),
               Contains("on 4 x 5 x 5") && Contains("input shape 4 x 6 x 6"));
    CHECK_THAT(message_of([&] { net.add("fc", linear(144, 3)); }),
               Contains("input shape 4 x 6 x 6 is not 144 x 1 x 1"));
    CHECK(net.size() == 1);
    CHECK(net.output_shape() == shape3{4, 6, 6});

    CHECK_THAT(message_of([&] { net.add("conv1", relu{}); }), Contains("a layer is already named 'conv1'"));
    CHECK_THAT(message_of([&] { net.add("", relu{}); }), Contains("layer name '' must be non-empty and without '.'"));
    CHECK_THAT(message_of([&] { net.add("a.b", relu{}); }), Contains("layer name 'a.b'"));
    CHECK(net.size() == 1);

    net.add("relu1", relu{}).add("flat", flatten{}).add("fc", linear(144, 3));
    CHECK(net.size() == 4);
    CHECK(net.output_shape() == shape3{3, 1, 1});
    CHECK(net.input_shape() == image_shape);
    CHECK(net.name(3) == "fc");
    CHECK(net.at("fc").describe() == "linear 144->3");
    CHECK_THROWS_AS(net.at("nothing"), std::out_of_range);
    CHECK_THROWS_WITH(net.at("nothing"), Contains("no layer named 'nothing'"));
    CHECK(net.describe() ==
          "  conv1: conv2d 1->4 3x3 stride 1 pad 1 on 1 x 6 x 6 -> 4 x 6 x 6\n"
          "  relu1: relu -> 4 x 6 x 6\n"
          "  flat: flatten -> 144 x 1 x 1\n"
          "  fc: linear 144->3 -> 3 x 1 x 1\n");
}

TEST_CASE("network: forward and backward are the layers in sequence") {
    std::mt19937_64 engine(111);
    network net = small_cnn(5, true);
    // The same layers, by hand (same seeds: the same initial weights).
    conv2d conv(conv1_geometry, 4, 5);
    batch_norm bn(4);
    relu act;
    max_pool2d pool({4, 6, 6}, 2);
    flatten flat;
    linear fc(36, 3, 6);
    std::vector<lowbit::nn::layer*> layers = {&conv, &bn, &act, &pool, &flat, &fc};

    for (const pass p : {pass::training, pass::inference, pass::training}) {
        const matrix x = random_matrix(5, 36, engine);
        tensor by_hand{x, image_shape};
        for (auto* l : layers) by_hand = l->forward(by_hand, p);
        const tensor y = net.forward({x, image_shape}, p);
        CHECK(y.shape == shape3{3, 1, 1});
        CHECK(by_hand.shape == y.shape);
        CHECK(same_bits(y.values, by_hand.values));
    }
    // Backward after the last (training) forward, gradients added into each parameter.
    const matrix dy = random_matrix(5, 3, engine);
    tensor back{dy, {3, 1, 1}};
    for (auto it = layers.rbegin(); it != layers.rend(); ++it) back = (*it)->backward(back);
    const tensor dx = net.backward({dy, {3, 1, 1}});
    CHECK(dx.shape == image_shape);
    CHECK(same_bits(dx.values, back.values));

    const auto named = net.named_parameters();
    std::vector<std::string> names;
    for (const auto& [name, p] : named) names.push_back(name);
    CHECK(names == std::vector<std::string>{"conv1.weight", "conv1.bias", "bn1.gamma", "bn1.beta", "bn1.running_mean",
                                            "bn1.running_var", "fc.weight", "fc.bias"});
    const std::vector<matrix*> by_hand_grads = {&conv.weight().grad, &conv.bias().grad, &bn.parameters()[0]->grad,
                                                &bn.parameters()[1]->grad};
    for (std::size_t i = 0; i < by_hand_grads.size(); ++i) CHECK(same_bits(named[i].second->grad, *by_hand_grads[i]));
    CHECK(same_bits(named[6].second->grad, fc.weight().grad));
    CHECK(same_bits(named[7].second->grad, fc.bias().grad));
    CHECK(same_bits(named[4].second->value, bn.running_mean()));  // statistics updated alike
    CHECK(same_bits(named[5].second->value, bn.running_var()));
    CHECK(fc.weight().grad.cwiseAbs().maxCoeff() > 0);

    // Trainable parameters leave out the running statistics; zero_grad clears every gradient.
    CHECK(net.parameters().size() == 8);
    CHECK(net.parameters(true).size() == 6);
    for (auto* p : net.parameters(true)) CHECK(p->trainable);
    net.zero_grad();
    for (auto* p : net.parameters()) CHECK(p->grad.isZero());
}

// One training step of `net` on batch x (a fixed loss gradient): the output, the input gradient and
// every parameter's gradient and value, in order, on `threads` threads.
std::vector<matrix> training_step(network& net, const matrix& x, const matrix& dy, int threads) {
#if defined(_OPENMP)
    const int before = omp_get_max_threads();
    omp_set_num_threads(threads);
#else
    (void)threads;
#endif
    net.zero_grad();
    const tensor y = net.forward({x, image_shape}, pass::training);
    const tensor dx = net.backward({dy, y.shape});
#if defined(_OPENMP)
    omp_set_num_threads(before);
#endif
    std::vector<matrix> out = {y.values, dx.values};
    for (auto* p : net.parameters()) out.push_back(p->grad), out.push_back(p->value);
    return out;
}

TEST_CASE("network: training in micro-batches: the same bits on any thread count, the whole batch's values") {
    std::mt19937_64 engine(2027);
    const matrix x = random_matrix(45, 36, engine), dy = random_matrix(45, 3, engine);
    network whole = small_cnn(9, true);
    whole.set_micro_batch(0);
    network one = small_cnn(9, true), two = small_cnn(9, true);
    CHECK(one.micro_batch() == 16);
    std::vector<matrix> a, b, w;
    for (int step = 0; step < 2; ++step) {  // twice: the copies' parameters follow the network's
        a = training_step(one, x, dy, 1);
        b = training_step(two, x, dy, 2);
        w = training_step(whole, x, dy, 1);
        for (auto* net : {&one, &two, &whole})
            for (auto* p : net->parameters(true)) p->value -= 0.1f * p->grad;
    }
    REQUIRE(a.size() == w.size());
    float largest_grad = 0;
    for (std::size_t i = 2; i < w.size(); i += 2) largest_grad = std::max(largest_grad, w[i].cwiseAbs().maxCoeff());
    for (std::size_t i = 0; i < a.size(); ++i) {
        INFO("item " << i);
        CHECK(same_bits(a[i], b[i]));
        // Rounding differs (the parameter gradients are summed per micro-batch, then added):
        // a few float ulps of the largest value involved.
        const float scale = i >= 2 && i % 2 == 0 ? largest_grad : std::max(1.0f, w[i].cwiseAbs().maxCoeff());
        CHECK((a[i] - w[i]).cwiseAbs().maxCoeff() <= 1e-5f * scale);
    }

    // A layer that needs the batch together: trained whole, bit for bit.
    lowbit::nn::gemm_datapath quantized;
    quantized.spec = lowbit::gemm_spec{.accumulator = lowbit::quantizer::parse("bf16")};
    network spec = small_cnn(9, true), spec_whole = small_cnn(9, true);
    dynamic_cast<lowbit::nn::gemm_layer&>(spec.at("fc")).datapath = quantized;  // (not conv1: set_datapath would)
    dynamic_cast<lowbit::nn::gemm_layer&>(spec_whole.at("fc")).datapath = quantized;
    spec_whole.set_micro_batch(0);
    const std::vector<matrix> s = training_step(spec, x, dy, 2), sw = training_step(spec_whole, x, dy, 2);
    for (std::size_t i = 0; i < s.size(); ++i) CHECK(same_bits(s[i], sw[i]));

    // Errors.
    (void)one.forward({x, image_shape}, pass::training);
    CHECK_THROWS_WITH(one.backward({random_matrix(44, 3, engine), {3, 1, 1}}),
                      Contains("the gradient is 44 x") && Contains("gave 45 x"));
    CHECK_THROWS_AS(one.set_micro_batch(-1), std::invalid_argument);
    CHECK_THROWS_WITH(one.set_micro_batch(-1), Contains("0 to train every batch whole"));
}

TEST_CASE("network: set_datapath reaches every conv2d and linear; copies are deep") {
    network net = small_cnn(7, false);
    lowbit::nn::gemm_datapath d;
    d.spec = lowbit::gemm_spec{};
    d.weights = lowbit::nn::range_biased_float{};
    net.set_datapath(d);
    int gemm_layers = 0;
    for (std::size_t i = 0; i < net.size(); ++i)
        if (auto* g = dynamic_cast<lowbit::nn::gemm_layer*>(&net[i])) {
            ++gemm_layers;
            CHECK(g->datapath.spec.has_value());
            CHECK(std::holds_alternative<lowbit::nn::range_biased_float>(g->datapath.weights));
        }
    CHECK(gemm_layers == 2);

    network copy = net;
    auto* w = copy.named_parameters()[0].second;
    const matrix original = net.named_parameters()[0].second->value;
    w->value.setConstant(0.5f);
    CHECK(same_bits(net.named_parameters()[0].second->value, original));
    network assigned(image_shape);
    assigned = copy;
    CHECK(assigned.size() == copy.size());
    CHECK(same_bits(assigned.named_parameters()[0].second->value, w->value));
}

TEST_CASE("fold_batch_norm: the folded network has no batch_norm and the same inference output") {
    std::mt19937_64 engine(112);
    network net(image_shape);
    net.add("conv1", conv2d(conv1_geometry, 4, 3));
    net.add("bn1", batch_norm(4, 0.3f));
    net.add("relu1", relu{});
    net.add("pool1", max_pool2d({4, 6, 6}, 2));
    net.add("flat", flatten{});
    net.add("fc1", linear(36, 8, 4));
    net.add("bn2", batch_norm(8, 0.3f));
    net.add("relu2", relu{});
    net.add("fc2", linear(8, 3, 5));
    // "Trained-ish": some SGD steps (running statistics move), then random affine parameters and
    // biases, so that every term of the folding formula matters.
    lowbit::nn::sgd opt(net.parameters(true), {.learning_rate = 0.05});
    train(net, opt, 10, 500);
    for (const char* bn_name : {"bn1", "bn2"}) {
        auto params = net.at(bn_name).parameters();
        params[0]->value = random_matrix(1, params[0]->value.cols(), engine, 0.5, 2.0);
        params[1]->value = random_matrix(1, params[1]->value.cols(), engine, -0.5, 0.5);
        const auto& bn = dynamic_cast<batch_norm&>(net.at(bn_name));
        REQUIRE(bn.running_mean().cwiseAbs().maxCoeff() > 0.05f);
        REQUIRE((bn.running_var().array() - 1).abs().maxCoeff() > 0.05f);
    }
    for (const char* gemm_name : {"conv1", "fc1"})
        dynamic_cast<lowbit::nn::gemm_layer&>(net.at(gemm_name)).bias().value.array() += 0.25f;
    const auto before = snapshot(net);

    network folded = lowbit::nn::fold_batch_norm(net);
    CHECK(same_snapshot(snapshot(net), before));  // the source is not touched
    REQUIRE(folded.size() == 7);
    for (std::size_t i = 0; i < folded.size(); ++i) CHECK(dynamic_cast<batch_norm*>(&folded[i]) == nullptr);
    const std::vector<std::string> names = {"conv1", "relu1", "pool1", "flat", "fc1", "relu2", "fc2"};
    for (std::size_t i = 0; i < names.size(); ++i) CHECK(folded.name(i) == names[i]);
    CHECK(folded.output_shape() == net.output_shape());

    const labelled test = bars(64, 900);
    const matrix y = net.forward({test.x, image_shape}, pass::inference).values;
    const matrix yf = folded.forward({test.x, image_shape}, pass::inference).values;
    // Both compute the same function in float with a different association: within a few float
    // roundings of the magnitudes involved (outputs of size ~1..10).
    const double scale = y.cwiseAbs().maxCoeff();
    REQUIRE(scale > 0.5);
    CHECK((y - yf).cwiseAbs().maxCoeff() <= 1e-5 * scale);
    // And the folding is not a no-op: the unfolded weights would give something else.
    CHECK_FALSE(same_bits(dynamic_cast<lowbit::nn::gemm_layer&>(folded.at("conv1")).weight().value,
                          dynamic_cast<lowbit::nn::gemm_layer&>(net.at("conv1")).weight().value));

    // A batch_norm that does not follow a conv2d or linear cannot be folded.
    network bad(image_shape);
    bad.add("conv1", conv2d(conv1_geometry, 4)).add("relu1", relu{}).add("bn1", batch_norm(4));
    CHECK_THAT(message_of([&] { (void)lowbit::nn::fold_batch_norm(bad); }),
               Contains("layer 'bn1' is a batch_norm that does not follow a conv2d or linear"));
    network first(image_shape);
    first.add("bn0", batch_norm(1));
    CHECK_THAT(message_of([&] { (void)lowbit::nn::fold_batch_norm(first); }), Contains("layer 'bn0'"));
}

TEST_CASE("network: training the bar problem with Adam and with SGD lowers the loss and classifies") {
    const labelled test = bars(300, 7777);
    for (const bool use_adam : {true, false}) {
        CAPTURE(use_adam);
        network net = small_cnn(11, false);
        const auto evaluate = [&](double& accuracy) {
            const matrix logits = net.forward({test.x, image_shape}, pass::inference).values;
            accuracy = double(lowbit::nn::correct_predictions(logits, test.labels)) / double(test.labels.size());
            return lowbit::nn::softmax_cross_entropy(logits, test.labels).loss;
        };
        double accuracy_before = 0, accuracy_after = 0;
        const double loss_before = evaluate(accuracy_before);
        CHECK(loss_before > 0.9);  // about ln 3 at the start
        if (use_adam) {
            lowbit::nn::adam opt(net.parameters(true), {.learning_rate = 0.02});
            train(net, opt, 120, 1000);
        } else {
            lowbit::nn::sgd opt(net.parameters(true), {.learning_rate = 0.05, .momentum = 0.9});
            train(net, opt, 120, 1000);
        }
        const double loss_after = evaluate(accuracy_after);
        CAPTURE(loss_before, loss_after, accuracy_before, accuracy_after);
        CHECK(loss_after < 0.1 * loss_before);
        CHECK(accuracy_after >= 0.95);
        CHECK(accuracy_before < 0.6);
    }
}

TEST_CASE("network: save and load round-trip bit for bit; mismatched and truncated files are rejected") {
    const temporary_directory dir;
    const std::filesystem::path file = dir / "cnn.bin";

    network trained = small_cnn(21, true);
    lowbit::nn::adam opt(trained.parameters(true), {.learning_rate = 0.01});
    train(trained, opt, 5, 2000);
    // Values whose bits a conversion would lose: -0 and a subnormal.
    trained.named_parameters()[1].second->value(0, 0) = -0.0f;
    trained.named_parameters()[6].second->value(0, 1) = std::numeric_limits<float>::denorm_min();
    trained.save(file);

    network fresh = small_cnn(99, true);  // other initial weights
    REQUIRE_FALSE(same_snapshot(snapshot(fresh), snapshot(trained)));
    fresh.load(file);
    CHECK(same_snapshot(snapshot(fresh), snapshot(trained)));
    const labelled x = bars(16, 3);
    CHECK(same_bits(fresh.forward({x.x, image_shape}, pass::inference).values,
                    trained.forward({x.x, image_shape}, pass::inference).values));

    // Another layer size: the message names the tensor and both shapes; nothing changes.
    network wider = small_cnn(31, true, 4);
    const auto wider_before = snapshot(wider);
    CHECK_THROWS_AS(wider.load(file), std::runtime_error);
    CHECK_THROWS_WITH(wider.load(file), Contains("'fc.weight' with shape [3, 36]") &&
                                            Contains("the network expects 'fc.weight' with shape [4, 36]"));
    CHECK(same_snapshot(snapshot(wider), wider_before));

    // Other layer names: the message lists what is missing and what is unexpected.
    network renamed = small_cnn(31, true, 3, "head");
    const auto renamed_before = snapshot(renamed);
    CHECK_THROWS_WITH(renamed.load(file), Contains("missing from the file: 'head.weight', 'head.bias'") &&
                                              Contains("in the file but not in the network: 'fc.weight', 'fc.bias'"));
    CHECK(same_snapshot(snapshot(renamed), renamed_before));

    // A network without the batch norm: its tensors are unexpected.
    network plain = small_cnn(31, false);
    const auto plain_before = snapshot(plain);
    CHECK_THROWS_WITH(plain.load(file), Contains("in the file but not in the network: 'bn1.gamma'"));
    CHECK(same_snapshot(snapshot(plain), plain_before));

    // Truncated copies of the file, cut at several places.
    std::vector<char> bytes;
    {
        std::ifstream in(file, std::ios::binary);
        bytes.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    }
    REQUIRE(bytes.size() > 100);
    const auto fresh_before = snapshot(fresh);
    for (const std::size_t keep : {std::size_t(0), std::size_t(6), std::size_t(40), bytes.size() / 2, bytes.size() - 1}) {
        CAPTURE(keep);
        const std::filesystem::path cut = dir / ("cut" + std::to_string(keep) + ".bin");
        {
            std::ofstream out(cut, std::ios::binary);
            out.write(bytes.data(), std::streamsize(keep));
        }
        CHECK_THROWS_AS(fresh.load(cut), std::runtime_error);
        CHECK_THROWS_WITH(fresh.load(cut), Contains(cut.string()) && Contains("truncated"));
        CHECK(same_snapshot(snapshot(fresh), fresh_before));
    }
    CHECK_THROWS_WITH(fresh.load(dir / "missing.bin"), Contains("not found"));
}
