"""torch.autograd.Functions for the Function checks: correct ones that must pass, and planted
bugs that must fail, each naming the check that catches it. Every buggy backward here passes
a backward-only check at contiguous float64 points."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from gradcheck.functions import function_derivation

TANH_SHAPES = {"x": ("N", "D")}


class Tanh(torch.autograd.Function):
    """tanh with a differentiable backward and a jvp (old style: ctx in forward)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        y = torch.tanh(x)
        ctx.save_for_backward(y)
        ctx.save_for_forward(y)
        return y

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> torch.Tensor:
        (y,) = ctx.saved_tensors
        return grad_output * (1 - y**2)  # tanh' = 1 - tanh**2, through the saved output

    @staticmethod
    def jvp(ctx: Any, x_t: torch.Tensor) -> torch.Tensor:
        (y,) = ctx.saved_tensors
        return x_t * (1 - y**2)


class TanhWrongJvp(Tanh):
    @staticmethod
    def jvp(ctx: Any, x_t: torch.Tensor) -> torch.Tensor:
        (y,) = ctx.saved_tensors
        return x_t * (1 - y)  # forgot the square


class TanhDetachedBackward(Tanh):
    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> torch.Tensor:
        (y,) = ctx.saved_tensors
        return grad_output * (1 - y.detach() ** 2)  # right values, but cut from the graph


class TanhOnceDifferentiable(Tanh):
    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_output: torch.Tensor) -> torch.Tensor:
        (y,) = ctx.saved_tensors
        return grad_output * (1 - y**2)


class ScaleRowsAsStrided(torch.autograd.Function):
    """out = x * s (s a column per row); the backward reads grad_output's storage as if it
    were contiguous, which it is in every contiguous test."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x, s)
        return x * s[:, None]

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x, s = ctx.saved_tensors
        rows, cols = grad_output.shape
        flat = grad_output.as_strided((rows, cols), (cols, 1))  # assumes contiguous
        return flat * s[:, None], (flat * x).sum(dim=1)


class ScaleRows(ScaleRowsAsStrided):
    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x, s = ctx.saved_tensors
        return grad_output * s[:, None], (grad_output * x).sum(dim=1)


def scale_rows_spec(x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    return x * s[:, None]


SCALE_SHAPES = {"x": ("N", "D"), "s": ("N",)}


class MatmulAtomicOrder(torch.autograd.Function):
    """x @ w whose backward sums grad_w over the batch in a random order, as atomic adds on
    a GPU do: right to rounding, but not the same twice."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x, w)
        return x @ w

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x, w = ctx.saved_tensors
        grad_w = torch.zeros_like(w)
        for row in torch.randperm(x.shape[0]).tolist():
            grad_w = grad_w + x[row, :, None] * grad_output[row, None, :]
        return grad_output @ w.T, grad_w


def matmul_spec(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    return x @ w


MATMUL_SHAPES = {"x": ("N", "D"), "w": ("D", "H")}


class _Center(torch.autograd.Function):
    """x - mean(x), setup_context style, with no jvp and no vmap rule of its own."""

    @staticmethod
    def forward(x: torch.Tensor) -> torch.Tensor:
        return x - x.mean()

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Any) -> None:
        pass

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> torch.Tensor:
        return grad_output - grad_output.mean()


class CenterSetupContext(_Center):
    """x - mean(x), setup_context style, with a generated vmap rule and a jvp."""

    generate_vmap_rule = True

    @staticmethod
    def jvp(ctx: Any, x_t: torch.Tensor) -> torch.Tensor:
        return x_t - x_t.mean()


class CenterWrongVmap(_Center):
    """The same, with a hand vmap rule that takes the mean over the whole batch."""

    @staticmethod
    def vmap(info: Any, in_dims: tuple[int | None], x: torch.Tensor) -> tuple[torch.Tensor, int]:
        (x_dim,) = in_dims
        return CenterWrongVmap.apply(x), x_dim  # one mean over every member of the batch


def center_spec(x: torch.Tensor) -> torch.Tensor:
    return x - x.mean()


CENTER_SHAPES = {"x": ("N", "D")}

tanh = function_derivation(Tanh, spec=torch.tanh, shapes=TANH_SHAPES, wrt=["x"])
tanh_wrong_jvp = function_derivation(TanhWrongJvp, spec=torch.tanh, shapes=TANH_SHAPES, wrt=["x"])
tanh_detached_backward = function_derivation(
    TanhDetachedBackward, spec=torch.tanh, shapes=TANH_SHAPES, wrt=["x"]
)
tanh_once_differentiable = function_derivation(
    TanhOnceDifferentiable, spec=torch.tanh, shapes=TANH_SHAPES, wrt=["x"]
)
scale_rows = function_derivation(
    ScaleRows, spec=scale_rows_spec, shapes=SCALE_SHAPES, wrt=["x", "s"]
)
scale_rows_as_strided = function_derivation(
    ScaleRowsAsStrided, spec=scale_rows_spec, shapes=SCALE_SHAPES, wrt=["x", "s"]
)
matmul_atomic_order = function_derivation(
    MatmulAtomicOrder, spec=matmul_spec, shapes=MATMUL_SHAPES, wrt=["x", "w"]
)
center = function_derivation(CenterSetupContext, spec=center_spec, shapes=CENTER_SHAPES, wrt=["x"])
center_wrong_vmap = function_derivation(
    CenterWrongVmap, spec=center_spec, shapes=CENTER_SHAPES, wrt=["x"]
)


class ChannelScale(torch.autograd.Function):
    """x * s per channel, for images (N, C, H, W): the layouts include channels_last."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x, s)
        return x * s[None, :, None, None]

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x, s = ctx.saved_tensors
        return grad_output * s[None, :, None, None], (grad_output * x).sum(dim=(0, 2, 3))


class ChannelScaleView(ChannelScale):
    """The same, flattening grad_output with .view, which needs contiguous memory."""

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x, s = ctx.saved_tensors
        n, c, h, w = grad_output.shape
        per_sample = grad_output.view(n, c * h * w)  # raises unless (c, h, w) are contiguous
        grad_s = (per_sample * x.reshape(n, c * h * w)).reshape(n, c, h * w).sum(dim=(0, 2))
        return grad_output * s[None, :, None, None], grad_s


def channel_scale_spec(x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    return x * s[None, :, None, None]


IMAGE_SHAPES = {"x": ("N", "C", "H", "W"), "s": ("C",)}
channel_scale = function_derivation(
    ChannelScale, spec=channel_scale_spec, shapes=IMAGE_SHAPES, wrt=["x", "s"]
)
channel_scale_view = function_derivation(
    ChannelScaleView, spec=channel_scale_spec, shapes=IMAGE_SHAPES, wrt=["x", "s"]
)


class Swish(torch.autograd.Function):
    """x * sigmoid(x), its derivative computed in forward and saved (a memory-efficient
    activation): the backward multiplies it by grad_output into a new tensor."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        sig = torch.sigmoid(x)
        ctx.save_for_backward(sig * (1 + x * (1 - sig)))  # swish' = s + x s (1 - s)
        return x * sig

    @staticmethod
    @once_differentiable  # what it saved was computed without a graph
    def backward(ctx: Any, grad_output: torch.Tensor) -> torch.Tensor:
        (grad,) = ctx.saved_tensors
        return grad * grad_output


class SwishInPlace(torch.autograd.Function):
    """The same as a published swish writes it: the derivative kept as ``ctx.grad`` and
    multiplied by grad_output in place, so a second backward multiplies it again."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        sig = torch.sigmoid(x)
        ctx.grad = sig * (1 + x * (1 - sig))
        return x * sig

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_output: torch.Tensor) -> torch.Tensor:
        grad = ctx.grad
        grad *= grad_output
        return grad


class SwishSavedInPlace(Swish):
    """The saved derivative scaled in place: the second backward finds it edited (torch's
    version counter refuses it)."""

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_output: torch.Tensor) -> torch.Tensor:
        (grad,) = ctx.saved_tensors
        return grad.mul_(grad_output)


def swish_spec(x: torch.Tensor) -> torch.Tensor:
    return x * torch.sigmoid(x)


class FocalLossInPlace(torch.autograd.Function):
    """Sigmoid focal loss per element, its gradient computed in forward (as pytorch-loss's
    FocalSigmoidLossFuncV2 does) and scaled by grad_output in place in backward."""

    @staticmethod
    def forward(
        ctx: Any, logits: torch.Tensor, label: torch.Tensor, alpha: float, gamma: float
    ) -> torch.Tensor:
        p = torch.sigmoid(logits)
        log_p, log_1_p = F.logsigmoid(logits), F.logsigmoid(-logits)
        positive = -alpha * label * (1 - p) ** gamma * log_p
        negative = -(1 - alpha) * (1 - label) * p**gamma * log_1_p
        # d/dx of each term, with dp/dx = p (1 - p), term by term
        d_positive = -alpha * label * (1 - p) ** gamma * ((1 - p) - gamma * p * log_p)
        d_negative = -(1 - alpha) * (1 - label) * p**gamma * (gamma * (1 - p) * log_1_p - p)
        ctx.grads = d_positive + d_negative
        return positive + negative

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[Any, ...]:
        grads = ctx.grads
        grads.mul_(grad_output)
        return grads, None, None, None


class FocalLoss(FocalLossInPlace):
    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[Any, ...]:
        return ctx.grads * grad_output, None, None, None


def focal_loss_spec(
    logits: torch.Tensor, label: torch.Tensor, alpha: float, gamma: float
) -> torch.Tensor:
    p = torch.sigmoid(logits)
    positive = -alpha * label * (1 - p) ** gamma * F.logsigmoid(logits)
    return positive - (1 - alpha) * (1 - label) * p**gamma * F.logsigmoid(-logits)


FOCAL = {
    "shapes": {"logits": ("N", "C"), "label": ("N", "C")},
    "wrt": ["logits"],
    "params": {"alpha": [0.25], "gamma": [2.0]},
    "integers": {"label": (0, 1)},
}
SWISH_SHAPES = {"x": ("N", "D")}
swish = function_derivation(Swish, spec=swish_spec, shapes=SWISH_SHAPES, wrt=["x"])
swish_in_place = function_derivation(SwishInPlace, spec=swish_spec, shapes=SWISH_SHAPES, wrt=["x"])
swish_saved_in_place = function_derivation(
    SwishSavedInPlace, spec=swish_spec, shapes=SWISH_SHAPES, wrt=["x"]
)
focal_loss = function_derivation(FocalLoss, spec=focal_loss_spec, **FOCAL)
focal_loss_in_place = function_derivation(FocalLossInPlace, spec=focal_loss_spec, **FOCAL)


class RowNormalizeItem(torch.autograd.Function):
    """x / |x| per row, whose forward reads the norm with .item(): right for one row, and
    it raises (in forward, not backward) for more."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        norm = x.norm(dim=1).item()
        ctx.save_for_backward(x)
        return x / norm

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_output: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        norm = x.norm(dim=1, keepdim=True)
        y = x / norm
        return (grad_output - y * (grad_output * y).sum(dim=1, keepdim=True)) / norm


def row_normalize_spec(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=1, keepdim=True)


row_normalize_item = function_derivation(
    RowNormalizeItem,
    spec=row_normalize_spec,
    shapes={"x": ("N", "D")},
    wrt=["x"],
    bounds={"x": (0.5, 2.0)},
)


def _entmax_threshold(z: torch.Tensor) -> torch.Tensor:
    """tau with sum(clamp(z - tau, 0) ** 2) = 1 over the last dim (sort-based, exact)."""
    d = z.shape[-1]
    zs, _ = torch.sort(z, dim=-1, descending=True)
    rho = torch.arange(1, d + 1, dtype=z.dtype, device=z.device)
    mean = zs.cumsum(-1) / rho
    mean_sq = (zs**2).cumsum(-1) / rho
    delta = (1 - rho * (mean_sq - mean**2)) / rho
    tau = mean - torch.sqrt(torch.clamp(delta, min=0))
    support = (tau <= zs).sum(dim=-1, keepdim=True)
    return tau.gather(-1, support - 1)


def entmax15_spec(x: torch.Tensor) -> torch.Tensor:
    z = (x - x.max(dim=-1, keepdim=True).values) / 2
    return torch.clamp(z - _entmax_threshold(z), min=0) ** 2


class Entmax15(torch.autograd.Function):
    """1.5-entmax over the last dim, with the entmax package's backward: right at first
    order, and its derivative is NaN wherever an output is 0 (sqrt's slope there is inf)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        y = entmax15_spec(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> torch.Tensor:
        (y,) = ctx.saved_tensors
        gppr = y.sqrt()  # 1 / g''(y)
        dx = grad_output * gppr
        q = dx.sum(-1, keepdim=True) / gppr.sum(-1, keepdim=True)
        return dx - q * gppr


class Entmax15Once(Entmax15):
    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_output: torch.Tensor) -> torch.Tensor:
        (y,) = ctx.saved_tensors
        gppr = y.sqrt()
        dx = grad_output * gppr
        return dx - dx.sum(-1, keepdim=True) / gppr.sum(-1, keepdim=True) * gppr


entmax15 = function_derivation(Entmax15, spec=entmax15_spec, shapes={"x": ("N", "D")}, wrt=["x"])
entmax15_once = function_derivation(
    Entmax15Once, spec=entmax15_spec, shapes={"x": ("N", "D")}, wrt=["x"]
)


def _rms_norm(eps_backward: float) -> type[torch.autograd.Function]:
    class RMSNorm(torch.autograd.Function):
        """x / rms(x) * w with eps 1e-6 in forward, and ``eps_backward`` in backward."""

        @staticmethod
        def forward(ctx: Any, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
            ctx.save_for_backward(x, w)
            return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * w

        @staticmethod
        def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            x, w = ctx.saved_tensors
            r = torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps_backward)
            g = grad_output * w
            # d(x r)/dx = r - x r^3 x^T / D, applied to g
            grad_x = r * g - r**3 * x * (g * x).sum(-1, keepdim=True) / x.shape[-1]
            return grad_x, (grad_output * x * r).reshape(-1, x.shape[-1]).sum(0)

    return RMSNorm


def rms_norm_spec(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * w


RMS_SHAPES = {"x": ("N", "D"), "w": ("D",)}
rms_norm = function_derivation(
    _rms_norm(1e-6), spec=rms_norm_spec, shapes=RMS_SHAPES, wrt=["x", "w"]
)
rms_norm_other_eps = function_derivation(
    _rms_norm(1e-5), spec=rms_norm_spec, shapes=RMS_SHAPES, wrt=["x", "w"], name="RMSNormEps"
)


class TanhHalfDetached(Tanh):
    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> torch.Tensor:
        (y,) = ctx.saved_tensors
        return grad_output * (1 - y.detach() * y)  # right values; half the derivative lost


tanh_half_detached = function_derivation(
    TanhHalfDetached, spec=torch.tanh, shapes=TANH_SHAPES, wrt=["x"]
)


class SinCos(torch.autograd.Function):
    """(sin x, cos x): two outputs, a grad_output for each."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        ctx.save_for_backward(x)
        return torch.sin(x), torch.cos(x)

    @staticmethod
    def backward(ctx: Any, grad_sin: torch.Tensor, grad_cos: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        return grad_sin * torch.cos(x) - grad_cos * torch.sin(x)


class SinCosIgnoresCos(SinCos):
    @staticmethod
    def backward(ctx: Any, grad_sin: torch.Tensor, grad_cos: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        return grad_sin * torch.cos(x)  # the cos output's gradient left out


class SinCosUnmaterialized(SinCos):
    """The same with materialize_grads off: an unused output's gradient arrives as None."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(x)
        return torch.sin(x), torch.cos(x)

    @staticmethod
    def backward(ctx: Any, grad_sin: Any, grad_cos: Any) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        grad = torch.zeros_like(x)
        if grad_sin is not None:
            grad = grad + grad_sin * torch.cos(x)
        if grad_cos is not None:
            grad = grad - grad_cos * torch.sin(x)
        return grad


class SinCosUsesNone(SinCosUnmaterialized):
    @staticmethod
    def backward(ctx: Any, grad_sin: Any, grad_cos: Any) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        return grad_sin * torch.cos(x) - grad_cos * torch.sin(x)  # None * tensor raises


class SinCosNoneAsOnes(SinCosUnmaterialized):
    @staticmethod
    def backward(ctx: Any, grad_sin: Any, grad_cos: Any) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        grad_sin = torch.ones_like(x) if grad_sin is None else grad_sin  # should be zeros
        grad_cos = torch.ones_like(x) if grad_cos is None else grad_cos
        return grad_sin * torch.cos(x) - grad_cos * torch.sin(x)


def sin_cos_spec(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.sin(x), torch.cos(x)


class MeanVar(torch.autograd.Function):
    """(mean, biased variance) over the last dim."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        ctx.save_for_backward(x)
        return x.mean(-1), x.var(-1, unbiased=False)

    @staticmethod
    def backward(ctx: Any, grad_mean: torch.Tensor, grad_var: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        d = x.shape[-1]
        centred = x - x.mean(-1, keepdim=True)
        # d mean/dx = 1/D; d var/dx = 2 (x - mean) / D
        return grad_mean[..., None] / d + grad_var[..., None] * 2 * centred / d


class MeanVarUnbiased(MeanVar):
    """The variance's forward divides by D - 1; its backward is the biased one's."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        ctx.save_for_backward(x)
        return x.mean(-1), x.var(-1)


def mean_var_spec(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return x.mean(-1), x.var(-1, unbiased=False)


class MaxWithIndex(torch.autograd.Function):
    """Row maxima and their indices (int64, not differentiable)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        values, indices = x.max(dim=1)
        ctx.mark_non_differentiable(indices)
        ctx.save_for_backward(indices)
        ctx.shape = x.shape
        return values, indices

    @staticmethod
    def backward(ctx: Any, grad_values: torch.Tensor, _: Any) -> torch.Tensor:
        (indices,) = ctx.saved_tensors
        grad = grad_values.new_zeros(ctx.shape)
        return grad.scatter(1, indices[:, None], grad_values[:, None])


def max_with_index_spec(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    found = x.max(dim=1)
    return found.values, found.indices


# Away from 0, where sin is 0 and a bug that drops the cos output's gradient would not show.
SIN_COS = {"shapes": {"x": ("N", "D")}, "wrt": ["x"], "bounds": {"x": (0.2, 1.4)}}
sin_cos = function_derivation(SinCos, spec=sin_cos_spec, **SIN_COS)
sin_cos_ignores_cos = function_derivation(SinCosIgnoresCos, spec=sin_cos_spec, **SIN_COS)
sin_cos_unmaterialized = function_derivation(SinCosUnmaterialized, spec=sin_cos_spec, **SIN_COS)
sin_cos_uses_none = function_derivation(SinCosUsesNone, spec=sin_cos_spec, **SIN_COS)
sin_cos_none_as_ones = function_derivation(SinCosNoneAsOnes, spec=sin_cos_spec, **SIN_COS)
mean_var = function_derivation(MeanVar, spec=mean_var_spec, shapes={"x": ("N", "D")}, wrt=["x"])
mean_var_unbiased = function_derivation(
    MeanVarUnbiased, spec=mean_var_spec, shapes={"x": ("N", "D")}, wrt=["x"], dims={"D": (2, 6)}
)
max_with_index = function_derivation(
    MaxWithIndex, spec=max_with_index_spec, shapes={"x": ("N", "D")}, wrt=["x"]
)
