"""Association accuracy and its chance level (1 / clusters of the target space), per direction, hand-worked."""
import torch

from vireid_plugins.data.targets import TrainTargets
from vireid_plugins.engine.association import association_accuracy, association_chance

VISIBLE, INFRARED = 0, 1


def cross_labelled_targets():
    """Visible: 6 images of ids 1,1,2,2,3,3 in clusters 0,0,1,1,2,-1; infrared: 4 images of ids 1,2,3,3 in clusters
    0,0,1,1. The infrared images are also labelled in the visible space: 0 (right), 2 (wrong), 2, 2 (right)."""
    items = [(f"v{i}", pid, 1, VISIBLE) for i, pid in enumerate([1, 1, 2, 2, 3, 3])]
    items += [(f"r{i}", pid, 3, INFRARED) for i, pid in enumerate([1, 2, 3, 3])]
    targets = TrainTargets.from_modality_clusters(
        items, {VISIBLE: torch.tensor([0, 0, 1, 1, 2, -1]), INFRARED: torch.tensor([0, 0, 1, 1])})
    targets.spaces["visible"].labels[6:] = torch.tensor([0, 2, 2, 2])
    return targets


def test_only_cross_labelled_spaces_have_a_direction():
    targets = cross_labelled_targets()
    assert association_chance(targets) == {"infrared->visible": 1 / 3}  # 3 visible clusters; no visible->infrared
    assert association_accuracy(targets) == {"infrared->visible": 3 / 4}


def test_per_modality_clusters_have_no_direction():
    items = [("v", 1, 1, VISIBLE), ("r", 1, 3, INFRARED)]
    targets = TrainTargets.from_modality_clusters(items, {VISIBLE: torch.tensor([0]), INFRARED: torch.tensor([0])})
    assert association_chance(targets) == {} and association_accuracy(targets) == {}
