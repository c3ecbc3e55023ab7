"""The same values in the memory layouts real training hands a Function.

A backward that assumes ``grad_output`` is contiguous passes every contiguous test and fails
in training, where ``grad_output`` is often a transposed, sliced or expanded view (the
gradient of ``x.t()``, of a ``chunk``, of a ``sum`` broadcast back). Each layout here keeps
the values and changes only the strides.
"""

from __future__ import annotations

import torch

__all__ = ["LAYOUTS", "in_layout"]

LAYOUTS = ("transposed", "sliced", "expanded", "channels_last")


def in_layout(tensor: torch.Tensor, layout: str) -> tuple[torch.Tensor, torch.Tensor] | None:
    """``(values, view)``: contiguous values and a non-contiguous view holding the same
    values, or None where the layout cannot make this tensor non-contiguous.

    Only ``expanded`` changes the values (one slice repeated along the first axis longer than
    1, stride 0 there), so the caller compares the view with these values, contiguous.
    """
    values, view = tensor, None
    if layout == "transposed" and tensor.dim() >= 2:
        view = tensor.mT.contiguous().mT
    elif layout == "sliced" and tensor.dim() >= 1:
        # Every other element of a larger buffer, from an offset of one; the gaps hold NaN,
        # so that a kernel reading them as if the view were contiguous cannot go unseen.
        buffer = tensor.new_full((*tensor.shape[:-1], 2 * tensor.shape[-1]), float("nan"))
        buffer[..., 1::2] = tensor
        view = buffer[..., 1::2]
    elif layout == "expanded":
        axis = next((a for a, size in enumerate(tensor.shape) if size > 1), None)
        if axis is None:
            return None
        view = tensor.narrow(axis, 0, 1).expand(tensor.shape)
        values = view.contiguous()
    elif layout == "channels_last" and tensor.dim() == 4:
        view = tensor.contiguous(memory_format=torch.channels_last)
    if view is None or view.is_contiguous():
        return None
    return values, view
