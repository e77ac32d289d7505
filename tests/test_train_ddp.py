"""Multi-process training: two CPU processes (gloo) under DistributedDataParallel stay in sync."""

from __future__ import annotations

import json
import socket

import pytest
import torch
import torch.multiprocessing as mp


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, cfg: dict, out_dir: str) -> None:
    """One rank, set up as torchrun would (environment variables), training through the public Trainer."""
    import os

    from safetensors.torch import save_file

    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank)
    )
    torch.set_num_threads(1)
    from a2k_toolkit.catalog import Catalog
    from a2k_toolkit.plugins import make_plugin_manager
    from a2k_toolkit.training import Trainer

    trainer = Trainer(cfg, catalog=Catalog(make_plugin_manager(entry_points=False)))
    init = {k: v.clone() for k, v in trainer.generator.state_dict().items()}
    seen = [i for b in trainer.epoch_batches(0) for i in b]
    trainer.fit()
    state = {f"g.{k}": v for k, v in trainer.generator.state_dict().items()}
    state.update({f"d.{k}": v for k, v in trainer.disc.state_dict().items()})
    state.update({f"init.{k}": v for k, v in init.items()})
    save_file({k: v.contiguous() for k, v in state.items()}, f"{out_dir}/rank{rank}.safetensors")
    with open(f"{out_dir}/rank{rank}.json", "w") as f:
        json.dump({"seen": seen, "world": trainer.env.world_size}, f)


@pytest.mark.slow
def test_two_process_gloo_ddp_trains_in_sync(real_clips_dir, tiny_train_config, tmp_path):
    from safetensors.torch import load_file

    cfg = tiny_train_config(real_clips_dir, tmp_path / "run", max_steps=4, batch_size=2, checkpoint_every=2)
    mp.start_processes(_worker, args=(2, _free_port(), cfg, str(tmp_path)), nprocs=2, start_method="spawn")
    r0, r1 = (load_file(str(tmp_path / f"rank{r}.safetensors")) for r in (0, 1))
    i0, i1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    assert i0["world"] == i1["world"] == 2
    assert not set(i0["seen"]) & set(i1["seen"])  # DistributedSampler: each rank its own windows
    for k in r0:
        torch.testing.assert_close(r0[k], r1[k], atol=0, rtol=0, msg=f"{k} differs across ranks")
    moved = [k for k in r0 if k.startswith("g.") and not torch.equal(r0[k], r0["init." + k[2:]])]
    assert len(moved) > 0.9 * sum(1 for k in r0 if k.startswith("g.") and "feature_" not in k)
    # rank 0 wrote the run's checkpoint and metrics (losses averaged over both ranks)
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in lines if "loss_reg" in m] == [1, 2, 3, 4]
    state = json.loads((tmp_path / "run" / "latest" / "training_state.json").read_text())
    assert state["world_size"] == 2 and len(state["rng"]) == 2 and state["step"] == 4
