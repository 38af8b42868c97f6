"""DualModalitySampler: batch composition, pairings, pseudo-labels, seeding and rank sharding."""
import itertools
from collections import Counter
from unittest import mock

import numpy as np
import pytest

from vireid_plugins.data.samplers import SAMPLER_REGISTRY, DualModalitySampler, build_train_sampler


def make_items(num_ids=10, per_modality=(5, 3), seed=0):
    """labels, modalities: id i has per_modality[0] visible and per_modality[1] infrared items, shuffled."""
    labels = [i for i in range(num_ids) for _ in range(sum(per_modality))]
    modalities = [m for _ in range(num_ids) for m, n in enumerate(per_modality) for _ in range(n)]
    order = np.random.default_rng(seed).permutation(len(labels))
    return [labels[i] for i in order], [modalities[i] for i in order]


def take(sampler, n):
    return list(itertools.islice(iter(sampler), n))


@pytest.mark.parametrize("pairing", ["shared", "independent"])
def test_batch_holds_p_ids_times_k_per_modality(pairing):
    labels, modalities = make_items()
    sampler = DualModalitySampler(labels, modalities, mini_batch_size=24, num_instances=4, pairing=pairing, seed=1)
    for b in range(6):
        batch = take(sampler, 24 * (b + 1))[24 * b:]
        visible, infrared = batch[:12], batch[12:]
        assert all(modalities[i] == 0 for i in visible) and all(modalities[i] == 1 for i in infrared)
        vis_counts = Counter(labels[i] for i in visible)
        ir_counts = Counter(labels[i] for i in infrared)
        assert len(vis_counts) == 3 and set(vis_counts.values()) == {4}
        assert len(ir_counts) == 3 and set(ir_counts.values()) == {4}
        if pairing == "shared":
            assert [labels[i] for i in visible[::4]] == [labels[i] for i in infrared[::4]]
        # K=4 > 3 infrared items per id: drawn with replacement; 5 visible: without replacement
        assert all(len(set(visible[j:j + 4])) == 4 for j in range(0, 12, 4))


def test_pseudo_labels_outliers_and_independent_label_spaces():
    # visible clusters 0..5, infrared clusters 10..13 (disjoint spaces), some outliers
    labels = [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, -1, -1, 10, 10, 11, 11, 12, 12, 13, 13, -1]
    modalities = [0] * 14 + [1] * 9
    sampler = DualModalitySampler(labels, modalities, mini_batch_size=8, num_instances=2, seed=0)
    assert sampler.pairing == "independent"  # no label exists in both modalities
    batch_indices = take(sampler, 8 * 20)
    assert all(labels[i] >= 0 for i in batch_indices)
    for b in range(20):
        batch = batch_indices[8 * b: 8 * b + 8]
        assert {labels[i] for i in batch[:4]} <= set(range(6)) and {labels[i] for i in batch[4:]} <= {10, 11, 12, 13}


def test_same_seed_same_stream_and_new_seed_new_stream():
    labels, modalities = make_items()
    a = take(DualModalitySampler(labels, modalities, 16, 4, seed=3), 200)
    b = take(DualModalitySampler(labels, modalities, 16, 4, seed=3), 200)
    c = take(DualModalitySampler(labels, modalities, 16, 4, seed=4), 200)
    assert a == b and a != c


def test_rank_sharding_gives_whole_identities():
    labels, modalities = make_items(num_ids=12)
    streams = {}
    for rank in range(2):
        with mock.patch("fastreid.utils.comm.get_rank", return_value=rank), \
                mock.patch("fastreid.utils.comm.get_world_size", return_value=2):
            streams[rank] = take(DualModalitySampler(labels, modalities, 16, 4, pairing="shared", seed=5), 16 * 5)
    for b in range(5):
        per_rank = [streams[r][16 * b:16 * b + 16] for r in range(2)]
        ids = [{labels[i] for i in batch} for batch in per_rank]
        assert not ids[0] & ids[1]  # each identity lives on one rank
        for batch in per_rank:
            assert [modalities[i] for i in batch] == [0] * 8 + [1] * 8


def test_bad_arguments_are_explained():
    labels, modalities = make_items(num_ids=2)
    with pytest.raises(ValueError, match="multiple of 2 x NUM_INSTANCE"):
        DualModalitySampler(labels, modalities, 10, 4)
    few = take(DualModalitySampler(labels, modalities, 24, 4), 24)  # 2 labels for P = 3: labels repeat
    assert Counter(modalities[i] for i in few) == {0: 12, 1: 12} and len({labels[i] for i in few}) == 2
    with pytest.raises(ValueError, match="no usable label") as error:
        DualModalitySampler([-1] * len(labels), modalities, 8, 4)
    assert "PSEUDO_INFRARED" not in str(error.value)  # the images are there, only unlabelled
    with pytest.raises(ValueError, match=r"modality 1 \(infrared\) and no image at all.*PSEUDO_INFRARED"):
        DualModalitySampler(labels, [0] * len(labels), 8, 4)
    with pytest.raises(ValueError, match="pairing"):
        DualModalitySampler(labels, modalities, 8, 4, pairing="mixed")


def test_registry_builds_from_config(cfg):
    class FakeDataset:
        sampling_labels, modalities = make_items()

        def __len__(self):
            return len(self.sampling_labels)

    cfg.SOLVER.IMS_PER_BATCH, cfg.DATALOADER.NUM_INSTANCE = 16, 2
    cfg.DATALOADER.SAMPLER_TRAIN = "DualModalitySampler"
    sampler = build_train_sampler(cfg, FakeDataset(), epoch=0)
    assert isinstance(sampler, DualModalitySampler) and sampler.num_labels_per_batch == 4
    assert take(sampler, 64) != take(build_train_sampler(cfg, FakeDataset(), epoch=1), 64)
    assert "RandomSampler" in SAMPLER_REGISTRY._obj_map
    cfg.DATALOADER.SAMPLER_TRAIN = "Nope"
    with pytest.raises(KeyError, match="unknown sampler 'Nope'"):
        build_train_sampler(cfg, FakeDataset())


def test_branch_balance_splits_every_batch_equally_among_branches():
    """DOTLA's batch: P = 4 labels per batch, 2 from each branch; branch 1's labels are 10..15."""
    labels = [y for y in range(6) for _ in range(4)] * 2 + [10 + y for y in range(6) for _ in range(4)] * 2
    modalities = ([0] * 24 + [1] * 24) * 2
    branches = [0] * 48 + [1] * 48
    sampler = DualModalitySampler(labels, modalities, 16, 2, pairing="shared", seed=3, branches=branches)
    stream = take(sampler, 16 * 12)
    for start in range(0, len(stream), 16):
        batch_labels = {labels[i] for i in stream[start:start + 16]}
        assert len(batch_labels) == 4 and sum(y >= 10 for y in batch_labels) == 2, batch_labels
    with pytest.raises(ValueError, match="cannot be split equally among 2 branches"):
        DualModalitySampler(labels, modalities, 12, 2, pairing="shared", branches=branches)
