"""Training: config, a real overfit on real clips, exact resume, checkpoints and their errors, the CLI."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch
import yaml

from a2k_toolkit.errors import CheckpointError, ConfigError
from a2k_toolkit.training import Trainer, load_train_config

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def metrics(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def losses_by_step(run_dir):
    return {m["step"]: m for m in metrics(run_dir) if "loss_reg" in m}


# ------------------------------------------------------------------------------------------------- config


def test_config_base_merge_and_ablations(tmp_path):
    (tmp_path / "full.yaml").write_text("data: {train: [clips]}\nmodel: {width: 32}\nbatch_size: 8\n")
    (tmp_path / "abl.yaml").write_text("base: full.yaml\nablation: audio_only\nmodel: {depth: 3}\n")
    cfg = load_train_config(tmp_path / "abl.yaml")
    assert (cfg.model.width, cfg.model.depth, cfg.batch_size) == (32, 3, 8)
    assert cfg.effective_model().pv_encoder is None and cfg.effective_model().piv_encoder is None
    assert cfg.optim.lr_g == 1e-4 and cfg.batch_size == 8 and cfg.data.window == 64  # paper defaults
    assert load_train_config({"data": {"train": ["x"]}, "ablation": "no_piv"}).effective_model().piv_encoder is None
    nd = load_train_config({"data": {"train": ["x"]}, "ablation": "no_discriminator"})
    assert not nd.uses_discriminator and nd.effective_model().piv_encoder is not None
    with pytest.raises(ConfigError, match=r"optim\.lr: unknown key"):
        load_train_config({"data": {"train": ["x"]}, "optim": {"lr": 1}})
    with pytest.raises(ConfigError, match="multiple of 2"):
        load_train_config({"data": {"train": ["x"], "window": 40}, "model": {"depth": 4}})
    with pytest.raises(ConfigError, match="data: Field required"):
        load_train_config({})


def test_the_front_end_key_is_audio_and_frontend_is_read_with_a_warning(tmp_path):
    """``audio:`` as in pipeline and eval configs; ``frontend:``, its earlier name, still works: a warning naming the
    file and the fix for a config the user wrote, none for the training config a checkpoint stored."""
    import warnings

    stack = {"name": "stack", "params": {"members": ["logmel", "vad"]}}
    (tmp_path / "new.yaml").write_text(yaml.safe_dump({"data": {"train": ["clips"]}, "audio": stack}))
    (tmp_path / "old.yaml").write_text(yaml.safe_dump({"data": {"train": ["clips"]}, "frontend": stack}))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        new = load_train_config(tmp_path / "new.yaml")
    assert new.audio.name == "stack" and new.audio.params == stack["params"]
    assert load_train_config({"data": {"train": ["x"]}}).audio.name == "logmel"
    with pytest.warns(FutureWarning, match=r"old\.yaml: the training config key `frontend:` is now `audio:`.*rename"):
        old = load_train_config(tmp_path / "old.yaml")
    assert old == new
    # a base and a config over it may each use either name
    (tmp_path / "over-old.yaml").write_text("base: new.yaml\nfrontend: logmel\n")
    (tmp_path / "over-new.yaml").write_text("base: old.yaml\naudio: logmel\n")
    with pytest.warns(FutureWarning, match="over-old.yaml"):
        assert load_train_config(tmp_path / "over-old.yaml").audio.name == "logmel"
    with pytest.warns(FutureWarning, match=r"old\.yaml"):
        assert load_train_config(tmp_path / "over-new.yaml").audio.name == "logmel"
    with pytest.warns(FutureWarning, match="training config override"):
        assert load_train_config(tmp_path / "new.yaml", frontend="logmel").audio.name == "logmel"
    (tmp_path / "both.yaml").write_text("data: {train: [x]}\naudio: logmel\nfrontend: logmel\n")
    with pytest.raises(ConfigError, match=r"both.yaml: both `audio:` and `frontend:`.*keep only `audio:`"):
        load_train_config(tmp_path / "both.yaml")
    # a checkpoint's stored config (written before the rename): read silently, and a resume compares it
    from a2k_toolkit.training.checkpoints import check_resume_config

    stored = {**new.model_dump(mode="json"), "frontend": stack}
    del stored["audio"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_train_config(stored, stored=True) == new
        check_resume_config(new, stored, tmp_path)
        check_resume_config(new, {**stored, "optim": {"no-longer-a-key": 1}}, tmp_path)  # compared as recorded
    for saved in (stored, {**stored, "optim": {"no-longer-a-key": 1}}):
        with pytest.raises(ConfigError, match=r"audio changed since the run started"):
            check_resume_config(new, {**saved, "frontend": "logmel"}, tmp_path)


# ------------------------------------------------------------------------------------------------ training


def test_a_few_hundred_steps_drive_the_l1_loss_clearly_down(real_clips_dir, tiny_train_config, catalog, tmp_path):
    """The full GAN (discriminator, PIV encoder, all four losses) on one small real batch. The adversarial and
    PIV-Gen weights are lowered to 0.1: over a few hundred steps they trade L1 for realism (as in the paper's Table 1)
    and this test is about the model learning the mapping."""
    cfg = tiny_train_config(
        real_clips_dir,
        tmp_path / "run",
        max_steps=120,
        batch_size=8,
        model={"width": 32},
        data={"stride": 32},
        loss={"adv": 0.1, "piv_gen": 0.1},
        optim={"lr_g": 4e-3, "lr_e": 4e-3, "lr_d": 4e-3},
    )
    trainer = Trainer(cfg, catalog=catalog)
    assert len(trainer.train_set) == 8 and trainer.steps_per_epoch == 1
    trainer.fit()
    rows = [losses_by_step(tmp_path / "run")[s] for s in range(1, 121)]
    first = np.mean([r["loss_reg"] for r in rows[:5]])
    last = np.mean([r["loss_reg"] for r in rows[-10:]])
    assert last < 0.65 * first, (first, last)
    for key in ("loss_adv", "loss_d", "loss_piv_gen", "loss_piv_piv"):
        assert all(np.isfinite(r[key]) for r in rows)
    assert np.mean([r["loss_d"] for r in rows[-10:]]) < np.mean([r["loss_d"] for r in rows[:5]])


def test_resume_continues_the_same_curve(real_clips_dir, tiny_train_config, catalog, tmp_path):
    """Interrupt after 4 steps (mid-epoch: 3 steps per epoch) and resume: steps 5-7 match an uninterrupted run."""
    from safetensors.torch import load_file

    full = tiny_train_config(real_clips_dir, tmp_path / "full", max_steps=7)
    Trainer(full, catalog=catalog).fit()
    part = tiny_train_config(real_clips_dir, tmp_path / "part", max_steps=4)
    first = Trainer(part, catalog=catalog)
    assert first.steps_per_epoch == 3
    first.fit()
    state = json.loads((tmp_path / "part" / "latest" / "training_state.json").read_text())
    assert (state["step"], state["epoch"], state["batch_in_epoch"]) == (4, 1, 1)
    with pytest.raises(ConfigError, match="--resume"):
        Trainer(part, catalog=catalog)
    with pytest.raises(ConfigError, match="model changed"):
        Trainer({**part, "model": {**part["model"], "width": 24}}, resume=True, catalog=catalog)
    Trainer({**part, "max_steps": 7}, resume=True, catalog=catalog).fit()

    a, b = losses_by_step(tmp_path / "full"), losses_by_step(tmp_path / "part")
    assert sorted(b) == list(range(1, 8))  # one continuous curve in metrics.jsonl
    for step in (5, 6, 7):
        for key in ("loss_reg", "loss_adv", "loss_piv_gen", "loss_piv_piv", "loss_d"):
            assert b[step][key] == pytest.approx(a[step][key], abs=1e-6, rel=1e-6), (step, key)
    wa = load_file(str(tmp_path / "full" / "latest" / "model.safetensors"))
    wb = load_file(str(tmp_path / "part" / "latest" / "model.safetensors"))
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], atol=1e-6, rtol=1e-5)


def test_ema_weights_are_saved_validated_and_resumed_exactly(
    real_clips_dir, real_clips, tiny_train_config, catalog, tmp_path
):
    """With ``ema``, latest/model.safetensors holds the running average (not the raw weights, which the training state
    keeps), validation scores the average, and an interrupted run resumes both exactly."""
    from safetensors.torch import load_file

    from a2k_toolkit.training.state import load_training_state

    val = {"val": [str(real_clips_dir / f"{real_clips[-1].clip_id}.npz")]}
    full = tiny_train_config(real_clips_dir, tmp_path / "full", max_steps=6, ema=0.9, data=val)
    trainer = Trainer(full, catalog=catalog)
    init = {k: v.clone() for k, v in trainer.generator.state_dict().items()}
    trainer.fit()
    avg = load_file(str(tmp_path / "full" / "latest" / "model.safetensors"))
    _, tensors = load_training_state(tmp_path / "full" / "latest")
    raw = {k[4:]: v for k, v in tensors.items() if k.startswith("raw.")}
    assert set(raw) == set(avg) == set(init)
    for k in avg:
        torch.testing.assert_close(raw[k], trainer.generator.state_dict()[k])
        torch.testing.assert_close(avg[k], trainer.ema_generator.state_dict()[k])
    moved = [k for k in avg if not torch.equal(raw[k], init[k])]
    assert moved and all(not torch.equal(avg[k], raw[k]) for k in moved)
    # the validation metric is the average's: recompute it with the raw weights swapped in and see it change
    ema_val = trainer.validate()
    trainer.ema_generator = None
    assert trainer.validate() != pytest.approx(ema_val, rel=1e-9, abs=0)

    part = tiny_train_config(real_clips_dir, tmp_path / "part", max_steps=4, ema=0.9, data=val)
    Trainer(part, catalog=catalog).fit()
    with pytest.raises(ConfigError, match="ema changed"):
        Trainer({**part, "ema": 0.5}, resume=True, catalog=catalog)
    Trainer({**part, "max_steps": 6}, resume=True, catalog=catalog).fit()
    resumed = load_file(str(tmp_path / "part" / "latest" / "model.safetensors"))
    for k in avg:
        torch.testing.assert_close(resumed[k], avg[k], atol=1e-6, rtol=1e-5)


def test_nothing_to_resume_is_a_clear_error(real_clips_dir, tiny_train_config, catalog, tmp_path):
    with pytest.raises(ConfigError, match="nothing to resume"):
        Trainer(tiny_train_config(real_clips_dir, tmp_path / "new"), resume=True, catalog=catalog)


def test_checkpoints_hold_what_inference_needs(real_clips_dir, real_clips, tiny_train_config, catalog, tmp_path):
    """latest/ and best/ (with a validation set), atomically written; the checkpoint is self-describing."""
    from a2k_toolkit.builtin.audio2keypoint import model_encoders
    from a2k_toolkit.models.checkpoint import load_generator, read_checkpoint

    val_file = real_clips_dir / f"{real_clips[-1].clip_id}.npz"
    cfg = tiny_train_config(
        real_clips_dir, tmp_path / "run", max_steps=4, val_every=2, checkpoint_every=2, data={"val": [str(val_file)]}
    )
    trainer = Trainer(cfg, catalog=catalog)
    # the validation clip is excluded from the training clips in the same directory
    assert real_clips[-1].clip_id not in {c.clip_id for c in trainer.train_set.clips}
    summary = trainer.fit()
    run = tmp_path / "run"
    assert summary["best_val"] is not None and summary["val_metric"] == "l1"
    assert {p.name for p in run.iterdir()} >= {"latest", "best", "metrics.jsonl", "train_config.yaml"}
    assert not [p for p in run.iterdir() if p.name.startswith(".")]  # no temporary directories left behind
    assert sorted(p.name for p in (run / "best").iterdir()) == ["config.json", "model.safetensors"]
    info = read_checkpoint(run)  # a run directory resolves to best/
    assert info.path == run / "best"
    assert info.frontend["name"] == "logmel" and info.feature_shape == (4, 80) and info.window == 32
    assert info.meta["metrics"]["best_val"] == pytest.approx(summary["best_val"])
    net = load_generator(info, encoders=model_encoders(info.model, catalog))
    assert net(torch.zeros(1, 32, 320), torch.zeros(1, 136)).shape == (1, 32, 136)
    assert any(m.get("val") is not None for m in metrics(run))


def test_bf16_autocast_path_runs_on_cpu(real_clips_dir, tiny_train_config, catalog, tmp_path):
    """The mixed-precision code path (CUDA uses it with bf16 / fp16) exercised on CPU with bf16 autocast."""
    trainer = Trainer(tiny_train_config(real_clips_dir, tmp_path / "run", max_steps=2, amp="bf16"), catalog=catalog)
    assert trainer.amp_dtype == torch.bfloat16
    trainer.fit()
    rows = losses_by_step(tmp_path / "run")
    assert all(np.isfinite(rows[s]["loss_reg"]) for s in (1, 2))
    with pytest.raises(ConfigError, match="fp16 needs a CUDA device"):
        Trainer(tiny_train_config(real_clips_dir, tmp_path / "run2", amp="fp16"), catalog=catalog)


def test_corrupt_training_state_is_a_clear_error(
    tiny_a2k_checkpoint, tiny_train_config, real_clips_dir, catalog, tmp_path
):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(tiny_a2k_checkpoint, run / "latest")
    (run / "latest" / "training_state.safetensors").write_bytes(b"\x00" * 64)
    cfg = json.loads((run / "latest" / "config.json").read_text())["train_config"]
    cfg["run_dir"] = str(run)
    with pytest.raises(CheckpointError, match="training state .* is corrupt"):
        Trainer(cfg, resume=True, catalog=catalog)


def test_cli_train_and_errors(real_clips_dir, tiny_train_config, tmp_path, capsys):
    import yaml

    from a2k_toolkit.cli import main

    cfg = tiny_train_config(real_clips_dir, tmp_path / "run", max_steps=2)
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["train", str(path)]) == 0
    assert "trained to step 2" in capsys.readouterr().out
    assert main(["train", str(path), "--max-steps", "3", "--resume"]) == 0
    assert json.loads((tmp_path / "run" / "latest" / "training_state.json").read_text())["step"] == 3
    assert main(["train", str(path)]) == 2  # existing run without --resume
    assert "--resume" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    missing = {"train": [str(tmp_path / "missing")]}
    bad.write_text(yaml.safe_dump({**cfg, "data": missing, "run_dir": str(tmp_path / "r2")}))
    assert main(["train", str(bad)]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_shipped_training_configs_are_valid():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "configs" / "train"
    files = sorted(root.rglob("*.yaml"))
    paper = {"a2k", "ablation-audio-only", "ablation-no-piv", "ablation-no-discriminator"}
    assert {f.stem for f in files if f.parent.name == "paper"} == paper
    ablations = {f.relative_to(root).as_posix(): load_train_config(f).ablation for f in files}
    assert ablations["paper/a2k.yaml"] == "full" and ablations["paper/ablation-no-piv.yaml"] == "no_piv"
    full = load_train_config(root / "paper" / "a2k.yaml")
    assert (full.batch_size, full.optim.lr_g, full.data.window, full.epochs) == (32, 1e-4, 64, 300)


def test_ctrl_c_finishes_the_step_saves_and_resumes(real_clips_dir, tiny_train_config, catalog, tmp_path):
    import signal

    cfg = tiny_train_config(real_clips_dir, tmp_path / "run", max_steps=5)
    trainer = Trainer(cfg, catalog=catalog)
    step = trainer.train_step
    previous = signal.getsignal(signal.SIGINT)  # the default, or SIG_IGN when the suite runs in a background job

    def interrupted_step(batch):
        out = step(batch)
        if trainer.step == 1:  # the signal arrives while step 2 runs
            signal.raise_signal(signal.SIGINT)
        return out

    trainer.train_step = interrupted_step
    with pytest.raises(KeyboardInterrupt, match="step 2"):
        trainer.fit()
    assert signal.getsignal(signal.SIGINT) is previous  # the trainer's handler is gone again
    assert json.loads((tmp_path / "run" / "latest" / "training_state.json").read_text())["step"] == 2
    assert Trainer(cfg, resume=True, catalog=catalog).fit()["step"] == 5
    assert sorted(losses_by_step(tmp_path / "run")) == [1, 2, 3, 4, 5]


def _wait_for_steps(metrics, proc, n: int, timeout: float = 300.0) -> None:
    import time

    deadline = time.time() + timeout
    while time.time() < deadline:
        if metrics.is_file() and sum(1 for ln in metrics.read_text().splitlines() if '"loss_reg"' in ln) >= n:
            return
        if proc.poll() is not None:
            raise AssertionError(f"training ended early: {proc.stderr.read()}")
        time.sleep(0.05)
    raise AssertionError(f"no {n} logged steps after {timeout} s")


def _sigterm_run_checks(run_dir, proc, stderr: str) -> int:
    assert proc.returncode == 130, stderr  # stopped like Ctrl-C, not killed by the signal (-15 / 143)
    assert "SIGTERM: stopping after this step" in stderr and "Traceback" not in stderr, stderr
    steps = [json.loads(x)["step"] for x in (run_dir / "metrics.jsonl").read_text().splitlines() if "loss_reg" in x]
    saved = json.loads((run_dir / "latest" / "training_state.json").read_text())["step"]
    assert saved == steps[-1] >= 2  # latest/ holds the step it stopped at (checkpoint_every is far away)
    return saved


def test_sigterm_saves_latest_like_ctrl_c_in_a_real_process(real_clips_dir, tiny_train_config, tmp_path):
    import signal
    import subprocess

    from a2k_toolkit.cli import main

    run_dir = tmp_path / "run"
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(tiny_train_config(real_clips_dir, run_dir, max_steps=100000)))
    proc = subprocess.Popen(
        [sys.executable, "-m", "a2k_toolkit.cli", "train", str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_for_steps(run_dir / "metrics.jsonl", proc, 2)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=120)
    finally:
        proc.kill()
    saved = _sigterm_run_checks(run_dir, proc, stderr)
    assert main(["train", str(path), "--resume", "--max-steps", str(saved + 1)]) == 0


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds the ranks through /proc")
def test_sigterm_to_one_ddp_rank_stops_and_saves_every_rank(real_clips_dir, tiny_train_config, tmp_path):
    import os
    import signal
    import subprocess
    import time
    from pathlib import Path

    run_dir = tmp_path / "run"
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(tiny_train_config(real_clips_dir, run_dir, max_steps=100000, batch_size=2)))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            "-m",
            "a2k_toolkit.cli",
            "train",
            str(path),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        _wait_for_steps(run_dir / "metrics.jsonl", proc, 2)
        ranks = {}
        for child in Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split():
            environ = Path(f"/proc/{child}/environ").read_bytes().split(b"\0")
            rank = next((e[5:].decode() for e in environ if e.startswith(b"RANK=")), None)
            ranks[rank] = int(child)
        assert set(ranks) == {"0", "1"}, ranks
        os.kill(ranks["1"], signal.SIGTERM)  # only rank 1 is told: the ranks agree, rank 0 saves, all stop
        _, stderr = proc.communicate(timeout=180)
    finally:
        proc.kill()
    assert proc.returncode != 0 and "SIGTERM: stopping after this step" in stderr, stderr
    steps = [json.loads(x)["step"] for x in (run_dir / "metrics.jsonl").read_text().splitlines() if "loss_reg" in x]
    state = json.loads((run_dir / "latest" / "training_state.json").read_text())
    assert state["step"] == steps[-1] >= 2 and state["world_size"] == 2
    deadline = time.time() + 30
    while any(Path(f"/proc/{pid}").exists() for pid in ranks.values()) and time.time() < deadline:
        time.sleep(0.1)
