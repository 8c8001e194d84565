"""The gated PixelCNN (van den Oord et al. 2016, "Conditional Image Generation with PixelCNN
Decoders", arXiv:1606.05328) for binary and 8-bit images.

p(x) = prod_i p(x_i | x_<i) in raster order, every conditional from one convolutional pass:

- two stacks (Section 2.2, Figure 2): a vertical stack of (k // 2 + 1) x k convolutions sees
  the rows above and the current row; its pre-activation reaches the horizontal stack through
  a 1 x 1 convolution only after a shift down by one row, so row i sees rows < i from it. The
  horizontal stack, 1 x (k // 2 + 1) convolutions along the row, sees the pixels to the left.
  Together they cover every earlier pixel in the window: no blind spot.
- gated activations tanh(a) * sigmoid(b) in both stacks, and a residual 1 x 1 convolution
  in the horizontal stack; the first layer is masked 'A' (the current pixel is hidden), later
  layers 'B'. An optional map ``condition`` [F, H, W] adds V * condition to every gate, the
  paper's location-dependent conditioning (PixelVAE's decoder uses it).
- colour (Section 2 of the PixelRNN paper): channels are autoregressive within a pixel, R then
  G then B. Hidden channels are split into one group per image channel; at the current pixel
  group g sees image channels < g (mask 'A') and hidden groups <= g (mask 'B'), and the logits
  of channel c read groups <= c.
- output by data kind: Bernoulli logits for binary data, a 256-way softmax over the level of
  8-bit data x = level / 255 (``OUTPUTS``).

Sampling is sequential but as cheap as the two stacks allow (:meth:`GatedPixelCNN.sample`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genbench.core.errors import GenbenchError
from genbench.core.hyperparameters import Hyperparameters, bounded
from zoo.autoregressive import MASK_TYPES, causal_reach


# --- output distributions -------------------------------------------------------------------------
class BernoulliPixels:
    """Binary pixels (data kind 'binary'): one logit per channel, p(x = 1) = sigmoid(logit)."""

    logits_per_channel = 1

    def log_prob(self, logits: Tensor, x: Tensor) -> Tensor:
        """log p(x) ``[B]`` from logits ``[B, 1, C, H, W]`` and x ``[B, C, H, W]``."""
        logits = logits[:, 0]
        return (x * logits - F.softplus(logits)).flatten(1).sum(1)

    def draw(self, logits: Tensor, u: Tensor) -> Tensor:
        """Values from logits ``[..., 1]`` and uniforms ``[...]``: [u < sigmoid(logit)]."""
        return (u < torch.sigmoid(logits[..., 0])).to(u.dtype)


class Softmax256Pixels:
    """8-bit pixels (data kinds 'gray8', 'rgb8': x = level / 255): a 256-way softmax over the level."""

    logits_per_channel = 256

    def log_prob(self, logits: Tensor, x: Tensor) -> Tensor:
        """log P(levels) ``[B]`` from logits ``[B, 256, C, H, W]``; the level is round(255 x)."""
        levels = (x * 255).round().long()
        return -F.cross_entropy(logits, levels, reduction="none").flatten(1).sum(1)

    def draw(self, logits: Tensor, u: Tensor) -> Tensor:
        """Inverse-CDF draw: the number of levels whose cumulative probability is below u, / 255."""
        cdf = torch.softmax(logits, -1).cumsum(-1)
        level = (cdf < u.unsqueeze(-1)).sum(-1).clamp_(max=self.logits_per_channel - 1)
        return level.to(u.dtype) / 255


OUTPUTS = {"bernoulli": BernoulliPixels(), "softmax256": Softmax256Pixels()}


# --- the two stacks' convolutions -------------------------------------------------------------------
def channel_groups(channels: int, groups: int) -> Tensor:
    """Group (image channel) of each of ``channels`` features: ``groups`` contiguous blocks."""
    return torch.arange(channels) * groups // channels


def channel_mask(out_groups: Tensor, in_groups: Tensor, mask_type: str) -> Tensor:
    """``[out, in]`` connections at the current pixel: 'A' earlier groups only, 'B' also its own."""
    if mask_type not in MASK_TYPES:
        raise ValueError(f"mask_type must be one of {MASK_TYPES}, got {mask_type!r}")
    out_groups, in_groups = out_groups[:, None], in_groups[None, :]
    return (out_groups > in_groups if mask_type == "A" else out_groups >= in_groups).float()


class VerticalConv(nn.Conv2d):
    """A (k // 2 + 1) x k convolution: output (i, j) sees rows i - k // 2 .. i, columns j +- k // 2.

    It sees the current row, right of j included, so its output may reach row i of the
    horizontal stack only from row i - 1 (:func:`shift_down`). Zero padding on every side;
    the k // 2 extra output rows at the bottom are dropped.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int):
        super().__init__(in_channels, out_channels, (kernel_size // 2 + 1, kernel_size),
                         padding=kernel_size // 2)

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x)[..., : x.shape[-2], :]

    def last_row(self, rows: Tensor) -> Tensor:
        """The output at the last of ``rows`` alone: ``rows`` are the k // 2 + 1 it sees (fewer at the
        image's top edge, where the zero padding is the true one)."""
        top = self.kernel_size[0] - rows.shape[-2]
        return F.conv2d(F.pad(rows, (0, 0, top, 0)), self.weight, self.bias, padding=(0, self.padding[1]))


class HorizontalConv(nn.Conv2d):
    """A 1 x (k // 2 + 1) convolution along the row: output (i, j) sees (i, j - k // 2) .. (i, j).

    The taps left of j see every channel; the tap at j is masked by channel group
    (:func:`channel_mask`). ``kernel_size = 1`` is a masked 1 x 1 convolution.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, mask_type: str,
                 in_groups: Tensor, out_groups: Tensor):
        reach = kernel_size // 2
        super().__init__(in_channels, out_channels, (1, reach + 1), padding=(0, reach))
        mask = torch.ones(out_channels, in_channels, 1, reach + 1)
        mask[:, :, 0, reach] = channel_mask(out_groups, in_groups, mask_type)
        self.register_buffer("mask", mask, persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        out = F.conv2d(x, self.weight * self.mask, self.bias, padding=self.padding)
        return out[..., : x.shape[-1]]

    def as_linear(self) -> tuple[Tensor, Tensor]:
        """(weight ``[out, (k // 2 + 1) * in]``, bias): the same map as a matrix product on one
        window ``[n, k // 2 + 1, in]`` (channels last), flattened. Sampling, where one output
        column is all that is new, computes it this way."""
        return (self.weight * self.mask)[:, :, 0].transpose(1, 2).flatten(1), self.bias


def shift_down(x: Tensor) -> Tensor:
    """Row i takes row i - 1; row 0 is zero."""
    return F.pad(x, (0, 0, 1, 0))[..., :-1, :]


def gate(pre: Tensor) -> Tensor:
    """tanh(a) * sigmoid(b) for the two halves of the channels."""
    a, b = pre.chunk(2, dim=1)
    return torch.tanh(a) * torch.sigmoid(b)


class GatedLayer(nn.Module):
    """One layer of both stacks (the paper's Figure 2), optionally conditioned on a map.

    vertical:   pre_v = conv_v(v) + V_v * s,                      v' = gate(pre_v)
    horizontal: pre_h = conv_h(h) + W (shift_down pre_v) + V_h * s, h' = h + conv_1x1(gate(pre_h))
    The first layer (mask 'A') has no residual: h is the image, whose current pixel it must not see.
    """

    def __init__(self, in_channels: int, channels: int, kernel_size: int, mask_type: str,
                 in_groups: Tensor, groups: int, condition_channels: int):
        super().__init__()
        hidden = channel_groups(channels, groups)
        gated = hidden.repeat(2)  # the tanh half and the sigmoid half share the groups
        self.vertical = VerticalConv(in_channels, 2 * channels, kernel_size)
        self.horizontal = HorizontalConv(in_channels, 2 * channels, kernel_size, mask_type, in_groups, gated)
        self.vertical_to_horizontal = nn.Conv2d(2 * channels, 2 * channels, 1)
        self.horizontal_out = HorizontalConv(channels, channels, 1, "B", hidden, hidden)
        self.residual = mask_type == "B"
        self.reach = kernel_size // 2
        self.condition_vertical = self.condition_horizontal = None
        if condition_channels:
            self.condition_vertical = nn.Conv2d(condition_channels, 2 * channels, 1)
            self.condition_horizontal = nn.Conv2d(condition_channels, 2 * channels, 1)

    def vertical_pre(self, v: Tensor, condition: Tensor | None, last_row: bool = False) -> Tensor:
        """pre_v at every row of v, or (``last_row``) at its last row alone."""
        if last_row:
            pre = self.vertical.last_row(v)
            condition = None if condition is None else condition[..., -1:, :]
        else:
            pre = self.vertical(v)
        return pre if condition is None else pre + self.condition_vertical(condition)

    def from_above(self, shifted_pre: Tensor, condition: Tensor | None) -> Tensor:
        """What the horizontal stack adds to its pre-activation: W (shifted pre_v) + V_h * s."""
        out = self.vertical_to_horizontal(shifted_pre)
        return out if condition is None else out + self.condition_horizontal(condition)

    def horizontal_step(self, h: Tensor, from_above: Tensor) -> Tensor:
        out = self.horizontal_out(gate(self.horizontal(h) + from_above))
        return h + out if self.residual else out


# --- the network -------------------------------------------------------------------------------------
class GatedPixelCNN(nn.Module):
    """Logits of every pixel given the earlier ones (and an optional condition map), log p and sampling.

    Output (i, j) depends on rows i - 1 - reach .. i - 1 (columns j - reach .. j + reach) through
    the vertical stack and on (i, j - reach) .. (i, j - 1) through the horizontal one, with
    ``reach`` the summed k // 2 of the layers; at (i, j) itself only on earlier channels.
    """

    #: most images per pass in ``log_prob`` (a 256-way softmax of a 32 x 32 colour image is 3 MB)
    max_rows = 128

    def __init__(self, data_shape: tuple[int, int, int], output: str, channels: int, layers: int,
                 kernel_size: int, first_kernel_size: int, condition_channels: int = 0):
        super().__init__()
        image_channels = data_shape[0]
        if channels < image_channels:
            raise GenbenchError(f"pixelcnn: needs at least one feature per image channel "
                                f"({image_channels}), got channels={channels}")
        self.data_shape = tuple(data_shape)
        self.output = OUTPUTS[output]
        groups = channel_groups(image_channels, image_channels)
        hidden = channel_groups(channels, image_channels)
        self.layers = nn.ModuleList(
            [GatedLayer(image_channels, channels, first_kernel_size, "A", groups, image_channels,
                        condition_channels)]
            + [GatedLayer(channels, channels, kernel_size, "B", hidden, image_channels, condition_channels)
               for _ in range(layers - 1)])
        logit_groups = torch.arange(self.output.logits_per_channel * image_channels) % image_channels
        self.head = nn.Sequential(  # logits laid out [level, channel]
            nn.ReLU(), HorizontalConv(channels, channels, 1, "B", hidden, hidden),
            nn.ReLU(), HorizontalConv(channels, len(logit_groups), 1, "B", hidden, logit_groups))
        self.reach = causal_reach(1, first_kernel_size) + causal_reach(layers - 1, kernel_size)

    # --- teacher forcing ------------------------------------------------------------------------
    @staticmethod
    def _inputs(x: Tensor) -> Tensor:
        return 2 * x - 1

    def above(self, x: Tensor, condition: Tensor | None) -> list[Tensor]:
        """Per layer, the vertical stack's pre-activation shifted down one row: at row i a function
        of rows < i only, what the horizontal stack's row i gets from above."""
        v, out = self._inputs(x), []
        for depth, layer in enumerate(self.layers, start=1):
            pre = layer.vertical_pre(v, condition)
            out.append(shift_down(pre))
            if depth < len(self.layers):
                v = gate(pre)
        return out

    def _from_above(self, above: list[Tensor], condition: Tensor | None) -> list[Tensor]:
        return [layer.from_above(a, condition) for layer, a in zip(self.layers, above, strict=True)]

    def _horizontal(self, x: Tensor, from_above: list[Tensor]) -> Tensor:
        h = self._inputs(x)
        for layer, extra in zip(self.layers, from_above, strict=True):
            h = layer.horizontal_step(h, extra)
        return h

    def _head(self, h: Tensor) -> Tensor:
        out = self.head(h)
        return out.view(out.shape[0], self.output.logits_per_channel, self.data_shape[0], *out.shape[-2:])

    def logits(self, x: Tensor, condition: Tensor | None = None) -> Tensor:
        """``[B, K, C, H, W]``, K logits per channel, for x ``[B, C, H, W]`` (condition ``[B, F, H, W]``)."""
        return self._head(self._horizontal(x, self._from_above(self.above(x, condition), condition)))

    def log_prob(self, x: Tensor, condition: Tensor | None = None) -> Tensor:
        """log p(x | condition) ``[B]`` in nats, in passes of at most ``max_rows`` images."""
        out = []
        for start in range(0, x.shape[0], self.max_rows):
            rows = slice(start, start + self.max_rows)
            cond = None if condition is None else condition[rows]
            out.append(self.output.log_prob(self.logits(x[rows], cond), x[rows]))
        return torch.cat(out)

    # --- sampling ---------------------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, n: int, condition: Tensor | None = None, uniforms: Tensor | None = None,
               naive: bool = False) -> Tensor:
        """x ~ p(x | condition) ``[n, C, H, W]``: pixel by pixel in raster order, channel by channel.

        Each value is a deterministic function of its logits and one uniform (``uniforms``
        ``[n, C, H, W]``, drawn here if not given), so two ways of computing the logits draw
        the same image. ``naive=True`` recomputes the whole image for every value (the
        reference); the default computes each feature once, when its inputs are final:

        - before row i, one new row (i - 1) per layer of the vertical stack, from the k // 2 + 1
          rows of the layer below that it sees (kept from earlier rows);
        - per value, one new column (j) per layer of the horizontal stack, from the k // 2 + 1
          columns it sees in row i (kept from earlier values), and the head at (i, j).

        Features at (i, j) never depend on the current pixel's last channel, so the columns
        kept after its last channel's pass are the final ones.
        """
        x = self.head[-1].weight.new_zeros(n, *self.data_shape)
        u = torch.rand_like(x) if uniforms is None else uniforms
        draw = self._naive_values if naive else self._cached_values
        for i, j, c, logits in draw(x, condition):
            x[:, c, i, j] = self.output.draw(logits, u[:, c, i, j])
        return x

    def _naive_values(self, x: Tensor, condition: Tensor | None):
        """(i, j, c, logits ``[n, K]`` of channel c at (i, j)) in sampling order, one full pass each."""
        channels, height, width = self.data_shape
        for i in range(height):
            for j in range(width):
                for c in range(channels):
                    yield i, j, c, self.logits(x, condition)[:, :, c, i, j]

    def _cached_values(self, x: Tensor, condition: Tensor | None):
        """The same logits, each from the one new row or column per layer that it needs.

        ``x`` is read as the caller fills it in between the values yielded. Row i's features
        are kept channels-last, ``[n, W, channels]``, so a window of columns is a matrix
        without a copy.
        """
        channels, height, width = self.data_shape
        n, layers = x.shape[0], self.layers
        taps = [layer.horizontal.as_linear() for layer in layers]
        outs = [layer.horizontal_out.as_linear() for layer in layers]
        (hidden_weight, hidden_bias), (out_weight, out_bias) = (
            conv.as_linear() for conv in self.head if isinstance(conv, HorizontalConv))
        # channel c's logits only: rows c, c + C, ... of the [level, channel] layout
        head = [(out_weight[c::channels].contiguous(), out_bias[c::channels]) for c in range(channels)]
        # vertical[l]: the gated output of layer l's vertical stack (the input of layer l + 1's)
        vertical = [x.new_zeros(n, layer.vertical.out_channels // 2, height, width) for layer in layers[:-1]]
        for i in range(height):
            from_above = [(a + bias[:, None]).transpose(1, 2).contiguous()  # the taps' bias folded in
                          for a, (_, bias) in zip(self._row_from_above(x, condition, vertical, i), taps,
                                                  strict=True)]
            # rows[l]: row i of layer l's horizontal input, after ``reach`` columns of zero padding
            rows = [x.new_zeros(n, width + layer.reach, layer.horizontal.in_channels) for layer in layers]
            for j in range(width):
                for c in range(channels):
                    rows[0][:, j + layers[0].reach] = self._inputs(x[:, :, i, j])  # channels < c are drawn
                    for depth, layer in enumerate(layers):
                        window = rows[depth][:, j : j + layer.reach + 1].flatten(1)
                        h = F.linear(gate(torch.addmm(from_above[depth][:, j], window, taps[depth][0].t())),
                                     *outs[depth])
                        if layer.residual:
                            h += rows[depth][:, j + layer.reach]
                        if depth + 1 < len(layers):
                            rows[depth + 1][:, j + layers[depth + 1].reach] = h
                    yield i, j, c, F.linear(F.relu(F.linear(F.relu(h), hidden_weight, hidden_bias)), *head[c])
                rows[0][:, j + layers[0].reach] = self._inputs(x[:, :, i, j])  # now complete

    def _row_from_above(self, x: Tensor, condition: Tensor | None, vertical: list[Tensor],
                        i: int) -> list[Tensor]:
        """Per layer, what row i of the horizontal stack gets from above, ``[n, 2p, W]``.

        Computes row i - 1 of every vertical layer from the k // 2 + 1 rows of the layer below
        that it sees, and stores the gated rows in ``vertical``. Row 0 gets zeros from the shift.
        """
        def rows_of(t: Tensor | None, rows: slice) -> Tensor | None:
            return None if t is None else t[..., rows, :]

        out = []
        for depth, layer in enumerate(self.layers):
            if i == 0:
                pre = x.new_zeros(x.shape[0], layer.vertical.out_channels, 1, x.shape[-1])
            else:
                rows = slice(max(0, i - 1 - layer.reach), i)
                below = self._inputs(x[..., rows, :]) if depth == 0 else vertical[depth - 1][..., rows, :]
                pre = layer.vertical_pre(below, rows_of(condition, rows), last_row=True)
                if depth + 1 < len(self.layers):
                    vertical[depth][..., i - 1 : i, :] = gate(pre)
            out.append(layer.from_above(pre, rows_of(condition, slice(i, i + 1)))[..., 0, :])
        return out


def check_gated_stack(output: str, *kernel_sizes: int) -> None:
    """A gated PixelCNN's settings (its own, or a PixelVAE decoder's): a known output, odd kernels."""
    if output not in OUTPUTS:
        raise ValueError(f"output must be one of {tuple(OUTPUTS)}, got {output!r}")
    for size in kernel_sizes:
        if size % 2 == 0:
            raise ValueError(f"kernel sizes must be odd, got {size}")


# --- the model ------------------------------------------------------------------------------------------
@dataclass
class PixelCNNConfig(Hyperparameters):
    output: str = "bernoulli"
    """'bernoulli' for binary data, 'softmax256' for 8-bit data (x = level / 255)."""
    channels: int = bounded(32, "[1, 1024]")
    """Features per stack (the gates have twice as many pre-activations)."""
    layers: int = bounded(5, "[1, 64]")
    """Gated layers, the first one masked 'A'."""
    kernel_size: int = bounded(3, "[1, 15]")
    """Odd kernel width of the layers after the first."""
    first_kernel_size: int = bounded(7, "[1, 15]")
    """Odd kernel width of the first layer (7 x 7 in the PixelCNN papers)."""

    def __post_init__(self):
        super().__post_init__()
        check_gated_stack(self.output, self.kernel_size, self.first_kernel_size)


class PixelCNN(nn.Module):
    """The gated PixelCNN as a model: exact log-likelihood, samples, maximum-likelihood training."""

    def __init__(self, config: PixelCNNConfig, data_shape: tuple[int, ...]):
        super().__init__()
        if len(data_shape) != 3:
            raise GenbenchError(f"pixelcnn: needs images [C, H, W], got data shape {list(data_shape)}")
        self.config = config
        self.data_shape = tuple(data_shape)
        self.network = GatedPixelCNN(self.data_shape, config.output, config.channels, config.layers,
                                     config.kernel_size, config.first_kernel_size)

    def log_prob(self, x: Tensor) -> Tensor:
        """log P(x) ``[B]`` in nats: a probability mass over binary images or 8-bit levels."""
        return self.network.log_prob(x)

    @torch.no_grad()
    def sample(self, n: int) -> Tensor:
        return self.network.sample(n)

    def configure_optimizers(self, lr: float) -> dict[str, torch.optim.Optimizer]:
        return {"model": torch.optim.Adam(self.parameters(), lr=lr)}

    def training_losses(self, x: Tensor) -> Iterator[tuple[str, Tensor]]:
        """Maximum likelihood: the batch-mean NLL in nats."""
        yield "model", -self.log_prob(x).mean()
