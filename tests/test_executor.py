"""The executors: a sweep on a Dask LocalCluster equals the local one, survives a dead worker,
refuses a cache the workers cannot see, sends GPU tasks to GPU workers; the SLURM dry run.

Every cluster here listens on 127.0.0.1 only and is closed at the end of the test that made it.
"""

from __future__ import annotations

import functools
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import cloudpickle
import pytest

from mnemonic_mu.drivers import executor as X, sweep as S
from mnemonic_mu.drivers.cli import main
from mnemonic_mu.errors import ConfigError, DeviceError
from mnemonic_mu.settings import Settings

# the task wrappers below travel to the worker processes by value (they cannot import this file)
cloudpickle.register_pickle_by_value(sys.modules[__name__])

CLASSES, SEEDS = (3,), (0, 1)
ROWS = {"mnemonic", "mnemonic_paper", *S.REFERENCES}


def tiny(cache: Path) -> Settings:
    return Settings(
        dataset="digits", epochs=2, threads=1, cache_dir=str(cache), baselines=("mnemonic_paper",), probe_max_train=300
    )


def numbers(rows: list[dict]) -> list[tuple]:
    """What must not depend on where a row was computed (repr: NaN equals NaN, floats compare exactly)."""
    return sorted(
        (
            r["method"],
            r["seed"],
            r["forget_class"],
            repr(r["A_R"]),
            repr(r["E_F"]),
            repr(r["gap"]),
            tuple((k, repr(a["value"])) for k, a in sorted(r["attacks"].items())),
        )
        for r in rows
    )


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
    assert all(
        task["started"] >= task["submitted"] and task["where"].endswith(f":{os.getpid()}") for task in ex.timings.tasks
    )
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
    with pytest.raises(
        ConfigError, match=f"the cache directory {tmp_path} is not shared storage: worker .* cannot see it"
    ):
        X._run_task(pow, (2, 3), marker)
    X._marker_path(tmp_path, "tok123").write_text("tok123")
    result, started, finished, where = X._run_task(pow, (2, 3), marker)
    assert result == 8 and finished >= started


def test_slurm_dry_run_prints_the_job_script(capsys):
    assert main(["sweep", "--backend", "slurm", "--dry-run", "--queue", "cpu", "--walltime", "01:00:00"]) == 0
    script = capsys.readouterr().out
    for line in (
        "#SBATCH -p cpu",
        "#SBATCH --cpus-per-task=1",
        "#SBATCH --mem=4G",
        "#SBATCH -t 01:00:00",
        "export OMP_NUM_THREADS=1",
        "export MKL_NUM_THREADS=1",
        "--nthreads 1",
        "--memory-limit 3.73GiB",
    ):
        assert line in script, line
    assert "gres" not in script and "--resources" not in script
    gpu = X.slurm_job_script(gpu=True, memory="8GB")
    assert "#SBATCH --gres=gpu:1" in gpu and "--resources GPU=1" in gpu and "#SBATCH --mem=8G" in gpu
    assert main(["sweep", "--dry-run"]) == 2  # needs --backend slurm
    # implies --backend dask; nothing listens there (the default wait: test_a_scheduler_that_is_not_there...)
    assert main(["sweep", "--scheduler", "tcp://127.0.0.1:1", "--connect-timeout", "1"]) == 2


def test_a_dry_run_starts_nothing_and_previews_a_gpu_job_without_a_gpu(monkeypatch, capsys):
    """``--dry-run`` renders the job script only: no scheduler, cluster, process or listening socket
    (each would fail here), and a ``cuda`` job is previewed on a machine without CUDA.  A real run
    still checks the device."""
    import dask_jobqueue
    import distributed
    import torch

    def started(*args, **kwargs):
        raise AssertionError("a dry run started something")

    for owner, name in (
        (distributed.Scheduler, "__init__"),
        (distributed.LocalCluster, "__init__"),
        (dask_jobqueue.SLURMCluster, "__init__"),
        (subprocess.Popen, "__init__"),
        (socket.socket, "bind"),
        (socket.socket, "listen"),
    ):
        monkeypatch.setattr(owner, name, started)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main(["sweep", "--backend", "slurm", "--dry-run", "--device", "cuda", "--jobs", "3"]) == 0
    script = capsys.readouterr().out
    assert "#SBATCH --gres=gpu:1" in script and "--resources GPU=1" in script
    assert X.SCRIPT_SCHEDULER in script and "# 3 such job(s)" in script
    # the device check is skipped for the preview only
    with pytest.raises(DeviceError, match="no usable CUDA GPU"):
        Settings(device="cuda")
    assert main(["sweep", "--backend", "slurm", "--device", "cuda"]) == 2
    assert "no usable CUDA GPU" in capsys.readouterr().err
    assert main(["sweep", "--backend", "slurm", "--dry-run", "--device", "gpu"]) == 2  # a preview checks the spelling
    assert "unknown device 'gpu'" in capsys.readouterr().err


def test_scheduler_implies_the_dask_backend(monkeypatch, capsys):
    """``--scheduler ADDR`` alone means ``--backend dask``; with ``--backend slurm`` or ``local`` it is
    refused with a line saying why."""

    def make(backend, jobs, **options):
        raise ConfigError(
            f"made backend={backend} scheduler={options.get('scheduler')} "
            f"connect_timeout={options.get('connect_timeout')}"
        )

    monkeypatch.setattr(S, "make_executor", make)
    assert main(["sweep", "--scheduler", "tcp://127.0.0.1:8786", "--connect-timeout", "3"]) == 2
    assert "made backend=dask scheduler=tcp://127.0.0.1:8786 connect_timeout=3.0" in capsys.readouterr().err
    assert main(["sweep", "--jobs", "2", "--no-progress"]) == 2  # without --scheduler: still local, so refused
    assert "--retries and --progress need --backend dask or slurm" in capsys.readouterr().err
    for backend, why in (("slurm", "starts its own scheduler"), ("local", "runs on this machine's processes")):
        assert main(["sweep", "--backend", backend, "--scheduler", "tcp://127.0.0.1:8786"]) == 2
        err = capsys.readouterr().err
        assert f"--backend {backend} {why}" in err and "drop --scheduler or --backend" in err
    assert main(["sweep", "--connect-timeout", "3"]) == 2
    assert "--connect-timeout needs --backend dask" in capsys.readouterr().err


def test_cluster_options_are_checked(tmp_path):
    """Addresses, scheduler files, worker memory and wall times: what is accepted, and one line for
    what is not (the CLI's cases are in tests/test_bad_input.py)."""
    for ok in ("tcp://127.0.0.1:8786", "127.0.0.1:8786", "tls://node7.cluster:8786", "tcp://[::1]:8786"):
        assert X.check_scheduler_address(ok) == ok
    (tmp_path / "scheduler.json").write_text(json.dumps({"type": "Scheduler", "address": "tls://10.0.0.5:8786"}))
    assert X.check_scheduler_address(str(tmp_path / "scheduler.json")) == "tls://10.0.0.5:8786"
    (tmp_path / "bad.json").write_text(json.dumps({"address": "10.0.0.5"}))
    with pytest.raises(
        ConfigError,
        match="the address in scheduler file .*bad.json '10.0.0.5' is not a scheduler address: it needs HOST:PORT",
    ):
        X.check_scheduler_address(str(tmp_path / "bad.json"))
    for bad in ("127.0.0.1:8786x", "tcp://node7", "tcp://node7:0", "tcp://node7:65536", "tcp://:8786"):
        with pytest.raises(ConfigError, match="is not a scheduler address: it needs HOST:PORT with a port number"):
            X.check_scheduler_address(bad)
    with pytest.raises(ConfigError, match="unknown protocol 'http'"):
        X.check_scheduler_address("http://node7:8786")
    for ok in ("4GB", "2500MB", "3.5GiB", "8 GB"):
        assert X.check_memory(ok) == ok
    for bad, why in (("4", "needs a unit"), ("GB", "needs a unit"), ("4XB", "unknown unit"), ("100MB", "too small")):
        with pytest.raises(ConfigError, match=f"worker memory .* {why}"):
            X.check_memory(bad)
    for ok in ("90", "90:30", "04:00:00", "48:00:00", "2-12", "2-12:30", "2-12:30:00"):
        assert X.check_walltime(ok) == ok
        assert f"#SBATCH -t {ok}\n" in X.slurm_job_script(walltime=ok)
    for bad in ("4h", "1:60", "01:00:60", "1-24", "1-2:3:4:5", "", "-1", "02:00:00.5"):
        with pytest.raises(ConfigError, match="is not a SLURM time limit; use minutes"):
            X.check_walltime(bad)
    with pytest.raises(ConfigError, match="needs a unit"):
        X.slurm_cluster_options(memory="4")  # the library path is checked too, not only the CLI


def test_connect_timeout_precedence(monkeypatch):
    """``--connect-timeout`` first, then Dask's distributed.comm.timeouts.connect if the user set it
    (dask.config.set, or DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT), then the kit's default."""
    import dask

    assert X.resolve_connect_timeout() == X.CONNECT_TIMEOUT == 5.0
    assert X.resolve_connect_timeout(2) == 2.0
    with dask.config.set({X.CONNECT_SETTING: "12s"}):
        assert X.resolve_connect_timeout() == 12.0 and X.resolve_connect_timeout(0.5) == 0.5
    monkeypatch.setenv("DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT", "30s")  # Dask's default value, set on purpose
    assert X.resolve_connect_timeout() == 30.0
    monkeypatch.delenv("DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT")
    for bad in (0, -1, float("nan"), "soon"):
        with pytest.raises(ConfigError, match="the connect timeout must be a positive number of seconds"):
            X.resolve_connect_timeout(bad)
    with dask.config.set({X.CONNECT_SETTING: "soon"}):
        with pytest.raises(ConfigError, match="is not a positive duration"):
            X.resolve_connect_timeout()


def test_a_scheduler_that_is_not_there_fails_fast_with_one_line(capsys):
    """Nothing listens at the address: one line naming the address, the timeout and the option,
    after the connect timeout (5 s by default, not Dask's own wait), well under 15 s."""
    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    start = time.monotonic()
    assert main(["sweep", "--scheduler", address]) == 2
    took = time.monotonic() - start
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert f"cannot reach the Dask scheduler at {address} within 5 s; check that `dask scheduler` runs there" in err
    assert "--connect-timeout SECONDS" in err
    assert 4 < took < 15, took
    start = time.monotonic()
    assert main(["sweep", "--scheduler", address, "--connect-timeout", "1"]) == 2
    assert "within 1 s;" in capsys.readouterr().err and time.monotonic() - start < 4


def test_running_counts_at_most_one_task_per_thread():
    """The progress bar's "running": a worker holds more tasks than it has threads (Dask sends the
    next ones ahead); only as many as its threads execute."""
    processing = {"w1": ["a", "b", "other"], "w2": ["c", "d"], "w3": []}
    assert X.running_tasks(processing, {"w1": 1, "w2": 1, "w3": 4}, {"a", "b", "c", "d"}) == 2
    assert X.running_tasks(processing, {"w1": 4, "w2": 1, "w3": 4}, {"a", "b", "c", "d"}) == 3
    assert X.running_tasks(processing, {"w1": 1, "w2": 1}, set()) == 0
    assert S.cluster_line({"workers": 2, "lost_workers": [], "rescheduled_tasks": 0}) == "workers: 2 seen, none lost"


# --------------------------------------------------------------------------
# slow: a LocalCluster over loopback


@pytest.mark.slow
def test_dask_sweep_through_the_cli_equals_the_local_one(local_sweep, tmp_path, capsys):
    """``mnemonic-mu sweep --backend dask --jobs 2``: a LocalCluster of 2 worker processes on
    127.0.0.1, its own cache (so every model is really trained there); same numbers as local."""
    out = tmp_path / "out"
    rc = main(
        [
            "sweep",
            "--dataset",
            "digits",
            "--epochs",
            "2",
            "--baselines",
            "mnemonic_paper",
            "--threads",
            "1",
            "--classes",
            "3",
            "--seeds",
            "0",
            "1",
            "--probe-max-train",
            "300",
            "--backend",
            "dask",
            "--jobs",
            "2",
            "--no-progress",
            "--cache-dir",
            str(tmp_path / "cache"),
            "--out-dir",
            str(out),
        ]
    )
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
    assert "workers: 2 seen, none lost" in printed


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
    """A DaskExecutor whose first scoring task kills the worker running it; it notes the worker
    processes alive when it closes."""

    def __init__(self, marker: Path, *args, **kwargs):
        self.alive = None
        super().__init__(*args, **kwargs)
        self.marker = marker

    def map(self, fn, args, label="tasks"):
        if label == "score":
            fn = functools.partial(_die_first, str(self.marker), fn)
        return super().map(fn, args, label)

    def close(self):
        if self.alive is None:
            self.alive = set(self.client.run(os.getpid).values())
        super().close()


@pytest.mark.slow
def test_a_dead_worker_mid_sweep_costs_time_not_rows(local_sweep, tmp_path, monkeypatch, capsys):
    """A worker dies in the middle of the scoring stage of ``mnemonic-mu sweep --backend dask``: Dask
    reschedules its task on a live worker; the sweep completes with every row exactly once and the
    local run's numbers, and its summary says a worker was lost."""
    marker = tmp_path / "killed"
    made = []

    def make(backend, jobs, **options):
        assert backend == "dask" and options["retries"] == 2 and options["scheduler"] is None
        made.append(_KillOneWorker(marker, jobs, worker_resources={}, **options))
        return made[-1]

    monkeypatch.setattr(S, "make_executor", make)
    out = tmp_path / "out"
    rc = main(
        [
            "sweep",
            "--dataset",
            "digits",
            "--epochs",
            "2",
            "--baselines",
            "mnemonic_paper",
            "--threads",
            "1",
            "--classes",
            "3",
            "--seeds",
            "0",
            "1",
            "--probe-max-train",
            "300",
            "--backend",
            "dask",
            "--jobs",
            "2",
            "--retries",
            "2",
            "--no-progress",
            "--cache-dir",
            str(tmp_path / "cache"),
            "--out-dir",
            str(out),
        ]
    )
    assert rc == 0
    (ex,) = made
    result = json.loads((out / "sweep.json").read_text())
    dead = int(marker.read_text())
    assert dead not in ex.alive  # that worker process is gone (its nanny started a new one)
    scored = [t for t in ex.timings.tasks if t["label"] == "score"]
    assert len(scored) == 2 and not any(t["failed"] for t in scored)
    assert all(not t["where"].endswith(f":{dead}") for t in scored)  # the killed attempt left no result
    assert numbers(result["rows"]) == numbers(local_sweep["rows"])
    one_row_each(result, out)
    info = result["environment"]["executor"]
    assert len(info["lost_workers"]) == 1 and 1 <= info["rescheduled_tasks"] <= 2  # the task it ran (and one queued)
    assert info["lost_workers"][0].startswith("tcp://127.0.0.1:")
    assert (
        f"workers: 2 seen, 1 lost during the sweep ({info['lost_workers'][0]}); Dask rescheduled the "
        f"{info['rescheduled_tasks']} task(s) they held on the other workers"
    ) in capsys.readouterr().out


class _Bar:
    """Stands in for the progress bar: keeps every "running" value it is shown."""

    def __init__(self):
        self.running = []

    def update(self, n):
        pass

    def set_postfix(self, **values):
        self.running.append(values["running"])

    def close(self):
        pass


@pytest.mark.slow
def test_the_progress_bar_counts_only_executing_tasks(monkeypatch):
    """2 one-thread workers and 8 tasks of 0.4 s: the scheduler hands each worker its next task
    ahead (4 held), but at most 2 execute, and "running" never shows more than the threads."""
    bar = _Bar()
    monkeypatch.setattr(X, "_progress_bar", lambda total, label, enabled: bar if enabled else None)
    with X.DaskExecutor(2, progress=True, worker_resources={}) as ex:
        threads = sum(ex.client.nthreads().values())
        assert ex.map(time.sleep, [(0.4,)] * 8, "nap") == [None] * 8
        assert ex.describe()["lost_workers"] == [] and ex.describe()["rescheduled_tasks"] == 0
    assert threads == 2 and len(bar.running) == 8
    assert 1 <= max(bar.running) <= threads, bar.running


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
        with pytest.raises(
            ConfigError,
            match=r"the cache directory .*cache is not shared storage: worker \S+ "
            r"\(.*\) cannot see it; put cache_dir \(--cache-dir\) on a filesystem "
            r"every worker mounts",
        ):
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
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "distributed.cli.dask_worker",
                ex.scheduler,
                "--nthreads",
                "1",
                "--resources",
                "GPU=1",
                "--name",
                "gpu-0",
                "--no-nanny",
                "--no-dashboard",
                "--host",
                "127.0.0.1",
                "--death-timeout",
                "20",
            ],
            env=os.environ | X.WORKER_ENV,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
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


@pytest.mark.slow
def test_a_scheduler_without_workers_is_refused(tmp_path):
    """A scheduler that answers but has no worker: one line saying how to start one, after
    ``wait_timeout`` (the wait for a worker, separate from the connect timeout); given as a
    scheduler file, as ``dask scheduler --scheduler-file`` writes it."""
    from distributed import LocalCluster

    with LocalCluster(n_workers=0, host="127.0.0.1", dashboard_address=None) as cluster:
        (tmp_path / "scheduler.json").write_text(json.dumps({"address": cluster.scheduler_address}))
        with X.DaskExecutor(1, scheduler=str(tmp_path / "scheduler.json"), progress=False, wait_timeout=1) as ex:
            assert ex.scheduler == cluster.scheduler_address
            with pytest.raises(
                ConfigError,
                match=f"no Dask worker connected to {ex.scheduler} within 1 s; start "
                f"workers with `dask worker {ex.scheduler}`",
            ):
                ex.map(abs, [(-1,)], "t")
