"""Several processes (gloo): every rank's cluster memory stays identical, and equals one process trained on the
concatenated global batch."""
import pytest
import torch
from memory_worker import CLUSTERS, STEPS, global_batch, initial_memory, train

from vireid_plugins.engine.launch import launch


@pytest.mark.slow
@pytest.mark.parametrize("tokens,update", [(0, "sequential"), (0, "hard"), (3, "mean")])
def test_memories_identical_across_ranks_and_equal_to_one_process(tmp_path, tokens, update):
    launch(train, 2, dist_url="auto", args=(str(tmp_path), tokens, update))
    ranks = [torch.load(tmp_path / f"memory_rank{r}_of_2.pt") for r in range(2)]
    assert torch.equal(ranks[0], ranks[1])

    single = initial_memory(tokens, update).train()
    for step in range(STEPS):
        inputs, labels = global_batch(step, 2, tokens)
        single(inputs.requires_grad_(True), labels).backward()
    assert torch.allclose(single.features, ranks[0], atol=1e-6)
    assert not torch.allclose(single.features, initial_memory(tokens, update).features)  # the updates happened
    assert ranks[0].shape[-2] == CLUSTERS
