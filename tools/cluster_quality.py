#!/usr/bin/env python
"""How well a model's features cluster, per modality: the training images of ``DATASETS.NAMES`` clustered
exactly as the unsupervised methods do (``association.cluster_features``: k-reciprocal Jaccard + DBSCAN with
the ``PSEUDO.*`` keys) and scored against the true identities (``association.pseudo_label_metrics``).

    python tools/cluster_quality.py --config-file configs/Synthetic/usl_baseline.yml \
        --eps 0.3,0.4,0.5,0.6 MODEL.WEIGHTS logs/synthetic/source_pretrain/model_final.pth [KEY VALUE ...]

``--eps`` sweeps DBSCAN's eps (the same value for both modalities); without it ``PSEUDO.EPS`` is used. Features
are flip-averaged (``PSEUDO.FLIP``) and L2-normalised, as the pseudo-label hook computes them. The weights must
hold every backbone and BN-neck tensor of the model (a classifier or memory in the checkpoint is ignored).
"""
import argparse
import os
import sys
import time

import numpy as np
import torch
from tabulate import tabulate

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import vireid_plugins  # noqa: E402  (compat shims + registration, before any fastreid import)
from vireid_plugins.association import cluster_features, pseudo_label_metrics  # noqa: E402
from vireid_plugins.data.build import build_vireid_test_loader, train_items  # noqa: E402
from vireid_plugins.data.datasets.bases import MODALITY_NAMES  # noqa: E402
from vireid_plugins.evaluation import extract_features  # noqa: E402

FEATURE_PREFIXES = ("backbone.", "heads.bottleneck.")  # what the test-time feature depends on


def setup(config_file: str, opts):
    from fastreid.config import get_cfg

    cfg = get_cfg()
    vireid_plugins.add_vireid_config(cfg)
    cfg.merge_from_file(config_file)
    cfg.merge_from_list(opts)
    cfg.MODEL.BACKBONE.PRETRAIN = False  # the weights come from MODEL.WEIGHTS
    cfg.DATASETS.PSEUDO_INFRARED = False  # cluster the real infrared images (a source config may set it)
    cfg.freeze()
    return cfg


def load_feature_weights(model: torch.nn.Module, path: str) -> None:
    """Load ``path`` (a fast-reid checkpoint or a plain state dict); raise if a feature tensor is missing."""
    if not path:
        raise SystemExit("cluster_quality: give the model to measure with MODEL.WEIGHTS path/to/model.pth")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"cluster_quality: MODEL.WEIGHTS file not found: '{path}'")
    state = torch.load(path, map_location="cpu", weights_only=False)
    state = state.get("model", state)
    own = model.state_dict()
    shared = {k: v for k, v in state.items() if k in own and tuple(v.shape) == tuple(own[k].shape)}
    missing = [k for k in own if k.startswith(FEATURE_PREFIXES) and k not in shared]
    if missing:
        raise ValueError(f"cluster_quality: '{path}' lacks {len(missing)} feature tensors of the model (or has "
                         f"other shapes), e.g. {missing[:5]}; is it a checkpoint of MODEL.BACKBONE.DEPTH "
                         f"{model.backbone.depth if hasattr(model.backbone, 'depth') else '?'}?")
    model.load_state_dict(shared, strict=False)


def modality_features(cfg, model, items):
    """``{modality: ((N_m, D) features, (N_m,) pids)}`` of the training items."""
    out = {}
    for m, name in MODALITY_NAMES.items():
        subset = [it for it in items if it[3] == m]
        if not subset:
            raise ValueError(f"cluster_quality: the training set of {cfg.DATASETS.NAMES} has no {name} images")
        feats = extract_features(model, build_vireid_test_loader(cfg, subset), flip=cfg.PSEUDO.FLIP)
        out[m] = (feats, np.asarray([it[1] for it in subset]))
    return out


def cluster_table(cfg, features, eps_values=None):
    """Rows ``[modality, eps, num_clusters, outlier_ratio, precision, recall, f_score, nmi, ari]``."""
    p, rows = cfg.PSEUDO, []
    for m, name in MODALITY_NAMES.items():
        feats, pids = features[m]
        for eps in eps_values or [p.EPS[m]]:
            labels = cluster_features(feats, eps=eps, min_samples=p.MIN_SAMPLES, k1=p.K1, k2=p.K2,
                                      outliers="drop", chunk_size=p.CHUNK_SIZE)
            stats = pseudo_label_metrics(labels.numpy(), pids)
            rows.append([name, eps, len(np.unique(pids)), len(pids)] + list(stats.values()))
    return rows


HEADERS = ["modality", "eps", "ids", "images", "clusters", "outliers", "precision", "recall", "F", "NMI", "ARI"]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", required=True)
    parser.add_argument("--eps", type=lambda text: [float(v) for v in text.split(",")],
                        help="comma-separated DBSCAN eps values to sweep, e.g. 0.3,0.4,0.5 (default: PSEUDO.EPS)")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    args = parser.parse_args(argv)
    cfg = setup(args.config_file, args.opts)
    from vireid_plugins.engine import VIReIDTrainer

    start = time.perf_counter()
    model = VIReIDTrainer.build_model(cfg)
    load_feature_weights(model, cfg.MODEL.WEIGHTS)
    model.eval()
    features = modality_features(cfg, model, train_items(cfg))
    rows = cluster_table(cfg, features, args.eps)
    print(f"Clusters of {cfg.MODEL.WEIGHTS} features on the training set of {cfg.DATASETS.NAMES} "
          f"({cfg.DATASETS.ROOT}); k1={cfg.PSEUDO.K1}, k2={cfg.PSEUDO.K2}, min_samples={cfg.PSEUDO.MIN_SAMPLES}:")
    print(tabulate(rows, headers=HEADERS, tablefmt="pipe", floatfmt=".4f"))
    print(f"seconds: {time.perf_counter() - start:.1f}")
    return rows


if __name__ == "__main__":
    main()
