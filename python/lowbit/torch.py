"""lowbit.torch: PyTorch layers whose products run on a lowbit datapath (CPU, float32).

    import lowbit.torch as lt
    spec = lowbit.spec("product=m7e4,bias=12,subnormals=off,specials=none:toward_zero:saturate "
                       "accumulator=m7e4,bias=10,subnormals=off,specials=none:toward_zero:saturate chunk=16")
    model = lt.convert(model, spec, weights="e4m3", activations="e4m3")   # nn.Linear / nn.Conv2d swapped
    loss = criterion(model(x), y); loss.backward()                        # straight-through gradients

Forward: each output of a layer is one dot product on the spec's datapath (its input quantizers,
product and accumulator roundings, chunks, model), as lowbit.gemm computes it, the bias added in
float afterwards; or, with bias_as_addend=True, the bias as the accumulation's start (lowbit.gemm_add's
C, rounded by spec.addend), as a matrix unit computing D = A B + C does. Backward: straight-through the quantizers, as lowbit's C++ layers train: the
weights' gradient is dY times the quantized activations, the activations' gradient dY times the
quantized weights, both in float (torch's own products).
"""
import torch as _torch
import torch.nn.functional as _F

import lowbit as _lowbit

__all__ = ["matmul", "QLinear", "QConv2d", "convert", "counting_events"]

_event_totals = []  # the dicts of the counting_events blocks in force (innermost last)


class counting_events:
    """Within `with lowbit.torch.counting_events() as events:`, every forward product on a datapath
    adds its event counts (lowbit.gemm's stats: macs, swamps, product_underflows, ...) to `events`."""

    def __enter__(self):
        self.events = {}
        _event_totals.append(self.events)
        return self.events

    def __exit__(self, *exc):
        _event_totals.remove(self.events)
        return False


def _spec_of(spec, weights=None, activations=None):
    """A Spec (from a Spec or its text) with the weight and activation quantizers set, if given."""
    s = spec if isinstance(spec, _lowbit.Spec) else _lowbit.Spec(str(spec))
    s = _lowbit.Spec(str(s)) if weights is not None or activations is not None else s  # (a copy: specs are shared)
    if weights is not None:
        s.input_a = _lowbit.Quantizer(str(weights))
    if activations is not None:
        s.input_b = _lowbit.Quantizer(str(activations))
    return s


def _checked(t, name):
    if not isinstance(t, _torch.Tensor):
        raise TypeError(f"lowbit.torch: {name} must be a torch tensor, not {type(t).__name__}")
    if t.device.type != "cpu":
        raise ValueError(f"lowbit.torch: {name} is on {t.device}; lowbit runs on the CPU")
    if t.dtype not in (_torch.float32, _torch.float64):
        raise TypeError(f"lowbit.torch: {name} has dtype {t.dtype}; lowbit multiplies float32 (or float64, cast)")
    return t.detach().to(_torch.float32).contiguous()


class _Gemm(_torch.autograd.Function):
    """D = A B (+ C: the accumulation's start) on the datapath; gradients straight through the
    input quantizers (and to C unchanged)."""

    @staticmethod
    def forward(ctx, a, b, addend, spec, grad_enabled):
        a_, b_ = _checked(a, "a"), _checked(b, "b")
        if a_.dim() != 2 or b_.dim() != 2 or a_.shape[1] != b_.shape[0]:
            raise ValueError(f"lowbit.torch.matmul: shapes {tuple(a.shape)} and {tuple(b.shape)} are not M x K and K x N")
        c_ = None if addend is None else _checked(addend, "addend").numpy()
        if _event_totals:
            c, counts = _lowbit._lowbit.gemm(a_.numpy(), b_.numpy(), c_, spec, True)
            for totals in _event_totals:
                for name, n in counts.items():
                    totals[name] = totals.get(name, 0) + n
        else:
            c = _lowbit._lowbit.gemm(a_.numpy(), b_.numpy(), c_, spec, False)
        if grad_enabled and any(ctx.needs_input_grad[:2]):  # (not under no_grad: evaluation)
            # the operands the datapath multiplied (the same rounding and random bits as gemm's)
            aq = a_.clone() if a_.data_ptr() == a.data_ptr() else a_
            bq = b_.clone() if b_.data_ptr() == b.data_ptr() else b_
            _lowbit._lowbit.quantize_operand_(aq.numpy(), spec, "a")
            _lowbit._lowbit.quantize_operand_(bq.numpy(), spec, "b")
            ctx.save_for_backward(aq, bq)
        return _torch.from_numpy(c).to(a.dtype)

    @staticmethod
    def backward(ctx, grad):
        aq, bq = ctx.saved_tensors
        grad = grad.to(_torch.float32)
        ga = grad @ bq.T if ctx.needs_input_grad[0] else None
        gb = aq.T @ grad if ctx.needs_input_grad[1] else None
        gc = grad if ctx.needs_input_grad[2] else None
        return ga, gb, gc, None, None


def _gemm(a, b, spec, addend=None):
    # (inside forward, grad mode is always off: whether the caller's is on is passed in)
    return _Gemm.apply(a, b, addend, spec, _torch.is_grad_enabled())


def matmul(a, b, spec):
    """a @ b on the datapath `spec` (a Spec or its text): 2-D, or batched over leading dimensions
    (as torch.matmul, without broadcasting: attention's Q K^T and P V per head). Differentiable."""
    spec = _spec_of(spec)
    if a.dim() == 2 and b.dim() == 2:
        return _gemm(a, b, spec)
    if a.dim() < 2 or a.shape[:-2] != b.shape[:-2]:
        raise ValueError(f"lowbit.torch.matmul: shapes {tuple(a.shape)} and {tuple(b.shape)}: batched operands need "
                         "the same leading dimensions (no broadcasting)")
    lead = a.shape[:-2]
    a3, b3 = a.reshape(-1, *a.shape[-2:]), b.reshape(-1, *b.shape[-2:])
    out = _torch.stack([_gemm(a3[i], b3[i], spec) for i in range(a3.shape[0])])
    return out.reshape(*lead, out.shape[-2], out.shape[-1])


class QLinear(_torch.nn.Linear):
    """nn.Linear on a datapath: y = x W^T + b with W x^T computed by lowbit.gemm (A = the weights,
    B = the activations, so the spec's input_a rounds weights and input_b activations); with
    bias_as_addend, b starts each output's accumulation (lowbit.gemm_add)."""

    def __init__(self, in_features, out_features, bias=True, *, spec="", weights=None, activations=None,
                 bias_as_addend=False, dtype=None):
        super().__init__(in_features, out_features, bias=bias, dtype=dtype)
        self.spec = _spec_of(spec, weights, activations)
        self.bias_as_addend = bool(bias_as_addend)

    def forward(self, x):
        if x.dim() == 0 or x.shape[-1] != self.in_features:
            raise ValueError(f"lowbit.torch.QLinear: the input's shape {tuple(x.shape)} does not end in "
                             f"in_features = {self.in_features}")
        rows = x.reshape(-1, self.in_features)
        if self.bias is not None and self.bias_as_addend:
            y = _gemm(self.weight, rows.T, self.spec, self.bias[:, None].expand(-1, rows.shape[0])).T
        else:
            y = _gemm(self.weight, rows.T, self.spec).T
            if self.bias is not None:
                y = y + self.bias
        return y.reshape(*x.shape[:-1], self.out_features)

    def extra_repr(self):
        return super().extra_repr() + f", spec='{self.spec}'" + (", bias_as_addend=True" if self.bias_as_addend else "")


class QConv2d(_torch.nn.Conv2d):
    """nn.Conv2d on a datapath: per group, the group's filters (out/groups x in/groups*kh*kw) times
    the im2col matrix of its input channels over the batch, each output one dot product over
    (channel, row, column) in that order. Every nn.Conv2d option works: stride, dilation, groups
    (depthwise included), padding as numbers, 'valid' or 'same', and every padding_mode (the input
    is padded as nn.Conv2d pads it, then unfolded). With bias_as_addend, each filter's bias starts
    its outputs' accumulation (lowbit.gemm_add)."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1, bias=True,
                 padding_mode="zeros", *, spec="", weights=None, activations=None, bias_as_addend=False, dtype=None):
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=padding, dilation=dilation,
                         groups=groups, bias=bias, padding_mode=padding_mode, dtype=dtype)
        self.spec = _spec_of(spec, weights, activations)
        self.bias_as_addend = bool(bias_as_addend)

    def forward(self, x):
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"lowbit.torch.QConv2d: the input's shape {tuple(x.shape)} is not "
                             f"batch x {self.in_channels} x height x width")
        mode = "constant" if self.padding_mode == "zeros" else self.padding_mode
        if any(self._reversed_padding_repeated_twice):
            x = _F.pad(x, self._reversed_padding_repeated_twice, mode=mode)
        n, _, h, w = x.shape
        kh, kw = self.kernel_size
        cols = _F.unfold(x, self.kernel_size, dilation=self.dilation, stride=self.stride)
        oh = (h - self.dilation[0] * (kh - 1) - 1) // self.stride[0] + 1
        ow = (w - self.dilation[1] * (kw - 1) - 1) // self.stride[1] + 1
        b = cols.transpose(0, 1).reshape(cols.shape[1], n * oh * ow)  # (in*kh*kw) x (batch * positions)
        weight = self.weight.reshape(self.out_channels, -1)
        per_in, per_out = b.shape[0] // self.groups, self.out_channels // self.groups
        addend = self.bias[:, None].expand(-1, b.shape[1]) if self.bias is not None and self.bias_as_addend else None

        def product(g0, g1, rows):
            return _gemm(weight[g0:g1], rows, self.spec, None if addend is None else addend[g0:g1])

        c = _torch.cat([product(g * per_out, (g + 1) * per_out, b[g * per_in:(g + 1) * per_in])
                        for g in range(self.groups)]) if self.groups > 1 else product(0, self.out_channels, b)
        if self.bias is not None and addend is None:
            c = c + self.bias[:, None]
        return c.reshape(self.out_channels, n, oh, ow).transpose(0, 1)

    def extra_repr(self):
        return super().extra_repr() + f", spec='{self.spec}'" + (", bias_as_addend=True" if self.bias_as_addend else "")


def convert(model, spec, *, weights=None, activations=None, bias_as_addend=False):
    """The model with every nn.Linear and nn.Conv2d replaced by QLinear and QConv2d on `spec`, keeping their parameters (the same tensors). Changes `model` in place and
    returns it."""
    spec = _spec_of(spec, weights, activations)
    for name, child in list(model.named_children()):
        if isinstance(child, (QLinear, QConv2d)):
            child.spec = spec
            child.bias_as_addend = bool(bias_as_addend)
            continue
        if type(child) is _torch.nn.Linear:
            q = QLinear(child.in_features, child.out_features, bias=child.bias is not None, spec=spec,
                        bias_as_addend=bias_as_addend)
        elif type(child) is _torch.nn.Conv2d:
            q = QConv2d(child.in_channels, child.out_channels, child.kernel_size, stride=child.stride,
                        padding=child.padding, dilation=child.dilation, groups=child.groups,
                        bias=child.bias is not None, padding_mode=child.padding_mode, spec=spec,
                        bias_as_addend=bias_as_addend)
        else:
            convert(child, spec, bias_as_addend=bias_as_addend)
            continue
        q.weight = child.weight
        q.bias = child.bias
        setattr(model, name, q)
    return model
