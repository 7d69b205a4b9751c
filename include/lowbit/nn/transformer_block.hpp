// lowbit/nn/transformer_block.hpp: a pre-LN transformer block, as two residual blocks appended to
// a network whose output is tokens:
//
//   <name>_attn:  x + attn(LN(x))                     (ln, attn[, drop])
//   <name>_mlp:   x + fc2(GELU(dwconv(fc1(LN(x)))))   (ln, fc1[, dwconv], gelu, fc2[, drop])
//
// The depth-wise 3 x 3 convolution between fc1 and GELU is SegFormer's Mix-FFN (on by default).
//
//   lowbit::nn::network net({1, 28, 28});
//   net.add("embed", lowbit::nn::patch_embedding({1, 28, 28}, 7, 64));
//   lowbit::nn::add_transformer_block(net, "block1", {.heads = 4, .mlp_hidden = 128});
#pragma once

#include <lowbit/nn/attention.hpp>
#include <lowbit/nn/definitions.hpp>
#include <lowbit/nn/depthwise_conv.hpp>
#include <lowbit/nn/dropout.hpp>
#include <lowbit/nn/gelu.hpp>
#include <lowbit/nn/layer_norm.hpp>
#include <lowbit/nn/linear.hpp>
#include <lowbit/nn/network.hpp>
#include <lowbit/nn/residual.hpp>

#include <cstdint>
#include <string>

namespace lowbit::nn {

struct transformer_block_options {
    int heads = 4;
    int mlp_hidden = 128;
    bool depthwise_conv = true;  // Mix-FFN
    gelu_form gelu = gelu_form::erf;
    double dropout = 0;          // after attention and after the MLP (0: no dropout layer)
    std::uint64_t seed = 1;
};

LOWBIT_NN_INLINE network& add_transformer_block(network& net, const std::string& name, const transformer_block_options& o);
#if LOWBIT_NN_DEFINE
LOWBIT_NN_INLINE network& add_transformer_block(network& net, const std::string& name, const transformer_block_options& o) {
    const shape3 in = net.output_shape();
    if (!in.is_tokens())
        throw std::invalid_argument("lowbit::nn::add_transformer_block: '" + name + "' would follow an output of " +
                                    in.to_string() + ", which is not tokens");
    const int dim = in.channels;
    network attn(in);
    attn.add("ln", layer_norm(dim)).add("attn", multi_head_attention(dim, o.heads, o.seed));
    if (o.dropout > 0) attn.add("drop", dropout(o.dropout, o.seed + 2));
    network mlp(in);
    mlp.add("ln", layer_norm(dim)).add("fc1", linear(dim, o.mlp_hidden, o.seed + 3));
    if (o.depthwise_conv) mlp.add("dwconv", depthwise_conv(token_shape(in.height, in.width, o.mlp_hidden), o.seed + 4));
    mlp.add("gelu", gelu(o.gelu)).add("fc2", linear(o.mlp_hidden, dim, o.seed + 5));
    if (o.dropout > 0) mlp.add("drop", dropout(o.dropout, o.seed + 6));
    net.add(name + "_attn", residual(std::move(attn)));
    net.add(name + "_mlp", residual(std::move(mlp)));
    return net;
}
#endif

}  // namespace lowbit::nn
