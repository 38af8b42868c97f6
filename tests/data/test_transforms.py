"""Channel augmentation against hand-worked cases, and the per-modality transform builder."""
import torch
from PIL import Image

from vireid_plugins.data import INFRARED, VISIBLE
from vireid_plugins.data.transforms import (
    ChannelAdapGray,
    ChannelExchange,
    ChannelRandomErasing,
    build_vireid_transforms,
    luminance,
)


def image():
    return torch.stack([torch.full((4, 3), 10.0), torch.full((4, 3), 20.0), torch.full((4, 3), 40.0)])


def test_luminance_hand_case():
    assert torch.allclose(luminance(image()), torch.full((1, 4, 3), 0.2989 * 10 + 0.587 * 20 + 0.114 * 40))


def test_channel_exchange_copies_one_channel():
    torch.manual_seed(0)
    seen = set()
    for _ in range(60):
        out = ChannelExchange(gray=2)(image())
        value = out[0, 0, 0].item()
        assert torch.equal(out, torch.full_like(out, value)) and value in (10.0, 20.0, 40.0)
        seen.add(value)
    assert seen == {10.0, 20.0, 40.0}
    torch.manual_seed(0)
    grey = 0.2989 * 10 + 0.587 * 20 + 0.114 * 40
    assert any(abs(ChannelExchange(gray=3)(image())[0, 0, 0].item() - grey) < 1e-4 for _ in range(60))
    assert torch.equal(ChannelExchange(prob=0.0)(image()), image())


def test_channel_adap_gray_branch_frequencies():
    torch.manual_seed(0)
    outcomes = {"channel": 0, "grey": 0, "unchanged": 0}
    for _ in range(4000):
        out = ChannelAdapGray(prob=0.5)(image())
        if torch.equal(out, image()):
            outcomes["unchanged"] += 1
        elif out[0, 0, 0].item() in (10.0, 20.0, 40.0):
            outcomes["channel"] += 1
        else:
            outcomes["grey"] += 1
    # expected 3/4 single channel, 1/8 grey, 1/8 unchanged
    assert abs(outcomes["channel"] / 4000 - 0.75) < 0.03
    assert abs(outcomes["grey"] / 4000 - 0.125) < 0.02 and abs(outcomes["unchanged"] / 4000 - 0.125) < 0.02


def test_channel_random_erasing_fills_one_rectangle_with_the_mean():
    torch.manual_seed(1)
    img = torch.zeros(3, 40, 20)
    out = ChannelRandomErasing(prob=1.0, mean=(1.0, 2.0, 3.0))(img)
    erased = out[0] != 0
    rows, cols = erased.any(1).nonzero().squeeze(1), erased.any(0).nonzero().squeeze(1)
    assert erased.sum() == len(rows) * len(cols)  # a full rectangle
    assert 0.02 * 800 * 0.5 <= erased.sum() <= 0.4 * 800 * 1.5
    for c, v in enumerate((1.0, 2.0, 3.0)):
        assert torch.all(out[c][erased] == v)
    assert torch.equal(img, torch.zeros(3, 40, 20))  # input untouched
    assert torch.equal(ChannelRandomErasing(prob=0.0)(img), img)


def test_builder_appends_ca_per_modality(cfg):
    cfg.INPUT.SIZE_TRAIN = cfg.INPUT.SIZE_TEST = [32, 16]
    cfg.INPUT.CA.CHANNEL_EXCHANGE.ENABLED = True
    cfg.INPUT.CA.ADAP_GRAY.ENABLED = True
    cfg.INPUT.CA.RANDOM_ERASING.ENABLED = True
    train = build_vireid_transforms(cfg, is_train=True)
    names = {m: [type(t).__name__ for t in train[m].transforms] for m in (VISIBLE, INFRARED)}
    assert names[VISIBLE][-2:] == ["ChannelRandomErasing", "ChannelExchange"]
    assert names[INFRARED][-2:] == ["ChannelRandomErasing", "ChannelAdapGray"]
    test = build_vireid_transforms(cfg, is_train=False)
    assert not any("Channel" in type(t).__name__ for t in test[VISIBLE].transforms)
    pil = Image.new("RGB", (10, 20), (255, 128, 0))
    out = test[VISIBLE](pil)
    assert out.shape == (3, 32, 16) and out.dtype == torch.float32
    assert torch.allclose(out[:, 5, 5], torch.tensor([255.0, 128.0, 0.0]))  # 0-255 scale, fast-reid's convention
