#!/usr/bin/env python3
"""Writes the seed corpora tests/fuzz/corpus/<target>/ of the fuzz targets (replacing them).

Every seed is built here from the documented formats (the headers named in each target), so the
corpus can be regenerated and reviewed: texts from the grammars, weights and IDX files from their
byte layouts, and for the targets that draw typed values (FuzzedDataProvider) a text prefix
where they take one, followed by deterministic pseudo-random bytes. Run it after changing a
target's input layout; the fuzzers' own discoveries are not committed (scripts/fuzz.sh runs on a
scratch copy), except the inputs that found a bug, kept as regression-<what> beside the seeds.
"""

import gzip
import pathlib
import random
import struct
import zlib

CORPUS = pathlib.Path(__file__).resolve().parent / "corpus"


def target(name):
    """A writer of seed-NNN files into the target's corpus, after removing the old ones (the
    regression-* files, inputs that once found a bug, stay)."""
    directory = CORPUS / name
    directory.mkdir(parents=True, exist_ok=True)
    for old in directory.glob("seed-*"):
        old.unlink()
    count = 0

    def write(data):
        nonlocal count
        (directory / f"seed-{count:03d}").write_bytes(bytes(data))
        count += 1

    return write


def noise(seed, size):
    rng = random.Random(seed)
    return bytes(rng.randrange(256) for _ in range(size))


# ---- spec_strings: first byte % 3 = type (float_format, quantizer, gemm_spec), / 3 % 2 = 1: value mode
FORMATS = [
    "e4m3", "fp8_e4m3", "m7e4,bias=10,subnormals=off,specials=none", "bf16", "e5m10", "ue8m0",
    "float8_e4m3fn", "float8_e4m3fnuz", "e4m3,specials=ieee", "ufp16", "e8m0,bias=127,nozero,subnormals=off",
    "E2M1 , unsigned", "e11m52", "e1m0", "e4m3,bias=+7", "e4m3,,bias=7",
]
QUANTIZERS = [
    "exact", "int32:frac=10:saturate", "m7e4,bias=10:toward_zero:saturate", "bf16:stochastic:seed=42",
    "uint4:odd:random_bits=3", "e5m2:stochastic:random_bits=33", "int8::wrap", "fp16:infinity:saturate",
]
SPECS = [
    "input_a=e4m3 input_b=e4m3 accumulator=fp16:toward_zero chunk=16",
    "input_a=fp8_e4m3 input_b=fp8_e4m3 product=lba_m7e4_prod:toward_zero accumulator=lba_m7e4_acc:toward_zero "
    "model=sequential chunk=16 chunk_accumulator=lba_m7e4_acc:toward_zero",
    "accumulator=int16:saturate model=pairwise chunk=4",
    "model=aligned window=13 group=4 cut=toward_negative accumulator=bf16",
    "threads=0 record_lost=1 model=fused",
    "chunk=5 chunk=6",
]


def spec_strings():
    write = target("spec_strings")
    for kind, texts in enumerate([FORMATS, QUANTIZERS, SPECS]):
        for text in texts:
            write(bytes([kind]) + text.encode())
        for seed in range(4):
            write(bytes([3 + kind]) + noise(100 * kind + seed, 16 + 24 * seed))


# ---- weights_file: an options byte (bit 0: fix the CRC, bit 1: by path, bits 2-3: load_weights
# variant), then the file, in the layout at the top of lowbit/nn/weights_file.hpp
def weights_file(tensors, count=None, version=1):
    out = b"LOWBITW1" + struct.pack("<II", version, len(tensors) if count is None else count)
    for name, shape, bits in tensors:
        out += struct.pack("<I", len(name)) + name + struct.pack("<I", len(shape))
        out += b"".join(struct.pack("<q", d) for d in shape)
        out += b"".join(struct.pack("<I", b) for b in bits)
    return out + struct.pack("<I", zlib.crc32(out))


def weights():
    write = target("weights_file")
    rng = random.Random(7)
    example = [(b"b", [2], [0x3F800000, 0xC0000000]), (b"s", [], [0x3F000000]), (b"e", [3, 0], [])]
    conv = [(b"conv1.weight", [2, 1, 3, 3], [rng.getrandbits(32) for _ in range(18)]),
            (b"conv1.bias", [2], [0x7FC12345, 0x80000001])]
    good = [example, conv, [], [(b"caf\xc3\xa9", [1, 1], [0x7F800001])]]
    for tensors in good:
        for options in (0, 2, 2 | 4, 2 | 8, 2 | 12):
            write(bytes([options]) + weights_file(tensors))
    whole = weights_file(example)
    for cut in (0, 7, 12, 16, 21, 29, 40, len(whole) - 1):
        write(b"\x02" + whole[:cut])
    bad = [
        weights_file(example, version=2),
        weights_file([(b"x", [1 << 40, 1 << 40, 4], [])]),  # absurd size
        weights_file([(b"x", [-1], [])]),
        weights_file([(b"x", [], [0]), (b"x", [], [0])]),  # repeated name
        weights_file([(b"", [], [0])]),
        weights_file(example, count=0xFFFFFFFF),
        weights_file(example) + b"\x00",  # trailing byte
        b"LOWBITW2" + whole[8:],
    ]
    for data in bad:
        write(b"\x03" + data)


# ---- idx_reader: an options byte (bit 0: gzip the images here, bit 1: the labels), a
# little-endian u16 length of the image file, the image file, the label file (the IDX layout at
# the top of lowbit/nn/fashion_mnist.hpp)
def idx(magic, dims, data):
    return struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in dims) + bytes(data)


def idx_pair(options, images, labels):
    return bytes([options]) + struct.pack("<H", len(images)) + images + labels


def idx_reader():
    write = target("idx_reader")
    rng = random.Random(11)
    pixels = [rng.randrange(256) for _ in range(2 * 3 * 4)]
    images, labels = idx(2051, [2, 3, 4], pixels), idx(2049, [2], [7, 255])
    for options in range(4):
        write(idx_pair(options, images, labels))
    write(idx_pair(0, idx(2051, [0, 28, 28], []), idx(2049, [0], [])))
    write(idx_pair(0, gzip.compress(images, mtime=0), gzip.compress(labels, mtime=0)))
    write(idx_pair(1, images[:-1], labels))  # truncated
    write(idx_pair(2, images + b"\x00", labels))  # trailing garbage
    write(idx_pair(0, images, idx(2049, [3], [1, 2, 3])))  # counts differ
    write(idx_pair(0, idx(2051, [1, 0, 5], []), idx(2049, [1], [0])))  # empty images
    write(idx_pair(0, idx(2051, [0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF], []), labels))  # absurd size
    write(idx_pair(0, idx(2049, [2], [1, 2]), idx(2051, [2, 3, 4], pixels)))  # swapped
    write(idx_pair(0, idx(0x0903, [2, 3, 4], pixels), labels))  # not unsigned bytes
    write(idx_pair(0, gzip.compress(images, mtime=0)[:-9], labels))  # gzip cut short


# ---- block_scaled: FuzzedDataProvider bytes; its first draw, from the last byte, picks the
# format (0-6 the presets, 7 vsquant(...), 8-9 every field drawn)
def block_scaled():
    write = target("block_scaled")
    for choice in range(10):
        for seed in range(3):
            write(noise(1000 + 10 * choice + seed, 40 + 150 * seed) + bytes([choice]))


# ---- lns_codec: FuzzedDataProvider bytes; the last byte picks the format (0 lns8, 1 lns16, 2-3
# drawn)
def lns_codec():
    write = target("lns_codec")
    for choice in range(4):
        for seed in range(4):
            write(noise(2000 + 10 * choice + seed, 24 + 100 * seed) + bytes([choice]))


# ---- quantize_diff: bit 0 of the first byte set: a quantizer's text and a newline, then
# FuzzedDataProvider bytes (the element type, the first index, the values)
QUANTIZE_TEXTS = [
    "fp8_e4m3", "e5m2:stochastic:seed=7", "e5m2:stochastic:random_bits=3", "bf16:toward_zero", "fp16:odd:saturate",
    "ue8m0:toward_positive", "m7e4,bias=10,subnormals=off,specials=none:toward_zero", "e2m1:nearest_away",
    "e8m23,subnormals=off", "e11m52:toward_negative", "e3m0,unsigned,nozero,subnormals=off", "e11m4,bias=1000",
    "int8:frac=4", "int16:frac=-3:saturate:stochastic", "uint4:odd", "int32:frac=1000", "int53:frac=-1000:toward_positive",
]


def quantize_diff():
    write = target("quantize_diff")
    for i, text in enumerate(QUANTIZE_TEXTS):
        write(b"\x01" + text.encode() + b"\n" + noise(3000 + i, 200 + 37 * i))
    for seed in range(6):
        write(b"\x00" + noise(3100 + seed, 100 + 300 * seed))


# ---- gemm_diff: bit 0 of the first byte set: a gemm_spec's text and a newline, then
# FuzzedDataProvider bytes (M, N, K, storage orders, a style, the values)
GEMM_TEXTS = [
    "input_a=fp8_e4m3 input_b=fp8_e4m3 product=lba_m7e4_prod:toward_zero accumulator=lba_m7e4_acc:toward_zero "
    "model=sequential chunk=16 chunk_accumulator=lba_m7e4_acc:toward_zero",
    "input_a=fp8_e4m3 input_b=fp8_e4m3 product=lba_m7e4_prod accumulator=lba_m7e4_acc chunk=5 "
    "chunk_accumulator=lba_m7e4_acc",
    "input_a=e4m3 input_b=e4m3 accumulator=fp16 chunk_accumulator=fp16 model=fma",
    "input_a=e5m2 input_b=e5m2 accumulator=bf16:toward_zero chunk_accumulator=bf16:toward_zero",
    "input_a=e4m3 input_b=e4m3 product=m7e4,bias=12,subnormals=off,specials=none accumulator=lba_m7e4_acc "
    "chunk_accumulator=lba_m7e4_acc model=pairwise chunk=8",
    "input_a=e4m3 input_b=e4m3 accumulator=lba_m7e4_acc chunk_accumulator=lba_m7e4_acc model=fused chunk=7",
    "input_a=e4m3 input_b=e4m3 accumulator=fp32 chunk_accumulator=fp32 model=aligned window=13 group=4",
    "input_a=e4m3 input_b=e4m3 accumulator=fp32 chunk_accumulator=fp32",
    "input_a=e2m1 input_b=e2m1 accumulator=e5m2:saturate chunk_accumulator=e5m2:saturate",
    "input_a=int8:frac=4 input_b=int8:frac=4 accumulator=int24:frac=8:saturate chunk_accumulator=int24:frac=8:saturate",
    "input_a=int4 input_b=int4 accumulator=int12 chunk_accumulator=int16 chunk=4",
    "input_a=bf16 input_b=bf16 accumulator=bf16:stochastic:seed=3 chunk_accumulator=fp32",
    "accumulator=m3e4,subnormals=off,specials=none:toward_zero chunk_accumulator=m3e4,subnormals=off,specials=none:toward_zero",
]


def gemm_diff():
    write = target("gemm_diff")
    for i, text in enumerate(GEMM_TEXTS):
        for size in (300, 2500):
            write(b"\x01" + text.encode() + b"\n" + noise(4000 + 10 * i + size, size))
    for seed in range(6):
        write(b"\x00" + noise(4200 + seed, 200 + 500 * seed))


if __name__ == "__main__":
    spec_strings()
    weights()
    idx_reader()
    block_scaled()
    lns_codec()
    quantize_diff()
    gemm_diff()
