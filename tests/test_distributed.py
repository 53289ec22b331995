"""`dalkit run --distributed`: DistributedDataParallel over 2 gloo processes on the CPU against one process with the
same seed: the same trained weights where nothing differs per rank (no batch norm, no dropout), and the same
labelled sets cycle by cycle, selected once on rank 0, written by rank 0 only."""

from __future__ import annotations

import csv
import json
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp
from torch import nn

from dalkit.cli import main
from dalkit.data.augment import Normalizer
from dalkit.data.base import AugmentSpec
from dalkit.errors import DalkitError
from dalkit.models.base import Classifier, ModelOutput
from dalkit.train import TrainConfig, Trainer

RUN = ["run", "--epochs", "2", "--initial", "10", "--budget", "6", "--cycles", "3", "--no-progress", "--device", "cpu"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def join(rank: int, world: int, port: int) -> None:
    """What torchrun sets for each rank."""
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank)
    )
    torch.set_num_threads(1)


class Linear(Classifier):
    """A model with nothing that differs per rank: no batch norm, no dropout."""

    def __init__(self) -> None:
        super().__init__()
        self.num_classes, self.embedding_dim = 3, 6
        self.hidden, self.out = nn.Linear(16, 6), nn.Linear(6, 3)

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.hidden(x.flatten(1)))

    def head(self, z: torch.Tensor) -> ModelOutput:
        return ModelOutput(self.out(z), z)


def fit_linear() -> dict:
    """A few epochs on 22 random 1x4x4 images (batches of 8: the last one of 6), crop and flip on."""
    data = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (22, 1, 4, 4), dtype=torch.uint8, generator=data)
    labels = torch.randint(0, 3, (22,), generator=data)
    torch.manual_seed(0)
    model = Linear()
    config = TrainConfig(epochs=3, lr=0.1, batch_size=8, weight_decay=5e-4)
    normalizer = Normalizer(torch.tensor([0.5]), torch.tensor([0.25]))
    trainer = Trainer(config, AugmentSpec(crop_padding=1, flip=True), normalizer, torch.device("cpu"), progress=False)
    trainer.fit(model, images, labels, torch.Generator().manual_seed(2))
    return {k: v.clone() for k, v in model.state_dict().items()}


def fit_on_rank(rank: int, world: int, port: int, out: str) -> None:
    import torch.distributed as dist

    join(rank, world, port)
    dist.init_process_group("gloo")
    try:
        torch.save(fit_linear(), f"{out}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_ddp_trains_the_same_weights_as_one_process_on_the_whole_batch(tmp_path):
    mp.spawn(fit_on_rank, args=(2, free_port(), str(tmp_path)), nprocs=2)
    alone = fit_linear()
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    for name, value in alone.items():
        assert torch.equal(ranks[0][name], ranks[1][name])  # DDP keeps the ranks identical
        torch.testing.assert_close(ranks[0][name], value, atol=1e-5, rtol=1e-4)  # and equal to one process
    start = Linear()
    assert not torch.allclose(start.out.weight, alone["out.weight"])  # it did train


def run_on_rank(rank: int, world: int, port: int, argv: list[str]) -> None:
    join(rank, world, port)
    assert main(argv) == 0


def labelled_by_cycle(run) -> list[list[int]]:
    with open(run / "selected.csv") as f:
        rows = [(int(r["cycle"]), int(r["index"])) for r in csv.DictReader(f)]
    return [sorted(i for c, i in rows if c == cycle) for cycle in range(max(c for c, _ in rows) + 1)]


def test_run_distributed_selects_once_and_rank_0_alone_writes(tmp_path):
    """The labelled sets equal one process's wherever the picks do not read the trained model (random here);
    strategies that read it pick from a model trained with batch norm statistics and dropout masks drawn per
    rank's share, so they agree as far as those models do (exactly without batch norm or dropout, test above)."""
    argv = [*RUN, "--strategy", "random"]
    mp.spawn(run_on_rank, args=(2, free_port(), [*argv, "--distributed", "--out", str(tmp_path / "ddp")]), nprocs=2)
    assert main([*argv, "--out", str(tmp_path / "one")]) == 0
    ddp, one = labelled_by_cycle(tmp_path / "ddp"), labelled_by_cycle(tmp_path / "one")
    assert [len(c) for c in ddp] == [10, 6, 6] and ddp == one
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ddp", "one"]  # rank 1 wrote no run of its own
    config = json.loads((tmp_path / "ddp" / "config.json").read_text())
    assert config["environment"]["world_size"] == 2
    assert (tmp_path / "ddp" / "cycles.csv").read_text().count("\n") == 4


def test_distributed_outside_torchrun_and_other_objectives_are_one_sentence(tmp_path, monkeypatch, capsys):
    for key in ("RANK", "WORLD_SIZE"):
        monkeypatch.delenv(key, raising=False)
    assert main([*RUN, "--distributed", "--out", str(tmp_path / "a")]) == 2
    assert "runs under torchrun" in capsys.readouterr().err
    import dalkit.loop

    monkeypatch.setattr(dalkit.loop, "distributed", lambda: (0, 2))
    with pytest.raises(DalkitError, match="--distributed trains with the ce objective only .got ce, cskd"):
        dalkit.loop.Experiment(dalkit.loop.ExperimentConfig(objectives=("ce", "cskd"), device="cpu"))
