"""The synthetic generator's difficulty knobs (``shared_ir``, ``pattern_freq``, ``clutter``, ``pose_jitter``,
``count_jitter``) and the ``demo`` / ``demo-v1`` presets."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from vireid_plugins.data import synthetic


def _upper_garment_means(shared_ir: float, n_ids: int = 150):
    """Mean visible colour (cam1) and infrared intensity (cam3) of the upper garment of ``n_ids`` identities."""
    rng = np.random.default_rng(7)
    cams = {cam: synthetic.sample_camera(rng, cam, *synthetic.CAMERAS["sysu"][cam]) for cam in (1, 3)}
    vis, ir, colours = [], [], []
    for pid in range(n_ids):
        ident = synthetic.sample_identity(rng, pid, shared_ir=shared_ir)
        colours.append(ident.palette_rgb[2 * synthetic.UPPER])
        for cam, out in ((1, vis), (3, ir)):
            img, labels = synthetic.render_image(ident, cams[cam], synthetic.sample_pose(rng, 0.0), rng, 64, 32,
                                                 return_labels=True)
            out.append(img[labels == synthetic.UPPER].reshape(-1, cams[cam].channels).mean(0))
    return np.stack(vis), np.stack(ir)[:, 0], np.stack(colours)


def _r2(x: np.ndarray, y: np.ndarray) -> float:
    design = np.column_stack([x, np.ones(len(x))])
    residual = y - design @ np.linalg.lstsq(design, y, rcond=None)[0]
    return float(1.0 - residual.var() / y.var())


def test_shared_ir_makes_infrared_predictable_from_colour_but_not_from_grey():
    vis, ir, _ = _upper_garment_means(0.9)
    grey = vis @ np.array([0.299, 0.587, 0.114])
    assert _r2(vis, ir) > 0.8  # a linear map of the visible colour predicts the infrared brightness ...
    assert _r2(grey[:, None], ir) < 0.25  # ... grey luminance hardly (measured: 0.90 and 0.10)
    vis0, ir0, _ = _upper_garment_means(0.0)
    assert _r2(vis0, ir0) < 0.1  # independent palettes (the default, demo-v1)


def test_shared_ir_blends_the_palettes_exactly():
    base = synthetic.sample_identity(np.random.default_rng(3), 5)
    for shared in (0.5, 1.0):
        ident = synthetic.sample_identity(np.random.default_rng(3), 5, shared_ir=shared)
        assert np.array_equal(ident.palette_rgb, base.palette_rgb)  # the draws do not depend on the knob
        for material in range(synthetic.N_MATERIALS):
            rows = [2 * material, 2 * material + 1]
            expected = base.palette_ir[rows]
            if material in (synthetic.UPPER, synthetic.LOWER, synthetic.SHOES, synthetic.HAT, synthetic.BAG):
                rgb = base.palette_rgb[rows]
                nir = np.clip(rgb @ np.array([0.9, -0.6, 0.3]) + 0.3, 0.05, 0.95)[:, None]
                expected = (1 - shared) * expected + shared * nir
            np.testing.assert_allclose(ident.palette_ir[rows], expected, rtol=1e-6, err_msg=str(material))


def test_pattern_freq_pose_and_clutter_knobs():
    ident = synthetic.sample_identity(np.random.default_rng(0), 1, pattern_freq=(3.0, 3.5))
    assert 3.0 <= ident.upper.freq <= 3.5 and 3.0 <= ident.lower.freq <= 3.5
    still = synthetic.sample_pose(np.random.default_rng(1), 0.0)
    assert (still.dx, still.dy, still.scale, still.stride, still.swing, still.head_dx) == (0, 0, 1, 0, 0, 0)
    half, full = synthetic.sample_pose(np.random.default_rng(1), 0.5), synthetic.sample_pose(np.random.default_rng(1))
    assert half.dx == pytest.approx(full.dx / 2) and half.scale - 1 == pytest.approx((full.scale - 1) / 2)
    assert half.flip == full.flip

    camera = synthetic.sample_camera(np.random.default_rng(2), 1, "visible", True)
    plain = synthetic._background(camera, np.random.default_rng(4), 64, 32, clutter=(0, 1))
    busy = synthetic._background(camera, np.random.default_rng(4), 64, 32, clutter=(30, 31))
    edges = [np.abs(np.diff(img, axis=0)).mean() for img in (plain, busy)]
    assert edges[1] > 3 * edges[0]


def test_count_jitter_varies_images_per_id_and_camera(tmp_path):
    params = synthetic.resolve_params("sysu", "tiny", ids=30, count_jitter=2, vis_per_cam=3, ir_per_cam=4)
    plan = synthetic.plan_sysu(params, seed=0)
    counts = {}
    for jobs in plan.jobs.values():
        for job in jobs:
            counts[(job.relpath.split("/")[1], job.cam)] = counts.get((job.relpath.split("/")[1], job.cam), 0) + 1
    vis = [n for (_, cam), n in counts.items() if cam in (1, 2, 4, 5)]
    ir = [n for (_, cam), n in counts.items() if cam in (3, 6)]
    assert min(vis) >= 1 and max(vis) <= 5 and len(set(vis)) > 2
    assert min(ir) >= 2 and max(ir) <= 6 and len(set(ir)) > 2
    assert sum(counts.values()) == plan.counts["total_images"]
    # the written folders hold exactly the planned counts
    synthetic.generate("sysu", tmp_path / "SYSU", preset="tiny", ids=6, test_ids=2, count_jitter=2, workers=1)
    again = synthetic.plan_sysu(synthetic.resolve_params("sysu", "tiny", ids=6, test_ids=2, count_jitter=2), 0)
    for pid, jobs in again.jobs.items():
        for cam in {job.cam for job in jobs}:
            written = list((tmp_path / "SYSU" / f"cam{cam}" / f"{pid:04d}").iterdir())
            assert len(written) == sum(job.cam == cam for job in jobs)


@pytest.mark.parametrize("field, value, message", [
    ("shared_ir", 1.5, "shared_ir"), ("pattern_freq", (5.0, 2.0), "pattern_freq"), ("clutter", (3, 3), "clutter"),
    ("pose_jitter", -1.0, "pose_jitter"), ("count_jitter", -1, "count_jitter"),
])
def test_knob_validation(field, value, message):
    with pytest.raises(ValueError, match=message):
        synthetic.resolve_params("sysu", "tiny", **{field: value})


def test_demo_presets():
    demo, v1 = synthetic.resolve_params("sysu", "demo"), synthetic.resolve_params("sysu", "demo-v1")
    assert (demo.ids, demo.test_ids, demo.shared_ir, demo.pattern_freq, demo.count_jitter) == (128, 48, 0.9,
                                                                                               (3.0, 8.0), 2)
    defaults = {f.name: f.default for f in dataclasses.fields(synthetic.SyntheticParams)
                if f.default is not dataclasses.MISSING}
    # demo-v1 is the former demo: every knob at its default (the draws of the first generator version)
    assert (v1.ids, v1.test_ids, v1.vis_per_cam, v1.ir_per_cam) == (64, 32, 3, 4)
    assert all(getattr(v1, name) == value for name, value in defaults.items())
    counts = synthetic.plan_sysu(demo, seed=0).counts["images"]["train_val"]
    assert 1400 < counts["visible"] < 1800 and 900 < counts["infrared"] < 1300
