"""Channel augmentation (Ye et al., "Channel Augmented Joint Learning for VI-ReID", ICCV'21).

All three transforms act on a ``3 x H x W`` float tensor (any value scale) and draw their randomness
from torch's generator, which fast-reid / torch seed per data-loader worker.

* :class:`ChannelExchange` (visible): copy one random channel (R, G or B; with ``gray=3`` also the
  luminance grey) into all three channels.
* :class:`ChannelAdapGray` (infrared): with probability 3/4 copy one random channel into all three;
  otherwise convert to luminance grey with probability ``prob`` or leave the image as it is.
* :class:`ChannelRandomErasing` (both): random erasing of one rectangle filled with a per-channel mean.
"""
import math

import torch

__all__ = ["ChannelExchange", "ChannelAdapGray", "ChannelRandomErasing", "channel_exchange_batch", "luminance",
           "luminance_batch"]

_LUMA = (0.2989, 0.587, 0.114)


def luminance(img: torch.Tensor) -> torch.Tensor:
    """``1 x H x W`` ITU-R 601 grey of a ``3 x H x W`` image."""
    weights = img.new_tensor(_LUMA).view(3, 1, 1)
    return (img * weights).sum(0, keepdim=True)


def _randint(high: int) -> int:
    """Uniform integer in ``[0, high)``."""
    return int(torch.randint(high, (1,)).item())


def _rand() -> float:
    return float(torch.rand(()).item())


def _replicate(channel: torch.Tensor) -> torch.Tensor:
    return channel.expand(3, *channel.shape[-2:]).clone()


class ChannelExchange:
    """Replace a visible image by one of its channels (or its grey when ``gray == 3``)."""

    def __init__(self, gray: int = 2, prob: float = 1.0):
        if gray not in (2, 3):
            raise ValueError(f"ChannelExchange: gray must be 2 (R/G/B) or 3 (R/G/B/grey), got {gray}")
        self.gray, self.prob = gray, prob

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        if _rand() >= self.prob:
            return img
        idx = _randint(self.gray + 1)
        return _replicate(img[idx:idx + 1] if idx < 3 else luminance(img))

    def __repr__(self):
        return f"{type(self).__name__}(gray={self.gray}, prob={self.prob})"


class ChannelAdapGray:
    """Infrared counterpart of :class:`ChannelExchange`: 1/4 each channel, 1/4 grey-or-unchanged."""

    def __init__(self, prob: float = 0.5):
        self.prob = prob

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        idx = _randint(4)
        if idx < 3:
            return _replicate(img[idx:idx + 1])
        return _replicate(luminance(img)) if _rand() < self.prob else img

    def __repr__(self):
        return f"{type(self).__name__}(prob={self.prob})"


class ChannelRandomErasing:
    """Random erasing (Zhong et al., AAAI'20) with a per-channel fill value, as used by CA.

    Args:
        prob: probability to erase one rectangle.
        area: ``(sl, sh)``, range of the erased area as a fraction of the image.
        min_aspect: ``r1``; the aspect ratio is drawn uniformly from ``[r1, 1/r1]``.
        mean: per-channel fill value, in the scale of the input tensor.
    """

    def __init__(self, prob=0.5, area=(0.02, 0.4), min_aspect=0.3, mean=(0.4914, 0.4822, 0.4465), attempts=100):
        self.prob, self.area, self.min_aspect = prob, tuple(area), min_aspect
        self.mean, self.attempts = tuple(mean), attempts

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        if _rand() >= self.prob:
            return img
        _, height, width = img.shape
        for _ in range(self.attempts):
            target = (self.area[0] + _rand() * (self.area[1] - self.area[0])) * height * width
            aspect = self.min_aspect + _rand() * (1 / self.min_aspect - self.min_aspect)
            h, w = int(round(math.sqrt(target * aspect))), int(round(math.sqrt(target / aspect)))
            if 0 < h < height and 0 < w < width:
                top, left = _randint(height - h + 1), _randint(width - w + 1)
                img = img.clone()
                img[:, top:top + h, left:left + w] = img.new_tensor(self.mean).view(3, 1, 1)
                return img
        return img

    def __repr__(self):
        return f"{type(self).__name__}(prob={self.prob}, area={self.area}, min_aspect={self.min_aspect})"


def channel_exchange_batch(images: torch.Tensor, gray: int = 2) -> torch.Tensor:
    """Batched :class:`ChannelExchange`: ``B x 3 x H x W`` -> a new tensor where each image is replaced by
    one of its channels (uniform over R, G, B, and the luminance grey when ``gray == 3``), drawn per image."""
    if gray not in (2, 3):
        raise ValueError(f"channel_exchange_batch: gray must be 2 or 3, got {gray}")
    choices = torch.cat([images, luminance_batch(images)], dim=1) if gray == 3 else images
    idx = torch.randint(gray + 1, (images.shape[0],), device=images.device)
    picked = choices[torch.arange(images.shape[0], device=images.device), idx]
    return picked.unsqueeze(1).expand_as(images).clone()


def luminance_batch(images: torch.Tensor) -> torch.Tensor:
    """``B x 1 x H x W`` ITU-R 601 grey of ``B x 3 x H x W`` images."""
    weights = images.new_tensor(_LUMA).view(1, 3, 1, 1)
    return (images * weights).sum(1, keepdim=True)
