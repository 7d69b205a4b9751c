// Real matrix units beside the paper's low bit-width accumulators: the flagship's CNN (trained in
// fp32, batch norm folded into the convolutions) on the Fashion-MNIST test set with every GEMM
// (both convolutions, both linear layers) on a unit's accumulation, bit for bit as lowbit::hw's
// presets model it (NVIDIA Volta..Blackwell tensor cores, AMD CDNA1-3 matrix cores;
// include/lowbit/datapath/hardware.hpp), and on the flagship's MxEy accumulators (chunks of 16,
// truncation, flush, saturation) for comparison.
//
// Operands: fp16, bf16 and tf32 presets take the tensors as they are (rounded to the format, tf32
// truncated as the units read fp32 registers). FP8 presets scale each tensor by a power of two so
// that its largest magnitude uses the top binade, as FP8 inference does with per-tensor scales
// (lowbit::nn::range_biased_float with the preset's exponent and mantissa bits; every code finite).
// The LBA rows use the flagship's FP8 M4E3 range-biased operands.
//
// Events (swamps, underflows, overflows per multiply-accumulate) are counted on the first
// --event-images test images (default 500), in a second pass: the presets count them in their
// vectorized kernels at 1.2-1.5x (NVIDIA, CDNA3) to 4-13x (CDNA1-2, the counted passes) the time
// without.
//
// Writes hardware_accumulators.csv
//   datapath,inputs,output,test_images,test_accuracy,standard_error,swamp_rate,underflow_rate,
//   overflow_rate,event_images,spec
// (datapath: "fp32", a preset's unit:inputs:output, or an LBA row's name; spec: the gemm_spec as
// text, which gemm_spec::parse reads back) and hardware_accumulators.png.
//
//   hardware_accumulators [--quick] [--out DIR] [--data DIR] [--presets hopper:e4m3,cdna3:bf16]
//                         [--formats m7e4,m4e3] [--test-images N] [--event-images N] [--threads N]
//                         [--epochs E] [--train-images N] [--retrain]
#include <lowbit/datapath/hardware.hpp>
#include <lowbit/nn/network.hpp>

#include "accumulator_formats.hpp"
#include "example_cli.hpp"
#include "fashion_mnist_cnn.hpp"
#include "gnuplot.hpp"
#include "paper_results.hpp"
#include <CLI/CLI.hpp>

#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

namespace {

namespace nn = lowbit::nn;
using lowbit_examples::clock_type;
using lowbit_examples::seconds_since;

struct options {
    bool quick = false, retrain = false;
    std::string out = "results";
    std::string data = nn::fashion_mnist_default_dir;
    std::vector<std::string> presets{"volta:fp16",     "ampere:fp16",   "ampere:bf16", "ampere:tf32",
                                     "ada:e4m3",       "hopper:e4m3",   "hopper:e5m2", "blackwell:e4m3",
                                     "cdna1:fp16",     "cdna2:bf16",    "cdna3:bf16",  "cdna3:float8_e4m3fnuz"};
    std::vector<std::string> formats{"m7e4", "m4e3"};
    std::size_t test_limit = 0;  // all 10000
    int event_images = 500;
    lowbit_examples::training_schedule training{};
    int threads = 0;
};

// One row of the table.
struct row {
    std::string name, inputs, output;
    nn::gemm_datapath datapath;
    double accuracy = 0;
    lowbit_examples::event_rates events{};
};

bool is_fp8(const lowbit::float_format& f) {
    return f == lowbit::fp8_e4m3 || f == lowbit::fp8_e5m2 || f == lowbit::fp8_e4m3fnuz || f == lowbit::fp8_e5m2fnuz;
}

// A preset's datapath for the network: FP8 operands scaled per tensor (see the top).
row preset_row(const std::string& name, int threads) {
    lowbit::gemm_spec spec = lowbit::hw::preset(name);
    spec.threads = threads;
    const lowbit::float_format inputs = spec.input_a.as_float() ? spec.input_a.as_float()->format : lowbit::fp32;
    const lowbit::float_format output =
        spec.addend.as_float() ? spec.addend.as_float()->format : lowbit::fp32;
    nn::gemm_datapath d{.spec = spec};
    if (is_fp8(inputs)) {
        const nn::range_biased_float scaled{.exp_bits = inputs.exp_bits, .man_bits = inputs.man_bits};
        d.spec->input_a = {};
        d.spec->input_b = {};
        d.weights = scaled;
        d.activations = scaled;
    }
    return {name, lowbit::to_string(inputs), lowbit::to_string(output), d};
}

void plot(const std::vector<row>& rows, double fp32, std::size_t test_images, int event_images, bool quick,
          const std::string& out) {
    const std::string dat = out + "/hardware_accumulators.dat";
    std::ofstream d(dat);
    double low = fp32;
    for (std::size_t i = 0; i < rows.size(); ++i) {
        const row& r = rows[i];
        const double se = lowbit_examples::standard_error(r.accuracy, test_images);
        low = std::min(low, r.accuracy - se);
        // (event rates of 0 cannot be drawn on a log scale: 1e-12 stands for none)
        const auto rate = [](double x) { return x > 0 ? x : 1e-12; };
        d << i << " \"" << r.name << "\" " << r.accuracy << ' ' << se << ' ' << rate(r.events.swamp) << ' '
          << rate(r.events.underflow) << ' ' << rate(r.events.overflow) << '\n';
    }
    d.close();
    const double y_low = std::max(0.0, std::floor(low) - 1), y_high = std::min(100.0, std::ceil(fp32) + 1);
    std::ofstream gp(out + "/hardware_accumulators.gp");
    gp << "set terminal pngcairo size 1400,900 font 'Sans,11' noenhanced\n"
       << "set output '" << out << "/hardware_accumulators.png'\n"
       << "set multiplot layout 2,1 title \"The Fashion-MNIST CNN on real matrix units' accumulation (lowbit::hw presets) "
          "and on the paper's accumulators (LBA, chunk 16)\\n"
       << test_images << " test images" << (quick ? " (--quick run)" : "") << ", one fp32 network, batch norm folded\"\n"
       << "set style fill solid 0.8 border -1\nset boxwidth 0.7\nset grid ytics\nset xtics rotate by -30 left\n"
       << "set xrange [-0.6:" << double(rows.size()) - 0.4 << "]\n"
       << "set ylabel 'test accuracy (%)'\nset yrange [" << y_low << ":" << y_high << "]\n"
       << "set title 'accuracy; error bars: binomial standard error of the test accuracy; dashed: fp32 " << fp32 << "%'\n"
       << "plot '" << dat << "' using 1:3:xtic(2) with boxes lc rgb '#4472c4' notitle, '' using 1:3:4 with yerrorbars "
       << "lc rgb 'black' pt 0 notitle, " << fp32 << " with lines dt 2 lw 2 lc rgb 'black' notitle\n"
       << "set title 'events per multiply-accumulate, on the first " << event_images
       << " test images (1e-12: none)'\nset ylabel 'events / MAC'\nset logscale y\nset yrange [1e-12:1]\n"
       << "set boxwidth 0.25\nset key outside right top vertical\n"
       << "plot '" << dat << "' using ($1-0.27):5:xtic(2) with boxes lc rgb '#c00000' title 'swamped additions', "
       << "'' using 1:6 with boxes fs pattern 2 lc rgb '#2e7d32' title 'product underflows', "
       << "'' using ($1+0.27):7 with boxes fs pattern 4 lc rgb '#7030a0' title 'overflows'\n"
       << "unset multiplot\n";
    gp.close();
    examples::render_plots(out + "/hardware_accumulators.gp", out);
}

}  // namespace

int run_example(int argc, char** argv) {
    options o;
    CLI::App app{"The Fashion-MNIST CNN on real matrix units' accumulation (NVIDIA and AMD presets, bit for bit) beside "
                 "the paper's low bit-width accumulators"};
    app.add_flag("--quick", o.quick, "a short run (for CI): 2000 training images, one epoch, 200 test images, 10 for "
                                     "events, three presets and M7E4");
    examples::add_out_option(app, o.out, "hardware_accumulators.csv, .png and the fp32 network");
    examples::add_data_option(app, o.data);
    app.add_option("--presets", o.presets, "unit:inputs[:output] (lowbit::hw::preset's text)")->delimiter(',');
    app.add_option("--formats", o.formats, "the paper's MxEy accumulators beside them (m7e4, m4e3, m3e4, ...)")
        ->delimiter(',');
    app.add_option("--test-images", o.test_limit, "test images evaluated (0: all 10000)");
    app.add_option("--event-images", o.event_images, "test images on which events are counted")
        ->check(CLI::Range(0, 10000));
    app.add_option("--epochs", o.training.epochs, "fp32 training epochs")->check(CLI::Range(1, 100));
    app.add_option("--train-images", o.training.train_limit, "training images used (0: all 60000)");
    app.add_option("--threads", o.threads, "threads (0: all cores)")->check(CLI::Range(0, 1024));
    app.add_flag("--retrain", o.retrain, "train the fp32 network even where the output folder has it");
    CLI11_PARSE(app, argc, argv);
    if (o.quick) {
        if (app.count("--train-images") == 0) o.training.train_limit = 2000;
        if (app.count("--epochs") == 0) o.training.epochs = 1;
        if (app.count("--test-images") == 0) o.test_limit = 200;
        if (app.count("--event-images") == 0) o.event_images = 10;
        if (app.count("--presets") == 0) o.presets = {"hopper:e4m3", "ampere:bf16", "cdna3:float8_e4m3fnuz"};
        if (app.count("--formats") == 0) o.formats = {"m7e4"};
    }
    // Every preset and format named before any work (a misspelling says what the units take).
    std::vector<row> rows;
    for (const auto& name : o.presets) {
        try {
            rows.push_back(preset_row(name, o.threads));
        } catch (const std::invalid_argument& e) {
            throw std::invalid_argument("--presets " + name + ": " + e.what());
        }
    }
    lowbit_examples::datapath_settings settings;
    settings.threads = o.threads;
    for (const auto& f : o.formats) {
        lowbit_examples::datapath_row r;
        try {
            r = lowbit_examples::row_for(f, settings);
        } catch (const std::invalid_argument& e) {
            throw std::invalid_argument("--formats " + f + ": " + e.what());
        }
        rows.push_back({"LBA " + r.name, "e3m4 (range-biased)", r.name,
                        lowbit_examples::datapath_for(r.product, r.accumulator, settings)});
    }

    const auto run_started = clock_type::now();
    const nn::fashion_mnist_data data = lowbit_examples::start_run(o.threads, o.out, o.data);
    const std::size_t test_images = o.test_limit ? std::min(o.test_limit, data.test.size()) : data.test.size();
    const nn::network trained = lowbit_examples::fp32_cnn(data, o.training, 1, o.out, o.retrain);
    nn::network net = nn::fold_batch_norm(trained);
    const double fp32 = lowbit_examples::evaluate(net, data.test, o.test_limit, "fp32");

    std::ofstream csv(o.out + "/hardware_accumulators.csv");
    if (!csv) throw std::runtime_error("cannot write " + o.out + "/hardware_accumulators.csv");
    csv << "datapath,inputs,output,test_images,test_accuracy,standard_error,swamp_rate,underflow_rate,overflow_rate,"
           "event_images,spec\n";
    csv << "fp32,fp32,fp32," << test_images << ',' << fp32 << ',' << lowbit_examples::standard_error(fp32, test_images)
        << ",0,0,0,0,\n";
    for (row& r : rows) {
        std::printf("%s\n", r.name.c_str());
        net.set_datapath(r.datapath);
        r.accuracy = lowbit_examples::evaluate(net, data.test, o.test_limit, "  test set");
        if (o.event_images > 0) r.events = lowbit_examples::measure_events(net, data.test, r.datapath, o.event_images);
        csv << r.name << ',' << r.inputs << ',' << r.output << ',' << test_images << ',' << r.accuracy << ','
            << lowbit_examples::standard_error(r.accuracy, test_images) << ',' << r.events.swamp << ','
            << r.events.underflow << ',' << r.events.overflow << ',' << o.event_images << ",\""
            << lowbit_examples::datapath_text(*r.datapath.spec) << "\"\n";
        csv.flush();
    }

    std::printf("\nTest accuracy on %zu test images (fp32 %.2f%%; the binomial standard error of one accuracy near "
                "90%% is %.2f points)%s\n",
                test_images, fp32, lowbit_examples::standard_error(90, test_images),
                o.quick ? ": a --quick run, whose differences are within noise" : "");
    std::printf("%-26s %-22s %-8s %9s %8s %11s %11s %11s\n", "datapath", "inputs", "output", "accuracy", "vs fp32",
                "swamps/MAC", "underfl/MAC", "overfl/MAC");
    for (const row& r : rows)
        std::printf("%-26s %-22s %-8s %8.2f%% %+8.2f %11.3g %11.3g %11.3g\n", r.name.c_str(), r.inputs.c_str(),
                    r.output.c_str(), r.accuracy, r.accuracy - fp32, r.events.swamp, r.events.underflow,
                    r.events.overflow);
    plot(rows, fp32, test_images, o.event_images, o.quick, o.out);
    std::printf("Wrote %s/hardware_accumulators.csv and %s/hardware_accumulators.png. Total time %.1f s\n",
                o.out.c_str(), o.out.c_str(), seconds_since(run_started));
    return 0;
}

int main(int argc, char** argv) {
    return examples::run("hardware_accumulators", [&] { return run_example(argc, argv); });
}
