"""The CA multi-module framework's training criterion (Sun, Du, Gao, §3.1-3.5; total loss Eq. 45).

Queries ``q`` are the image-level features of the batch (the concatenation of the ``T`` per-token BN-neck features,
each L2-normalised, then normalised: the feature the model is tested on); ``f_v``, ``f_r`` are the visible and
infrared images, ``f_c`` the channel-augmented (CA) view of each visible image, a third modality that keeps its
image's pseudo-label ``y^v``. Every memory is a :class:`~vireid_plugins.modeling.losses.ClusterMemory` (temperature
``tau``), updated by the queries it scores (one update per memory and step, in the order of the terms below).

Phase 1 (before ``CA_VIT.PHASE2_START_EPOCH``), per batch:

* baseline (§3.1): ``loss_base_visible = CE(M^v f_v, y^v)``, ``loss_base_ca = CE(M^v f_c, y^v)`` (or ``M^c`` with
  ``BASE.CA_MEMORY``), ``loss_base_infrared = CE(M^r f_r, y^r)``; ``M^v``, ``M^r`` are the centroids of each
  modality's clusters, momentum ``MEMORY.MOMENTUM``;
* PA-CBAM (§3.2, weight ``lambda = MODEL.BACKBONE.PA_CBAM.REG_WEIGHT``): the identity-guided regulariser ``R`` of
  this forward's channel attention, within each modality's pseudo-labels (``loss_pacbam_visible`` over the visible
  images and their CA views, ``loss_pacbam_infrared``);
* MAAL (§3.3, Eq. 17), with the modality classifier ``E`` (a submodule, trained by the optimizer):
  ``loss_maal_d = L_D`` on detached features (trains ``E`` only, weight ``alpha``) and ``loss_maal_a = L_A``
  through frozen ``E`` (trains the network only, weight ``beta``); classes visible 0, infrared 1, CA 2.

Phase 2 adds, from the association hook's extras (:mod:`.association`):

* VRA (§3.3, weight ``alpha_1``): the shared memories ``phi^vs`` (visible clusters, from the visible images and
  the infrared images with their cross label ``y~^r``) and ``phi^rs`` (the mirror), momentum
  ``MEMORY.SHARED_MOMENTUM``; they replace ``M^v``, ``M^r`` in the baseline terms (TokenMatcher) and give
  ``loss_vra_visible = CE(phi^rs [f_v; f_c], y~^v)`` and ``loss_vra_infrared = CE(phi^vs f_r, y~^r)``;
* VRNL (§3.4, weight ``alpha_2``): ``loss_vrnl_<ab>`` for each neighbour-set pair of the epoch
  (:func:`~vireid_plugins.association.vrnl_loss`) against the instance memory ``I^b`` of all modality-``b`` features
  (refreshed when the memories are rebuilt, never momentum-updated); CA views use their image's sets;
* UM (§3.5, Eq. 44, weight ``alpha_3``): ``loss_um_visible = CE(M^v [f_v; f_c], partner(y^v))`` (weight
  ``alpha_3 delta_1``) and ``loss_um_infrared = CE(M^r f_r, partner(y^r))`` (``alpha_3 delta_2``): samples of a
  cluster with a partner this epoch are pulled onto it, and the update writes them into the partner's slot.

Own labels are the batch ``targets`` (the branches are the per-modality spaces); cross labels, partners and
neighbour sets are looked up by the samples' ``item``.
"""
from typing import Dict, List, Optional, Tuple

import torch
from torch import Tensor, nn

from ...association import NeighbourSets, shared_centroids, vrnl_loss
from ...data.datasets.bases import INFRARED, MODALITY_NAMES, VISIBLE
from ...data.targets import other_modality
from ...modeling.attention import identity_guided_regulariser
from ...modeling.features import image_features
from ...modeling.losses import CRITERION_REGISTRY, ClusterMemory, VIReIDCriterion, feature_dim, soft_cross_entropy
from ...modeling.losses.maal import ModalityDiscriminator, maal_adversarial_loss, maal_discriminator_loss
from .association import PAIRS, SHARED_SPACES, UM_PARTNERS, VRA_MATCHING, VRNL_NEIGHBOURS

__all__ = ["CAViTCriterion"]

Part = Tuple[str, Tensor, Tensor]  # (loss name, queries (n, d), labels (n,))


@CRITERION_REGISTRY.register()
class CAViTCriterion(VIReIDCriterion):
    needs_ca_view = True  # the CA view is the third modality

    def __init__(self, cfg):
        c, pa_cbam = cfg.CA_VIT, cfg.MODEL.BACKBONE.PA_CBAM
        super().__init__({
            "loss_base": c.BASE.WEIGHT, "loss_pacbam": pa_cbam.REG_WEIGHT,
            "loss_maal_d": c.MAAL.ALPHA, "loss_maal_a": c.MAAL.BETA,
            "loss_vra": c.VRA.WEIGHT, "loss_vrnl": c.VRNL.WEIGHT,
            "loss_um_visible": c.UM.WEIGHT * c.UM.DELTA_V, "loss_um_infrared": c.UM.WEIGHT * c.UM.DELTA_R,
        })
        dim, mem = feature_dim(cfg), c.MEMORY
        self.temperature = mem.TEMPERATURE

        def memory(momentum: float) -> ClusterMemory:
            return ClusterMemory(dim, temperature=mem.TEMPERATURE, momentum=momentum, update=mem.UPDATE)

        names = ["visible", "infrared"] + (["ca"] if c.BASE.CA_MEMORY else [])
        self.memories = nn.ModuleDict({name: memory(mem.MOMENTUM) for name in names})  # M^v, M^r (M^c)
        self.shared = nn.ModuleDict({name: memory(mem.SHARED_MOMENTUM) for name in ("visible", "infrared")})
        self.discriminator = ModalityDiscriminator(dim, c.MAAL.DROPOUT) if c.MAAL.ENABLED else None  # E
        self.pacbam = bool(pa_cbam.ENABLED)
        self.pacbam_margin = pa_cbam.REG_MARGIN
        self.vra, self.vrnl, self.um = c.VRA.ENABLED, c.VRNL.ENABLED, c.UM.ENABLED
        # (N, d) image-level features of every item from the last rebuild: VRNL's instance memories (rows of one
        # modality) and the association hook's input; not saved (rebuilt with the memories)
        self.register_buffer("bank", torch.zeros(0, dim), persistent=False)
        self._tables: Dict[str, object] = {}  # the epoch's lookup tables on the criterion's device (set_targets)

    # ---------------------------------------------------------------------------------------- epoch state
    def item_features(self) -> Optional[Tensor]:
        """``(N, T*D)`` L2-normalised image-level features of ``train_targets.items`` (None before the first
        rebuild)."""
        return self.bank if self.bank.numel() else None

    @torch.no_grad()
    def reset(self, targets, features: Tensor):
        feats = image_features(features).to(self.bank.device, self.bank.dtype)
        self.bank = feats
        own = {}
        for m, name in MODALITY_NAMES.items():
            mask = targets.mask(m)
            own[m] = (feats[mask], targets.spaces[name].labels[mask])
            self.memories[name].initialize(ClusterMemory.cluster_centroids(*own[m]))
        if "ca" in self.memories:  # M^c starts at the visible centroids; only the CA views move it
            self.memories["ca"].initialize(self.memories["visible"].features)
        if self.vra and SHARED_SPACES[VISIBLE] in targets.spaces:
            cross = {m: targets.spaces[SHARED_SPACES[other_modality(m)]].labels[targets.mask(m)]
                     for m in MODALITY_NAMES}
            phi_vs, phi_rs = shared_centroids(own[VISIBLE][0], own[VISIBLE][1], own[INFRARED][0], own[INFRARED][1],
                                              cross[VISIBLE], cross[INFRARED], targets.spaces["visible"].num_classes,
                                              targets.spaces["infrared"].num_classes)
            self.shared["visible"].initialize(phi_vs)
            self.shared["infrared"].initialize(phi_rs)
        else:  # phase 1: no shared memories
            for memory in self.shared.values():
                memory.initialize(feats.new_zeros(0, feats.shape[1]))

    def set_targets(self, targets, features: Optional[Tensor] = None) -> None:
        super().set_targets(targets, features)
        self._tables = self._epoch_tables(targets)

    def _epoch_tables(self, targets) -> Dict[str, object]:
        """Device copies of what the losses look up by item: position within its modality, cross labels, UM
        partners, VRNL neighbour sets."""
        device = self.bank.device
        tables: Dict[str, object] = {"index": {}}
        local = torch.zeros(len(targets.items), dtype=torch.long)
        for m in MODALITY_NAMES:
            index = torch.nonzero(targets.mask(m), as_tuple=True)[0]
            local[index] = torch.arange(len(index))
            tables["index"][m] = index.to(device)
        tables["local"] = local.to(device)
        if SHARED_SPACES[VISIBLE] in targets.spaces:  # item -> its label in the other modality's clusters
            cross = torch.full((len(targets.items),), -1, dtype=torch.long)
            for m in MODALITY_NAMES:
                mask = targets.mask(m)
                cross[mask] = targets.spaces[SHARED_SPACES[other_modality(m)]].labels[mask]
            tables["cross"] = cross.to(device)
        if UM_PARTNERS in targets.extras:
            tables["partners"] = {k: v.to(device) for k, v in targets.extras[UM_PARTNERS].items()}
        if VRNL_NEIGHBOURS in targets.extras:
            tables["neighbours"] = {
                pair: NeighbourSets(s.indptr.to(device), s.indices.to(device), s.num_columns, s.truncated_rows)
                for pair, s in targets.extras[VRNL_NEIGHBOURS].items()}
        return tables

    def phase2(self) -> bool:
        """Whether the association hook has installed this epoch's phase-2 data."""
        extras = self.train_targets.extras if self.train_targets is not None else {}
        return any(key in extras for key in (VRA_MATCHING, UM_PARTNERS, VRNL_NEIGHBOURS))

    # ---------------------------------------------------------------------------------------------- losses
    @staticmethod
    def _queries(outputs, prefix: str = "") -> Tensor:
        """Image-level features of the batch (``prefix "ca_"``: of the CA views)."""
        tokens = outputs.get(prefix + "tokens")
        return image_features(tokens) if tokens is not None else outputs[prefix + "features"]

    @staticmethod
    def _memory_terms(memory: ClusterMemory, parts: List[Part]) -> Dict[str, Tensor]:
        """One logits call (one memory update, in part order) for every part, and each part's cross-entropy."""
        logits = memory.logits(torch.cat([q for _, q, _ in parts]), torch.cat([y for _, _, y in parts]))
        out, start = {}, 0
        for name, q, y in parts:
            out[name] = soft_cross_entropy(logits[start:start + len(q)], y)
            start += len(q)
        return out

    def losses(self, outputs) -> Dict[str, Tensor]:
        modality, y, item = outputs["modality"], outputs["targets"], outputs["item"]
        vis, ir = modality == VISIBLE, modality == INFRARED
        q, q_c = self._queries(outputs), self._queries(outputs, "ca_")
        q_v, q_r, y_v, y_r = q[vis], q[ir], y[vis], y[ir]
        q_vc, y_vc = torch.cat([q_v, q_c]), torch.cat([y_v, y_v])  # visible-side queries: images, then CA views
        phase2, tables = self.phase2(), self._tables
        use_shared = phase2 and self.vra and "cross" in tables and self.shared["visible"].num_clusters > 0

        memories = {"M^v": self.memories["visible"], "M^r": self.memories["infrared"],
                    "phi^vs": self.shared["visible"], "phi^rs": self.shared["infrared"]}
        if "ca" in self.memories:
            memories["M^c"] = self.memories["ca"]
        v_key, r_key = ("phi^vs", "phi^rs") if use_shared else ("M^v", "M^r")
        parts: Dict[str, List[Part]] = {key: [] for key in memories}
        parts[v_key].append(("loss_base_visible", q_v, y_v))
        parts["M^c" if "M^c" in memories else v_key].append(("loss_base_ca", q_c, y_v))
        parts[r_key].append(("loss_base_infrared", q_r, y_r))
        if use_shared:
            cross_v, cross_r = tables["cross"][item[vis]], tables["cross"][item[ir]]
            parts["phi^vs"].append(("loss_vra_infrared", q_r, cross_r))
            parts["phi^rs"].append(("loss_vra_visible", q_vc, torch.cat([cross_v, cross_v])))
        if phase2 and self.um and "partners" in tables:
            partners = tables["partners"]
            parts["M^v"].append(("loss_um_visible", q_vc, partners["visible"][y_vc]))
            parts["M^r"].append(("loss_um_infrared", q_r, partners["infrared"][y_r]))

        losses = {}
        for key, memory_parts in parts.items():
            if memory_parts:
                losses.update(self._memory_terms(memories[key], memory_parts))
        if phase2 and self.vrnl and "neighbours" in tables:
            losses.update(self._vrnl(tables, {VISIBLE: q_vc, INFRARED: q_r},
                                     {VISIBLE: torch.cat([item[vis], item[vis]]), INFRARED: item[ir]}))
        if self.discriminator is not None:
            f = outputs["features"]
            by_modality = (f[vis], f[ir], outputs["ca_features"])  # classes 0, 1, 2
            losses["loss_maal_d"] = maal_discriminator_loss(self.discriminator, by_modality, alpha=1.0)
            losses["loss_maal_a"] = maal_adversarial_loss(self.discriminator, by_modality, beta=1.0)
        if self.pacbam:
            losses.update(self._pacbam(outputs, vis, ir, y_vc, y_r))
        return losses

    def _vrnl(self, tables, queries: Dict[int, Tensor], items: Dict[int, Tensor]) -> Dict[str, Tensor]:
        """``loss_vrnl_<ab>`` for every pair of the epoch's neighbour sets (§3.4)."""
        out = {}
        for pair, sets in tables["neighbours"].items():
            a, b = PAIRS[pair]
            instances = self.bank[tables["index"][b]]  # I^b
            out[f"loss_vrnl_{pair}"] = vrnl_loss(queries[a], instances, sets, tables["local"][items[a]],
                                                 self.temperature)
        return out

    def _pacbam(self, outputs, vis: Tensor, ir: Tensor, y_vc: Tensor, y_r: Tensor) -> Dict[str, Tensor]:
        """PA-CBAM's identity-guided regulariser ``R`` (§3.2) within each modality's pseudo-labels."""
        if "channel_attention" not in outputs:
            raise KeyError("CAViTCriterion: MODEL.BACKBONE.PA_CBAM.ENABLED is True but the backbone exposes no channel "
                           "attention (outputs['channel_attention']); use a backbone with PA-CBAM (TokenViT, AGW)")
        a, a_c = outputs["channel_attention"], outputs["ca_channel_attention"]
        return {"loss_pacbam_visible": identity_guided_regulariser(torch.cat([a[vis], a_c]), y_vc,
                                                                   self.pacbam_margin),
                "loss_pacbam_infrared": identity_guided_regulariser(a[ir], y_r, self.pacbam_margin)}
