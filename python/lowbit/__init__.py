"""lowbit: bit-exact simulation of low-precision arithmetic, from Python.

    import lowbit
    y = lowbit.quantize(x, "float8_e4m3fn", rounding="stochastic", seed=1)
    c, events = lowbit.gemm(a, b, lowbit.spec("input_a=e4m3 input_b=e4m3 accumulator=fp16 chunk=16"),
                            stats=True)

Arrays are NumPy arrays or CPU torch tensors of float32 or float64; results come back as the
same kind. Formats, quantizers and specs are written as the C++ library reads them (its parse
functions do the reading here too), so text from a results file or a C++ program means the same.
Errors are ValueError (a bad format, spec or shape) or TypeError (a wrong dtype or object) with
lowbit's own message.
"""

import numpy as _np

from ._lowbit import Format, Quantizer, Spec
from ._lowbit import hw  # lowbit.hw.preset("hopper:e4m3"), lowbit.hw.units(), lowbit.hw.inputs("ampere")
from . import _lowbit

__all__ = ["Format", "Quantizer", "Spec", "format", "quantizer", "spec", "quantize", "quantize_", "quantize_blocks", "lns_quantize", "gemm", "gemm_add", "hw",
           "float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz", "float8_e5m2fnuz", "float8_e4m3b11fnuz",
           "float8_e4m3", "float8_e3m4", "float8_e8m0fnu", "float6_e2m3fn", "float6_e3m2fn", "float4_e2m1fn", "bfloat16", "float16", "float32"]


def format(text):
    """The float format a text names: "e4m3", "float8_e4m3fn", "bfloat16", "m7e4,bias=10,subnormals=off"."""
    return Format(str(text))


def quantizer(text):
    """The quantizer a text names: "e4m3:toward_zero:saturate", "int8:frac=5:wrap", "exact"."""
    return Quantizer(str(text))


def spec(text="", *, threads=None):
    """The GEMM datapath a text names (gemm_spec text), on `threads` threads (default: all cores)."""
    s = Spec(str(text))
    if threads is not None:
        s.threads = int(threads)
    return s


# The names PyTorch and ml_dtypes users know.
float8_e4m3fn = Format("float8_e4m3fn")
float8_e5m2 = Format("float8_e5m2")
float8_e4m3fnuz = Format("float8_e4m3fnuz")
float8_e5m2fnuz = Format("float8_e5m2fnuz")
float8_e4m3b11fnuz = Format("float8_e4m3b11fnuz")
float8_e4m3 = Format("float8_e4m3")  # ml_dtypes' IEEE-style e4m3 (max 240, infinities), not PyTorch's e4m3fn
float8_e3m4 = Format("float8_e3m4")
float8_e8m0fnu = Format("float8_e8m0fnu")  # the OCP MX block scale (ue8m0)
float6_e2m3fn = Format("float6_e2m3fn")
float6_e3m2fn = Format("float6_e3m2fn")
float4_e2m1fn = Format("float4_e2m1fn")
bfloat16 = Format("bfloat16")
float16 = Format("float16")
float32 = Format("float32")


def _torch_tensor_type():
    import sys
    torch = sys.modules.get("torch")  # (never imported here: a NumPy user need not have torch)
    return torch.Tensor if torch is not None else None


def _to_numpy(x, name):
    """x as an array sharing its memory, and a function that turns a result back into x's kind."""
    tensor = _torch_tensor_type()
    if tensor is not None and isinstance(x, tensor):
        if x.device.type != "cpu":
            raise ValueError(f"lowbit: {name} is on {x.device}; lowbit runs on the CPU (use {name}.cpu())")
        import torch
        return x.detach().numpy(), torch.from_numpy
    if isinstance(x, _np.ndarray):
        return x, lambda a: a
    raise TypeError(f"lowbit: {name} must be a NumPy array or a CPU torch tensor, not {type(x).__name__}")


def quantize_(x, quantizer, *, rounding=None, overflow=None, seed=None, random_bits=None):
    """Rounds x in place (float32 or float64, contiguous) and returns it.

    quantizer: a Format, a Quantizer, or their text ("e4m3", "float8_e5m2:stochastic", "int8:frac=5").
    rounding: nearest_even (default), nearest_away, toward_zero, toward_positive, toward_negative,
    stochastic or odd; overflow: "infinity" (default) or "saturate" ("wrap" or "saturate" for
    integers); seed and random_bits: stochastic rounding's random stream, keyed by (seed, element
    index in x's memory order), so results never depend on threads or on how x is split.
    """
    array, _ = _to_numpy(x, "x")
    _lowbit.quantize_(array, str(quantizer), rounding=rounding, overflow=overflow, seed=seed,
                      random_bits=random_bits)
    return x


def quantize(x, quantizer, *, rounding=None, overflow=None, seed=None, random_bits=None, out=None):
    """x rounded into a new array or tensor of x's dtype (x itself is not changed), or into `out`
    (an array or tensor of x's dtype and size, contiguous: no allocation). See quantize_ for the
    options. A non-contiguous x is copied first; element e is then the e-th in x's logical order."""
    array, back = _to_numpy(x, "x")
    if array.dtype not in (_np.float32, _np.float64):
        raise TypeError(f"lowbit.quantize: x has dtype {array.dtype}; pass float32 or float64")
    target = None if out is None else _to_numpy(out, "out")[0]
    result = _lowbit.quantize(_np.ascontiguousarray(array), str(quantizer), rounding=rounding, overflow=overflow,
                              seed=seed, random_bits=random_bits, out=target)
    return out if out is not None else back(result)


def quantize_blocks(x, format, *, axis=-1):
    """x after block quantization, as float32 values (element x block scale x coarse scale), in x's
    kind and shape. format: mxfp8_e4m3, mxfp8_e5m2, mxfp6_e2m3, mxfp6_e3m2, mxfp4, mxint8 (OCP MX:
    power-of-two scales per 32), nvfp4 (fp4 elements, ue4m3 scales per 16, one fp32 scale for x),
    or "vsquant:N:M:V" (N-bit integers, M-bit vector scales per V, one coarse scale per line; V = 0:
    one vector per line, so "vsquant:N:1:0" is per-channel N-bit integer scaling).
    axis: the dimension cut into blocks (the reduction dimension K); the others are lines.
    """
    array, back = _to_numpy(x, "x")
    if array.dtype not in (_np.float32, _np.float64):
        raise TypeError(f"lowbit.quantize_blocks: x has dtype {array.dtype}; pass float32 or float64")
    if array.ndim == 0:
        raise ValueError("lowbit.quantize_blocks: x must have at least one dimension")
    moved = _np.moveaxis(array, axis, -1)
    lines = _np.ascontiguousarray(moved.reshape(-1, moved.shape[-1]))
    values = _lowbit.quantize_blocks(lines, str(format), 1)
    result = _np.moveaxis(values.reshape(moved.shape), -1, axis)
    return back(_np.ascontiguousarray(result))


def lns_quantize(x, format="lns8", *, rounding="nearest_log", underflow="zero", seed=0):
    """x on a logarithmic grid 2^(k / gamma) (a new array or tensor of x's dtype): format "lns8"
    (sign + 7-bit k, gamma 8), "lns16" or "lns:LOG_BITS:FRAC_BITS"; rounding nearest_log,
    nearest_linear, toward_zero or stochastic_log (keyed by seed and element index); k beyond the
    range saturates, below it underflows to zero (underflow="smallest": to the smallest value)."""
    array, back = _to_numpy(x, "x")
    if array.dtype not in (_np.float32, _np.float64):
        raise TypeError(f"lowbit.lns_quantize: x has dtype {array.dtype}; pass float32 or float64")
    if underflow not in ("zero", "smallest"):
        raise ValueError(f"lowbit.lns_quantize: underflow = '{underflow}' must be 'zero' or 'smallest'")
    return back(_lowbit.lns_quantize(_np.ascontiguousarray(array), str(format), str(rounding),
                                     underflow == "smallest", int(seed)))


def gemm(a, b, spec, *, stats=False):
    """C = A B on the datapath `spec` (a Spec or its text), float32; with stats=True, (C, events).

    a: M x K, b: K x N, float32 or float64 (float64 is cast to float first), C-contiguous.
    events: a dict of the event counts of lowbit::gemm_stats (macs, swamps, product_underflows, ...).
    """
    return _gemm(a, b, None, spec, stats)


def gemm_add(a, b, c, spec, *, stats=False):
    """D = A B + C on the datapath `spec`, as a matrix unit's instruction computes it: each output's
    accumulation starts from C(i, j) rounded by the spec's addend quantizer (lowbit::gemm_add).
    c: M x N. Otherwise as gemm; lowbit.hw.preset("hopper:e4m3") gives a unit's spec."""
    return _gemm(a, b, c, spec, stats)


def _gemm(a, b, c, spec, stats):
    a_array, back = _to_numpy(a, "a")
    b_array, _ = _to_numpy(b, "b")
    c_array = None if c is None else _to_numpy(c, "c")[0]
    if not isinstance(spec, Spec):
        spec = Spec(str(spec))
    result = _lowbit.gemm(a_array, b_array, c_array, spec, stats)
    if stats:
        return back(result[0]), result[1]
    return back(result)
