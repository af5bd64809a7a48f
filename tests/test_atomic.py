"""Nothing lost, nothing half-written (issue 6).

* A process killed with SIGKILL at a random moment while it writes a report
  JSON or a checkpoint leaves the old complete artifact or none, never a
  corrupt one, and loading never trusts what a killed writer left behind.
* The same at the two exact moments that matter in a folder swap.
* Two processes training the same cache key at once do not corrupt each other.
* Every checkpoint records its files' sha256 (verified on load) and keeps the
  codes in an owner-only file.

The writers run in forked children, so a kill costs milliseconds rather than
a fresh interpreter start.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import random
import signal
import stat
import time
from pathlib import Path

import pytest
import torch

from mnemonic_mu.algorithms.models import build_model
from mnemonic_mu.errors import CheckpointError
from mnemonic_mu.io.artifacts import MANIFEST, staging_dir, verify_manifest, write_json, write_manifest
from mnemonic_mu.io.checkpoint import CODES_FILE, MODEL_FILE, load_checkpoint, save_checkpoint
from mnemonic_mu.io.store import load_data, train_or_load
from mnemonic_mu.settings import Settings

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork (POSIX)")

FORK = mp.get_context("fork") if hasattr(os, "fork") else None
TRIALS = 24  # kills per artifact kind


def report_obj(version: int) -> dict:
    """A 4 MB report that repeats its version throughout: a torn or mixed file is detectable."""
    return {"version": version, "metrics": {"A_R": float(version)}, "blob": f"{version:08d}" * 500_000}


def check_report(path: Path) -> int:
    obj = json.loads(path.read_text())
    v = obj["version"]
    assert obj["metrics"] == {"A_R": float(v)} and obj["blob"] == f"{v:08d}" * 500_000
    return v


SHAPE = (1, 28, 28)


def versioned_model(version: int) -> torch.nn.Module:
    """An MLP (about 3 MB of weights) whose every weight equals ``version``."""
    model = build_model("mlp", SHAPE, 10)
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(float(version))
    return model


def save_version(folder: Path, version: int) -> None:
    config = {"model": "mlp", "input_shape": list(SHAPE), "num_classes": 10, "version": version}
    save_checkpoint(folder, versioned_model(version), torch.full((10, *SHAPE), float(version)), config)


def check_checkpoint(folder: Path) -> int:
    ck = load_checkpoint(folder)
    v = ck.config["version"]
    assert all(bool((p == v).all()) for p in ck.model.parameters())
    assert bool((ck.codes == v).all())
    return v


def _write_forever(kind: str, target: str, ready) -> None:
    torch.set_num_threads(1)
    version = 1
    ready.set()
    while True:
        if kind == "report":
            write_json(target, report_obj(version))
        else:
            save_version(Path(target), version)
        version += 1


def _time_one_write(kind: str, target: Path) -> float:
    start = time.perf_counter()
    if kind == "report":
        write_json(target, report_obj(0))
    else:
        save_version(target, 0)
    return time.perf_counter() - start


@pytest.mark.parametrize("kind", ["report", "checkpoint"])
def test_sigkill_mid_write_leaves_old_or_nothing(kind, tmp_path):
    target = tmp_path / ("report.json" if kind == "report" else "ck")
    write_time = _time_one_write(kind, target)  # version 0: the old complete artifact
    rng = random.Random(6)
    seen, torn, trials = set(), 0, 0
    while trials < TRIALS or (torn < 3 and trials < 4 * TRIALS):  # until some kills landed mid-write
        trials += 1
        hidden_before = {p.name for p in tmp_path.iterdir() if p.name.startswith(".")}
        ready = FORK.Event()
        child = FORK.Process(target=_write_forever, args=(kind, str(target), ready), daemon=True)
        child.start()
        assert ready.wait(30)
        time.sleep(rng.uniform(0.0, 2.5 * write_time))
        os.kill(child.pid, signal.SIGKILL)
        child.join(30)
        assert child.exitcode == -signal.SIGKILL
        # a new hidden temporary left behind = this kill landed in the middle of a write
        torn += bool({p.name for p in tmp_path.iterdir() if p.name.startswith(".")} - hidden_before)
        if kind == "report":
            assert target.exists(), "a report that existed before the write vanished"
            seen.add(check_report(target))  # parses, and is one complete version
        elif target.exists():
            seen.add(check_checkpoint(target))  # verified by sha256 and complete
        else:
            # killed between the two renames of the folder swap: nothing there,
            # and loading says so instead of trusting a leftover
            with pytest.raises(CheckpointError, match="no checkpoint"):
                load_checkpoint(target)
            save_version(target, 0)
    # leftovers of killed writers are hidden temporary names, never the target
    for p in tmp_path.iterdir():
        assert p == target or p.name.startswith("."), p
    # and a later run can still write and read the artifact
    if kind == "report":
        write_json(target, report_obj(99))
        assert check_report(target) == 99
    else:
        save_version(target, 99)
        assert check_checkpoint(target) == 99
    assert seen, "no trial produced a readable artifact"
    assert torn, "no kill landed mid-write: the test proved nothing (make the artifact larger)"


def _die_at(point: str, folder: str) -> None:
    """Save a checkpoint over ``folder`` but SIGKILL ourselves at ``point``."""
    import mnemonic_mu.io.artifacts as artifacts
    import mnemonic_mu.io.checkpoint as checkpoint

    torch.set_num_threads(1)  # a forked child must not enter the parent's OpenMP pool (it hangs)
    real_replace = os.replace
    if point == "before_manifest":
        checkpoint.write_manifest = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)
    else:  # between moving the old folder away and moving the new one in

        def replace(src, dst):
            if Path(dst) == Path(folder) and ".old-" not in str(dst):
                os.kill(os.getpid(), signal.SIGKILL)
            return real_replace(src, dst)

        artifacts.os.replace = replace
    save_version(Path(folder), 1)


def _die_before_rename(target: str) -> None:
    """Write a report but SIGKILL ourselves after the data is on disk, before the rename."""
    torch.set_num_threads(1)  # as in every forked child here
    os.replace = lambda src, dst: os.kill(os.getpid(), signal.SIGKILL)
    write_json(target, report_obj(1))


def test_kill_before_a_report_is_renamed_keeps_the_old_one(tmp_path):
    target = tmp_path / "report.json"
    write_json(target, report_obj(0))
    child = FORK.Process(target=_die_before_rename, args=(str(target),))
    child.start()
    child.join(60)
    assert child.exitcode == -signal.SIGKILL
    assert check_report(target) == 0
    leftovers = [p for p in tmp_path.iterdir() if p != target]
    assert len(leftovers) == 1 and leftovers[0].name.startswith(".report.json.")
    assert check_report(leftovers[0]) == 1  # complete, but under a name nothing reads


@pytest.mark.parametrize("point, survivor", [("before_manifest", 0), ("between_renames", None)])
def test_kill_at_the_critical_points_of_a_folder_swap(point, survivor, tmp_path):
    folder = tmp_path / "ck"
    save_version(folder, 0)
    child = FORK.Process(target=_die_at, args=(point, str(folder)))
    child.start()
    child.join(60)
    assert child.exitcode == -signal.SIGKILL
    if survivor is None:
        assert not folder.exists()
        with pytest.raises(CheckpointError):
            load_checkpoint(folder)
    else:
        assert check_checkpoint(folder) == survivor
    # what the killed writer left is under hidden names: complete, or refused on load
    leftovers = [p for p in tmp_path.iterdir() if p != folder]
    assert leftovers and all(p.name.startswith(".ck.") for p in leftovers)
    for p in leftovers:
        try:
            check_checkpoint(p)
        except CheckpointError as exc:
            assert "not a complete artifact" in str(exc)


def test_half_written_cache_entry_is_not_trusted_but_replaced(tmp_path):
    """A cache entry damaged behind the kit's back (a copy cut short) is retrained, not used."""
    cfg = Settings(dataset="synthetic", epochs=1, cache_dir=str(tmp_path / "cache"))
    ds = load_data(cfg)
    first, cached = train_or_load(cfg, ds, cfg.train_config(), torch.device("cpu"))
    assert not cached
    model_pt = first.folder / MODEL_FILE
    model_pt.write_bytes(model_pt.read_bytes()[: model_pt.stat().st_size // 3])
    with pytest.raises(CheckpointError, match="sha256"):
        load_checkpoint(first.folder)
    again, cached = train_or_load(cfg, ds, cfg.train_config(), torch.device("cpu"))
    assert not cached, "a corrupt cache entry was trusted"
    verify_manifest(again.folder)
    for a, b in zip(first.model.state_dict().values(), again.model.state_dict().values()):
        assert torch.equal(a, b)
    _, cached = train_or_load(cfg, ds, cfg.train_config(), torch.device("cpu"))
    assert cached


def _train_shared(cache_dir: str, barrier, results) -> None:
    torch.set_num_threads(1)
    cfg = Settings(dataset="synthetic", epochs=2, cache_dir=cache_dir)
    ds = load_data(cfg)
    barrier.wait(60)
    ck, cached = train_or_load(cfg, ds, cfg.train_config(), torch.device("cpu"))
    weights = torch.cat([p.detach().flatten() for p in ck.model.parameters()])
    results.put((cached, str(ck.folder), weights.sum().item(), weights.abs().sum().item()))


def test_two_processes_sharing_a_cache_key(tmp_path):
    cache = str(tmp_path / "cache")
    barrier, results = FORK.Barrier(2), FORK.Queue()
    procs = [FORK.Process(target=_train_shared, args=(cache, barrier, results)) for _ in range(2)]
    for p in procs:
        p.start()
    got = [results.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    (c1, f1, *w1), (c2, f2, *w2) = got
    assert f1 == f2 and w1 == w2
    assert sorted([c1, c2]) == [False, True], "the lock should make one process wait and reuse the other's model"
    folder = Path(f1)
    verify_manifest(folder)
    leftovers = [p.name for p in folder.parent.iterdir() if p != folder]
    assert leftovers == [], leftovers


# --------------------------------------------------------------------------
# sha256 everywhere, codes private


def test_checkpoint_records_sha256_and_keeps_codes_private(tmp_path):
    folder = tmp_path / "ck"
    save_version(folder, 3)
    manifest = json.loads((folder / MANIFEST).read_text())
    assert set(manifest["files"]) == {MODEL_FILE, CODES_FILE}
    assert all(len(d) == 64 for d in manifest["files"].values())
    assert stat.S_IMODE((folder / CODES_FILE).stat().st_mode) == 0o600
    # overwriting keeps the codes private too (a new file, not a chmod race on the old one)
    save_version(folder, 4)
    assert stat.S_IMODE((folder / CODES_FILE).stat().st_mode) == 0o600
    assert check_checkpoint(folder) == 4


def _write_under_umask(mask: int, root: str) -> None:
    """In a forked child (the umask is process-wide): a result file, a checkpoint as the cache
    writes it, and the umask the kit reads, under ``mask``."""
    from mnemonic_mu.io import artifacts

    os.umask(mask)
    torch.set_num_threads(1)
    root = Path(root)
    write_json(root / "result.json", {"A_R": 1.0})
    save_version(root / "ck", 1)
    seen = artifacts.current_umask()
    artifacts._PROC_STATUS = str(root / "no-such-file")  # the fallback: an os.umask round trip
    fallback = artifacts.current_umask()
    os._exit(0 if seen == fallback == mask and os.umask(mask) == mask else 3)


@pytest.mark.parametrize("mask, file_mode, dir_mode", [(0o022, 0o644, 0o755), (0o077, 0o600, 0o700)])
def test_written_files_follow_the_umask_but_the_codes_stay_private(mask, file_mode, dir_mode, tmp_path):
    """Under umask 022 a group can read a shared cache and results folder; under 077 nobody else
    can; codes.pt is owner-only (0600) either way (docs/troubleshooting.md, "Security")."""
    child = FORK.Process(target=_write_under_umask, args=(mask, str(tmp_path)))
    child.start()
    child.join(60)
    assert child.exitcode == 0, "the umask read from /proc and by the fallback should both equal the one set"

    def mode(p):
        return stat.S_IMODE(p.stat().st_mode)

    ck = tmp_path / "ck"
    assert mode(tmp_path / "result.json") == file_mode
    assert mode(ck) == dir_mode  # the checkpoint folder (made by staging_dir)
    assert mode(ck / MODEL_FILE) == file_mode and mode(ck / MANIFEST) == file_mode
    assert mode(ck / CODES_FILE) == 0o600
    assert check_checkpoint(ck) == 1


def test_generic_artifact_folder_is_verified(tmp_path):
    final = tmp_path / "stage"
    with staging_dir(final) as tmp:
        (tmp / "metrics.json").write_text('{"A_R": 99.0}')
        write_manifest(tmp, {"stage": "demo"})
    assert verify_manifest(final)["stage"] == "demo"
    (final / "metrics.json").write_text('{"A_R": 100.0}')
    with pytest.raises(CheckpointError, match="sha256"):
        verify_manifest(final)
    # a failing stage leaves the previous folder untouched
    with pytest.raises(RuntimeError):
        with staging_dir(final) as tmp:
            (tmp / "metrics.json").write_text("{")
            raise RuntimeError("stage failed")
    assert (final / "metrics.json").read_text() == '{"A_R": 100.0}'
    assert [p.name for p in tmp_path.iterdir()] == ["stage"]
