#!/usr/bin/env python
"""Cross-modality association accuracy of transport with balanced, size-aware and KL-relaxed class marginals,
against nearest-centroid labels (the floor to beat), on a model's features of a training set.

    python tools/compare_marginals.py --config-file configs/Synthetic/usl_baseline.yml \
        [--reg-m 0.1 1 10] [--temperature 0.05] [KEY VALUE ...]   # e.g. MODEL.WEIGHTS path/to/model.pth

Every training image is extracted (flip-averaged, L2-normalised), each modality clustered as the pseudo-label hook
does (``PSEUDO.*``), and the images of each modality are assigned to the other modality's clusters:

* ``nearest centroid``: ``argmax_k f . c_k`` (cosine to the L2-normalised cluster means);
* ``uniform``, ``cluster_size``, ``relaxed (reg_m)``: DOTLA's transport (Eq. 3) of the predictions
  ``softmax(f . c / T)`` onto the classes (:func:`vireid_plugins.association.dual_optimal_transport_labels`,
  ``lam = DOTLA.LAMBDA``) with the class marginal uniform (the paper), proportional to the cluster sizes, or uniform
  but KL-relaxed with weight ``reg_m`` (POT's ``sinkhorn_unbalanced``).

The association accuracy of a direction is the fraction of images whose label is the other modality's cluster
holding most of their identity (:func:`vireid_plugins.association.cross_modality_association_accuracy`; true
identities are read for this diagnostic only). One table, also written to ``--out`` as JSON.
"""
import argparse
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F
from tabulate import tabulate

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import vireid_plugins  # noqa: E402,F401
from vireid_plugins.association import (  # noqa: E402
    cluster_features,
    cross_modality_association_accuracy,
    dual_optimal_transport_labels,
)
from vireid_plugins.data import INFRARED, VISIBLE, train_items  # noqa: E402
from vireid_plugins.deployment.inference import build_inference_model, setup_cfg  # noqa: E402
from vireid_plugins.engine import atomic_write_json, extract_item_features  # noqa: E402
from vireid_plugins.modeling.features import image_features  # noqa: E402
from vireid_plugins.modeling.losses import ClusterMemory  # noqa: E402


def assignments(feats, labels, temperature, lam, reg_ms):
    """``{method: {VISIBLE: labels of the visible images in the infrared clusters, INFRARED: the mirror}}``."""
    centroids = {m: ClusterMemory.cluster_centroids(feats[m], labels[m]) for m in (VISIBLE, INFRARED)}
    other = {VISIBLE: INFRARED, INFRARED: VISIBLE}
    logp = {m: F.log_softmax(feats[m] @ centroids[other[m]].T / temperature, dim=1) for m in (VISIBLE, INFRARED)}
    sizes = {m: torch.bincount(labels[m][labels[m] >= 0]).float() for m in (VISIBLE, INFRARED)}
    out = {"nearest centroid": {m: logp[m].argmax(1) for m in (VISIBLE, INFRARED)}}
    settings = [("uniform", "uniform", None), ("cluster_size", "cluster_size", None)]
    settings += [(f"relaxed (reg_m {r:g})", "relaxed", r) for r in reg_ms]
    for name, marginals, reg_m in settings:
        result = dual_optimal_transport_labels(logp[INFRARED], logp[VISIBLE], lam=lam, marginals=marginals,
                                               cluster_sizes_vis=sizes[VISIBLE], cluster_sizes_ir=sizes[INFRARED],
                                               reg_m=reg_m, log_input=True, tol=1e-4, max_iter=2000)
        out[name] = {INFRARED: result.ir_to_vis_labels, VISIBLE: result.vis_to_ir_labels}
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", required=True)
    parser.add_argument("--reg-m", type=float, nargs="+", default=[0.1, 1.0, 10.0])
    parser.add_argument("--temperature", type=float, default=0.05, help="of the centroid predictions")
    parser.add_argument("--out", default=None, help="JSON file of the table (default: OUTPUT_DIR/marginals.json)")
    parser.add_argument("opts", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    cfg = setup_cfg(args.config_file, [o for o in args.opts if o != "--"])
    torch.manual_seed(max(cfg.SEED, 0))
    model = build_inference_model(cfg, cfg.MODEL.WEIGHTS)
    items = train_items(cfg)
    modality = np.asarray([it[3] for it in items])
    pids = np.asarray([it[1] for it in items])
    feats_all = image_features(extract_item_features(cfg, model, items))
    p = cfg.PSEUDO
    feats, labels, truth = {}, {}, {}
    for m in (VISIBLE, INFRARED):
        mask = modality == m
        feats[m], truth[m] = feats_all[torch.from_numpy(mask)], pids[mask]
        labels[m] = cluster_features(feats[m], eps=p.EPS[m], min_samples=p.MIN_SAMPLES, k1=p.K1, k2=p.K2)
    rows, table = [], {}
    for name, assigned in assignments(feats, labels, args.temperature, cfg.DOTLA.LAMBDA, args.reg_m).items():
        acc = {f"{src}->{dst}": cross_modality_association_accuracy(assigned[m].numpy(), truth[m],
                                                                     labels[o].numpy(), truth[o])
               for m, o, src, dst in ((VISIBLE, INFRARED, "visible", "infrared"),
                                      (INFRARED, VISIBLE, "infrared", "visible"))}
        table[name] = acc
        rows.append([name] + [f"{100 * v:.2f}" for v in acc.values()])
    print(f"clusters: visible {int(labels[VISIBLE].max()) + 1}, infrared {int(labels[INFRARED].max()) + 1}")
    print(tabulate(rows, headers=["assignment", "visible->infrared (%)", "infrared->visible (%)"], tablefmt="pipe"))
    atomic_write_json(args.out or os.path.join(cfg.OUTPUT_DIR, "marginals.json"), table)
    return table


if __name__ == "__main__":
    main()
