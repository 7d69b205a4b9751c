// examples/fashion_mnist_cnn.hpp: what the Fashion-MNIST examples share: the flagship's CNN, test
// accuracy with a progress line, and a clock.
#pragma once

#include <lowbit/nn/batch_norm.hpp>
#include <lowbit/nn/conv2d.hpp>
#include <lowbit/nn/fashion_mnist.hpp>
#include <lowbit/nn/flatten.hpp>
#include <lowbit/nn/linear.hpp>
#include <lowbit/nn/loss.hpp>
#include <lowbit/nn/network.hpp>
#include <lowbit/nn/pooling.hpp>
#include <lowbit/nn/relu.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <exception>
#include <filesystem>
#include <cstdint>
#include <cstdio>
#include <span>
#include <string>

namespace lowbit_examples {

namespace nn = lowbit::nn;
using clock_type = std::chrono::steady_clock;

inline double seconds_since(clock_type::time_point t) {
    return std::chrono::duration<double>(clock_type::now() - t).count();
}

// The CNN: two 3x3 convolutions (K = 9 and K = 32 * 9 = 288) with batch norm, ReLU and 2x2 max
// pooling, then fully connected 3136 -> 128 (K = 3136) -> 10.
inline nn::network make_cnn(std::uint64_t seed) {
    nn::network net({1, 28, 28});
    net.add("conv1", nn::conv2d({.channels = 1, .height = 28, .width = 28, .kernel = 3, .padding = 1}, 32, seed));
    net.add("bn1", nn::batch_norm(32));
    net.add("relu1", nn::relu{});
    net.add("pool1", nn::max_pool2d({32, 28, 28}, 2));
    net.add("conv2", nn::conv2d({.channels = 32, .height = 14, .width = 14, .kernel = 3, .padding = 1}, 64, seed + 1));
    net.add("bn2", nn::batch_norm(64));
    net.add("relu2", nn::relu{});
    net.add("pool2", nn::max_pool2d({64, 14, 14}, 2));
    net.add("flatten", nn::flatten{});
    net.add("fc1", nn::linear(64 * 7 * 7, 128, seed + 2));
    net.add("relu3", nn::relu{});
    net.add("fc2", nn::linear(128, 10, seed + 3));
    return net;
}

// The binomial standard error of an accuracy (%) measured on n test images, in points: differences
// below about two of it are noise (1000 images at 90%: 0.95 points).
inline double standard_error(double accuracy, std::size_t n) {
    const double p = accuracy / 100;
    return n == 0 ? std::nan("") : 100 * std::sqrt(std::max(0.0, p * (1 - p)) / double(n));
}

// Images [begin, end) of a set as a batch tensor.
inline nn::tensor images_of(const nn::labeled_images& set, std::size_t begin, std::size_t end) {
    return {set.images.middleRows(Eigen::Index(begin), Eigen::Index(end - begin)), {1, set.rows, set.cols}};
}

// Accuracy (%) on the first `limit` images of a set (0: all), in batches of 500, with a progress line.
inline double evaluate(nn::network& net, const nn::labeled_images& set, std::size_t limit, const std::string& label) {
    const std::size_t n = std::min(limit == 0 ? set.size() : limit, set.size());
    const std::size_t batch = 500;
    std::size_t correct = 0;
    const auto started = clock_type::now();
    for (std::size_t begin = 0; begin < n; begin += batch) {
        const std::size_t end = std::min(n, begin + batch);
        const nn::tensor out = net.forward(images_of(set, begin, end), nn::pass::inference);
        correct += nn::correct_predictions(out.values, std::span(set.labels).subspan(begin, end - begin));
        std::printf("\r  %-34s %6zu/%zu images  accuracy %6.2f%%  %5.1f s", label.c_str(), end, n,
                    100.0 * double(correct) / double(end), seconds_since(started));
        std::fflush(stdout);
    }
    std::printf("\n");
    return 100.0 * double(correct) / double(n);
}

// Loads the cached fp32 weights into net unless retrain is set or the file is missing or unusable
// (then says why); true when loaded.
inline bool load_cached(nn::network& net, const std::string& cache, bool retrain) {
    if (retrain || !std::filesystem::exists(cache)) return false;
    try {
        net.load(cache);
        std::printf("\n1. fp32 training: loaded the cached weights %s (--retrain to train again)\n", cache.c_str());
        return true;
    } catch (const std::exception& e) {
        std::printf("\n1. the cached weights cannot be used (%s): training\n", e.what());
        return false;
    }
}

}  // namespace lowbit_examples
