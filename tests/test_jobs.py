"""The reproductions' job runner: progress lines, results stored as jobs finish, resume after an interruption."""

import json
import re
import subprocess
import sys

import pytest

from hypernetworks.experiments._common import JobSettings, configured, job_settings, run_jobs

CALLS = []


def square(job):
    CALLS.append(job)
    if job == "boom":
        raise KeyboardInterrupt  # an interruption in the middle of a run
    return job * job


def test_an_interrupted_run_resumes_where_it_stopped(tmp_path, caplog):
    caplog.set_level("INFO", logger="hypernetworks.experiments")
    settings = JobSettings(store=tmp_path / "store", resume=True, label="demo")
    with job_settings(settings), pytest.raises(KeyboardInterrupt):
        run_jobs(square, [1, 2, "boom", 4], workers=1)
    assert len(list((tmp_path / "store").glob("*.pkl"))) == 2  # the two jobs that finished
    CALLS.clear()
    with job_settings(settings):
        assert run_jobs(square, [1, 2, 3, 4], workers=1) == [1, 4, 9, 16]
    assert CALLS == [3, 4]  # 1 and 2 came from the store
    assert "demo: 2/4 jobs found in the store" in caplog.text and "demo: job 4/4 done" in caplog.text
    with job_settings(JobSettings(store=tmp_path / "store", resume=False)):
        CALLS.clear()
        run_jobs(square, [1, 2], workers=1)
    assert CALLS == [1, 2]  # without resume every job runs


def test_worker_processes_give_the_same_list_in_job_order(tmp_path):
    with job_settings(JobSettings(store=tmp_path, workers=2)):
        assert run_jobs(abs, [-3, 2, -1, 5], workers=1) == [3, 2, 1, 5]


def test_reproduce_resume_gives_the_same_json(tmp_path):
    def reproduce(*extra):
        run = subprocess.run([sys.executable, "-m", "hypernetworks.cli", "reproduce", "hyperppo", "--quick", "--out",
                              str(tmp_path), *extra], capture_output=True, text=True, env={"OMP_NUM_THREADS": "1",
                                                                                          "PATH": "/usr/bin:/bin"})
        assert run.returncode == 0, run.stderr[-2000:]
        record = json.loads((tmp_path / "hyperppo-quick.json").read_text())
        return {"table": re.sub(r"\d+ s\b", "s", record["table"]), "claims": record["claims"]}  # timings aside

    first = reproduce()
    stored = sorted((tmp_path / ".jobs" / "hyperppo-quick").glob("*/*.pkl"))
    assert stored
    stored[0].unlink()  # as if the run had stopped before that job
    assert reproduce("--resume") == first


def test_seeds_override_every_form_of_seed_count():
    cfg = {"seeds": 3, "steps": 5}
    assert configured(cfg) == cfg and configured(cfg) is not cfg  # no --seeds: the reproduction's own
    with job_settings(JobSettings(seeds=5)):
        assert configured(cfg) == {"seeds": 5, "steps": 5}
        assert configured({"seeds": (0, 1)})["seeds"] == (0, 1, 2, 3, 4)
        assert configured({"seeds": {"a": 2, "b": 1}})["seeds"] == {"a": 5, "b": 5}
        with pytest.raises(ValueError, match="no seed count"):
            configured({"steps": 5})
    assert cfg == {"seeds": 3, "steps": 5}
    with pytest.raises(ValueError, match="seeds must be >= 1"):
        JobSettings(seeds=0)


def test_reproduce_seeds_reach_the_json(tmp_path):
    run = subprocess.run([sys.executable, "-m", "hypernetworks.cli", "reproduce", "hyperppo", "--quick", "--seeds", "2",
                          "--out", str(tmp_path)], capture_output=True, text=True,
                         env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    assert run.returncode == 0, run.stderr[-2000:]
    record = json.loads((tmp_path / "hyperppo-quick.json").read_text())
    assert record["config"]["seeds"] == 2 and record["command"].endswith("--seeds 2")
    assert all(len(c["ours"]["values"]) == 2 for c in record["claims"] if c["kind"] == "paired")


def test_ray_backend_gives_the_process_pool_results(tmp_path):
    pytest.importorskip("ray")

    def reproduce(out, *extra):
        run = subprocess.run([sys.executable, "-m", "hypernetworks.cli", "reproduce", "hyperppo", "--quick", "--out",
                              str(out), *extra], capture_output=True, text=True,
                             env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin", "RAY_USAGE_STATS_ENABLED": "0"})
        assert run.returncode == 0, run.stderr[-3000:]
        record = json.loads((out / "hyperppo-quick.json").read_text())
        return {"table": re.sub(r"\d+ s\b", "s", record["table"]), "claims": record["claims"]}

    assert reproduce(tmp_path / "ray", "--backend", "ray") == reproduce(tmp_path / "pool", "--workers", "2")
