"""The training fast paths give the same values as the straightforward ones: batched window fetching, the data-wait
figure of the training loop, and the environment `a2k train` sets before torch loads. (Speeds are measured by
`a2k bench`, never here.)"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from a2k_toolkit.errors import InputError
from a2k_toolkit.keypoints import Normalizer

pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.mark.parametrize("scale_by_face", [True, False])
def test_normalize_many_equals_normalize_window_by_window(scale_by_face):
    rng = np.random.default_rng(0)
    pts = (rng.uniform(40, 200, (5, 12, 68, 2)) + rng.normal(0, 3, (5, 1, 68, 2))).astype(np.float32)
    norm = Normalizer(rng.normal(0, 0.2, 136), rng.uniform(0.5, 2, 136), scale_by_face=scale_by_face)
    many = norm.normalize_many(pts, pts[:, 0])
    assert many.shape == (5, 12, 136) and many.dtype == np.float32
    for i in range(5):  # bit for bit: the training data must not change with the fetch path
        np.testing.assert_array_equal(many[i], norm.normalize(pts[i], pts[i, 0]))
    # any reference, not only frame 0
    np.testing.assert_array_equal(norm.normalize_many(pts[:2], pts[:2, 5])[1], norm.normalize(pts[1], pts[1, 5]))


def test_batched_window_fetch_equals_stacked_items(real_clips_dir, tiny_train_config, catalog, tmp_path):
    from a2k_toolkit.data.windows import collate
    from a2k_toolkit.training import Trainer

    trainer = Trainer(tiny_train_config(real_clips_dir, tmp_path / "run", data={"stride": 8}), catalog=catalog)
    ds = trainer.train_set
    batches = trainer.epoch_batches(0)
    loaded = list(trainer.make_loader(batches))
    assert len(loaded) == len(batches) > 1
    for idx, batch in zip(batches, loaded):
        want = collate([ds[i] for i in idx])
        assert set(batch) == set(want)
        for k in want:
            assert batch[k].dtype == want[k].dtype and batch[k].is_contiguous()
            torch.testing.assert_close(batch[k], want[k], rtol=0, atol=0)
    with pytest.raises(InputError, match="empty batch"):
        ds.__getitems__([])


def test_training_log_reports_the_time_spent_waiting_for_data(real_clips_dir, tiny_train_config, catalog, tmp_path):
    from a2k_toolkit.training import Trainer
    from a2k_toolkit.training.runtime import DataWait

    Trainer(tiny_train_config(real_clips_dir, tmp_path / "run", max_steps=3), catalog=catalog).fit()
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    rows = [r for r in rows if "loss_reg" in r]
    assert len(rows) == 3 and all(0 <= r["data_wait_fraction"] <= 1 for r in rows)

    def slow_batches():  # a loader that blocks 50 ms per item
        import time

        for i in range(3):
            time.sleep(0.05)
            yield i

    wait = DataWait()
    assert list(wait(slow_batches())) == [0, 1, 2]
    assert 0.14 < wait.take() < 1.0 and wait.take() == 0.0


def test_a2k_train_sets_the_openmp_wait_policy_unless_the_user_did(monkeypatch, tmp_path, capsys):
    import os

    from a2k_toolkit.cli import main
    from a2k_toolkit.cpu_runtime import TRAIN_ENV_DEFAULTS, apply_env_defaults

    env = {"OMP_WAIT_POLICY": "ACTIVE"}
    assert apply_env_defaults(TRAIN_ENV_DEFAULTS, env) == {} and env == {"OMP_WAIT_POLICY": "ACTIVE"}
    env = {}
    assert apply_env_defaults(TRAIN_ENV_DEFAULTS, env) == {"OMP_WAIT_POLICY": "PASSIVE"} == env
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    assert main(["train", str(tmp_path / "missing.yaml")]) == 2  # the config error comes after the setting
    capsys.readouterr()
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
