"""The resilient worker pool and its journal (a2k_toolkit.workpool), in real processes: a job that raises, a
worker that dies (os._exit, as in a segfault), reruns with their attempts counted, workers that die with a SIGKILLed
parent, SIGTERM stopping the workers at once, and a journal that survives a torn line and resumes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from a2k_toolkit.workpool import Journal, Outcome, run_pool, worker_threads

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
sys.path.insert(0, str(TESTS))
import workpool_jobs  # noqa: E402  (spawned workers import it by name)

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses /proc and Linux signals")


def test_results_errors_and_a_crash_each_stay_with_their_item(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)  # so the workers get the pool's share
    items = [(v, 1) for v in range(8)]
    outcomes = list(
        run_pool(
            workpool_jobs.job,
            items,
            workers=2,
            initializer=workpool_jobs.init,
            initargs=("ready",),
            inflight=4,
            rerun=workpool_jobs.next_attempt,
        )
    )
    by_value = {o.item[0]: o for o in outcomes}
    assert sorted(by_value) == list(range(8)) and len(outcomes) == 8  # every item exactly once

    crashed = by_value[3]
    assert crashed.crashed and crashed.result is None and crashed.error is None
    assert crashed.runs == 2 and crashed.item == (3, 2)  # once with the others, once alone; the attempt counted

    failed = by_value[5]
    assert isinstance(failed.error, ValueError) and "bad value 5" in str(failed.error) and not failed.crashed

    for v in (0, 1, 2, 4, 6, 7):
        out = by_value[v]
        assert out.error is None and not out.crashed
        res = out.result
        assert res["value"] == v and res["tag"] == "ready" and res["inits"] == 1  # the initializer ran once
        assert res["attempt"] == out.runs == out.item[1]  # a job rerun after the crash ran with attempt 2
        assert res["omp"] == str(worker_threads(2)) and not res["torch_loaded"]
        if out.runs == 1:
            assert res["index"] in (0, 1)  # a pool of two numbers its workers 0 and 1
        else:
            assert res["index"] == 0  # reruns run alone, in a pool of one
    assert {o.result["pid"] for o in outcomes if o.result} != {os.getpid()}


def test_an_item_that_always_kills_its_worker_is_reported_once():
    outcomes = list(run_pool(workpool_jobs.crash_always, [1, 2], workers=2))
    assert sorted(o.item for o in outcomes) == [1, 2]
    assert all(o.crashed and o.runs == 2 for o in outcomes)


def test_a_result_that_cannot_be_sent_back_is_that_items_error():
    (out,) = run_pool(workpool_jobs.unpicklable, [7], workers=1)
    assert isinstance(out, Outcome) and out.error is not None and not out.crashed and out.runs == 1


def test_no_items_starts_nothing():
    assert list(run_pool(workpool_jobs.job, [], workers=3)) == []


# ------------------------------------------------------------------------------------------ kills and signals


def session_pids(sid: int) -> list[int]:
    """Live processes of session ``sid`` (the test starts each driver in a new session)."""
    pids = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid and fields[0] != "Z":
            pids.append(int(d.name))
    return pids


def alive(pid: int) -> bool:
    """Running (a zombie waiting for a reaper that never comes in a container counts as gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def wait_until(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def driver(code: str, **env_vars: str) -> subprocess.Popen:
    prelude = f"import sys; sys.path.insert(0, {str(TESTS)!r}); import workpool_jobs\n"
    env = {**os.environ, "PYTHONPATH": str(REPO), **env_vars}
    return subprocess.Popen(
        [sys.executable, "-c", prelude + code],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
    )


def pid_files(folder: Path) -> list[int]:
    return [int(p.stem) for p in folder.glob("*.pid")]


def cleanup(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    for pid in session_pids(proc.pid):  # only processes this test started
        os.kill(pid, signal.SIGKILL)


@linux_only
def test_workers_die_with_a_sigkilled_parent(tmp_path):
    proc = driver(
        "from a2k_toolkit.workpool import run_pool\n"
        f"for _ in run_pool(workpool_jobs.sleeper, [({str(tmp_path)!r}, 300)] * 2, workers=2):\n"
        "    pass\n"
    )
    try:
        workers = wait_until(lambda: len(pid_files(tmp_path)) == 2 and pid_files(tmp_path), 120, "two workers")
        proc.kill()  # SIGKILL: no cleanup runs in the parent
        proc.wait()
        wait_until(lambda: not session_pids(proc.pid), 15, "the workers (and helpers) to exit")
        assert not any(alive(pid) for pid in workers)
    finally:
        cleanup(proc)


SIGTERM_DRIVER = """
import signal
from pathlib import Path
from a2k_toolkit.workpool import Journal, run_pool

def term(signum, frame):
    raise KeyboardInterrupt  # what the CLI does with SIGTERM
signal.signal(signal.SIGTERM, term)
folder = Path({folder!r})
journal = Journal(folder / "journal.jsonl", key="key")
done = journal.read()
items = [(str(folder), n) for n in range(6) if str(n) not in done]
print(len(done), "already done", flush=True)
try:
    for out in run_pool(workpool_jobs.quick_or_slow, items, workers=2, inflight=2):
        journal.append({{"key": str(out.item[1]), "result": out.result, "runs": out.runs}})
except KeyboardInterrupt:
    print("interrupted", flush=True)
    sys.exit(130)
"""


@linux_only
def test_sigterm_stops_the_workers_at_once_and_the_journal_resumes(tmp_path):
    proc = driver(SIGTERM_DRIVER.format(folder=str(tmp_path)))
    journal = Journal(tmp_path / "journal.jsonl", key="key")
    try:
        wait_until(lambda: len(journal.read()) == 2 and len(pid_files(tmp_path)) == 2, 120, "two records, two sleepers")
        sleepers = pid_files(tmp_path)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)  # the parent only, as `kill PID` or a scheduler would
        assert proc.wait(timeout=30) == 130, proc.stderr.read()
        assert time.monotonic() - t0 < 20  # not the two minutes the jobs in flight would take
        assert "interrupted" in proc.stdout.read()
        wait_until(lambda: not session_pids(proc.pid), 15, "the workers to exit")
        assert not any(alive(pid) for pid in sleepers)
    finally:
        cleanup(proc)
    assert sorted(journal.read()) == ["0", "1"]  # what finished before the signal, recorded once

    # the rerun skips what the journal holds and finishes the rest (the slow items are quick now)
    rerun = driver(SIGTERM_DRIVER.format(folder=str(tmp_path)), A2K_TEST_QUICK="1")
    try:
        out, err = rerun.communicate(timeout=300)
    finally:
        cleanup(rerun)
    assert rerun.returncode == 0, err
    assert out.startswith("2 already done")
    lines = [json.loads(x) for x in (tmp_path / "journal.jsonl").read_text().splitlines()]
    assert sorted(r["key"] for r in lines) == [str(n) for n in range(6)]  # each item recorded exactly once


# ---------------------------------------------------------------------------------------------------- journal


def test_journal_latest_wins_and_a_torn_line_is_skipped_then_closed(tmp_path):
    path = tmp_path / "state" / "journal.jsonl"
    journal = Journal(path, key="id")
    assert journal.read() == {}
    journal.append({"id": "a", "status": "failed"})
    journal.append_many([{"id": "b", "status": "done"}, {"id": "a", "status": "done", "n": 2}])
    journal.append_many([])
    with open(path, "ab") as f:  # a kill in the middle of a write
        f.write(b'{"id": "c", "sta')
    assert journal.read() == {"a": {"id": "a", "status": "done", "n": 2}, "b": {"id": "b", "status": "done"}}
    journal.append({"id": "c", "status": "done"})  # starts on a fresh line
    raw = path.read_bytes().splitlines()
    assert raw[-2] == b'{"id": "c", "sta' and json.loads(raw[-1]) == {"id": "c", "status": "done"}
    assert sorted(journal.read()) == ["a", "b", "c"]
    # lines that are not JSON objects with a string key are ignored
    with open(path, "ab") as f:
        f.write(b'[1, 2]\n{"id": 3}\n{"other": "x"}\nnot json\n\xff\xfe\n')
    assert sorted(journal.read()) == ["a", "b", "c"]


def test_journals_written_by_the_earlier_builder_and_dubbing_code_still_read(tmp_path):
    # the earlier StatusLog wrote sorted keys; the earlier dubbing journal wrote keys in their order, with str()
    # for non-JSON values; either may end in a line torn by a kill
    status = tmp_path / "status.jsonl"
    status.write_bytes(
        b'{"identity": "p1", "key": "v/1", "status": "done"}\n'
        b'{"key": "v/2", "message": "no face", "reason": "no_face", "status": "failed"}\n'
        b'{"key": "v/3", "sta'
    )
    dub = tmp_path / "journal.jsonl"
    dub.write_text(
        '{"id": "r1", "line": 2, "status": "done", "fingerprint": "f1", "output": "a.mp4"}\n'
        '{"id": "r2", "line": 3, "status": "failed", "reason": "x"}\n'
        '{"id": "r1", "line": 2, "status": "done", "fingerprint": "f2", "output": "a.mp4"}\n'
    )
    from a2k_toolkit.data.layout import StatusLog
    from a2k_toolkit.dubbing.runner import journal

    assert sorted(StatusLog(status).read()) == ["v/1", "v/2"]
    latest = journal(tmp_path).read()
    assert latest["r1"]["fingerprint"] == "f2" and latest["r2"]["status"] == "failed"
    # and new records are written as the earlier code wrote them
    journal(tmp_path).append({"id": "r3", "status": "done", "when": Path("x")})
    assert dub.read_text().splitlines()[-1] == '{"id": "r3", "status": "done", "when": "x"}'
    StatusLog(status).append({"status": "done", "key": "v/3"})
    assert status.read_bytes().splitlines()[-1] == b'{"key": "v/3", "status": "done"}'
