"""HOG / raw-pixel descriptors (``evaluation/handcrafted.py``) against a per-pixel loop oracle, and the
``tools/handcrafted_baseline.py`` tool on the tiny synthetic set."""
import importlib.util
import math
import os

import numpy as np
import pytest
import torch

from vireid_plugins.evaluation.handcrafted import hog_descriptors, hog_length, pixel_descriptors

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def oracle_hog(image, orientations=9, cell=8, block=2, eps=1e-5):
    """Dalal-Triggs HOG written out pixel by pixel (scikit-image's choices, see the module docstring)."""
    height, width = image.shape
    gy, gx = np.zeros((height, width)), np.zeros((height, width))
    for r in range(1, height - 1):
        for c in range(width):
            gy[r, c] = image[r + 1, c] - image[r - 1, c]
    for r in range(height):
        for c in range(1, width - 1):
            gx[r, c] = image[r, c + 1] - image[r, c - 1]
    ch, cw = height // cell, width // cell
    hist = np.zeros((ch, cw, orientations))
    for r in range(ch * cell):
        for c in range(cw * cell):
            angle = math.degrees(math.atan2(gy[r, c], gx[r, c])) % 180.0
            b = min(int(angle // (180.0 / orientations)), orientations - 1)
            hist[r // cell, c // cell, b] += math.hypot(gx[r, c], gy[r, c]) / cell ** 2
    out = []
    for r in range(ch - block + 1):
        for c in range(cw - block + 1):
            v = hist[r:r + block, c:c + block].ravel()
            v = v / math.sqrt((v ** 2).sum() + eps ** 2)
            v = np.minimum(v, 0.2)
            out.append(v / math.sqrt((v ** 2).sum() + eps ** 2))
    return np.concatenate(out)


@pytest.mark.parametrize("shape, orientations, cell, block", [((64, 32), 9, 8, 2), ((37, 21), 6, 6, 3),
                                                              ((16, 16), 9, 8, 2)])
def test_hog_matches_loop_oracle(shape, orientations, cell, block):
    rng = np.random.default_rng(0)
    images = rng.random((3, *shape))
    images[1] = np.linspace(0, 1, shape[1])[None, :] * np.ones(shape)  # a pure horizontal ramp: one bin (0 deg)
    got = hog_descriptors(torch.from_numpy(images), orientations, cell, block)
    assert got.shape == (3, hog_length(*shape, orientations, cell, block)) and got.dtype == torch.float32
    for image, row in zip(images, got):
        np.testing.assert_allclose(row.numpy(), oracle_hog(image, orientations, cell, block), atol=2e-6)
    ramp = got[1].reshape(-1, orientations)
    assert (ramp[:, 1:] == 0).all() and (ramp[:, 0] > 0).all()


def test_hog_is_contrast_invariant_and_rejects_small_images():
    rng = np.random.default_rng(1)
    images = torch.from_numpy(rng.random((2, 64, 32)))
    np.testing.assert_allclose(hog_descriptors(3 * images + 1), hog_descriptors(images), atol=1e-5)
    with pytest.raises(ValueError, match="at least 16 x 16"):
        hog_descriptors(torch.zeros(1, 15, 32))
    with pytest.raises(ValueError, match=r"\(N, H, W\)"):
        hog_descriptors(torch.zeros(64, 32))


def test_pixel_descriptors_subtract_the_mean():
    images = torch.tensor([[[1.0, 3.0], [5.0, 7.0]]])
    assert pixel_descriptors(images).tolist() == [[-3.0, -1.0, 1.0, 3.0]]


def test_handcrafted_baseline_tool(tiny_sysu):
    spec = importlib.util.spec_from_file_location("handcrafted_baseline", os.path.join(ROOT, "tools",
                                                                                       "handcrafted_baseline.py"))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    results = tool.main(["--root", str(tiny_sysu), "--trials", "2", "--within-modality"])
    assert set(results) == {"HOG", "pixels"}
    for res in results.values():
        assert {k.split("/")[0] for k in res if "/" in k} == {"all", "indoor", "v2v", "i2i"}
        assert all(0.0 <= res[f"{m}/mAP"] <= 100.0 for m in ("all", "indoor", "v2v", "i2i"))
    assert results["HOG"]["all/mAP"] != results["pixels"]["all/mAP"]
