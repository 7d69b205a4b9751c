// python/src/module.cpp: lowbit's compiled Python extension (lowbit._lowbit; the package
// python/lowbit wraps it, torch tensors included).
//
// Arrays arrive through the buffer protocol without a copy: float32 or float64, C-contiguous
// (anything else is refused with a message saying what to pass instead). The GIL is released
// while C++ runs. Every C++ exception reaches Python as ValueError with lowbit's own message.
#include <lowbit/datapath/gemm.hpp>
#include <lowbit/datapath/gemm_spec.hpp>
#include <lowbit/datapath/gemm_stats.hpp>
#include <lowbit/datapath/hardware.hpp>
#include <lowbit/datapath/quantizer.hpp>
#include <lowbit/datapath/thread_count.hpp>
#include <lowbit/formats/float_format.hpp>
#include <lowbit/formats/format_names.hpp>
#include <lowbit/formats/lns_format.hpp>
#include <lowbit/rounding/lns_quantize.hpp>
#include <lowbit/scaling/block_scaling.hpp>

#include <Eigen/Core>
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace py = pybind11;

namespace {

// A float32 or float64 array that C++ may read (and write) in place, or an error naming `what`.
py::array checked_array(const py::object& object, const char* function, const char* what) {
    if (!py::isinstance<py::array>(object))
        throw py::type_error(std::string("lowbit.") + function + ": " + what +
                             " must be a NumPy array or a CPU torch tensor, not " +
                             std::string(py::str(py::type::of(object).attr("__name__"))));
    py::array a = py::reinterpret_borrow<py::array>(object);
    const bool f32 = a.dtype().is(py::dtype::of<float>()), f64 = a.dtype().is(py::dtype::of<double>());
    if (!f32 && !f64)
        throw py::type_error(std::string("lowbit.") + function + ": " + what + " has dtype " +
                             std::string(py::str(a.dtype())) + "; pass float32 or float64 (x.astype(numpy.float32))");
    if (!(a.flags() & py::array::c_style))
        throw py::value_error(std::string("lowbit.") + function + ": " + what +
                              " is not C-contiguous; pass numpy.ascontiguousarray(x) (or x.contiguous() for a tensor)");
    return a;
}

// The quantizer a text names, with the options given beside it appended (parse checks that none
// is given twice).
lowbit::quantizer quantizer_of(std::string text, const std::optional<std::string>& rounding,
                               const std::optional<std::string>& overflow, const std::optional<std::uint64_t>& seed,
                               const std::optional<int>& random_bits) {
    if (rounding) text += ":" + *rounding;
    if (overflow) text += ":" + *overflow;
    if (seed) text += ":seed=" + std::to_string(*seed);
    if (random_bits) text += ":random_bits=" + std::to_string(*random_bits);
    return lowbit::quantizer::parse(text);
}

// out[e] = q(in[e]) with the random bits of index e; `out` may be `in`.
template <class T>
void quantize_array(const lowbit::quantizer& q, const T* in, T* out, std::size_t n) {
    if (const auto* f = q.as_float()) {
        (*f)(std::span<const T>(in, n), std::span<T>(out, n));
    } else if (const auto* i = q.as_int()) {
        if constexpr (std::is_same_v<T, float>) {
            if (out != in) std::copy(in, in + n, out);
            (*i)(std::span<float>(out, n));
        } else {
            for (std::size_t e = 0; e < n; ++e) out[e] = (*i)(in[e], e);
        }
    } else if (out != in) {
        std::copy(in, in + n, out);
    }
}

// body(in, out, n) on two arrays of one dtype (float32 or float64, checked_array) and size, as
// typed pointers, the GIL released.
template <class Body>
void on_elements(const py::array& in, py::array& out, Body&& body) {
    const auto n = std::size_t(in.size());
    const bool f32 = in.dtype().is(py::dtype::of<float>());
    const void* from = in.data();
    void* to = out.mutable_data();
    py::gil_scoped_release unlocked;
    if (f32) body(static_cast<const float*>(from), static_cast<float*>(to), n);
    else body(static_cast<const double*>(from), static_cast<double*>(to), n);
}

void quantize_array(const lowbit::quantizer& q, const py::array& in, py::array& out) {
    on_elements(in, out, [&](const auto* from, auto* to, std::size_t n) { quantize_array(q, from, to, n); });
}

// A new C-contiguous array of a's dtype and shape.
py::array empty_like(const py::array& a) {
    return py::array(a.dtype(), std::vector<py::ssize_t>(a.shape(), a.shape() + a.ndim()));
}

// A's or B's matrix (row-major, C-contiguous) as float: float32 in place, float64 cast into
// `storage` (no copy of a float32 operand: QConv2d's im2col matrices reach 100 MB).
using row_major = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
Eigen::Map<const row_major> float_view(const py::array& a, row_major& storage) {
    const auto rows = Eigen::Index(a.shape(0)), cols = Eigen::Index(a.shape(1));
    if (a.dtype().is(py::dtype::of<float>())) return {static_cast<const float*>(a.data()), rows, cols};
    using row_major_d = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
    storage = Eigen::Map<const row_major_d>(static_cast<const double*>(a.data()), rows, cols).cast<float>();
    return {storage.data(), rows, cols};
}

// A block format by name: the OCP MX presets, NVFP4, or "vsquant:N:M:V" (N-bit elements, M-bit
// vector scales, vectors of V, one coarse scale per line).
lowbit::block_format block_format_named(const std::string& name) {
    static const std::pair<const char*, lowbit::block_format> presets[] = {
        {"mxfp8_e4m3", lowbit::mxfp8_e4m3}, {"mxfp8_e5m2", lowbit::mxfp8_e5m2}, {"mxfp6_e2m3", lowbit::mxfp6_e2m3},
        {"mxfp6_e3m2", lowbit::mxfp6_e3m2}, {"mxfp4", lowbit::mxfp4},           {"mxint8", lowbit::mxint8},
        {"nvfp4", lowbit::nvfp4}};
    for (const auto& [preset, format] : presets)
        if (name == preset) return format;
    int n = 0, m = 0, v = 0;
    char rest = 0;
    if (std::sscanf(name.c_str(), "vsquant:%d:%d:%d%c", &n, &m, &v, &rest) == 3) return lowbit::vsquant(n, m, v);
    throw std::invalid_argument("lowbit.quantize_blocks: '" + name +
                                "' is not a block format (mxfp8_e4m3, mxfp8_e5m2, mxfp6_e2m3, mxfp6_e3m2, mxfp4, "
                                "mxint8, nvfp4, or vsquant:N:M:V)");
}

// An LNS format by name: "lns8", "lns16", or "lns:LOG_BITS:FRAC_BITS" (sign + LOG_BITS-bit k,
// gamma = 2^FRAC_BITS).
lowbit::lns_format lns_format_named(const std::string& name) {
    if (name == "lns8") return lowbit::lns8;
    if (name == "lns16") return lowbit::lns16;
    int log_bits = 0, frac_bits = 0;
    char rest = 0;
    if (std::sscanf(name.c_str(), "lns:%d:%d%c", &log_bits, &frac_bits, &rest) == 2)
        return lowbit::lns_format{.log_bits = log_bits, .frac_bits = frac_bits}.validate();
    throw std::invalid_argument("lowbit.lns_quantize: '" + name + "' is not an LNS format (lns8, lns16, lns:LOG_BITS:FRAC_BITS)");
}

lowbit::lns_rounding lns_rounding_named(const std::string& name) {
    for (const auto mode : {lowbit::lns_rounding::nearest_log, lowbit::lns_rounding::nearest_linear,
                            lowbit::lns_rounding::toward_zero, lowbit::lns_rounding::stochastic_log})
        if (name == lowbit::to_string(mode)) return mode;
    throw std::invalid_argument("lowbit.lns_quantize: rounding '" + name +
                                "' is not nearest_log, nearest_linear, toward_zero or stochastic_log");
}

py::dict stats_dict(const lowbit::gemm_stats& s) {
    py::dict d;
    d["macs"] = s.macs;
    d["input_nans"] = s.input_nans;
    d["input_infinities"] = s.input_infinities;
    d["input_overflows"] = s.input_overflows;
    d["input_underflows"] = s.input_underflows;
    d["inexact_inputs"] = s.inexact_inputs;
    d["zero_operand"] = s.zero_operand;
    d["product_overflows"] = s.product_overflows;
    d["product_underflows"] = s.product_underflows;
    d["accumulator_overflows"] = s.accumulator_overflows;
    d["swamps"] = s.swamps;
    d["inexact_additions"] = s.inexact_additions;
    d["off_grid_products"] = s.off_grid_products;
    return d;
}

}  // namespace

PYBIND11_MODULE(_lowbit, m) {
    m.doc() = "lowbit: bit-exact simulation of low-precision arithmetic (formats, rounding, GEMM datapaths)";
    py::register_exception_translator([](std::exception_ptr p) {
        try {
            if (p) std::rethrow_exception(p);
        } catch (const std::invalid_argument& e) {
            PyErr_SetString(PyExc_ValueError, e.what());
        } catch (const std::out_of_range& e) {
            PyErr_SetString(PyExc_ValueError, e.what());
        }
    });

    py::class_<lowbit::float_format>(m, "Format", "A binary floating-point format (lowbit::float_format).")
        .def(py::init([](const std::string& text) { return lowbit::float_format::parse(text); }), py::arg("text"),
             "The format a text names: 'e4m3', 'float8_e4m3fn', 'bfloat16', 'm7e4,bias=10,subnormals=off', ...")
        .def_readonly("exp_bits", &lowbit::float_format::exp_bits)
        .def_readonly("man_bits", &lowbit::float_format::man_bits)
        .def_readonly("subnormals", &lowbit::float_format::subnormals)
        .def_readonly("is_signed", &lowbit::float_format::is_signed)
        .def_property_readonly("bias", &lowbit::float_format::exponent_bias)
        .def_property_readonly("bits", &lowbit::float_format::bits)
        .def_property_readonly("max", &lowbit::float_format::max_finite)
        .def_property_readonly("min_normal", &lowbit::float_format::min_normal)
        .def_property_readonly("min_subnormal", &lowbit::float_format::min_subnormal)
        .def_property_readonly("epsilon", &lowbit::float_format::epsilon)
        .def_property_readonly("emin", &lowbit::float_format::emin)
        .def_property_readonly("emax", &lowbit::float_format::emax)
        .def_property_readonly("has_infinity", &lowbit::float_format::has_infinity)
        .def_property_readonly("has_nan", &lowbit::float_format::has_nan)
        .def_property_readonly("has_negative_zero", &lowbit::float_format::has_negative_zero)
        .def("__str__", [](const lowbit::float_format& f) { return lowbit::to_string(f); })
        .def("__repr__", [](const lowbit::float_format& f) { return "lowbit.format('" + lowbit::to_string(f) + "')"; })
        .def("__eq__", [](const lowbit::float_format& a, const lowbit::float_format& b) { return a == b; })
        .def("__hash__", [](const lowbit::float_format& f) { return py::hash(py::str(lowbit::to_string(f))); });

    py::class_<lowbit::quantizer>(m, "Quantizer", "One rounding step: exact, a float format or an integer format, with its mode.")
        .def(py::init([](const std::string& text) { return lowbit::quantizer::parse(text); }), py::arg("text"),
             "The quantizer a text names: 'e4m3:toward_zero:saturate', 'int8:frac=5:wrap', 'exact', ...")
        .def_property_readonly("is_exact", &lowbit::quantizer::is_exact)
        .def("__str__", [](const lowbit::quantizer& q) { return lowbit::to_string(q); })
        .def("__repr__", [](const lowbit::quantizer& q) { return "lowbit.quantizer('" + lowbit::to_string(q) + "')"; })
        .def("__eq__", [](const lowbit::quantizer& a, const lowbit::quantizer& b) { return a == b; })
        .def("__hash__", [](const lowbit::quantizer& q) { return py::hash(py::str(lowbit::to_string(q))); });

    py::class_<lowbit::gemm_spec>(m, "Spec", "A GEMM datapath (lowbit::gemm_spec), as gemm_spec text.")
        .def(py::init([](const std::string& text) { return lowbit::gemm_spec::parse(text); }), py::arg("text") = "",
             "The datapath a text names: 'input_a=e4m3 input_b=e4m3 product=... accumulator=fp16:toward_zero chunk=16'")
        .def_readwrite("input_a", &lowbit::gemm_spec::input_a)
        .def_readwrite("input_b", &lowbit::gemm_spec::input_b)
        .def_readwrite("product", &lowbit::gemm_spec::product)
        .def_readwrite("accumulator", &lowbit::gemm_spec::accumulator)
        .def_readwrite("chunk_accumulator", &lowbit::gemm_spec::chunk_accumulator)
        .def_readwrite("chunk", &lowbit::gemm_spec::chunk)
        .def_readwrite("threads", &lowbit::gemm_spec::threads)
        .def("__str__", [](const lowbit::gemm_spec& s) { return lowbit::to_string(s); })
        .def("__repr__", [](const lowbit::gemm_spec& s) { return "lowbit.spec('" + lowbit::to_string(s) + "')"; })
        .def("__eq__", [](const lowbit::gemm_spec& a, const lowbit::gemm_spec& b) {
            return lowbit::to_string(a) == lowbit::to_string(b) && a.threads == b.threads;
        });

    const auto quantize_doc = [](const char* what) {
        return std::string(what) + "\nquantizer: its text (a format alone, or with options); rounding, overflow, seed, "
                                   "random_bits: options appended to it (each at most once).";
    };
    m.def(
        "quantize",
        [](py::object x, const std::string& quantizer, std::optional<std::string> rounding,
           std::optional<std::string> overflow, std::optional<std::uint64_t> seed, std::optional<int> random_bits,
           py::object out_object) {
            const py::array a = checked_array(x, "quantize", "x");
            const lowbit::quantizer q = quantizer_of(quantizer, rounding, overflow, seed, random_bits);
            py::array out;
            if (out_object.is_none()) {
                out = empty_like(a);
            } else {
                out = checked_array(out_object, "quantize", "out");
                if (!out.dtype().is(a.dtype()) || out.size() != a.size() || !out.writeable())
                    throw py::value_error("lowbit.quantize: out must be a writeable array of x's dtype and size (" +
                                          std::string(py::str(a.dtype())) + ", " + std::to_string(a.size()) + ")");
            }
            quantize_array(q, a, out);
            return out;
        },
        py::arg("x"), py::arg("quantizer"), py::kw_only(), py::arg("rounding") = py::none(),
        py::arg("overflow") = py::none(), py::arg("seed") = py::none(), py::arg("random_bits") = py::none(),
        py::arg("out") = py::none(),
        quantize_doc("x rounded into a new array, or into out (float32 or float64, C-contiguous); element e takes "
                     "the random bits of index e.").c_str());
    m.def(
        "quantize_",
        [](py::object x, const std::string& quantizer, std::optional<std::string> rounding,
           std::optional<std::string> overflow, std::optional<std::uint64_t> seed, std::optional<int> random_bits) {
            py::array a = checked_array(x, "quantize_", "x");
            if (!a.writeable()) throw py::value_error("lowbit.quantize_: x is read-only");
            const lowbit::quantizer q = quantizer_of(quantizer, rounding, overflow, seed, random_bits);
            quantize_array(q, a, a);
            return a;
        },
        py::arg("x"), py::arg("quantizer"), py::kw_only(), py::arg("rounding") = py::none(),
        py::arg("overflow") = py::none(), py::arg("seed") = py::none(), py::arg("random_bits") = py::none(),
        quantize_doc("Rounds x in place (float32 or float64, C-contiguous).").c_str());

    // The same calls timed inside C++ (for bench/python_overhead.py: a Python call against the C++
    // work it runs, in one process on the same data): seconds per call, the best of `repeats`.
    m.def("_time_quantize", [](py::object x, const std::string& quantizer, int repeats) {
        const py::array a = checked_array(x, "_time_quantize", "x");
        const lowbit::quantizer q = lowbit::quantizer::parse(quantizer);
        py::array out = empty_like(a);
        double best = 1e300;
        for (int r = 0; r < repeats; ++r) {
            const auto start = std::chrono::steady_clock::now();
            quantize_array(q, a, out);
            best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
        }
        return best;
    });
    m.def("_time_gemm", [](py::object a_object, py::object b_object, const lowbit::gemm_spec& spec, int repeats) {
        const py::array a = checked_array(a_object, "_time_gemm", "a"), b = checked_array(b_object, "_time_gemm", "b");
        row_major a_storage, b_storage;
        const auto A = float_view(a, a_storage), B = float_view(b, b_storage);
        row_major C(A.rows(), B.cols());
        double best = 1e300;
        py::gil_scoped_release unlocked;
        for (int r = 0; r < repeats; ++r) {
            const auto start = std::chrono::steady_clock::now();
            lowbit::gemm(A, B, C, spec);
            best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
        }
        return best;
    });

    m.def(
        "quantize_blocks",
        [](py::object x, const std::string& format, int k_axis) {
            const py::array a = checked_array(x, "quantize_blocks", "x");
            if (a.ndim() != 2) throw py::value_error("lowbit.quantize_blocks: x must be a matrix here");
            const lowbit::block_format f = block_format_named(format);
            row_major storage;
            const auto X = float_view(a, storage);
            py::array_t<float, py::array::c_style> out({a.shape(0), a.shape(1)});
            float* to = out.mutable_data();
            {
                py::gil_scoped_release unlocked;
                const lowbit::block_scaled_matrix m =
                    lowbit::quantize_blocks(X.data(), std::size_t(X.rows()), std::size_t(X.cols()), f, k_axis);
                lowbit::dequantize(m, to);
            }
            return out;
        },
        py::arg("x"), py::arg("format"), py::arg("k_axis"),
        "The values of x (rows x cols) after block quantization (blocks along rows for k_axis = 1,\n"
        "down columns for 0), as float32: element times block scale times coarse scale.");

    m.def(
        "lns_quantize",
        [](py::object x, const std::string& format, const std::string& rounding, bool underflow_to_smallest,
           std::uint64_t seed) {
            const py::array a = checked_array(x, "lns_quantize", "x");
            const lowbit::lns_quantizer q{.format = lns_format_named(format), .mode = lns_rounding_named(rounding),
                                          .on_underflow = underflow_to_smallest ? lowbit::lns_underflow::smallest
                                                                                : lowbit::lns_underflow::zero,
                                          .seed = seed};
            py::array out = empty_like(a);
            on_elements(a, out, [&](const auto* from, auto* to, std::size_t n) {
                using T = std::remove_pointer_t<decltype(to)>;
                q(std::span<const T>(from, n), std::span<T>(to, n));
            });
            return out;
        },
        py::arg("x"), py::arg("format"), py::arg("rounding"), py::arg("underflow_to_smallest"), py::arg("seed"),
        "x on the LNS grid 2^(k / gamma) (a new array; element e takes the random bits of index e).");

    m.def(
        "quantize_operand_",
        [](py::object x, const lowbit::gemm_spec& spec, const std::string& which) {
            py::array a = checked_array(x, "quantize_operand_", "x");
            if (!a.dtype().is(py::dtype::of<float>())) throw py::type_error("lowbit.quantize_operand_: x must be float32");
            if (!a.writeable()) throw py::value_error("lowbit.quantize_operand_: x is read-only");
            if (which != "a" && which != "b")
                throw py::value_error("lowbit.quantize_operand_: which = '" + which + "' must be 'a' or 'b'");
            const lowbit::quantizer& q = which == "a" ? spec.input_a : spec.input_b;
            const lowbit::gemm_role role = which == "a" ? lowbit::gemm_role::input_a : lowbit::gemm_role::input_b;
            auto* data = static_cast<float*>(a.mutable_data());
            const auto n = std::size_t(a.size());
            {
                py::gil_scoped_release unlocked;
                lowbit::detail::quantize_input(q, role, data, n, lowbit::detail::thread_count(spec.threads));
            }
            return a;
        },
        py::arg("x"), py::arg("spec"), py::arg("which"),
        "Rounds x in place as gemm rounds its operand A or B (the spec's input_a or input_b, with the\n"
        "same random bits): the operands a straight-through backward pass multiplies.");

    m.def(
        "gemm",
        [](py::object a_object, py::object b_object, py::object c_object, const lowbit::gemm_spec& spec,
           bool stats) -> py::object {
            const py::array a = checked_array(a_object, "gemm", "a"), b = checked_array(b_object, "gemm", "b");
            if (a.ndim() != 2 || b.ndim() != 2 || a.shape(1) != b.shape(0))
                throw py::value_error("lowbit.gemm: a (" + std::string(py::str(a.attr("shape"))) + ") and b (" +
                                      std::string(py::str(b.attr("shape"))) +
                                      ") must be matrices M x K and K x N");
            std::optional<py::array> c;
            if (!c_object.is_none()) {
                c = checked_array(c_object, "gemm_add", "c");
                if (c->ndim() != 2 || c->shape(0) != a.shape(0) || c->shape(1) != b.shape(1))
                    throw py::value_error("lowbit.gemm_add: c (" + std::string(py::str(c->attr("shape"))) +
                                          ") must be M x N = (" + std::to_string(a.shape(0)) + ", " +
                                          std::to_string(b.shape(1)) + ")");
            }
            py::array_t<float, py::array::c_style> d({a.shape(0), b.shape(1)});
            lowbit::gemm_stats counted;
            {
                py::gil_scoped_release unlocked;
                row_major a_storage, b_storage, c_storage;
                const auto A = float_view(a, a_storage), B = float_view(b, b_storage);
                Eigen::Map<row_major> D(d.mutable_data(), A.rows(), B.cols());
                if (c) lowbit::gemm_add(A, B, float_view(*c, c_storage), D, spec, stats ? &counted : nullptr);
                else lowbit::gemm(A, B, D, spec, stats ? &counted : nullptr);
            }
            if (!stats) return d;
            return py::make_tuple(d, stats_dict(counted));
        },
        py::arg("a"), py::arg("b"), py::arg("c"), py::arg("spec"), py::arg("stats") = false,
        "D = A B (+ C, where c is not None) on the datapath of spec (float32 result); with stats=True,\n"
        "(D, event counts).");

    // lowbit::hw: the matrix units' presets.
    py::module_ hw = m.def_submodule("hw", "The accumulation of real matrix units (lowbit::hw), as Specs.");
    hw.def(
        "preset", [](const std::string& text) { return lowbit::hw::preset(text); }, py::arg("text"),
        "The Spec of a unit's instructions: 'hopper:e4m3', 'ampere:bf16', 'cdna3:fp16', 'hopper:fp16:fp16'\n"
        "(unit:inputs[:output] or unit:input_a:input_b:output).");
    hw.def(
        "units",
        [] {
            std::vector<std::string> names;
            for (const auto u : lowbit::hw::units) names.emplace_back(lowbit::hw::to_string(u));
            return names;
        },
        "The units' names, oldest NVIDIA first, then AMD.");
    hw.def(
        "inputs",
        [](const std::string& unit) {
            for (const auto u : lowbit::hw::units)
                if (unit == lowbit::hw::to_string(u)) {
                    std::vector<std::string> names;
                    for (const auto& f : lowbit::hw::detail::inputs_of(u)) names.push_back(lowbit::to_string(f));
                    return names;
                }
            throw py::value_error("lowbit.hw.inputs: '" + unit + "' names no unit (lowbit.hw.units())");
        },
        py::arg("unit"), "The input formats a unit's instructions take.");
}
