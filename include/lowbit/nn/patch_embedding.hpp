// lowbit/nn/patch_embedding.hpp: a ViT's patch embedding, a convolution with kernel = stride =
// the patch size p, whose outputs are tokens: an image of channels x height x width becomes
// (height / p) x (width / p) tokens of `features` values (the conv2d's filters).
//
// It is a conv2d (the same im2col GEMM on the layer's datapath, set_active skips filters), with
// the output laid out as tokens (HWC) instead of CHW.
#pragma once

#include <lowbit/nn/conv2d.hpp>
#include <lowbit/nn/definitions.hpp>

#include <memory>
#include <string>

namespace lowbit::nn {

class patch_embedding : public conv2d {
public:
    // `image` is the input (channels, height, width), `patch` the patch size, which must divide
    // height and width.
    patch_embedding(shape3 image, int patch, int features, std::uint64_t seed = 1)
        : conv2d(geometry_for(image, patch), features, seed), features_(features) {}

    LOWBIT_NN_INLINE std::string describe() const override;
    LOWBIT_NN_INLINE shape3 output_shape(shape3 in) const override;

    LOWBIT_NN_INLINE tensor forward(const tensor& x, pass p) override;
    LOWBIT_NN_INLINE tensor backward(const tensor& dy) override;
    std::unique_ptr<layer> clone() const override { return std::make_unique<patch_embedding>(*this); }

private:
    static conv_geometry geometry_for(shape3 image, int patch);

    int features_;
};

#if LOWBIT_NN_DEFINE
LOWBIT_NN_INLINE std::string patch_embedding::describe() const {
    return "patch_embedding " + std::to_string(geometry().kernel) + "x" + std::to_string(geometry().kernel) +
           " patches -> " + std::to_string(features_) + " features on " + input_shape().to_string();
}

LOWBIT_NN_INLINE shape3 patch_embedding::output_shape(shape3 in) const {
    const shape3 chw = conv2d::output_shape(in);
    return token_shape(chw.height, chw.width, chw.channels);
}

LOWBIT_NN_INLINE tensor patch_embedding::forward(const tensor& x, pass p) {
    const tensor chw = conv2d::forward(x, p);
    tensor y{matrix(chw.batch(), chw.values.cols()), output_shape(x.shape)};
    const int t = chw.shape.tokens();
    for (Eigen::Index n = 0; n < chw.batch(); ++n)  // per sample: features x tokens -> tokens x features
        Eigen::Map<matrix>(y.values.row(n).data(), t, features_) =
            Eigen::Map<const matrix>(chw.values.row(n).data(), features_, t).transpose();
    return y;
}

LOWBIT_NN_INLINE tensor patch_embedding::backward(const tensor& dy) {
    const shape3 chw_shape{features_, geometry().out_height(), geometry().out_width()};
    const int t = chw_shape.tokens();
    tensor chw{matrix(dy.batch(), dy.values.cols()), chw_shape};
    if (dy.shape != token_shape(chw_shape.height, chw_shape.width, features_))
        throw std::invalid_argument("lowbit::nn: " + describe() + ": backward got a gradient of " +
                                    dy.shape.to_string());
    for (Eigen::Index n = 0; n < dy.batch(); ++n)
        Eigen::Map<matrix>(chw.values.row(n).data(), features_, t) =
            Eigen::Map<const matrix>(dy.values.row(n).data(), t, features_).transpose();
    return conv2d::backward(chw);
}

LOWBIT_NN_INLINE conv_geometry patch_embedding::geometry_for(shape3 image, int patch) {
    if (image.is_tokens())
        throw std::invalid_argument("lowbit::nn::patch_embedding: the input " + image.to_string() + " must be an image");
    if (patch < 1 || image.height % patch != 0 || image.width % patch != 0)
        throw std::invalid_argument("lowbit::nn::patch_embedding: patch = " + std::to_string(patch) +
                                    " must divide the image's height and width (" + image.to_string() + ")");
    return {.channels = image.channels, .height = image.height, .width = image.width, .kernel = patch,
            .stride = patch, .padding = 0};
}
#endif

}  // namespace lowbit::nn
