"""TrainTargets and the train set built from it: label spaces, branches, samples, sampler keys."""
import pytest
import torch

from vireid_plugins.data import LabelSpace, TrainTargets, VIReIDTrainSet

ITEMS = [("v0", 7, 1, 0), ("v1", 7, 2, 0), ("v2", 9, 1, 0), ("r0", 7, 3, 1), ("r1", 9, 6, 1)]


def test_identities_relabel_pids_into_one_space():
    t = TrainTargets.from_identities(ITEMS, "shared")
    assert t.branches == ("identity",) and t.pairing == "shared"
    assert t.spaces["identity"].labels.tolist() == [0, 0, 1, 0, 1] and t.spaces["identity"].num_classes == 2


def test_modality_clusters_make_one_space_per_modality():
    t = TrainTargets.from_modality_clusters(ITEMS, {0: torch.tensor([1, 0, -1]), 1: torch.tensor([0, 0])},
                                            token_labels={0: torch.tensor([[0, 0, 1], [1, 0, 0]]),
                                                          1: torch.tensor([[0, 1], [0, 0]])})
    vis, ir = t.spaces["visible"], t.spaces["infrared"]
    assert vis.labels.tolist() == [1, 0, -1, -1, -1] and vis.num_classes == 2 and vis.modality == 0
    assert ir.labels.tolist() == [-1, -1, -1, 0, 0] and ir.num_classes == 1 and ir.modality == 1
    assert vis.token_labels.tolist() == [[0, 0, 1, -1, -1], [1, 0, 0, -1, -1]]
    assert t.pairing == "independent" and t.own_labels("infrared").tolist() == [0, 0]
    assert vis.cluster_sizes().tolist() == [1, 1]
    items, branches, labels = t.samples()
    assert list(zip(items, branches, labels)) == [(0, 0, 1), (1, 0, 0), (3, 1, 0), (4, 1, 0)]


def test_train_set_samples_carry_item_branch_and_collision_free_sampler_keys():
    spaces = {"visible": LabelSpace(torch.tensor([0, 1, 1, 0, 1]), 2, 0),
              "infrared": LabelSpace(torch.tensor([0, 0, -1, 0, 0]), 1, 1)}
    t = TrainTargets(ITEMS, spaces, ("visible", "infrared"), "shared")
    ds = VIReIDTrainSet(t)
    assert len(ds) == 9 and ds.sample_items == [0, 1, 2, 3, 4, 0, 1, 3, 4]
    assert ds.sample_branches == [0] * 5 + [1] * 4 and ds.targets == [0, 1, 1, 0, 1, 0, 0, 0, 0]
    # label 0 of the visible branch and label 0 of the infrared branch are different sampler labels
    assert ds.sampling_labels == [0, 1, 1, 0, 1, 2, 2, 2, 2] and ds.num_classes == 3
    assert ds.modalities == [0, 0, 0, 1, 1, 0, 0, 1, 1]


def test_inconsistent_targets_are_refused():
    with pytest.raises(ValueError, match="labels must lie in -1..1"):
        LabelSpace(torch.tensor([0, 2]), 2)
    with pytest.raises(ValueError, match="soft targets must be"):
        LabelSpace(torch.tensor([0, 1]), 2, soft=torch.zeros(2, 3))
    with pytest.raises(ValueError, match="branches"):
        TrainTargets(ITEMS, {"a": LabelSpace(torch.zeros(5, dtype=torch.long), 1)}, ("b",))
    with pytest.raises(ValueError, match="labels 2 items, not 5"):
        TrainTargets(ITEMS, {"a": LabelSpace(torch.zeros(2, dtype=torch.long), 1)}, ("a",))
