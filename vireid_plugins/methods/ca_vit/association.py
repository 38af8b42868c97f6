"""Phase 2 of the CA multi-module framework (Sun, Du, Gao, §3.3-3.5): the association hook that, before every epoch
from ``CA_VIT.PHASE2_START_EPOCH`` on, matches the two modalities' clusters (VRA), finds the partner cluster of each
split identity (UM) and the neighbour sets of every image (VRNL).

:class:`CAViTAssociation`

1. takes the L2-normalised image-level features the criterion keeps of every training item (the features the
   epoch's pseudo-labels were just computed from; extracted again only when it has none, e.g. after a resume);
2. on the main process (:func:`ca_vit_links`):

   * VRA (with VRA or UM on): per-token centroids of each modality's clusters (the clusters of the concatenated
     feature, so no per-token clustering is needed), their similarity ``S_ij = sum_n <c^v_{i,n}, c^r_{j,n}>``
     (§3.3), the greedy matching with at most ``mu`` matches per cluster, the cross labels
     ``y~^v = r2i[y^v]``, ``y~^r = i2r[y^r][0]``;
   * UM: each cluster's partner for this epoch's parity (:func:`~vireid_plugins.association.merge_partners`);
   * VRNL: the neighbour sets vv, rr, vr, rv combined over the token spaces (§3.4; with
     ``VRNL.CROSS_PAIRS "alternate"`` vr in even and rv in odd epochs only, as TokenMatcher), then CALR's camera
     filter with intra-camera clusters from a Jaccard + DBSCAN clustering of each camera's features;

3. broadcasts the result and installs the epoch's targets (:func:`with_ca_vit_targets`) through
   ``trainer.set_targets(targets, features)``, so the criterion rebuilds its memories (shared ones included) from
   the features the clusters were made of (TokenMatcher re-clusters every epoch; with ``PSEUDO.PERIOD > 1`` the
   memories are thus rebuilt every phase-2 epoch from the last clustering's features);
4. logs matching and neighbour statistics under ``"ca_vit"`` (the base class logs the association accuracy).

The targets keep the pseudo-label hook's per-modality spaces as the branches (the train set is drawn per modality
from its own clusters, as TokenMatcher) and add, when the clusters were matched, two label spaces that are not
branches: ``"visible_shared"`` (the visible clusters, labelling the visible images by their cluster and the infrared
images by their cross label ``y~^r``: the classes of ``phi^vs``) and ``"infrared_shared"`` (the mirror, ``phi^rs``).

``TrainTargets.extras`` keys (whatever phase-2 modules are on):

* :data:`VRA_MATCHING`: the :class:`~vireid_plugins.association.VRAMatching` of the visible and infrared clusters;
* :data:`UM_PARTNERS`: ``{"visible": (K_v,), "infrared": (K_r,)}`` partner cluster of each cluster, ``-1`` none;
* :data:`VRNL_NEIGHBOURS`: ``{"vv" | "rr" | "vr" | "rv": NeighbourSets}``, pair ``ab`` with one row per item of
  modality ``a`` and one column per item of modality ``b``, each in item order within its modality (CSR).
"""
import logging
from dataclasses import dataclass, field
from typing import Dict, Optional

import torch
from fastreid.utils import comm

from ...association import (
    NeighbourSets,
    VRAMatching,
    camera_filter,
    cluster_features,
    cluster_similarity,
    cross_labels,
    greedy_match,
    merge_partners,
    token_centroids,
    token_neighbours,
)
from ...data.datasets.bases import INFRARED, MODALITY_NAMES, VISIBLE
from ...data.targets import LabelSpace, TrainTargets, other_modality
from ...engine import ASSOCIATION_HOOK_REGISTRY, AssociationHook, broadcast_from_main, extract_item_features, unwrap
from ...modeling.features import image_features

__all__ = ["CAViTAssociation", "CAViTLinks", "SHARED_SPACES", "UM_PARTNERS", "VRA_MATCHING", "VRNL_NEIGHBOURS",
           "ca_vit_links", "intra_camera_clusters", "vrnl_neighbour_sets", "with_ca_vit_targets"]

logger = logging.getLogger("fastreid.vireid.ca_vit")

VRA_MATCHING = "vra_matching"
UM_PARTNERS = "um_partners"
VRNL_NEIGHBOURS = "vrnl_neighbours"
SHARED_SPACES = {VISIBLE: "visible_shared", INFRARED: "infrared_shared"}  # classes of phi^vs, phi^rs
PAIRS = {"vv": (VISIBLE, VISIBLE), "rr": (INFRARED, INFRARED), "vr": (VISIBLE, INFRARED), "rv": (INFRARED, VISIBLE)}


@dataclass
class CAViTLinks:
    """What :func:`ca_vit_links` computes for one epoch (``None`` for a module that is off).

    Attributes:
        matching: the VRA matching.
        cross: ``{modality: (N_m,)}`` cross labels of the modality's items (in the other modality's clusters).
        partners: ``{"visible": (K_v,), "infrared": (K_r,)}`` UM partners.
        neighbours: ``{pair: NeighbourSets}`` VRNL sets.
        stats: numbers for the label history.
    """

    matching: Optional[VRAMatching] = None
    cross: Optional[Dict[int, torch.Tensor]] = None
    partners: Optional[Dict[str, torch.Tensor]] = None
    neighbours: Optional[Dict[str, NeighbourSets]] = None
    stats: Dict[str, float] = field(default_factory=dict)


def intra_camera_clusters(features: torch.Tensor, cameras: torch.Tensor, eps: float, min_samples: int = 4,
                          k1: int = 30, k2: int = 6, chunk_size: int = 4096) -> torch.Tensor:
    """Cluster every camera's images on their own (k-reciprocal Jaccard + DBSCAN, outliers ``-1``).

    Args:
        features: ``(N, d)`` L2-normalised features; cameras: ``(N,)`` camera ids.

    Returns:
        ``(N,)`` int64 labels, only comparable between images of one camera.
    """
    labels = torch.full((features.shape[0],), -1, dtype=torch.long)
    for cam in torch.unique(cameras).tolist():
        index = torch.nonzero(cameras == cam, as_tuple=True)[0]
        labels[index] = cluster_features(features[index.to(features.device)], eps=eps, min_samples=min_samples,
                                         k1=k1, k2=k2, outliers="drop", chunk_size=chunk_size)
    return labels


def vrnl_neighbour_sets(cfg, tokens: torch.Tensor, targets: TrainTargets, epoch: int) -> Dict[str, NeighbourSets]:
    """VRNL's neighbour sets of this epoch (§3.4).

    Args:
        cfg: the config (``CA_VIT.VRNL``, ``PSEUDO.CHUNK_SIZE``).
        tokens: ``(N, T, D)`` per-token features of ``targets.items`` (normalised per token here).
        targets: the epoch's targets (items: modalities and cameras).
        epoch: its parity picks the cross pair with ``CROSS_PAIRS "alternate"``.

    Returns:
        ``{pair: NeighbourSets}`` for vv, rr and the cross pairs of this epoch.
    """
    v = cfg.CA_VIT.VRNL
    pairs = ["vv", "rr"]
    if v.CROSS_PAIRS == "both":
        pairs += ["vr", "rv"]
    else:
        pairs.append("vr" if epoch % 2 == 0 else "rv")
    masks = {m: targets.mask(m) for m in MODALITY_NAMES}
    cameras = torch.tensor([int(it[2]) for it in targets.items], dtype=torch.long)
    camera_labels = None
    if v.CAMERA_FILTER.ENABLED:
        c = v.CAMERA_FILTER
        camera_labels = intra_camera_clusters(image_features(tokens), cameras, c.EPS, c.MIN_SAMPLES, c.K1, c.K2,
                                              cfg.PSEUDO.CHUNK_SIZE)
    out = {}
    for pair in pairs:
        a, b = PAIRS[pair]
        sets = token_neighbours(tokens[masks[a].to(tokens.device)], tokens[masks[b].to(tokens.device)], rho=v.RHO,
                                min_spaces=v.MIN_SPACES or None, k=v.TOPK, chunk_size=cfg.PSEUDO.CHUNK_SIZE)
        sets = NeighbourSets(sets.indptr.cpu(), sets.indices.cpu(), sets.num_columns, sets.truncated_rows)
        if camera_labels is not None:
            sets = camera_filter(sets, cameras[masks[a]], cameras[masks[b]], camera_labels[masks[a]],
                                 camera_labels[masks[b]], same_set=a == b)
        out[pair] = sets
    return out


def ca_vit_links(cfg, features: torch.Tensor, targets: TrainTargets, epoch: int) -> CAViTLinks:
    """VRA matching, cross labels, UM partners and VRNL neighbour sets of one epoch (module docstring).

    Args:
        cfg: the config (``CA_VIT.*``).
        features: ``(N, T, D)`` per-token (or ``(N, D)``) features of ``targets.items``.
        targets: the pseudo-label hook's per-modality label spaces ``"visible"`` and ``"infrared"``.
        epoch: the epoch (UM's partner direction, VRNL's alternation).
    """
    c = cfg.CA_VIT
    tokens = features if features.dim() == 3 else features[:, None]
    links = CAViTLinks()
    if c.VRA.ENABLED or c.UM.ENABLED:
        own = {m: targets.own_labels(name) for m, name in MODALITY_NAMES.items()}
        sizes = {m: targets.spaces[name].num_classes for m, name in MODALITY_NAMES.items()}
        centroids = {m: token_centroids(tokens[targets.mask(m).to(tokens.device)], own[m].to(tokens.device),
                                        sizes[m]) for m in MODALITY_NAMES}
        links.matching = greedy_match(cluster_similarity(centroids[VISIBLE], centroids[INFRARED]), c.VRA.MU)
        cross_v, cross_r = cross_labels(links.matching, own[VISIBLE], own[INFRARED])
        links.cross = {VISIBLE: cross_v.cpu(), INFRARED: cross_r.cpu()}
        lists = {"visible": links.matching.vis_to_ir, "infrared": links.matching.ir_to_vis}
        links.stats.update({f"linked/{n}": float((t[:, 0] >= 0).float().mean()) for n, t in lists.items()})
        links.stats["pass2_links"] = float((links.matching.link_pass == 2).sum())
        if c.UM.ENABLED:
            partner_v, partner_r = merge_partners(links.matching, epoch, c.UM.WRAP)
            links.partners = {"visible": partner_v, "infrared": partner_r}
            links.stats.update({f"um_partnered/{n}": float((p >= 0).float().mean())
                                for n, p in links.partners.items()})
    if c.VRNL.ENABLED:
        links.neighbours = vrnl_neighbour_sets(cfg, tokens, targets, epoch)
        for pair, sets in links.neighbours.items():
            links.stats[f"neighbours/{pair}"] = float(sets.counts().float().mean()) if sets.num_rows else 0.0
            links.stats[f"truncated/{pair}"] = float(sets.truncated_rows)
    return links


def with_ca_vit_targets(targets: TrainTargets, links: CAViTLinks, epoch: int) -> TrainTargets:
    """The epoch's targets: the same branches, plus the shared label spaces and the extras (module docstring)."""
    spaces, extras = dict(targets.spaces), dict(targets.extras)
    if links.matching is not None:
        for m, name in MODALITY_NAMES.items():
            other = other_modality(m)
            own = targets.spaces[name]
            labels = own.labels.clone()
            labels[targets.mask(other)] = links.cross[other]
            spaces[SHARED_SPACES[m]] = LabelSpace(labels, own.num_classes, m)
        extras[VRA_MATCHING] = links.matching
    if links.partners is not None:
        extras[UM_PARTNERS] = links.partners
    if links.neighbours is not None:
        extras[VRNL_NEIGHBOURS] = links.neighbours
    return targets.replace(spaces=spaces, extras=extras, epoch=epoch)


@ASSOCIATION_HOOK_REGISTRY.register()
class CAViTAssociation(AssociationHook):
    def active(self, epoch: int) -> bool:
        c = self.cfg.CA_VIT
        return epoch >= c.PHASE2_START_EPOCH and (c.VRA.ENABLED or c.VRNL.ENABLED or c.UM.ENABLED)

    def _features(self, targets: TrainTargets) -> torch.Tensor:
        """``(N, T*D)`` normalised image-level features of the items: the criterion's, else extracted now."""
        feats = unwrap(self.trainer.model).criterion.item_features()
        if feats is None or feats.shape[0] != len(targets.items):
            logger.info("CA-ViT association: the criterion holds no item features (resumed run); extracting them")
            feats = image_features(extract_item_features(self.cfg, self.trainer.model, targets.items))
        return feats

    def associate(self, targets: TrainTargets) -> TrainTargets:
        epoch = self.trainer.epoch
        feats = self._features(targets)
        tokens = feats.view(feats.shape[0], max(1, self.cfg.MODEL.BACKBONE.NUM_TOKENS), -1)
        links = ca_vit_links(self.cfg, tokens, targets, epoch) if comm.is_main_process() else None
        links = broadcast_from_main(links)
        new = with_ca_vit_targets(targets, links, epoch)
        self.trainer.set_targets(new, feats)  # the criterion rebuilds its memories on the new label spaces
        if comm.is_main_process() and links.stats:
            self.trainer.label_history.log(epoch, "ca_vit", links.stats, self.trainer.storage)
            logger.info(f"CA-ViT links at epoch {epoch}: " + ", ".join(f"{k} {v:.4g}" for k, v in links.stats.items()))
        return new
