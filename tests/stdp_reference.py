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


# --------------------------------------------------------------------------------------------
# The STDP family: explicit loops with scalar traces, one synapse / sample / step at a time.


def scalar_traces(spikes, decay, kind):
    """Trace of one neuron's spike train, after each step (includes that step's spike)."""
    out = np.zeros(len(spikes))
    x = 0.0
    for t, s in enumerate(spikes):
        if kind == "all_to_all":
            x = x * decay + s
        else:
            x = s if s else x * decay
        out[t] = x
    return out


def before(traces, decay):
    """Each step's trace decayed to that step, before that step's spike."""
    return np.concatenate([[0.0], traces[:-1]]) * decay


def triplet_pair_sums(pre_train, post_train, p, kind):
    """(P, D) of one synapse: sum of causal and anti-causal triplet terms over the steps.

    ``p``: dict with a2p, a3p, a2m, a3m and decays d_plus, d_x, d_minus, d_y. Pair STDP is
    a2p = a2m = 1, a3p = a3m = 0 with d_plus = d_pre, d_minus = d_post.
    """
    r1 = scalar_traces(pre_train, p["d_plus"], kind)
    r2b = before(scalar_traces(pre_train, p["d_x"], kind), p["d_x"])
    o1b = before(scalar_traces(post_train, p["d_minus"], kind), p["d_minus"])
    o2b = before(scalar_traces(post_train, p["d_y"], kind), p["d_y"])
    causal = anti = 0.0
    for t in range(len(pre_train)):
        causal += post_train[t] * (p["a2p"] + p["a3p"] * o2b[t]) * r1[t]
        anti += o1b[t] * pre_train[t] * (p["a2m"] + p["a3m"] * r2b[t])
    return causal, anti


def factors_reference(w, dependence, w_min, w_max, mu):
    """(f_plus, f_minus) elementwise, written out."""
    if dependence == "additive":
        return np.ones_like(w), np.ones_like(w)
    if dependence == "soft":
        return np.maximum(w_max - w, 0) ** mu, np.maximum(w - w_min, 0) ** mu
    f = np.maximum(w - w_min, 0) * np.maximum(w_max - w, 0)
    return f, f


def linear_family_reference(pre, post, p, kind, w, a_plus=1.0, a_minus=1.0, dep=None):
    """Mean-over-batch dw of a Linear synapse: a_plus f+ P - a_minus f- D, per synapse."""
    batch, n_in = pre.shape[1:]
    n_out = post.shape[2]
    f_plus, f_minus = factors_reference(w, *(dep or ("additive", None, None, 1.0)))
    dw = np.zeros((n_out, n_in))
    for b in range(batch):
        for o in range(n_out):
            for i in range(n_in):
                causal, anti = triplet_pair_sums(pre[:, b, i], post[:, b, o], p, kind)
                dw[o, i] += a_plus * f_plus[o, i] * causal - a_minus * f_minus[o, i] * anti
    return dw / batch


def conv_family_reference(pre, post, w, geometry, p, kind, a_plus=1.0, a_minus=1.0, dep=None):
    """Mean-over-batch dw of a Conv1d / Conv2d by walking weights, samples and positions."""
    batch = pre.shape[1]
    spatial = pre.ndim - 3
    pads = [(0, 0)] * 3 + [(q, q) for q in geometry.padding]
    padded = np.pad(pre, pads)
    out_c, in_per_group = w.shape[:2]
    kernel = w.shape[2:]
    out_per_group = out_c // geometry.groups
    f_plus, f_minus = factors_reference(w, *(dep or ("additive", None, None, 1.0)))
    dw = np.zeros(w.shape)
    for b in range(batch):
        for o in range(out_c):
            g = o // out_per_group
            for c in range(in_per_group):
                ci = g * in_per_group + c
                for k in np.ndindex(*kernel):
                    for y in np.ndindex(*post.shape[3:]):
                        at = tuple(
                            y[d] * geometry.stride[d] + k[d] * geometry.dilation[d]
                            for d in range(spatial)
                        )
                        causal, anti = triplet_pair_sums(
                            padded[(slice(None), b, ci, *at)],
                            post[(slice(None), b, o, *y)],
                            p,
                            kind,
                        )
                        idx = (o, c, *k)
                        dw[idx] += a_plus * f_plus[idx] * causal - a_minus * f_minus[idx] * anti
    return dw / batch


def first_spike_reference(pre_time, post_time, winners, w, geometry, a_plus, a_minus, dep):
    """Mozafari's rule by walking each winner's receptive field (Conv2d, or Linear if None)."""
    batch = pre_time.shape[0]
    f_plus, f_minus = factors_reference(w, *dep)
    dw = np.zeros(w.shape)
    for b in range(batch):
        for idx in zip(*np.nonzero(winners[b]), strict=True):
            o, pos = idx[0], idx[1:]
            t_post = post_time[(b, *idx)]
            if geometry is None:
                for i in range(w.shape[1]):
                    causal = pre_time[b, i] <= t_post
                    dw[o, i] += a_plus * f_plus[o, i] if causal else -a_minus * f_minus[o, i]
                continue
            groups = geometry.groups
            in_per_group = w.shape[1]
            g = o // (w.shape[0] // groups)
            for c in range(in_per_group):
                for k in np.ndindex(*w.shape[2:]):
                    at = [
                        pos[d] * geometry.stride[d]
                        + k[d] * geometry.dilation[d]
                        - geometry.padding[d]
                        for d in range(len(k))
                    ]
                    inside = all(0 <= a < n for a, n in zip(at, pre_time.shape[2:], strict=True))
                    t_pre = pre_time[(b, g * in_per_group + c, *at)] if inside else np.inf
                    j = (o, c, *k)
                    dw[j] += a_plus * f_plus[j] if t_pre <= t_post else -a_minus * f_minus[j]
    return dw / batch


def pointwise_reference(time, potential):
    """Per sample and position, the one feature SpykeTorch's pointwise inhibition keeps:
    earliest spike, then larger potential, then lower feature index."""
    out = np.zeros(time.shape, dtype=bool)
    for b in range(time.shape[0]):
        for pos in np.ndindex(*time.shape[2:]):
            cells = [
                (time[(b, f, *pos)], -potential[(b, f, *pos)], f)
                for f in range(time.shape[1])
                if np.isfinite(time[(b, f, *pos)])
            ]
            if cells:
                out[(b, min(cells)[2], *pos)] = True
    return out


def k_winners_reference(time, potential, k, radius):
    """k-WTA one sample at a time with Python lists: sort by (time, -potential, flat index)."""
    batch, features = time.shape[:2]
    spatial = time.shape[2:]
    out = np.zeros(time.shape, dtype=bool)
    for b in range(batch):
        cells = [
            (time[(b, *i)], -potential[(b, *i)], n, i)
            for n, i in enumerate(np.ndindex(features, *spatial))
            if np.isfinite(time[(b, *i)])
        ]
        cells.sort(key=lambda c: (c[0], c[1], c[2]))
        chosen = []
        for _, _, _, i in cells:
            if len(chosen) == k:
                break
            blocked = any(
                i[0] == j[0]
                or (
                    radius is not None and all(abs(i[d] - j[d]) <= radius for d in range(1, len(i)))
                )
                for j in chosen
            )
            if not blocked:
                chosen.append(i)
        for i in chosen:
            out[(b, *i)] = True
    return out
