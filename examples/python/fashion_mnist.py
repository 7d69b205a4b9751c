#!/usr/bin/python3
"""The flagship's story from PyTorch: a CNN trained in fp32, converted to the simulated datapath
of the low bit-width accumulator paper (papers.md section 1), evaluated zero-shot with MxEy
products and accumulators, and fine-tuned on M7E4 straight through the quantizers.

    PYTHONPATH=build/release/python /usr/bin/python3 examples/python/fashion_mnist.py [--quick] [--out DIR]

The same CNN as the C++ flagship (conv 3x3 32, pool, conv 3x3 64, pool, fc 128, fc 10; without
batch norm), trained by torch in fp32 (Adam 1e-3). Then lowbit.torch.convert swaps its layers for
QConv2d / QLinear on a datapath: FP8 e4m3 weights and activations (saturating, no per-tensor
bias: the C++ flagship biases e4m3 to each tensor's range), products and accumulators MxEy
(flush to zero, saturating, toward_zero), chunks of 16, the paper's biases (M7E4: 12 / 10; MxE5:
28 / 26). Writes results.csv (format,product,accumulator,zero_shot_accuracy,swamp_rate,
underflow_rate,fine_tuned_accuracy,quick,test_images,seed,datapath) into --out.
"""
import argparse
import csv
import gzip
import math
import pathlib
import sys
import time

import numpy as np
import torch

import lowbit
import lowbit.torch as lt

DATA = pathlib.Path("/usr/share/datasets/fashion-mnist")  # Debian's dataset-fashion-mnist


def read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def load(folder):
    def images(name):
        return torch.from_numpy(read_idx(folder / name).astype(np.float32) / 255.0).unsqueeze(1)

    def labels(name):
        return torch.from_numpy(read_idx(folder / name).astype(np.int64))
    return (images("train-images-idx3-ubyte.gz"), labels("train-labels-idx1-ubyte.gz"),
            images("t10k-images-idx3-ubyte.gz"), labels("t10k-labels-idx1-ubyte.gz"))


def make_cnn():
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 32, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(32, 64, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Flatten(), torch.nn.Linear(64 * 7 * 7, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10))


def train(model, x, y, epochs, lr, label, batch=64, seed=1):
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(seed)
    steps = max(1, int(epochs * len(x) / batch))
    started = time.time()
    order = torch.randperm(len(x), generator=generator)
    for step in range(steps):
        at = (step * batch) % len(x)
        if at + batch > len(x):
            order, at = torch.randperm(len(x), generator=generator), 0
        idx = order[at:at + batch]
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
        loss.backward()
        opt.step()
        if step % 50 == 0 or step == steps - 1:
            print(f"\r  {label}: step {step + 1}/{steps}, loss {loss.item():.3f}, {time.time() - started:.0f} s",
                  end="", flush=True)
    print()


def accuracy(model, x, y, batch=500):
    with torch.no_grad():
        right = sum((model(x[i:i + batch]).argmax(1) == y[i:i + batch]).sum().item() for i in range(0, len(x), batch))
    return 100.0 * right / len(x)


def datapath(man, exp):
    product_bias, accumulator_bias = (12, 10) if (man, exp) == (7, 4) else (28, 26)
    fmt = lambda bias: f"m{man}e{exp},bias={bias},subnormals=off,specials=none:toward_zero:saturate"  # noqa: E731
    acc = fmt(accumulator_bias)
    return lowbit.spec(f"input_a=e4m3:saturate input_b=e4m3:saturate product={fmt(product_bias)} accumulator={acc} "
                       f"chunk=16 chunk_accumulator={acc}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="6000 training and 1000 test images, short runs")
    parser.add_argument("--out", default="results/", help="output folder (created when missing)")
    parser.add_argument("--data", default=str(DATA), help="Fashion-MNIST folder (the four IDX files, gzipped)")
    parser.add_argument("--epochs", type=float, default=2.0, help="fp32 training epochs")
    parser.add_argument("--finetune-epochs", type=float, default=0.25, help="M7E4 fine-tuning epochs")
    parser.add_argument("--seed", type=int, default=1)
    o = parser.parse_args()
    if not (o.epochs > 0 and math.isfinite(o.epochs) and o.finetune_epochs >= 0 and math.isfinite(o.finetune_epochs)):
        parser.error("--epochs must be a finite number > 0 and --finetune-epochs finite and >= 0")
    out = pathlib.Path(o.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    torch.manual_seed(o.seed)
    train_x, train_y, test_x, test_y = load(pathlib.Path(o.data))
    if o.quick:
        train_x, train_y, test_x, test_y = train_x[:6000], train_y[:6000], test_x[:1000], test_y[:1000]
        o.epochs, o.finetune_epochs = min(o.epochs, 1.0), min(o.finetune_epochs, 0.25)
    print(f"Fashion-MNIST from {o.data}: {len(train_x)} training, {len(test_x)} test images")

    model = make_cnn()
    train(model, train_x, train_y, o.epochs, 1e-3, "fp32 training", seed=o.seed)
    fp32 = accuracy(model, test_x, test_y)
    fp32_state = {k: v.clone() for k, v in model.state_dict().items()}
    print(f"fp32 test accuracy: {fp32:.2f}%")

    rows = []
    for man, exp in [(10, 5), (9, 5), (8, 5), (7, 5), (6, 5), (7, 4)]:
        name = f"M{man}E{exp}"
        spec = datapath(man, exp)
        model.load_state_dict(fp32_state)
        q = lt.convert(make_cnn(), spec)
        q.load_state_dict(fp32_state)
        with lt.counting_events() as events:
            zero_shot = accuracy(q, test_x, test_y)
        row = {"format": name, "product": str(spec.product), "accumulator": str(spec.accumulator),
               "zero_shot_accuracy": zero_shot, "swamp_rate": events["swamps"] / events["macs"],
               "underflow_rate": events["product_underflows"] / events["macs"], "fine_tuned_accuracy": "",
               "quick": int(o.quick), "test_images": len(test_x), "seed": o.seed, "datapath": str(spec)}
        print(f"  {name} zero-shot: {zero_shot:.2f}% (swamps {100 * row['swamp_rate']:.2f}% of MACs, "
              f"product underflows {100 * row['underflow_rate']:.3f}%)")
        if (man, exp) == (7, 4) and o.finetune_epochs > 0:
            train(q, train_x, train_y, o.finetune_epochs, 1e-4, "M7E4 fine-tuning (straight-through)", seed=o.seed + 1)
            row["fine_tuned_accuracy"] = accuracy(q, test_x, test_y)
        rows.append(row)

    with open(out / "results.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    se = 100 * math.sqrt(fp32 / 100 * (1 - fp32 / 100) / len(test_x))
    print(f"\nTest accuracy ({len(test_x)} images; standard error about {se:.2f} points): fp32 {fp32:.2f}%")
    print(f"{'acc':6s} {'zero-shot':>10s} {'swamps':>8s} {'underflow':>10s} {'fine-tuned':>11s}")
    for r in rows:
        tuned = f"{r['fine_tuned_accuracy']:.2f}%" if r["fine_tuned_accuracy"] != "" else "-"
        print(f"{r['format']:6s} {r['zero_shot_accuracy']:9.2f}% {100 * r['swamp_rate']:7.2f}% "
              f"{100 * r['underflow_rate']:9.3f}% {tuned:>11s}")
    print(f"Wrote {out / 'results.csv'}. Total time {time.time() - started:.0f} s")


if __name__ == "__main__":
    try:
        main()
    except (OSError, ValueError) as e:
        print(f"fashion_mnist.py: error: {e}", file=sys.stderr)
        sys.exit(1)
