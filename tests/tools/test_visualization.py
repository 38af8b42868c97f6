"""Rank lists (pixels of the frames, the protocol's gallery), embedding plots and pseudo-label curves."""
import importlib.util
import json
import os

import numpy as np
import pytest
import torch
from conftest import ROOT, TINY_OPTS, write_image
from matplotlib.markers import MarkerStyle
from PIL import Image

from vireid_plugins.data import build_vireid_test_loader, read_image
from vireid_plugins.data.datasets import INFRARED, VISIBLE
from vireid_plugins.deployment.inference import build_inference_model, setup_cfg
from vireid_plugins.evaluation import build_vireid_evaluator, extract_features
from vireid_plugins.visualization import (
    CORRECT,
    MARKERS,
    QUERY,
    WRONG,
    RankListLayout,
    choose_queries,
    contact_sheet,
    draw_ranklist,
    identity_colours,
    load_history,
    plot_embeddings,
    plot_history,
    top_k,
    tsne_2d,
)

WHITE = (255, 255, 255)


def load_tool(name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, "tools", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def frame_colour(image, layout, slot):
    """The colour of slot ``slot``'s frame if its four sides agree, else None."""
    left, top, right, bottom = layout.frame_box(slot)
    mid_x, mid_y = (left + right) // 2, (top + bottom) // 2
    colours = {image.getpixel(xy) for xy in ((left, mid_y), (right - 1, mid_y), (mid_x, top), (mid_x, bottom - 1),
                                             (left + layout.border - 1, top + layout.border - 1))}
    return colours.pop() if len(colours) == 1 else None


def slot_image(image, layout, slot):
    left, top, right, bottom = layout.frame_box(slot)
    b = layout.border
    return np.asarray(image.crop((left + b, top + b, right - b, bottom - b)))


def expected_image(path, layout):
    return np.asarray(read_image(path).resize((layout.width, layout.height), Image.BILINEAR))


# ------------------------------------------------------------------------------------------------ drawing
def test_top_k_is_stable_and_skips_removed_items():
    d = [0.5, 0.1, 0.3, 0.1, 0.9]
    assert top_k(d, 3).tolist() == [1, 3, 2]  # the tie 0.1 keeps the gallery order
    assert top_k(d, 10, removed=[False, True, False, False, False]).tolist() == [3, 2, 0, 4]
    with pytest.raises(ValueError, match="NaN"):
        top_k([0.1, float("nan")], 1)


def test_draw_ranklist_frames_images_and_removed_items(tmp_path):
    # Query pid 1. Gallery (distance, pid): g0 (.9, 1) g1 (.2, 2) g2 (.5, 1) g3 (.1, 3, removed) g4 (.3, 1)
    # g5 (.8, 2) g6 (.4, 2). Kept ranking g1 g4 g6 g2 g5 g0 -> wrong, correct, wrong, correct, wrong, correct.
    pids, dist = [1, 2, 1, 3, 1, 2, 2], [0.9, 0.2, 0.5, 0.1, 0.3, 0.8, 0.4]
    gallery = []
    for i, pid in enumerate(pids):
        path = str(tmp_path / f"g{i}.jpg")
        write_image(path, size=(40, 20), value=i)
        gallery.append((path, pid, 1 + i % 2, VISIBLE))
    query = (str(tmp_path / "q.jpg"), 1, 3, INFRARED)
    write_image(query[0], size=(40, 20), mode="L", value=99)
    removed = np.zeros(len(pids), bool)
    removed[3] = True
    layout = RankListLayout(height=32, width=16, topk=8)
    image = draw_ranklist(query, gallery, dist, layout, removed=removed, title="hand-made")
    assert image.size == layout.size == (6 + 24 + 18 + 8 * 30, 12 + 6 + 40 + 36 + 6)
    order, colours = [1, 4, 6, 2, 5, 0], [WRONG, CORRECT, WRONG, CORRECT, WRONG, CORRECT]
    assert frame_colour(image, layout, 0) == QUERY
    np.testing.assert_array_equal(slot_image(image, layout, 0), expected_image(query[0], layout))
    for slot, (g, colour) in enumerate(zip(order, colours), start=1):
        assert frame_colour(image, layout, slot) == colour, slot
        np.testing.assert_array_equal(slot_image(image, layout, slot), expected_image(gallery[g][0], layout))
    for slot in (7, 8):  # 6 kept items for 8 slots: the last two stay empty
        left, top, right, bottom = layout.frame_box(slot)
        assert (np.asarray(image.crop((left, top, right, bottom))) == 255).all()
    with pytest.raises(ValueError, match="7 gallery items"):
        draw_ranklist(query, gallery, dist[:5], layout)


def test_contact_sheet_grid():
    images = [Image.new("RGB", (10, 20), (i * 50, 0, 0)) for i in range(3)] + [Image.new("RGB", (30, 5), (0, 0, 9))]
    sheet = contact_sheet(images, columns=2, pad=2)
    assert sheet.size == (2 * 30 + 3 * 2, 2 * 20 + 3 * 2)
    assert sheet.getpixel((2, 2)) == (0, 0, 0) and sheet.getpixel((2 + 30 + 2, 2)) == (50, 0, 0)
    assert sheet.getpixel((2, 2 + 20 + 2)) == (100, 0, 0) and sheet.getpixel((34 + 29, 24 + 4)) == (0, 0, 9)
    with pytest.raises(ValueError):
        contact_sheet([])


def test_choose_queries():
    assert choose_queries(10, [7, 2, 7]).tolist() == [2, 7]
    picks = choose_queries(50, num_random=8, seed=3)
    assert len(set(picks.tolist())) == 8 and picks.tolist() == choose_queries(50, num_random=8, seed=3).tolist()
    assert picks.tolist() != choose_queries(50, num_random=8, seed=4).tolist()
    assert choose_queries(5, num_random=8).tolist() == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match=r"--queries: query position 10 .* 10 queries"):
        choose_queries(10, [3, 10], source="--queries")


# ------------------------------------------------------------------------------------------------ protocol
def expected_colours(evaluator, distmat, query_pos, query, gallery, topk):
    """Brute force: the SYSU ranking of one query (camera-3 queries drop camera-2 items), as frame colours."""
    q = evaluator.items[query[query_pos]]
    kept = [j for j, g in enumerate(gallery) if not (q[2] == 3 and evaluator.items[g][2] == 2)]
    kept.sort(key=lambda j: (distmat[query_pos, j], j))
    return [CORRECT if evaluator.items[gallery[j]][1] == q[1] else WRONG for j in kept[:topk]], len(kept)


def check_ranklist_png(path, evaluator, distmat, query, gallery, layout):
    position = int(os.path.basename(path)[len("query_"):-len(".png")])
    colours, kept = expected_colours(evaluator, distmat, position, query, gallery, layout.topk)
    with Image.open(path) as image:
        assert image.size == layout.size
        drawn = [frame_colour(image, layout, slot) for slot in range(1, layout.topk + 1)]
    assert drawn == colours + [WHITE] * (layout.topk - len(colours))  # empty slots stay white
    return kept


def test_evaluator_ranklists_follow_the_sysu_protocol(tiny_sysu, cfg, tmp_path):
    cfg.merge_from_list(["DATASETS.ROOT", str(tiny_sysu), "OUTPUT_DIR", str(tmp_path), "DATASETS.SYSU.NUM_TRIALS", "2",
                         "TEST.RANKLIST.ENABLED", "True", "TEST.RANKLIST.NUM_QUERIES", "100",
                         "TEST.RANKLIST.TRIAL", "1", "TEST.RANKLIST.SIZE", "[32,16]"])
    _, ev = build_vireid_evaluator(cfg, "SYSUMM01")
    dataset_gallery = ev.runs["indoor"][1][1]
    assert [ev.items[g][2] for g in dataset_gallery] and {ev.items[g][2] for g in dataset_gallery} <= {1, 2}
    feats = torch.randn(len(ev.items), 8, generator=torch.Generator().manual_seed(0))
    ev.process({"index": torch.arange(len(ev.items))}, feats)
    ev.evaluate()
    normed = torch.nn.functional.normalize(feats, dim=1)
    layout = RankListLayout(height=32, width=16, topk=10)
    shortened = 0
    for mode in ("all", "indoor"):
        query, gallery = ev.runs[mode][1]  # TEST.RANKLIST.TRIAL 1: the second official draw
        distmat = -(normed[query] @ normed[gallery].T).numpy()
        folder = tmp_path / "ranklists" / "SYSUMM01" / mode  # outside a training run: no iter_ folder
        pngs = sorted(folder.glob("query_*.png"))
        assert len(pngs) == len(query)  # NUM_QUERIES 100 > number of queries: every query is drawn
        for png in pngs:
            kept = check_ranklist_png(str(png), ev, distmat, query, gallery, layout)
            shortened += kept < len(gallery)
        with Image.open(folder / "contact_sheet.png") as sheet:
            assert sheet.size == (layout.size[0] + 12, len(query) * (layout.size[1] + 6) + 6)
    assert shortened > 0  # camera-3 queries met camera-2 gallery images, which were not drawn
    cfg.TEST.RANKLIST.TRIAL = 2
    with pytest.raises(ValueError, match="TEST.RANKLIST.TRIAL=2.*2 trial"):
        build_vireid_evaluator(cfg, "SYSUMM01")


def test_visualize_ranklist_cli(tiny_sysu, tiny_checkpoint, tmp_path):
    out = tmp_path / "rl"
    opts = ["DATASETS.ROOT", str(tiny_sysu), *TINY_OPTS, "MODEL.WEIGHTS", tiny_checkpoint]
    config = os.path.join(ROOT, "configs/Synthetic/agw_supervised.yml")
    files = load_tool("visualize_ranklist").main(["--config-file", config, "--mode", "all", "--trial", "1",
                                                  "--queries", "0", "5", "--topk", "6", "--size", "48", "24",
                                                  "--out", str(out), *opts])
    assert sorted(os.path.basename(f) for f in files) == ["contact_sheet.png", "query_00000.png", "query_00005.png"]
    # independent ranking: the checkpoint's model, the evaluator's trial-1 all-search run, brute-force SYSU rules
    cfg = setup_cfg(config, opts)
    _, ev = build_vireid_evaluator(cfg, "SYSUMM01")
    model = build_inference_model(cfg)
    feats = extract_features(model, build_vireid_test_loader(cfg, ev.items), flip=True)
    query, gallery = ev.runs["all"][1]
    distmat = -(feats[query] @ feats[gallery].T).numpy()
    layout = RankListLayout(height=48, width=24, topk=6)
    for name in ("query_00000.png", "query_00005.png"):
        check_ranklist_png(str(out / name), ev, distmat, query, gallery, layout)
    with pytest.raises(ValueError, match="--mode: SYSUMM01 has the search modes"):
        load_tool("visualize_ranklist").main(["--config-file", config, "--mode", "v2t", "--out", str(out), *opts])


# ------------------------------------------------------------------------------------------------ embeddings
def test_plot_embeddings_panels_colours_and_markers():
    rng = np.random.default_rng(0)
    points = [rng.normal(size=(6, 2)), rng.normal(size=(6, 2))]
    pids, modalities = np.array([3, 3, 5, 5, 8, 8]), np.array([0, 1, 0, 1, 1, 1])
    fig = plot_embeddings([("before", points[0], pids, modalities), ("after", points[1], pids, modalities)])
    assert [ax.get_title() for ax in fig.axes] == ["before", "after"]
    colours = identity_colours(pids)
    assert len({tuple(c) for c in colours}) == 3 and (colours[0] == colours[1]).all()
    for ax, pts in zip(fig.axes, points):
        assert len(ax.collections) == 2  # visible then infrared
        for coll, modality in zip(ax.collections, (VISIBLE, INFRARED)):
            mask = modalities == modality
            np.testing.assert_allclose(coll.get_offsets(), pts[mask])
            np.testing.assert_allclose(coll.get_facecolors(), colours[mask])
            marker = MarkerStyle(MARKERS[modality])
            np.testing.assert_allclose(coll.get_paths()[0].vertices,
                                       marker.get_path().transformed(marker.get_transform()).vertices)
    assert MARKERS[VISIBLE] != MARKERS[INFRARED]


def test_tsne_is_seeded():
    feats = np.random.default_rng(1).normal(size=(30, 8))
    np.testing.assert_array_equal(tsne_2d(feats, seed=2), tsne_2d(feats, seed=2))
    assert tsne_2d(feats, seed=2).shape == (30, 2)
    with pytest.raises(ValueError, match="NaN"):
        tsne_2d(np.full((5, 3), np.nan))


def test_plot_embeddings_cli_before_and_after(tiny_sysu, tiny_checkpoint, tmp_path):
    out = tmp_path / "emb.png"
    tool = load_tool("plot_embeddings")
    tool.main(["--config-file", os.path.join(ROOT, "configs/Synthetic/agw_supervised.yml"), "--weights", "",
               tiny_checkpoint, "--labels", "untrained", "trained", "--split", "test", "--num-ids", "3",
               "--out", str(out), "DATASETS.ROOT", str(tiny_sysu), *TINY_OPTS])
    with Image.open(out) as image:
        assert image.size == (1200, 600)  # two 6 x 6 inch panels at 100 dpi
    items = [(f"p{i}", pid, 0, m) for i, (pid, m) in enumerate([(1, 0), (1, 1), (2, 0), (3, 1), (4, 0), (4, 1)])]
    assert [it[1] for it in tool.draw_identities(items, 0, 0)] == [1, 1, 4, 4]  # ids seen in both modalities



def test_plot_embeddings_first_checkpoint_of_another_model(tiny_sysu, tmp_path):
    """A source pre-training's checkpoint (TokenClassifierHead: its classifier sized from the checkpoint) beside the
    unsupervised model: refused under the unsupervised config (naming the extra key), drawn with its own config."""
    from fastreid.modeling import build_model

    tiny_vit = ["MODEL.BACKBONE.FEAT_DIM", "32", "MODEL.BACKBONE.VIT.EMBED_DIM", "32", "MODEL.BACKBONE.VIT.DEPTH",
                "2", "MODEL.BACKBONE.VIT.NUM_HEADS", "2", "DATASETS.ROOT", str(tiny_sysu), *TINY_OPTS]
    source_cfg = setup_cfg(os.path.join(ROOT, "configs/Synthetic/source_pretrain_vit.yml"),
                           tiny_vit + ["MODEL.HEADS.NUM_CLASSES", "7"])
    source = tmp_path / "source.pth"
    torch.save({"model": build_model(source_cfg).state_dict()}, source)
    argv = ["--config-file", os.path.join(ROOT, "configs/Synthetic/ca_vit.yml"), "--weights", str(source), "",
            "--num-ids", "3", "--out", str(tmp_path / "emb.png"), *tiny_vit]
    tool = load_tool("plot_embeddings")
    with pytest.raises(ValueError, match="heads.classifier.weight"):
        tool.main(argv)
    tool.main(["--first-config-file", os.path.join(ROOT, "configs/Synthetic/source_pretrain_vit.yml"), *argv])
    with Image.open(tmp_path / "emb.png") as image:
        assert image.size == (1200, 600)

# ------------------------------------------------------------------------------------------------ pseudo-labels
HISTORY = [
    {"epoch": 1, "visible": {"num_clusters": 12, "outlier_ratio": 0.25, "nmi": 0.8, "ari": 0.5},
     "infrared": {"num_clusters": 9, "outlier_ratio": 0.4, "nmi": 0.7, "ari": 0.3},
     "association": {"visible->infrared": 0.1, "infrared->visible": 0.05}},
    {"epoch": 0, "visible": {"num_clusters": 10, "outlier_ratio": 0.3, "nmi": 0.75, "ari": 0.45},
     "infrared": {"num_clusters": 8, "outlier_ratio": 0.5, "nmi": 0.6, "ari": 0.2}},
    {"epoch": 2, "visible": {"num_clusters": 14, "outlier_ratio": 0.2, "nmi": 0.85, "ari": 0.6},
     "infrared": {"num_clusters": 11, "outlier_ratio": 0.35, "nmi": 0.72, "ari": 0.33},
     "association": {"visible->infrared": 0.2, "infrared->visible": 0.08}},
]


def lines_of(ax):
    return {line.get_label(): (list(line.get_xdata()), list(line.get_ydata())) for line in ax.get_lines()}


def test_pseudo_label_curves(tmp_path):
    run = tmp_path / "run"
    (run / "pseudo_labels").mkdir(parents=True)
    (run / "pseudo_labels" / "history.json").write_text(json.dumps(HISTORY))
    out = load_tool("plot_pseudo_labels").main([str(run)])
    assert out == str(run / "pseudo_labels" / "curves.png")
    with Image.open(out) as image:
        assert image.size == (4 * 500, 350)
    history = load_history(str(run / "pseudo_labels" / "history.json"))
    assert [r["epoch"] for r in history] == [0, 1, 2]
    fig = plot_history(history)
    assert [ax.get_title() for ax in fig.axes] == ["clusters", "outlier ratio", "NMI / ARI", "association accuracy"]
    assert lines_of(fig.axes[0]) == {"visible": ([0, 1, 2], [10, 12, 14]), "infrared": ([0, 1, 2], [8, 9, 11])}
    assert lines_of(fig.axes[1])["infrared"] == ([0, 1, 2], [0.5, 0.4, 0.35])
    assert lines_of(fig.axes[2])["visible ari"] == ([0, 1, 2], [0.45, 0.5, 0.6])
    assert set(lines_of(fig.axes[2])) == {"visible nmi", "visible ari", "infrared nmi", "infrared ari"}
    assert lines_of(fig.axes[3]) == {"visible->infrared": ([1, 2], [0.1, 0.2]),
                                     "infrared->visible": ([1, 2], [0.05, 0.08])}
    # without NMI/ARI and association: two panels
    bare = [{"epoch": r["epoch"], **{m: {k: r[m][k] for k in ("num_clusters", "outlier_ratio")}
                                     for m in ("visible", "infrared")}} for r in HISTORY]
    assert [ax.get_title() for ax in plot_history(bare).axes] == ["clusters", "outlier ratio"]


@pytest.mark.parametrize("content, message", [
    ("[]", "non-empty JSON list"),
    ("{", "not valid JSON"),
    (json.dumps([{"epoch": 0, "visible": {"num_clusters": 3, "outlier_ratio": 0.1}}]), "record 0 .*'infrared'"),
    (json.dumps([{"epoch": 0, "visible": {"num_clusters": 3}, "infrared": {}}]), "'visible' has no 'outlier_ratio'"),
    (json.dumps([{"epoch": 0, "visible": {"num_clusters": 3, "outlier_ratio": 0.1, "nmi": "x"},
                  "infrared": {"num_clusters": 3, "outlier_ratio": 0.1}}]), "visible.nmi must be a finite number"),
    (json.dumps([HISTORY[0], HISTORY[0]]), r"epochs \[1\] appear twice"),
])
def test_pseudo_label_history_errors_name_the_file(tmp_path, content, message):
    path = tmp_path / "history.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=message) as info:
        load_history(str(path))
    assert str(path) in str(info.value)
    with pytest.raises(FileNotFoundError, match="history.json"):
        load_history(str(tmp_path / "missing" / "history.json"))
