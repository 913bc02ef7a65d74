"""Explicit per-synapse loop references for pair STDP (independent of the GEMM kernels)."""

from __future__ import annotations

import numpy as np


def linear_loop_reference(pre, post, a_plus, a_minus, d_pre, d_post, kind):
    """dw[o, i] by walking every synapse, every sample and every step (Linear)."""
    steps, batch, n_in = pre.shape
    n_out = post.shape[2]
    dw = np.zeros((n_out, n_in))
    for b in range(batch):
        for o in range(n_out):
            for i in range(n_in):
                x_pre = x_post = 0.0
                for t in range(steps):
                    post_before = x_post * d_post
                    if kind == "all_to_all":
                        x_pre = x_pre * d_pre + pre[t, b, i]
                        x_post = x_post * d_post + post[t, b, o]
                    else:
                        x_pre = pre[t, b, i] if pre[t, b, i] else x_pre * d_pre
                        x_post = post[t, b, o] if post[t, b, o] else x_post * d_post
                    dw[o, i] += (
                        a_plus * post[t, b, o] * x_pre - a_minus * post_before * pre[t, b, i]
                    )
    return dw / batch


def conv2d_loop_reference(pre, post, weight_shape, geometry, a_plus, a_minus, d_pre, d_post):
    """dw of a Conv2d by walking every weight, sample, step and output position."""
    steps, batch = pre.shape[:2]
    (sy, sx), (py, px), (dy, dx), groups = (
        geometry.stride,
        geometry.padding,
        geometry.dilation,
        geometry.groups,
    )
    padded = np.pad(pre, ((0, 0), (0, 0), (0, 0), (py, py), (px, px)))
    pre_tr = np.zeros_like(padded)
    tr = np.zeros_like(padded[0])
    for t in range(steps):
        tr = tr * d_pre + padded[t]
        pre_tr[t] = tr
    post_tr = np.zeros_like(post[0])
    dw = np.zeros(weight_shape)
    out_c, in_per_group, kh, kw = weight_shape
    out_per_group = out_c // groups
    for t in range(steps):
        post_before = post_tr * d_post
        post_tr = post_tr * d_post + post[t]
        for b in range(batch):
            for o in range(out_c):
                g = o // out_per_group
                for c in range(in_per_group):
                    ci = g * in_per_group + c
                    for ky in range(kh):
                        for kx in range(kw):
                            for y in range(post.shape[3]):
                                for x in range(post.shape[4]):
                                    iy, ix = y * sy + ky * dy, x * sx + kx * dx
                                    dw[o, c, ky, kx] += (
                                        a_plus * post[t, b, o, y, x] * pre_tr[t, b, ci, iy, ix]
                                        - a_minus
                                        * post_before[b, o, y, x]
                                        * padded[t, b, ci, iy, ix]
                                    )
    return dw / batch
