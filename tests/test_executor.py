"""The executors: a sweep on a Dask LocalCluster equals the local one, survives a dead worker,
refuses a cache the workers cannot see, sends GPU tasks to GPU workers; the SLURM dry run.

Every cluster here listens on 127.0.0.1 only and is closed at the end of the test that made it.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from pathlib import Path

import cloudpickle
import pytest

from mnemonic_mu.drivers import executor as X
from mnemonic_mu.drivers import sweep as S
from mnemonic_mu.drivers.cli import main
from mnemonic_mu.errors import ConfigError
from mnemonic_mu.settings import Settings

# the task wrappers below travel to the worker processes by value (they cannot import this file)
cloudpickle.register_pickle_by_value(sys.modules[__name__])

CLASSES, SEEDS = (3,), (0, 1)
ROWS = {"mnemonic", "mnemonic_paper", *S.REFERENCES}


def tiny(cache: Path) -> Settings:
    return Settings(dataset="digits", epochs=2, threads=1, cache_dir=str(cache), baselines=("mnemonic_paper",),
                    probe_max_train=300)


def numbers(rows: list[dict]) -> list[tuple]:
    """What must not depend on where a row was computed (repr: NaN equals NaN, floats compare exactly)."""
    return sorted((r["method"], r["seed"], r["forget_class"], repr(r["A_R"]), repr(r["E_F"]), repr(r["gap"]),
                   tuple((k, repr(a["value"])) for k, a in sorted(r["attacks"].items()))) for r in rows)


@pytest.fixture(scope="module")
def local_sweep(tmp_path_factory):
    """The reference: the same sweep on the local backend (in-process), its own cache."""
    tmp = tmp_path_factory.mktemp("local")
    return S.run_sweep(tiny(tmp / "cache"), CLASSES, SEEDS, out_dir=str(tmp / "out"))


def one_row_each(result: dict, out: Path) -> None:
    keys = [(r["method"], r["seed"], r["forget_class"]) for r in result["rows"]]
    assert len(keys) == len(set(keys)) == len(ROWS) * len(SEEDS) * len(CLASSES)
    assert {k[0] for k in keys} == ROWS
    files = sorted(p.relative_to(out / "rows").as_posix() for p in (out / "rows").rglob("*.json"))
    bands = {f"band{b}" for b in Settings().band_seeds}  # retrain's seed band: one row per band seed and request
    assert files == sorted(f"seed{s}_class{c}/{m}.json" for s in SEEDS for c in CLASSES for m in ROWS | bands)
    assert len(result["band_rows"]) == len(bands) * len(SEEDS) * len(CLASSES)


# --------------------------------------------------------------------------
# fast: no cluster


def test_local_executor_records_the_timing_split():
    ex = X.make_executor("local", 1)
    assert ex.map(pow, [(2, 3), (3, 2)], "train") == [8, 9]
    assert ex.map(abs, [(-1,)], "score") == [1]
    t = ex.timing_split()
    assert set(t) == {"queue_seconds", "train_seconds", "score_seconds", "tasks"}
    assert t["tasks"]["train"]["n"] == 2 and t["tasks"]["score"]["failed"] == 0
    assert all(task["started"] >= task["submitted"] and task["where"].endswith(f":{os.getpid()}")
               for task in ex.timings.tasks)
    with pytest.raises(ConfigError, match="unknown backend 'nope'"):
        X.make_executor("nope", 1)
    with pytest.raises(ConfigError, match="needs --backend dask"):
        X.make_executor("local", 1, scheduler="tcp://127.0.0.1:1")


def test_shared_dirs_and_gpu_detection(tmp_path):
    s = tiny(tmp_path / "cache")
    args = [(s, "original"), (s.replace(seed=1), "retrain"), (s, tmp_path / "out")]
    assert X.shared_dirs(args) == [("cache_dir", s.cache_dir), ("folder", str(tmp_path / "out"))]
    assert not X.needs_gpu(args)
    fake = s.replace()
    object.__setattr__(fake, "device", "cuda")  # a GPU sweep's settings, on a machine without CUDA
    assert X.needs_gpu([(fake, "original")])


def test_a_task_refuses_a_cache_without_the_clients_marker(tmp_path):
    """The per-task check (what stops a worker that joined after the up-front check): a worker
    whose cache directory lacks the client's marker refuses to run the task."""
    marker = (("cache_dir", str(tmp_path), "tok123"),)
    with pytest.raises(ConfigError, match=f"the cache directory {tmp_path} is not shared storage: "
                                          "worker .* cannot see it"):
        X._run_task(pow, (2, 3), marker)
    X._marker_path(tmp_path, "tok123").write_text("tok123")
    result, started, finished, where = X._run_task(pow, (2, 3), marker)
    assert result == 8 and finished >= started


def test_slurm_dry_run_prints_the_job_script(capsys):
    assert main(["sweep", "--backend", "slurm", "--dry-run", "--queue", "cpu", "--walltime", "01:00:00"]) == 0
    script = capsys.readouterr().out
    for line in ("#SBATCH -p cpu", "#SBATCH --cpus-per-task=1", "#SBATCH --mem=4G", "#SBATCH -t 01:00:00",
                 "export OMP_NUM_THREADS=1", "export MKL_NUM_THREADS=1", "--nthreads 1", "--memory-limit 3.73GiB"):
        assert line in script, line
    assert "gres" not in script and "--resources" not in script
    gpu = X.slurm_job_script(gpu=True, memory="8GB")
    assert "#SBATCH --gres=gpu:1" in gpu and "--resources GPU=1" in gpu and "#SBATCH --mem=8G" in gpu
    assert main(["sweep", "--dry-run"]) == 2  # needs --backend slurm
    assert main(["sweep", "--scheduler", "tcp://127.0.0.1:1"]) == 2  # needs --backend dask


# --------------------------------------------------------------------------
# slow: a LocalCluster over loopback


@pytest.mark.slow
def test_dask_sweep_through_the_cli_equals_the_local_one(local_sweep, tmp_path, capsys):
    """``mnemonic-mu sweep --backend dask --jobs 2``: a LocalCluster of 2 worker processes on
    127.0.0.1, its own cache (so every model is really trained there); same numbers as local."""
    out = tmp_path / "out"
    rc = main(["sweep", "--dataset", "digits", "--epochs", "2", "--baselines", "mnemonic_paper", "--threads", "1",
               "--classes", "3", "--seeds", "0", "1", "--probe-max-train", "300", "--backend", "dask", "--jobs", "2",
               "--no-progress", "--cache-dir", str(tmp_path / "cache"), "--out-dir", str(out)])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "Dask scheduler tcp://127.0.0.1:" in printed and "(LocalCluster)" in printed
    assert "queueing" in printed and "training" in printed and "scoring" in printed
    result = json.loads((out / "sweep.json").read_text())
    assert numbers(result["rows"]) == numbers(local_sweep["rows"])
    assert numbers(result["band_rows"]) == numbers(local_sweep["band_rows"])
    assert not any(t["from_cache"] for t in result["trained"])  # trained on the cluster, not reused
    assert result["environment"]["executor"]["backend"] == "dask"
    assert result["environment"]["executor"]["workers"] == 2
    timing = result["timing"]
    # 2 seeds x (original, no-codes, retrain) and one band reference per band seed of the class
    assert timing["tasks"]["train"]["n"] == 6 + len(Settings().band_seeds) and timing["tasks"]["score"]["n"] == 2
    assert timing["train_seconds"] > 0 and timing["score_seconds"] > 0 and timing["queue_seconds"] >= 0
    one_row_each(result, out)
    assert not list((tmp_path / "cache").glob(X.MARKER_PREFIX + "*"))  # markers removed at close


def _die_first(marker: str, fn, *args):
    """The first call anywhere (guarded by ``marker``, created atomically) kills its worker process
    the hard way, as a crash or an OOM kill would; every later call runs ``fn``."""
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return fn(*args)
    os.write(fd, str(os.getpid()).encode())
    os.close(fd)
    os._exit(1)


class _KillOneWorker(X.DaskExecutor):
    """A DaskExecutor whose first scoring task kills the worker running it."""

    def __init__(self, marker: Path, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.marker = marker

    def map(self, fn, args, label="tasks"):
        if label == "score":
            fn = functools.partial(_die_first, str(self.marker), fn)
        return super().map(fn, args, label)


@pytest.mark.slow
def test_a_dead_worker_mid_sweep_costs_time_not_rows(local_sweep, tmp_path):
    """A worker dies in the middle of the scoring stage: Dask reschedules its task on a live
    worker; the sweep completes with every row exactly once and the local run's numbers."""
    marker = tmp_path / "killed"
    ex = _KillOneWorker(marker, 2, retries=2, progress=False, worker_resources={})
    try:
        s = tiny(tmp_path / "cache")
        result = S.run_sweep(s, CLASSES, SEEDS, out_dir=str(tmp_path / "out"), executor=ex)
        dead = int(marker.read_text())
        alive = set(ex.client.run(os.getpid).values())
    finally:
        ex.close()
    assert dead not in alive  # that worker process is gone (its nanny started a new one)
    scored = [t for t in ex.timings.tasks if t["label"] == "score"]
    assert len(scored) == 2 and not any(t["failed"] for t in scored)
    assert all(not t["where"].endswith(f":{dead}") for t in scored)  # the killed attempt left no result
    assert numbers(result["rows"]) == numbers(local_sweep["rows"])
    one_row_each(result, tmp_path / "out")


@pytest.mark.slow
def test_a_cache_the_workers_cannot_see_is_refused(tmp_path, monkeypatch):
    """Simulated: the client's own file operations of the check are redirected to another folder
    (``_client_path``), as when the client's ``/cache`` is a local disk and each worker's ``/cache``
    is another machine's.  The workers (real processes, unpatched) look at the real path, find no
    marker, and the sweep stops before any task is submitted.  It does not simulate a network
    filesystem's caching delays."""
    elsewhere = tmp_path / "client-disk"
    monkeypatch.setattr(X, "_client_path", lambda p: elsewhere / p.relative_to(p.anchor))
    ex = X.DaskExecutor(1, progress=False, worker_resources={})
    try:
        s = tiny(tmp_path / "cache")
        with pytest.raises(ConfigError, match=r"the cache directory .*cache is not shared storage: worker \S+ "
                                              r"\(.*\) cannot see it; put cache_dir \(--cache-dir\) on a filesystem "
                                              r"every worker mounts"):
            S.run_sweep(s, CLASSES, SEEDS, out_dir=str(tmp_path / "out"), executor=ex)
    finally:
        ex.close()
    assert not (tmp_path / "cache" / "models").exists()  # nothing was trained on the worker
    assert not ex.timings.tasks  # nothing was submitted


@pytest.mark.slow
def test_gpu_tasks_run_only_on_workers_with_the_gpu_resource(tmp_path):
    """Tasks of a ``cuda`` sweep ask for the Dask resource GPU=1: refused while no worker has it,
    then sent only to a worker started with ``dask worker ... --resources GPU=1`` (a CPU-only
    process here: the resource is a label the scheduler matches, the task below does not use CUDA)."""
    cpu = tiny(tmp_path / "cache")
    gpu = cpu.replace()
    object.__setattr__(gpu, "device", "cuda")
    ex = X.DaskExecutor(1, progress=False, worker_resources={})
    proc = None
    try:
        with pytest.raises(ConfigError, match="no connected Dask worker advertises the resource GPU"):
            ex.map(lambda s: X._where(), [(gpu,)], "train")
        proc = subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", ex.scheduler, "--nthreads", "1",
                                 "--resources", "GPU=1", "--name", "gpu-0", "--no-nanny", "--no-dashboard",
                                 "--host", "127.0.0.1", "--death-timeout", "20"], env=os.environ | X.WORKER_ENV,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        ex.client.wait_for_workers(2, timeout=120)
        wheres = ex.map(lambda s: X._where(), [(gpu,)] * 6, "train")
        assert {w.rsplit(":", 1)[1] for w in wheres} == {str(proc.pid)}
        assert set(ex.map(lambda s: s.device, [(cpu,)] * 2, "score")) == {"cpu"}  # CPU tasks: any worker
    finally:
        if proc is not None:  # stop the worker first, while its scheduler still answers
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=30)
        ex.close()


@pytest.mark.slow
def test_connects_to_a_running_scheduler_by_address_or_dask_config(tmp_path, monkeypatch, capsys):
    """``--scheduler ADDRESS`` and Dask's own ``DASK_SCHEDULER_ADDRESS``: the executor joins a
    cluster it did not start, and leaves it running when it closes.  Also: the progress bar
    (done / running / failed) and a failing task (raised after every task has finished)."""
    import dask
    from distributed import LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, host="127.0.0.1", dashboard_address="127.0.0.1:0") as cluster:
        with X.make_executor("dask", 1, scheduler=cluster.scheduler_address, progress=True, retries=0) as ex:
            assert ex.map(pow, [(2, 5)], "t") == [32]
            assert ex.describe()["cluster"] == "external" and ex.describe()["scheduler"] == cluster.scheduler_address
            with pytest.raises(ValueError, match="invalid literal"):
                ex.map(int, [("1",), ("x",), ("3",)], "parse")
            parse = ex.timing_split()["tasks"]["parse"]
            assert parse["n"] == 3 and parse["failed"] == 1
        err = capsys.readouterr().err
        assert "parse: 100%" in err and "failed=1" in err and "running=" in err
        monkeypatch.setenv("DASK_SCHEDULER_ADDRESS", cluster.scheduler_address)
        dask.config.refresh()
        try:
            with X.make_executor("dask", 1, progress=False) as ex:
                assert ex.scheduler == cluster.scheduler_address and ex.map(abs, [(-3,)], "t") == [3]
        finally:
            monkeypatch.delenv("DASK_SCHEDULER_ADDRESS")
            dask.config.refresh()
        assert cluster.scheduler_info["workers"]  # still up: the executor closed only its client
    with pytest.raises(ConfigError, match="cannot reach the Dask scheduler"):
        X.DaskExecutor(1, scheduler="tcp://127.0.0.1:9", wait_timeout=2)
