"""fast-reid's samplers by name in our registry (DATALOADER.SAMPLER_TRAIN of stock configs in VIReIDTrainer)."""
import itertools
from collections import Counter

import pytest
import torch
from fastreid.data import samplers as stock

from vireid_plugins.data.samplers import FASTREID_SAMPLER_NAMES, SAMPLER_REGISTRY, build_train_sampler


class TrainSet:
    """What samplers read of a VIReIDTrainSet: 6 labels x 5 samples, cameras 0/1, some unlabelled (-1) samples."""

    def __init__(self):
        self.sampling_labels = [label for label in range(6) for _ in range(5)] + [-1] * 7
        self.camids = [i % 2 for i in range(len(self.sampling_labels))]
        self.modalities = [i % 2 for i in range(len(self.sampling_labels))]

    def __len__(self):
        return len(self.sampling_labels)


def take(sampler, n):
    return list(itertools.islice(iter(sampler), n))


def test_every_fastreid_sampler_is_registered():
    assert set(FASTREID_SAMPLER_NAMES) == {"TrainingSampler", "NaiveIdentitySampler", "BalancedIdentitySampler",
                                           "SetReWeightSampler", "ImbalancedDatasetSampler"}
    assert set(FASTREID_SAMPLER_NAMES) < set(SAMPLER_REGISTRY._obj_map)


@pytest.mark.parametrize("name", ["TrainingSampler", "NaiveIdentitySampler", "BalancedIdentitySampler",
                                  "ImbalancedDatasetSampler"])
def test_fastreid_samplers_draw_what_fastreid_draws_over_the_labelled_samples(cfg, name):
    cfg.SOLVER.IMS_PER_BATCH, cfg.DATALOADER.NUM_INSTANCE, cfg.SEED = 8, 2, 3
    data = TrainSet()
    torch.manual_seed(0)  # ImbalancedDatasetSampler draws with torch's global generator
    ours = take(build_train_sampler(cfg, data, epoch=0, name=name), 64)
    labelled = [(None, y, c) for y, c in zip(data.sampling_labels, data.camids) if y >= 0]
    reference = {"TrainingSampler": lambda: stock.TrainingSampler(len(labelled), seed=3),
                 "NaiveIdentitySampler": lambda: stock.NaiveIdentitySampler(labelled, 8, 2, seed=3),
                 "BalancedIdentitySampler": lambda: stock.BalancedIdentitySampler(labelled, 8, 2, seed=3),
                 "ImbalancedDatasetSampler": lambda: stock.ImbalancedDatasetSampler(labelled, seed=3)}[name]()
    torch.manual_seed(0)
    assert ours == take(reference, 64)  # labelled samples come first here: indices map to themselves
    assert all(data.sampling_labels[i] >= 0 for i in ours)  # unlabelled samples are never drawn
    if name == "NaiveIdentitySampler":
        for start in range(0, 64, 8):  # 4 labels x 2 instances per batch
            assert sorted(Counter(data.sampling_labels[i] for i in ours[start:start + 8]).values()) == [2] * 4


def test_indices_are_mapped_back_around_unlabelled_samples(cfg):
    cfg.SOLVER.IMS_PER_BATCH, cfg.DATALOADER.NUM_INSTANCE = 8, 2
    data = TrainSet()
    data.sampling_labels = [-1] * 7 + data.sampling_labels[:30]  # unlabelled first: every index shifts by 7
    drawn = take(build_train_sampler(cfg, data, name="NaiveIdentitySampler"), 80)
    assert min(drawn) >= 7 and all(data.sampling_labels[i] >= 0 for i in drawn)
    for start in range(0, 80, 8):
        assert sorted(Counter(data.sampling_labels[i] for i in drawn[start:start + 8]).values()) == [2] * 4
    data.sampling_labels = [-1] * len(data)
    with pytest.raises(ValueError, match="'NaiveIdentitySampler': the train set has no labelled sample"):
        build_train_sampler(cfg, data, name="NaiveIdentitySampler")
