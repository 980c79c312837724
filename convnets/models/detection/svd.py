"""Truncated SVD of fully connected layers (Fast R-CNN sec. 3.1, "Truncated SVD for faster detection").

A layer ``y = W x + b`` with a u x v weight matrix W is approximated by W ~ U_t Sigma_t V_t^T, the top t singular
values, and replaced by two layers: the first with weights Sigma_t V_t^T and no bias, the second with U_t and W's
bias, with no nonlinearity between them. The parameter count drops from u v (+ u) to t (u + v) (+ u). The paper keeps
the top 1024 singular values of VGG16's 25088 x 4096 fc6 and 256 of the 4096 x 4096 fc7 (66.9 -> 66.6 mAP on VOC
2007 test, detection time down by about 30%, sec. 4.4, Table 4 and Fig. 2); no fine-tuning after compression.

As the authors' tools/compress_net.py (which calls ``np.linalg.svd``; here the same factors come from the Gram
matrix, see :func:`factorise`): keep the top ``rank`` singular vectors of the trained weights; the compressed
network (layers ``fc6_L`` / ``fc6_U``, ...) is :class:`convnets.models.fast_rcnn.FastRCNN` with ``svd_ranks``.
Flax's ``Dense`` kernel is W^T ([in, out]), so the first layer's kernel is V_t Sigma_t [in, t] and the second's
U_t^T [t, out].
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from convnets.models.layers import param_name

FC_LAYERS = ('fc6', 'fc7')


def factorise(kernel: np.ndarray, rank: int) -> tuple[np.ndarray, np.ndarray]:
    """(first [in, rank], second [rank, out]) kernels whose product is the best rank-``rank`` approximation of
    ``kernel`` [in, out] (Eckart-Young); ``rank`` at most min(in, out).

    Through the eigenvectors of the small Gram matrix in float64 rather than a full SVD of the kernel: for VGG16's
    fc6 (25088 x 4096) and fc7, ``np.linalg.svd`` took 619 s on a shared 2-core CPU, this 122 s, with the same
    factors up to float32 rounding (squaring the kernel costs precision only in the discarded small singular values).
    """
    kernel = np.asarray(kernel)
    if kernel.ndim != 2 or not 1 <= rank <= min(kernel.shape):
        raise ValueError(f'a truncated SVD needs a 2D kernel and 1 <= rank <= {min(kernel.shape)}, got kernel '
                         f'{kernel.shape} and rank {rank}')
    k64 = kernel.astype(np.float64)
    if kernel.shape[0] >= kernel.shape[1]:
        # kernel = W^T = V Sigma U^T: U (W's left singular vectors) are the eigenvectors of kernel^T kernel.
        _, vectors = np.linalg.eigh(k64.T @ k64)
        u = vectors[:, ::-1][:, :rank]  # [out, rank], largest singular values first
        first, second = k64 @ u, u.T  # V_t Sigma_t and U_t^T
    else:
        _, vectors = np.linalg.eigh(k64 @ k64.T)
        v = vectors[:, ::-1][:, :rank]  # [in, rank]
        first, second = v, v.T @ k64
    return first.astype(kernel.dtype), second.astype(kernel.dtype)


def compress_params(params: Mapping[str, Any], ranks: Sequence[int]) -> dict[str, Any]:
    """The parameters of the ``svd_ranks=ranks`` network from those of the uncompressed one: ``fc6_layer`` becomes
    ``fc6_L_layer`` (kernel only) and ``fc6_U_layer`` (kernel and fc6's bias), likewise fc7; rank 0 keeps a layer."""
    if len(ranks) != len(FC_LAYERS):
        raise ValueError(f'truncated SVD ranks are one per layer of {FC_LAYERS}, got {tuple(ranks)}')
    out = dict(params)
    for name, rank in zip(FC_LAYERS, ranks, strict=True):
        if not rank:
            continue
        layer = out.pop(param_name(name), None)
        if layer is None:
            raise ValueError(f'truncated SVD: the parameters have no {param_name(name)!r} to compress (layers: '
                             f'{sorted(params)}); compress the uncompressed network\'s parameters')
        first, second = factorise(np.asarray(layer['kernel']), int(rank))
        out[param_name(f'{name}_L')] = {'kernel': first}
        out[param_name(f'{name}_U')] = {'kernel': second, 'bias': np.asarray(layer['bias'])}
    return out


def num_params(fan_in: int, fan_out: int, rank: int | None = None) -> int:
    """Parameters of a fully connected layer with bias: fan_in * fan_out + fan_out, or rank * (fan_in + fan_out) +
    fan_out when truncated to ``rank``."""
    if not rank:
        return fan_in * fan_out + fan_out
    return rank * (fan_in + fan_out) + fan_out
