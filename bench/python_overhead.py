#!/usr/bin/python3
"""The cost of calling lowbit from Python: each call timed from Python beside the same C++ work
timed inside C++ (lowbit._lowbit._time_*), in one process on the same data; best of N runs each.

    PYTHONPATH=build/release/python /usr/bin/python3 bench/python_overhead.py

Also QLinear (lowbit.torch) forward and backward against torch's fp32 nn.Linear, 512 x 512,
batch 256, on the flagship's M7E4 datapath (the simulated product is most of the difference).
"""
import time

import numpy as np

import lowbit
from lowbit import _lowbit


def best_of(call, repeats):
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - start)
    return best


def row(name, python, cpp):
    print(f"{name:58s} python {python * 1e3:9.3f} ms   C++ {cpp * 1e3:9.3f} ms   ratio {python / cpp:6.3f}")


def main():
    rng = np.random.default_rng(1)
    x = rng.standard_normal(16 << 20).astype(np.float32)
    y = np.empty_like(x)
    for q in ["e4m3", "bfloat16:toward_zero", "e4m3:stochastic:seed=1"]:
        cpp = _lowbit._time_quantize(x, q, 7)  # (into one output array, allocated once)
        row(f"quantize 16M float32 -> {q}, out=y", best_of(lambda: lowbit.quantize(x, q, out=y), 7), cpp)
        row(f"quantize 16M float32 -> {q}, a new array", best_of(lambda: lowbit.quantize(x, q), 7), cpp)
    # What a new result costs by itself: numpy's allocation of 64 MB and the first touch of its pages
    # (numpy asks for huge pages; a C++ new[] of the same size, in 4 KB pages, costs ~15x more here).
    fresh = best_of(lambda: np.empty_like(x).fill(0), 7)
    print(f"{'numpy alone: a new 16M float32 array, filled':58s} python {fresh * 1e3:9.3f} ms")
    m7e4 = ("input_a=e4m3 input_b=e4m3 product=m7e4,bias=12,subnormals=off,specials=none:toward_zero:saturate "
            "accumulator=m7e4,bias=10,subnormals=off,specials=none:toward_zero:saturate chunk=16 "
            "chunk_accumulator=m7e4,bias=10,subnormals=off,specials=none:toward_zero:saturate")
    for threads in [1, 2]:
        spec = lowbit.spec(m7e4, threads=threads)
        a = rng.standard_normal((512, 512)).astype(np.float32)
        b = rng.standard_normal((512, 512)).astype(np.float32)
        python = best_of(lambda: lowbit.gemm(a, b, spec), 5)
        row(f"gemm 512^3, M7E4 chunk 16 toward_zero, {threads} thread(s)", python, _lowbit._time_gemm(a, b, spec, 5))

    try:
        import torch
        import lowbit.torch as lt
    except ImportError:
        return
    torch.manual_seed(0)
    torch.set_num_threads(1)
    ref = torch.nn.Linear(512, 512)
    q = lt.QLinear(512, 512, spec=lowbit.spec(m7e4, threads=1))
    q.load_state_dict(ref.state_dict())
    x = torch.randn(256, 512, requires_grad=True)

    def step(module):
        y = module(x)
        y.sum().backward()

    t_ref = best_of(lambda: ref(x), 7)
    t_q = best_of(lambda: q(x), 5)
    print(f"QLinear 512x512 batch 256 forward (1 thread): {t_q * 1e3:.2f} ms, torch nn.Linear {t_ref * 1e3:.3f} ms "
          f"({t_q / t_ref:.1f}x)")
    t_ref = best_of(lambda: step(ref), 7)
    t_q = best_of(lambda: step(q), 5)
    print(f"QLinear 512x512 batch 256 forward + backward (1 thread): {t_q * 1e3:.2f} ms, torch nn.Linear "
          f"{t_ref * 1e3:.3f} ms ({t_q / t_ref:.1f}x)")


if __name__ == "__main__":
    main()
