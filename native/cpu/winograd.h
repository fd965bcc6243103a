// Winograd F(2x2, 3x3) and F(4x4, 3x3) for 3x3 stride-1 convolutions (winograd.cc) and F(2x2, 2x2)
// and F(4x4, 2x2) for 4x4 stride-2 ones (winograd_s2.cc): for 3x3, 16 (36)
// multiplies per 2x2 (4x4) output tile and channel pair instead of 36 (144), as GEMMs on the
// blocked engine. conv2d.cc routes the shapes where it pays (winograd_applies) here; everything
// else stays on the implicit GEMM or the direct loops.
#pragma once
#include "../core/backend.h"

namespace c3::cpu {

enum class ConvPass { Forward, BackwardData, BackwardWeight };

// 3x3 kernel, stride 1, padding 0..2, and a shape where the GEMMs beat the implicit GEMM:
// enough channels and enough 2x2 tiles that the transforms and the weights' packing stay small
// next to the products (the backward-weight pass, whose GEMMs are channels x channels over the
// tiles, needs more of both). C3GAN_WINOGRAD=0 in the environment turns the path off.
bool winograd_applies(const Conv2dParams& p, ConvPass pass);

// moments: null, or backend.h conv2d_forward's, formed while each output plane is in cache
void winograd_forward(const Conv2dParams& p, const float* x, const float* w, const float* bias, float* y,
                      float* moments = nullptr);
void winograd_backward_data(const Conv2dParams& p, const float* dy, const float* w, float* dx);
void winograd_backward_weight(const Conv2dParams& p, const float* dy, const float* x, float* dw);

// For tests and benchmarks: whether winograd_applies may say yes (the environment's choice by
// default).
void set_winograd_enabled(bool on);
bool winograd_enabled();
// 4x4 stride-2 convolutions as Winograd F(2x2, 2x2) over their four input phases
// (winograd_s2.cc), where the channels and tiles make it pay. C3GAN_WINOGRAD_S2=0 in the
// environment turns the path off.
bool winograd_s2_applies(const Conv2dParams& p, ConvPass pass);
void winograd_s2_forward(const Conv2dParams& p, const float* x, const float* w, const float* bias, float* y,
                         float* moments = nullptr);
void winograd_s2_backward_data(const Conv2dParams& p, const float* dy, const float* w, float* dx);
void winograd_s2_backward_weight(const Conv2dParams& p, const float* dy, const float* x, float* dw);
void set_winograd_s2_enabled(bool on);
bool winograd_s2_enabled();
// For tests and benchmarks: the tile size m of the stride-2 path's F(m x m, 2x2), 2 or 4; 0
// chooses by shape (F(4x4) on maps of whole 4x4 tiles with enough of them; the default).
void set_winograd_s2_tile(int m);
// The m that pass `pass` of p takes.
int winograd_s2_tile(const Conv2dParams& p, ConvPass pass);
// The same phase split for 4x4 stride-2 convs of few channel pairs (K * 4C <= 512: D's first
// layer at 32 px) into the direct stride-1 weight-gradient loops of conv_direct.h. C3GAN_WINOGRAD_S2=0
// turns it off with the rest of the phase path.
bool phased_direct_applies(const Conv2dParams& p);
void phased_direct_backward_weight(const Conv2dParams& p, const float* dy, const float* x, float* dw);

// For tests and benchmarks: the tile size m of F(m x m, 3x3), 2 or 4; 0 chooses by shape (F(4x4)
// on maps of whole 4x4 tiles with enough of them, else F(2x2); the default).
void set_winograd_tile(int m);

}  // namespace c3::cpu
