// lowbit/nn.hpp: networks on the datapath: layers, losses, optimizers, Fashion-MNIST, weights files
// (one module of lowbit/lowbit.hpp).
#pragma once

#include <lowbit/nn/attention.hpp>
#include <lowbit/nn/batch_norm.hpp>
#include <lowbit/nn/budget.hpp>
#include <lowbit/nn/clipped_inputs.hpp>
#include <lowbit/nn/clipping_calibration.hpp>
#include <lowbit/nn/conv2d.hpp>
#include <lowbit/nn/depthwise_conv.hpp>
#include <lowbit/nn/dropout.hpp>
#include <lowbit/nn/fashion_mnist.hpp>
#include <lowbit/nn/flatten.hpp>
#include <lowbit/nn/gelu.hpp>
#include <lowbit/nn/gemm_datapath.hpp>
#include <lowbit/nn/gemm_layer.hpp>
#include <lowbit/nn/input_quantizer.hpp>
#include <lowbit/nn/layer.hpp>
#include <lowbit/nn/layer_norm.hpp>
#include <lowbit/nn/linear.hpp>
#include <lowbit/nn/loss.hpp>
#include <lowbit/nn/madam.hpp>
#include <lowbit/nn/network.hpp>
#include <lowbit/nn/optimizers.hpp>
#include <lowbit/nn/output_quantizer.hpp>
#include <lowbit/nn/patch_embedding.hpp>
#include <lowbit/nn/pooling.hpp>
#include <lowbit/nn/positional_embedding.hpp>
#include <lowbit/nn/pruning.hpp>
#include <lowbit/nn/relu.hpp>
#include <lowbit/nn/residual.hpp>
#include <lowbit/nn/schedules.hpp>
#include <lowbit/nn/softmax.hpp>
#include <lowbit/nn/tensor.hpp>
#include <lowbit/nn/token_pooling.hpp>
#include <lowbit/nn/transformer_block.hpp>
#include <lowbit/nn/weights_file.hpp>
