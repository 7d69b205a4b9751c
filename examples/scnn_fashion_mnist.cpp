// A sparse CNN on SCNN (Parashar et al., ISCA 2017; ../shared/papers.md section 6), at small scale:
// the flagship's Fashion-MNIST CNN (examples/lba_fashion_mnist.cpp) is
//
//  1. trained in fp32 (cached: a second run loads the weights) and batch norm folded into the
//     convolutions, as inference hardware runs it;
//  2. magnitude-pruned (Han et al.) in steps to per-layer weight densities, with fine-tuning after
//     each step and the masks held through it;
//  3. evaluated on the test set, dense and pruned, in fp32 and on the simulated M7E4 datapath (FP8
//     M4E3 weights and activations with a per-tensor bias, M7E4 products and accumulators, chunks
//     of 16, toward zero, flush to zero: the flagship's datapath);
//  4. measured per layer on test images, on the operands the M7E4 datapath multiplies: weight and
//     activation densities, dense and non-zero multiplies (the zero-skipping count of the GEMM,
//     checked equal to the SCNN model's count on the same tensors), compressed sizes (SCNN's
//     zero-run encoding, 16-bit values), and the SCNN cycle model's speed-up and utilization.
//
// Writes <out>/scnn_layers.csv and <out>/scnn_layers.png (gnuplot).
//
//   scnn_fashion_mnist [--quick] [--out DIR] [--epochs N] [--densities 0.5,0.4,0.3,0.5] [--threads N] ...
//                      (--help for all)
#include <lowbit/analysis/scnn_model.hpp>
#include <lowbit/datapath/gemm_spec.hpp>
#include <lowbit/formats/float_format.hpp>
#include <lowbit/nn/batch_norm.hpp>
#include <lowbit/nn/conv2d.hpp>
#include <lowbit/nn/fashion_mnist.hpp>
#include <lowbit/nn/flatten.hpp>
#include <lowbit/nn/linear.hpp>
#include <lowbit/nn/loss.hpp>
#include <lowbit/nn/network.hpp>
#include <lowbit/nn/optimizers.hpp>
#include <lowbit/nn/pooling.hpp>
#include <lowbit/nn/pruning.hpp>
#include <lowbit/nn/relu.hpp>
#include <lowbit/sparse/zero_run_encoding.hpp>
#include <lowbit/sparse/zero_skipping.hpp>

#include "fashion_mnist_cnn.hpp"

#include "example_cli.hpp"
#include "gnuplot.hpp"
#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#if defined(_OPENMP)
#include <omp.h>
#endif

namespace {

namespace nn = lowbit::nn;
using lowbit_examples::clock_type;
using lowbit_examples::evaluate;
using lowbit_examples::images_of;
using lowbit_examples::load_cached;
using lowbit_examples::make_cnn;
using lowbit_examples::seconds_since;
namespace sp = lowbit::sparse;
struct options {
    bool quick = false;
    std::string out = "results";
    std::string data = lowbit::nn::fashion_mnist_default_dir;
    int epochs = 4;
    int batch = 64;
    double learning_rate = 1e-3;
    double finetune_learning_rate = 1e-4;
    int prune_steps = 3;
    double finetune_epochs = 1.0;  // after each pruning step
    std::vector<double> densities{0.5, 0.4, 0.3, 0.5};  // conv1, conv2, fc1, fc2
    int images = 100;                                     // test images for the per-layer figures
    std::uint64_t seed = 1;
    bool retrain = false;
    int threads = 0;
    std::size_t train_limit = 0, test_limit = 0;
};

const std::vector<std::string> gemm_layers{"conv1", "conv2", "fc1", "fc2"};

// The flagship's M7E4 datapath: FP8 M4E3 inputs with a per-tensor bias, M7E4 products (bias 12)
// and accumulators (bias 10), no subnormals, saturating, toward zero, chunks of 16.
nn::gemm_datapath m7e4_datapath() {
    const auto format = [](int bias) {
        return lowbit::float_format{.exp_bits = 4, .man_bits = 7, .bias = bias, .subnormals = false,
                                    .specials = lowbit::special_values::none}
            .validate();
    };
    const lowbit::float_quantizer q_prod{.format = format(12), .mode = lowbit::rounding::toward_zero,
                                         .on_overflow = lowbit::overflow::saturate};
    const lowbit::float_quantizer q_acc{.format = format(10), .mode = lowbit::rounding::toward_zero,
                                        .on_overflow = lowbit::overflow::saturate};
    return {.spec = lowbit::gemm_spec{.product = q_prod, .accumulator = q_acc, .chunk = 16, .chunk_accumulator = q_acc},
            .weights = nn::range_biased_float{},
            .activations = nn::range_biased_float{},
            .stats = nullptr};
}

// Adam for `epochs` (fractional) over shuffled training data; after every step the pruner (if
// any) zeroes the pruned weights again. Progress ten times an epoch.
void train(nn::network& net, nn::adam& opt, const nn::fashion_mnist_data& data, const options& o, double epochs,
           const std::string& stage, std::uint64_t salt, nn::magnitude_pruner* pruner) {
    const std::size_t n = o.train_limit == 0 ? data.train.size() : std::min(o.train_limit, data.train.size());
    const std::size_t per_epoch = n / std::size_t(o.batch);
    const std::size_t total = std::max<std::size_t>(1, std::size_t(epochs * double(per_epoch) + 0.5));
    const std::size_t report_every = std::max<std::size_t>(1, per_epoch / 10);
    const auto started = clock_type::now();
    double loss_sum = 0;
    std::size_t correct = 0, seen = 0;
    std::vector<std::size_t> order;
    for (std::size_t step = 0; step < total; ++step) {
        const std::size_t in_epoch = step % per_epoch;
        if (in_epoch == 0) order = nn::shuffled_indices(n, o.seed * 1000003 + salt * 7919 + step / per_epoch);
        const std::span<const std::size_t> pick(order.data() + in_epoch * std::size_t(o.batch), std::size_t(o.batch));
        const nn::labeled_images batch = nn::select(data.train, pick);
        net.zero_grad();
        const nn::tensor out = net.forward({batch.images, {1, batch.rows, batch.cols}}, nn::pass::training);
        const nn::loss_and_gradient l = nn::softmax_cross_entropy(out.values, batch.labels);
        net.backward({l.gradient, out.shape});
        if (pruner != nullptr) pruner->mask_gradients();
        opt.step();
        if (pruner != nullptr) pruner->apply();
        loss_sum += l.loss * double(o.batch);
        correct += nn::correct_predictions(out.values, batch.labels);
        seen += std::size_t(o.batch);
        if ((step + 1) % report_every == 0 || step + 1 == total) {
            std::printf("  %-10s epoch %5.2f  batch %5zu/%zu  loss %.4f  train acc %6.2f%%  %6.1f s\n", stage.c_str(),
                        double(step + 1) / double(per_epoch), step + 1, total, loss_sum / double(seen),
                        100.0 * double(correct) / double(seen), seconds_since(started));
            std::fflush(stdout);
            loss_sum = 0, correct = 0, seen = 0;
        }
    }
}

// Per-layer figures, summed over the sampled images (cycles, multiplies) or per image (bits).
struct layer_figures {
    std::string name;
    double weight_density = 0, activation_density = 0;
    std::int64_t dense_multiplies = 0, multiplies = 0, gemm_macs = 0;
    double compressed_bits = 0, dense_bits = 0;  // weights + one image's activations
    double weight_bits_per_nonzero = 0, activation_bits_per_nonzero = 0;  // placeholders included
    std::int64_t dense_cycles = 0, scnn_cycles = 0, oracle_cycles = 0;
    double speedup() const { return scnn_cycles == 0 ? 0.0 : double(dense_cycles) / double(scnn_cycles); }
    double oracle_speedup() const { return oracle_cycles == 0 ? 0.0 : double(dense_cycles) / double(oracle_cycles); }
    double utilization = 0;
};

double density_of(const nn::matrix& m) {
    return m.size() == 0 ? 0.0 : double((m.array() != 0.0f).count()) / double(m.size());
}

// Runs `images` test images through the network on `datapath` layer by layer; at each conv2d and
// linear, takes the operands the datapath multiplies (quantized weights and activations, from
// nn::datapath_gemm) and measures them. Throws if the GEMM's zero-skipping count and the SCNN
// model's multiplies differ.
std::vector<layer_figures> measure_layers(nn::network& net, const nn::labeled_images& test, std::size_t images,
                                          const nn::gemm_datapath& datapath) {
    std::vector<layer_figures> out;
    nn::tensor x = images_of(test, 0, images);
    const auto n = Eigen::Index(images);
    for (std::size_t i = 0; i < net.size(); ++i) {
        auto* gemm = dynamic_cast<nn::gemm_layer*>(&net[i]);
        if (gemm != nullptr) {
            layer_figures f;
            f.name = net.name(i);
            const nn::matrix& w = gemm->weight().value;
            sp::conv_shape shape;
            nn::gemm_operands used;
            nn::matrix activations;  // one row per image: the quantized input, C x H x W
            if (auto* conv = dynamic_cast<nn::conv2d*>(gemm)) {
                const lowbit::conv_geometry& g = conv->geometry();
                shape = {int(w.rows()), g.channels, g.height, g.width, g.kernel, g.kernel, g.stride, g.padding, 1};
                nn::datapath_gemm(w, lowbit::im2col(x.values, g), datapath, &used);
                // The im2col matrix holds every pixel (stride 1 here), so quantizing the images with
                // the quantizer chosen from it gives the pixels the GEMM multiplied.
                const nn::matrix cols = lowbit::im2col(x.values, g);
                const lowbit::quantizer q =
                    nn::quantizer_for(datapath.activations, std::span<const float>(cols.data(), std::size_t(cols.size())));
                activations = x.values;
                if (!q.is_exact())
                    lowbit::detail::quantize_input(q, lowbit::gemm_role::input_b, activations.data(),
                                                   std::size_t(activations.size()));
            } else {
                shape = {int(w.rows()), int(w.cols()), 1, 1, 1, 1, 1, 0, 1};
                const nn::matrix xt = x.values.transpose();
                nn::datapath_gemm(w, xt, datapath, &used);
                activations = used.activations.transpose();
            }
            const auto count = sp::count_multiplies(used.weights, used.activations);
            f.weight_density = density_of(used.weights);
            f.activation_density = density_of(activations);
            f.gemm_macs = count.dense;
            const std::span<const float> wq(used.weights.data(), std::size_t(used.weights.size()));
            const auto weight_bits = sp::size_of(sp::encode_weights(wq, shape));
            double activation_bits = 0, activation_dense_bits = 0, activation_nonzeros = 0, busy = 0;
            for (Eigen::Index s = 0; s < n; ++s) {
                const std::span<const float> a(activations.row(s).data(), std::size_t(activations.cols()));
                const lowbit::scnn_result r = lowbit::scnn_model(shape, wq, a);
                f.dense_multiplies += r.dense_multiplies;
                f.multiplies += r.multiplies;
                f.dense_cycles += r.dense_cycles;
                f.scnn_cycles += r.scnn_cycles;
                f.oracle_cycles += r.oracle_cycles;
                busy += double(r.multiplies);
                const auto bits = sp::size_of(sp::encode_activations(a, shape));
                activation_bits += double(bits.bits), activation_dense_bits += double(bits.dense_bits);
                activation_nonzeros += double(bits.nonzeros);
            }
            f.utilization = f.scnn_cycles == 0 ? 0.0 : busy / (double(f.scnn_cycles) * 1024.0);
            f.compressed_bits = double(weight_bits.bits) + activation_bits / double(n);
            f.dense_bits = double(weight_bits.dense_bits) + activation_dense_bits / double(n);
            f.weight_bits_per_nonzero = weight_bits.bits_per_nonzero();
            f.activation_bits_per_nonzero = activation_nonzeros == 0 ? 0.0 : activation_bits / activation_nonzeros;
            if (count.nonzero != f.multiplies)
                throw std::runtime_error("layer " + f.name + ": the datapath's zero-skipping count " +
                                         std::to_string(count.nonzero) + " differs from the SCNN model's " +
                                         std::to_string(f.multiplies));
            out.push_back(f);
        }
        x = net[i].forward(x, nn::pass::inference);
    }
    return out;
}

void write_plot(const std::string& out, const std::vector<layer_figures>& layers, double dense_accuracy,
                double pruned_accuracy) {
    {
        std::ofstream dat(out + "/scnn_layers.dat");
        for (std::size_t i = 0; i < layers.size(); ++i)
            dat << i << ' ' << layers[i].name << ' ' << layers[i].weight_density << ' ' << layers[i].activation_density
                << ' ' << layers[i].weight_density * layers[i].activation_density << ' ' << layers[i].speedup() << ' '
                << layers[i].oracle_speedup() << ' ' << layers[i].utilization << '\n';
    }
    std::ofstream gp(out + "/scnn_layers.gp");
    gp << "set terminal pngcairo size 1300,520 font 'Sans,11' noenhanced\n"
       << "set output '" << out << "/scnn_layers.png'\n"
       << "set multiplot layout 1,2 title 'Pruned Fashion-MNIST CNN on SCNN (8x8 PEs, 4x4 multipliers each): test "
          "accuracy dense "
       << dense_accuracy << "%, pruned " << pruned_accuracy << "% (fp32)'\n"
       << "set style data histograms\nset style histogram clustered gap 1\nset style fill solid 0.85 border -1\n"
       << "set boxwidth 0.9\nset grid ytics\nset key outside bottom center horizontal\n"
       << "set title 'Densities per layer (datapath operands)'\nset ylabel 'fraction non-zero'\nset yrange [0:1.05]\n"
       << "plot '" << out << "/scnn_layers.dat' using 3:xtic(2) title 'weights', '' using 4 title 'activations', "
       << "'' using 5 title 'work (product of both)'\n"
       << "set title 'Speed-up over dense, 1,024 multipliers (fc: one PE of 64 busy)'\nset ylabel 'speed-up (log scale)'\n"
       << "set logscale y\nset yrange [0.3:*]\n"
       << "plot '" << out << "/scnn_layers.dat' using 6:xtic(2) title 'SCNN (cycle model)', '' using 7 title "
          "'oracle (non-zero products / 1024)', 1 with lines lw 2 lc rgb 'black' notitle\n"
       << "unset multiplot\n";
    gp.close();
    examples::render_plots(out + "/scnn_layers.gp", out);
}

}  // namespace

int run_example(int argc, char** argv) {
    options o;
    CLI::App app{"Pruned Fashion-MNIST CNN on the SCNN sparse accelerator model"};
    app.add_flag("--quick", o.quick, "a small subset and short training (for CI): 3000 training and 500 test images");
    examples::add_out_option(app, o.out, "the weights cache, CSV files and plots");
    examples::add_data_option(app, o.data);
    app.add_option("--epochs", o.epochs, "fp32 training epochs")->check(CLI::Range(1, 100));
    app.add_option("--batch", o.batch, "mini-batch size")->check(CLI::Range(1, 4096));
    app.add_option("--lr", o.learning_rate, "fp32 training learning rate (Adam)")->check(examples::finite_positive);
    app.add_option("--finetune-lr", o.finetune_learning_rate, "fine-tuning learning rate (Adam)")->check(examples::finite_positive);
    app.add_option("--prune-steps", o.prune_steps, "pruning steps toward the target densities")->check(CLI::Range(1, 100));
    app.add_option("--finetune-epochs", o.finetune_epochs, "fine-tuning after each pruning step, in epochs")
        ->check(examples::finite)->check(CLI::Range(0.0, 100.0));
    app.add_option("--densities", o.densities, "target weight densities of conv1,conv2,fc1,fc2")
        ->delimiter(',')
        ->expected(4)
        ->check(examples::finite)->check(CLI::Range(0.001, 1.0));
    app.add_option("--images", o.images, "test images for the per-layer figures")->check(CLI::Range(1, 10000));
    app.add_option("--seed", o.seed, "seed of initialisation and shuffling");
    app.add_flag("--retrain", o.retrain, "train even if cached weights exist");
    app.add_option("--threads", o.threads, "threads (0: OpenMP's default; 1 is faster on a machine busy with other work)")
        ->check(CLI::Range(0, 1024));
    CLI11_PARSE(app, argc, argv);
#if defined(_OPENMP)
    if (o.threads > 0) omp_set_num_threads(o.threads);  // Eigen's fp32 GEMM and lowbit's kernels follow OpenMP
#endif
    if (o.quick) {
        o.train_limit = 3000, o.test_limit = 500;
        if (app.count("--epochs") == 0) o.epochs = 1;
        if (app.count("--images") == 0) o.images = 10;
        if (app.count("--prune-steps") == 0) o.prune_steps = 2;
        if (app.count("--finetune-epochs") == 0) o.finetune_epochs = 0.5;
    }
    try {
        const auto run_started = clock_type::now();
        examples::prepare_out(o.out);
        std::printf("Loading Fashion-MNIST from %s\n", o.data.c_str());
        const nn::fashion_mnist_data data = nn::load_fashion_mnist(o.data);
        const std::size_t images = std::min<std::size_t>(std::size_t(o.images), data.test.size());

        // 1. fp32 training (or the cache), batch norm folded
        nn::network net = make_cnn(o.seed);
        const std::string cache = o.out + "/scnn_cnn_fp32_" + std::to_string(o.epochs) + "ep_seed" +
                                  std::to_string(o.seed) + (o.quick ? "_quick" : "") + ".weights";
        if (!load_cached(net, cache, o.retrain)) {
            std::printf("\n1. fp32 training: %d epochs, Adam %g, batches of %d\n", o.epochs, o.learning_rate, o.batch);
            nn::adam opt(net.parameters(true), {.learning_rate = o.learning_rate});
            for (int e = 0; e < o.epochs; ++e) {
                if (e == o.epochs - 1 && o.epochs > 1) opt.set_learning_rate(o.learning_rate / 10);
                train(net, opt, data, o, 1.0, "fp32", std::uint64_t(e), nullptr);
            }
            net.save(cache);
        }
        nn::network dense = nn::fold_batch_norm(net);
        const double dense_fp32 = evaluate(dense, data.test, o.test_limit, "dense, fp32");
        dense.set_datapath(m7e4_datapath());
        const double dense_m7e4 = evaluate(dense, data.test, o.test_limit, "dense, M7E4 datapath");
        dense.set_datapath({});

        // 2. iterative pruning with fine-tuning (fp32 forward, as the flagship's training)
        nn::network pruned = dense;
        std::vector<nn::magnitude_pruner::target> targets;
        for (std::size_t l = 0; l < gemm_layers.size(); ++l) targets.push_back({gemm_layers[l], o.densities[l]});
        nn::magnitude_pruner pruner(pruned, targets);
        nn::adam opt(pruned.parameters(true), {.learning_rate = o.finetune_learning_rate});
        std::printf("\n2. Pruning to weight densities conv1 %.2f, conv2 %.2f, fc1 %.2f, fc2 %.2f in %d steps, "
                    "%.2f epochs of fine-tuning after each (Adam %g)\n",
                    o.densities[0], o.densities[1], o.densities[2], o.densities[3], o.prune_steps, o.finetune_epochs,
                    o.finetune_learning_rate);
        for (int step = 1; step <= o.prune_steps; ++step) {
            pruner.prune_step(step, o.prune_steps);
            std::printf("  step %d/%d: densities", step, o.prune_steps);
            for (std::size_t l = 0; l < pruner.size(); ++l) std::printf(" %s %.3f", pruner.name(l).c_str(), pruner.density(l));
            std::printf("\n");
            evaluate(pruned, data.test, o.test_limit, "  pruned, before fine-tuning");
            if (o.finetune_epochs > 0)
                train(pruned, opt, data, o, o.finetune_epochs, "finetune" + std::to_string(step), 100 + std::uint64_t(step),
                      &pruner);
        }
        const double pruned_fp32 = evaluate(pruned, data.test, o.test_limit, "pruned, fp32");
        pruned.set_datapath(m7e4_datapath());
        const double pruned_m7e4 = evaluate(pruned, data.test, o.test_limit, "pruned, M7E4 datapath");

        // 3. per-layer figures on the M7E4 datapath's operands
        std::printf("\n3. Per-layer figures on %zu test images (operands as the M7E4 datapath quantizes them)\n", images);
        const auto started = clock_type::now();
        const std::vector<layer_figures> layers = measure_layers(pruned, data.test, images, m7e4_datapath());
        std::printf("  measured in %.1f s; the GEMM's zero-skipping counts equal the SCNN model's multiplies\n",
                    seconds_since(started));
        std::printf("\n%-6s %8s %8s %14s %14s %7s %12s %12s %7s %7s %11s %11s %8s %8s %7s\n", "layer", "w dens",
                    "a dens", "dense mult", "multiplies", "x less", "comp. bits", "dense bits", "w b/nz", "a b/nz",
                    "dense cyc", "scnn cyc", "speedup", "oracle", "util");
        std::ofstream csv(o.out + "/scnn_layers.csv");
        csv.precision(10);  // whole counts stay whole (no 3.2768e+06)
        csv << "layer,weight_density,activation_density,dense_multiplies,multiplies,compressed_bits,dense_bits,"
               "dense_cycles,scnn_cycles,speedup,multiplier_utilization\n";
        const double per_image = 1.0 / double(images);
        for (const auto& f : layers) {
            std::printf("%-6s %8.3f %8.3f %14.0f %14.0f %7.2f %12.0f %12.0f %7.2f %7.2f %11.1f %11.1f %8.2f %8.2f %7.3f\n",
                        f.name.c_str(), f.weight_density, f.activation_density, double(f.dense_multiplies) * per_image,
                        double(f.multiplies) * per_image,
                        f.multiplies == 0 ? 0.0 : double(f.dense_multiplies) / double(f.multiplies), f.compressed_bits,
                        f.dense_bits, f.weight_bits_per_nonzero, f.activation_bits_per_nonzero,
                        double(f.dense_cycles) * per_image, double(f.scnn_cycles) * per_image, f.speedup(),
                        f.oracle_speedup(), f.utilization);
            csv << f.name << ',' << f.weight_density << ',' << f.activation_density << ','
                << double(f.dense_multiplies) * per_image << ',' << double(f.multiplies) * per_image << ','
                << f.compressed_bits << ',' << f.dense_bits << ',' << double(f.dense_cycles) * per_image << ','
                << double(f.scnn_cycles) * per_image << ',' << f.speedup() << ',' << f.utilization << '\n';
        }
        csv.close();
        std::printf("(per image: multiplies and cycles are means over the %zu images; bits: the weights plus one "
                    "image's activations, 16-bit values and 4-bit run indices; b/nz: bits per non-zero value, zero "
                    "placeholders included)\n",
                    images);
        std::printf("\nTest accuracy (%s%zu images):\n  dense  fp32 %6.2f%%   M7E4 datapath %6.2f%%\n  pruned fp32 %6.2f%%   "
                    "M7E4 datapath %6.2f%%   (pruned - dense: %+.2f and %+.2f points)\n",
                    o.test_limit ? "first " : "", o.test_limit ? o.test_limit : data.test.size(), dense_fp32, dense_m7e4,
                    pruned_fp32, pruned_m7e4, pruned_fp32 - dense_fp32, pruned_m7e4 - dense_m7e4);
        write_plot(o.out, layers, dense_fp32, pruned_fp32);
        std::printf("Wrote %s/scnn_layers.csv and scnn_layers.png. Total time %.1f s\n", o.out.c_str(),
                    seconds_since(run_started));
    } catch (const std::exception& e) {
        std::fprintf(stderr, "scnn_fashion_mnist: %s\n", e.what());
        return 1;
    }
    return 0;
}

int main(int argc, char** argv) {
    return examples::run("scnn_fashion_mnist", [&] { return run_example(argc, argv); });
}
