"""NCLR (Eq. 6-10) and CNCR (Eq. 13-15) of DOTLA against hand-worked cases."""
import math

import torch
import torch.nn.functional as F

from vireid_plugins.association.nclr import inconsistency_scores, refine_labels_by_neighbours
from vireid_plugins.modeling.losses.neighbour_consistency import neighbour_consistency_loss


def unit(*angles_deg):
    """2-d unit vectors at the given angles: distances are easy to reason about."""
    a = torch.tensor(angles_deg, dtype=torch.float32) * math.pi / 180
    return torch.stack([a.cos(), a.sin()], dim=1)


def test_inconsistency_score_counts_agreeing_cross_modality_neighbours():
    # 5 visible instances: labels 0,0,0 near 0 degrees, labels 1,1 near 90 degrees
    vis = unit(0, 5, 10, 85, 90)
    vis_labels = torch.tensor([0, 0, 0, 1, 1])
    ir = unit(2, 88)  # the first is near the label-0 group, the second near the label-1 group
    # k = 3 neighbours: ir[0] -> visible 0,5,10 deg (labels 0,0,0); ir[1] -> 90,85,10 deg (labels 1,1,0)
    scores = inconsistency_scores(torch.tensor([0, 1]), ir, vis, vis_labels, k=3, eps=0.0)
    assert torch.allclose(scores, torch.tensor([0.0, -math.log(2 / 3)]), atol=1e-6)
    wrong = inconsistency_scores(torch.tensor([1, 0]), ir, vis, vis_labels, k=3, eps=1e-6)
    assert torch.allclose(wrong, torch.tensor([-math.log(1e-6), -math.log(1 / 3 + 1e-6)]), atol=1e-5)


def test_refinement_moves_only_noisy_labels_towards_clean_neighbours():
    vis = unit(0, 5, 10, 85, 90, 95)
    vis_labels = torch.tensor([0, 0, 0, 1, 1, 1])
    ir = unit(1, 3, 6, 89)
    assigned = torch.tensor([0, 0, 1, 1])  # ir[2] sits among label-0 neighbours but was assigned 1: noisy
    out = refine_labels_by_neighbours(assigned, 2, ir, vis, vis_labels, k=3, tau=1.0, gamma=0.25)
    assert out.noisy.tolist() == [False, False, True, False]
    # ir[2]'s 3 nearest infrared neighbours besides itself: ir[1] (3 deg), ir[0] (1 deg), ir[3] (89 deg),
    # all clean, labels 0, 0, 1 -> refined = 0.75 * [0, 1] + 0.25 * [2/3, 1/3]
    assert torch.allclose(out.soft_labels[2], torch.tensor([0.25 * 2 / 3, 0.75 + 0.25 / 3]), atol=1e-6)
    assert torch.equal(out.soft_labels[[0, 1, 3]], F.one_hot(assigned[[0, 1, 3]], 2).float())
    assert torch.allclose(out.soft_labels.sum(1), torch.ones(4))


def test_noisy_label_without_clean_neighbour():
    vis, vis_labels = unit(0, 90), torch.tensor([0, 1])
    ir = unit(1, 2)
    kept = refine_labels_by_neighbours(torch.tensor([1, 1]), 2, ir, vis, vis_labels, k=1, tau=1.0, gamma=0.25,
                                       normalize="clean")
    assert kept.noisy.all() and torch.equal(kept.soft_labels, torch.tensor([[0.0, 1.0], [0.0, 1.0]]))
    as_written = refine_labels_by_neighbours(torch.tensor([1, 1]), 2, ir, vis, vis_labels, k=1, tau=1.0, gamma=0.25)
    assert torch.equal(as_written.soft_labels, torch.tensor([[0.0, 0.75], [0.0, 0.75]]))  # Eq. 10: empty sum


def test_eq10_divides_by_k_and_the_option_by_the_clean_count():
    """A noisy instance with 2 clean and 1 noisy neighbour among its k = 3: Eq. 10 divides the 2 votes by 3."""
    vis = unit(0, 5, 10, 85, 90, 95)
    vis_labels = torch.tensor([0, 0, 0, 1, 1, 1])
    ir = unit(1, 3, 6, 8)  # all among label-0 visible neighbours
    assigned = torch.tensor([0, 0, 1, 1])  # ir[2] and ir[3] noisy; ir[2]'s neighbours: ir[3] (noisy), ir[1], ir[0]
    written = refine_labels_by_neighbours(assigned, 2, ir, vis, vis_labels, k=3, tau=1.0, gamma=0.25)
    clean = refine_labels_by_neighbours(assigned, 2, ir, vis, vis_labels, k=3, tau=1.0, gamma=0.25,
                                        normalize="clean")
    assert written.noisy.tolist() == [False, False, True, True]
    assert torch.allclose(written.soft_labels[2], torch.tensor([0.25 * 2 / 3, 0.75]), atol=1e-6)
    assert torch.allclose(clean.soft_labels[2], torch.tensor([0.25, 0.75]), atol=1e-6)
    assert torch.allclose(written.soft_labels[2].sum(), torch.tensor(0.75 + 0.25 * 2 / 3))


def test_eq6_votes_only_with_labelled_neighbours():
    """Outliers (-1) nearest to an infrared instance neither vote nor count in the fraction."""
    vis = unit(0, 1, 2, 40, 45)
    vis_labels = torch.tensor([-1, -1, -1, 0, 0])
    scores = inconsistency_scores(torch.tensor([0]), unit(0), vis, vis_labels, k=2, eps=0.0)
    assert torch.allclose(scores, torch.zeros(1))  # both labelled neighbours agree; the 3 outliers are skipped


def test_cncr_equals_hand_computed_kl_and_vanishes_for_consistent_neighbours():
    anchor_logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    neighbour_logits = torch.tensor([[1.0, 0.0], [0.0, 0.0], [0.0, 3.0]])
    anchor_feats = unit(0, 90)
    neighbour_feats = unit(5, 20, 80)  # k=2: anchor 0 -> neighbours 0, 1; anchor 1 -> neighbours 2, 1
    loss = neighbour_consistency_loss(anchor_logits, anchor_feats, neighbour_logits, neighbour_feats, k=2)
    p = F.softmax(anchor_logits, 1)
    q_all = F.softmax(neighbour_logits, 1)
    q = torch.stack([(q_all[0] + q_all[1]) / 2, (q_all[2] + q_all[1]) / 2])
    expected = (p * (p / q).log()).sum(1).mean()
    assert torch.allclose(loss, expected, atol=1e-6)
    same = neighbour_consistency_loss(anchor_logits, anchor_feats, anchor_logits, anchor_feats, k=1)
    assert same.abs() < 1e-6
    anchor_logits.requires_grad_(True)
    neighbour_logits.requires_grad_(True)
    neighbour_consistency_loss(anchor_logits, anchor_feats, neighbour_logits, neighbour_feats, k=2).backward()
    assert anchor_logits.grad.abs().sum() > 0 and neighbour_logits.grad.abs().sum() > 0
