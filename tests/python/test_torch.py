"""lowbit.torch: the layers against torch.nn.functional with an exact fp32 spec (forward and
backward), against lowbit.gemm with a quantized spec, convert(), and bad input."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

import lowbit  # noqa: E402
import lowbit.torch as lt  # noqa: E402

FP32 = "accumulator=fp32 chunk_accumulator=fp32"  # exact products, float sums
M7E4 = ("input_a=e4m3 input_b=e4m3 product=m7e4,bias=12,subnormals=off,specials=none:toward_zero:saturate "
        "accumulator=m7e4,bias=10,subnormals=off,specials=none:toward_zero:saturate chunk=16 "
        "chunk_accumulator=m7e4,bias=10,subnormals=off,specials=none:toward_zero:saturate")


def grads(module, x):
    x = x.clone().requires_grad_(True)
    y = module(x)
    weights = torch.randn(y.shape, generator=torch.Generator().manual_seed(5))
    (y * weights).sum().backward()
    return y.detach(), x.grad, module.weight.grad, module.bias.grad


def test_qlinear_with_an_fp32_spec_equals_linear_forward_and_backward():
    torch.manual_seed(0)
    ref = torch.nn.Linear(70, 9)
    q = lt.QLinear(70, 9, spec=FP32)
    q.load_state_dict(ref.state_dict())
    x = torch.randn(13, 70)
    for got, want in zip(grads(q, x), grads(ref, x)):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("options", [
    dict(stride=1, padding=1), dict(stride=2, padding=0), dict(padding=2, dilation=2),
    dict(padding="same"), dict(padding="valid", stride=(2, 1)), dict(padding=(1, 2), padding_mode="reflect"),
    dict(padding="same", padding_mode="circular"), dict(padding=1, padding_mode="replicate"),
    dict(padding=1, groups=3), dict(padding=1, groups=6, out=12),  # grouped and depthwise
])
def test_qconv2d_with_an_fp32_spec_equals_conv2d_forward_and_backward(options):
    torch.manual_seed(1)
    options = dict(options)
    out = options.pop("out", 6)
    kernel = (3, 2) if options.get("padding") == "same" else 3  # 'same' with an even kernel pads one side more
    ref = torch.nn.Conv2d(6, out, kernel, **options)
    q = lt.QConv2d(6, out, kernel, spec=FP32, **options)
    q.load_state_dict(ref.state_dict())
    x = torch.randn(2, 6, 11, 9)
    for got, want in zip(grads(q, x), grads(ref, x)):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_grouped_qconv2d_on_m7e4_is_one_lowbit_gemm_per_group():
    torch.manual_seed(3)
    q = lt.QConv2d(4, 6, 3, padding=1, groups=2, spec=M7E4)
    x = torch.randn(2, 4, 5, 5)
    y = q(x).detach()
    cols = torch.nn.functional.unfold(x, 3, padding=1)  # 2 x 36 x 25: channel-major rows
    b = cols.transpose(0, 1).reshape(36, 50).numpy()
    w = q.weight.detach().reshape(6, 18).numpy()
    for g in range(2):
        c = lowbit.gemm(np.ascontiguousarray(w[3 * g:3 * g + 3]), np.ascontiguousarray(b[18 * g:18 * g + 18]), M7E4)
        expected = c + q.bias.detach().numpy()[3 * g:3 * g + 3, None]
        np.testing.assert_array_equal(y[:, 3 * g:3 * g + 3].transpose(0, 1).reshape(3, 50).numpy(), expected)


def test_qlinear_on_m7e4_is_lowbit_gemm_bit_for_bit_and_straight_through():
    torch.manual_seed(2)
    q = lt.QLinear(40, 6, spec=M7E4)
    x = torch.randn(5, 40)
    y, dx, dw, db = grads(q, x)
    w = q.weight.detach().numpy()
    expected = lowbit.gemm(w, np.ascontiguousarray(x.numpy().T), M7E4).T + q.bias.detach().numpy()
    np.testing.assert_array_equal(y.numpy(), expected)
    # straight-through: the gradients use the e4m3-rounded operands
    g = torch.randn(y.shape, generator=torch.Generator().manual_seed(5))
    wq = lowbit.quantize(q.weight.detach(), "e4m3")
    xq = lowbit.quantize(x, "e4m3")
    torch.testing.assert_close(dx, g @ wq, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(dw, g.T @ xq, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(db, g.sum(0))
    assert not torch.equal(wq, q.weight.detach())  # (the rounding did something)


def test_matmul_batched_as_attention_uses_it():
    torch.manual_seed(3)
    qh = torch.randn(2, 4, 7, 16)  # batch, heads, tokens, features
    kh = torch.randn(2, 4, 16, 7)
    s = lt.matmul(qh, kh, M7E4)
    assert s.shape == (2, 4, 7, 7)
    np.testing.assert_array_equal(s[1, 2].numpy(), lowbit.gemm(qh[1, 2].numpy(), kh[1, 2].numpy(), M7E4))
    torch.testing.assert_close(lt.matmul(qh, kh, FP32), qh @ kh, rtol=1e-5, atol=1e-5)


def test_convert_keeps_the_parameters_and_the_predictions_with_fp32():
    torch.manual_seed(4)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
                                torch.nn.Flatten(), torch.nn.Sequential(torch.nn.Linear(4 * 7 * 7, 10)))
    x = torch.randn(8, 1, 14, 14)
    before = model(x).detach()
    weight = model[0].weight
    lt.convert(model, FP32)
    assert isinstance(model[0], lt.QConv2d) and isinstance(model[4][0], lt.QLinear)
    assert model[0].weight is weight
    torch.testing.assert_close(model(x).detach(), before, rtol=1e-5, atol=1e-5)
    assert torch.equal(model(x).argmax(1), before.argmax(1))
    lt.convert(model, M7E4)
    assert str(model[4][0].spec) == str(lowbit.spec(M7E4))


@pytest.mark.parametrize("call,error,message", [
    (lambda: lt.QConv2d(4, 6, 3, groups=3), ValueError, "divisible by groups"),
    (lambda: lt.QConv2d(4, 4, 3)(torch.randn(1, 3, 8, 8)), ValueError, "not batch x 4 x height x width"),
    (lambda: lt.QLinear(3, 2)(torch.randn(2, 4)), ValueError, "does not end in in_features = 3"),
    (lambda: lt.matmul(torch.randn(2, 3), torch.randn(4, 2), ""), ValueError, "M x K and K x N"),
    (lambda: lt.QLinear(3, 2, spec="chunk=x"), ValueError, "chunk"),
    (lambda: lt.matmul(torch.randn(2, 3, 4), torch.randn(3, 4, 2), ""), ValueError, "leading dimensions"),
    (lambda: lt.matmul(torch.ones(2, 3, dtype=torch.int32), torch.ones(3, 2, dtype=torch.int32), ""), TypeError, "dtype"),
])
def test_bad_input_raises_with_a_message(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_counting_events_adds_the_gemm_stats_of_every_forward_product():
    torch.manual_seed(6)
    q = lt.QLinear(40, 6, spec=M7E4)
    x = torch.randn(5, 40)
    with lt.counting_events() as events:
        q(x)
        q(x)
    _, once = lowbit.gemm(q.weight.detach().numpy(), np.ascontiguousarray(x.numpy().T), M7E4, stats=True)
    assert events["macs"] == 2 * 6 * 40 * 5
    assert events == {name: 2 * n for name, n in once.items()}
    q(x)  # (outside the block: nothing added)
    assert events["macs"] == 2 * 6 * 40 * 5


def test_no_grad_evaluation_gives_the_same_outputs():
    torch.manual_seed(7)
    q = lt.QLinear(40, 6, spec=M7E4)
    x = torch.randn(5, 40)
    with torch.no_grad():
        quiet = q(x)
    assert not quiet.requires_grad
    torch.testing.assert_close(quiet, q(x).detach(), rtol=0, atol=0)


def test_bias_as_addend_starts_each_output_at_the_bias_bit_for_bit():
    # QLinear and QConv2d with bias_as_addend: lowbit.gemm_add with C(i, j) = b(i), bit for bit;
    # the bias gradient is straight through (dY summed), as without.
    torch.manual_seed(3)
    q = lt.QLinear(40, 6, spec=M7E4, bias_as_addend=True)
    with torch.no_grad():
        q.bias.mul_(8)  # biases large beside the products: where they enter matters
    x = torch.randn(5, 40)
    y, dx, dw, db = grads(q, x)
    w = q.weight.detach().numpy()
    b = np.ascontiguousarray(np.repeat(q.bias.detach().numpy()[:, None], 5, axis=1))
    expected = lowbit.gemm_add(w, np.ascontiguousarray(x.numpy().T), b, M7E4).T
    np.testing.assert_array_equal(y.numpy(), expected)
    after = lowbit.gemm(w, np.ascontiguousarray(x.numpy().T), M7E4).T + q.bias.detach().numpy()
    assert not np.array_equal(expected, after)
    g = torch.randn(y.shape, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(db, g.sum(0))
    assert "bias_as_addend=True" in repr(q)

    conv = lt.QConv2d(3, 4, 3, padding=1, groups=1, spec=M7E4, bias_as_addend=True)
    with torch.no_grad():
        conv.bias.mul_(8)
    img = torch.randn(2, 3, 5, 5)
    out = conv(img)
    cols = torch.nn.functional.unfold(img, 3, padding=1).transpose(0, 1).reshape(27, 2 * 25).numpy()
    c = np.ascontiguousarray(np.repeat(conv.bias.detach().numpy()[:, None], 50, axis=1))
    d = lowbit.gemm_add(conv.weight.detach().reshape(4, -1).numpy(), np.ascontiguousarray(cols), c, M7E4)
    np.testing.assert_array_equal(out.detach().numpy(), d.reshape(4, 2, 5, 5).transpose(1, 0, 2, 3))
    model = lt.convert(torch.nn.Sequential(torch.nn.Linear(4, 2)), M7E4, bias_as_addend=True)
    assert model[0].bias_as_addend
