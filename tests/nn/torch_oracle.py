#!/usr/bin/env python3
"""The PyTorch oracle of tests/nn/transformer_test.cpp.

    torch_oracle.py CASE_FILE RESULT_FILE

CASE_FILE (written by the C++ test): "case KIND", "option KEY VALUE" lines and tensors as
"tensor NAME ROWS COLS" followed by one line of ROWS*COLS values (row-major). The case is computed
in float64 by torch.nn's own modules on those values (so the reference owes nothing to lowbit's
code), and RESULT_FILE receives the outputs and gradients in the same tensor format.
"""
import sys

import torch
import torch.nn.functional as F

torch.set_default_dtype(torch.float64)


def read_case(path):
    kind, options, tensors = None, {}, {}
    lines = open(path).read().split("\n")
    i = 0
    while i < len(lines):
        parts = lines[i].split()
        if parts and parts[0] == "case":
            kind = parts[1]
        elif parts and parts[0] == "option":
            options[parts[1]] = parts[2]
        elif parts and parts[0] == "tensor":
            rows, cols = int(parts[2]), int(parts[3])
            i += 1
            values = [float(v) for v in lines[i].split()]
            assert len(values) == rows * cols, parts[1]
            tensors[parts[1]] = torch.tensor(values).reshape(rows, cols)
        i += 1
    return kind, options, tensors



def layer_norm(t, o, p):
    m = torch.nn.LayerNorm(int(o["features"]), eps=float(o["eps"]))
    with torch.no_grad():
        m.weight.copy_(p("gamma").reshape(-1))
        m.bias.copy_(p("beta").reshape(-1))
    return m, {"gamma": m.weight, "beta": m.bias}


def linear(t, o, p, prefix=""):
    w = p(prefix + "weight")
    m = torch.nn.Linear(w.shape[1], w.shape[0])
    with torch.no_grad():
        m.weight.copy_(w)
        m.bias.copy_(p(prefix + "bias").reshape(-1))
    return m, {prefix + "weight": m.weight, prefix + "bias": m.bias}


def attention(t, o, p, prefix=""):
    w = p(prefix + "qkv.weight")
    dim = w.shape[1]
    m = torch.nn.MultiheadAttention(dim, int(o["heads"]), batch_first=True)
    with torch.no_grad():
        m.in_proj_weight.copy_(w)
        m.in_proj_bias.copy_(p(prefix + "qkv.bias").reshape(-1))
        m.out_proj.weight.copy_(p(prefix + "proj.weight"))
        m.out_proj.bias.copy_(p(prefix + "proj.bias").reshape(-1))
    params = {prefix + "qkv.weight": m.in_proj_weight, prefix + "qkv.bias": m.in_proj_bias,
              prefix + "proj.weight": m.out_proj.weight, prefix + "proj.bias": m.out_proj.bias}
    return (lambda x: m(x, x, x, need_weights=False)[0]), params


def depthwise(t, o, p, prefix=""):
    w = p(prefix + "weight")
    c = w.shape[0]
    h, wd = int(o["height"]), int(o["width"])
    m = torch.nn.Conv2d(c, c, 3, padding=1, groups=c)
    with torch.no_grad():
        m.weight.copy_(w.reshape(c, 1, 3, 3))
        m.bias.copy_(p(prefix + "bias").reshape(-1))

    def run(x):  # batch x tokens x channels, tokens row by row on the grid
        b = x.shape[0]
        y = m(x.transpose(1, 2).reshape(b, c, h, wd))
        return y.reshape(b, c, h * wd).transpose(1, 2)
    return run, {prefix + "weight": m.weight, prefix + "bias": m.bias}


def run_case(kind, o, t):
    b = int(o["batch"])
    params = {}

    def p(name):
        return t[name]

    def as_tokens(x):
        return x.reshape(b, -1, int(o["features"]))

    x = t["x"].clone().requires_grad_(True)
    if kind == "layer_norm":
        m, params = layer_norm(t, o, p)
        y = m(as_tokens(x))
    elif kind in ("gelu", "gelu_tanh"):
        y = F.gelu(x, approximate="tanh" if kind == "gelu_tanh" else "none")
    elif kind == "softmax":
        y = torch.softmax(as_tokens(x), dim=-1)
    elif kind == "linear":
        m, params = linear(t, o, p)
        y = m(as_tokens(x))
    elif kind == "token_mean_pool":
        y = as_tokens(x).mean(dim=1)
    elif kind == "positional_embedding":
        e = p("embedding").clone().requires_grad_(True)
        params = {"embedding": e}
        y = x + e
    elif kind == "patch_embedding":
        w = p("weight")
        c, patch = int(o["channels"]), int(o["patch"])
        m = torch.nn.Conv2d(c, w.shape[0], patch, stride=patch)
        with torch.no_grad():
            m.weight.copy_(w.reshape(w.shape[0], c, patch, patch))
            m.bias.copy_(p("bias").reshape(-1))
        params = {"weight": m.weight, "bias": m.bias}
        img = x.reshape(b, c, int(o["height"]), int(o["width"]))
        y = m(img).flatten(2).transpose(1, 2)  # batch x tokens x features
    elif kind == "attention":
        run, params = attention(t, o, p)
        y = run(as_tokens(x))
    elif kind == "depthwise_conv":
        run, params = depthwise(t, o, p)
        y = run(as_tokens(x))
    elif kind == "transformer_block":
        # pre-LN: x + attn(LN(x)), then x + fc2(GELU(dwconv(fc1(LN(x)))))
        ln1, p1 = layer_norm(t, {"features": o["features"], "eps": o["eps"]},
                             lambda n: p("blk_attn.ln." + n))
        att, p2 = attention(t, o, p, "blk_attn.attn.")
        ln2, p3 = layer_norm(t, {"features": o["features"], "eps": o["eps"]},
                             lambda n: p("blk_mlp.ln." + n))
        fc1, p4 = linear(t, o, p, "blk_mlp.fc1.")
        dw, p5 = depthwise(t, o, p, "blk_mlp.dwconv.")
        fc2, p6 = linear(t, o, p, "blk_mlp.fc2.")
        params = {**{"blk_attn.ln." + k: v for k, v in p1.items()}, **p2,
                  **{"blk_mlp.ln." + k: v for k, v in p3.items()}, **p4, **p5, **p6}
        h = as_tokens(x)
        h = h + att(ln1(h))
        y = h + fc2(F.gelu(dw(fc1(ln2(h)))))
    else:
        raise SystemExit("torch_oracle.py: unknown case " + kind)
    y = y.reshape(b, -1)
    y.backward(t["dy"].reshape(y.shape))
    out = {"y": y.detach(), "dx": x.grad}
    for name, v in params.items():
        out["grad:" + name] = v.grad.reshape(t[name].shape)
    return out


def main():
    kind, options, tensors = read_case(sys.argv[1])
    if kind == "one_cycle":
        steps = int(options["steps"])
        w = torch.zeros(1, requires_grad=True)
        opt = torch.optim.SGD([w], lr=1.0)
        s = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=float(options["max"]), total_steps=steps,
                                                pct_start=float(options["pct_start"]), anneal_strategy="cos",
                                                cycle_momentum=False, div_factor=float(options["div_factor"]),
                                                final_div_factor=float(options["final_div_factor"]))
        rates = []
        for _ in range(steps):
            rates.append(opt.param_groups[0]["lr"])
            opt.step()
            s.step()
        results = {"rates": torch.tensor(rates).reshape(1, -1)}
    elif kind == "adamw":
        w = tensors["w"].clone().requires_grad_(True)
        opt = torch.optim.AdamW([w], lr=float(options["lr"]), weight_decay=float(options["weight_decay"]),
                                betas=(0.9, 0.999), eps=1e-8)
        g = tensors["grads"]
        for i in range(g.shape[0]):
            w.grad = g[i].reshape(w.shape).clone()
            opt.step()
        results = {"w": w.detach()}
    else:
        results = run_case(kind, options, tensors)
    with open(sys.argv[2], "w") as f:
        for name, v in results.items():
            v = v.detach().reshape(v.shape[0] if v.dim() > 1 else 1, -1)
            f.write("tensor %s %d %d\n" % (name, v.shape[0], v.shape[1]))
            f.write(" ".join(repr(float(e)) for e in v.reshape(-1).tolist()) + "\n")


if __name__ == "__main__":
    main()
