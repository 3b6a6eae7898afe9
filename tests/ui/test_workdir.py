"""The work folder: an owner file at start, stale folders of gone processes deleted, clean-up run once."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from ui.workdir import OWNER_FILE, PREFIX, Cleanup, alive, make_work_dir, process_start, remove_stale_work_dirs


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def stale(root, name: str, pid: int, started=None):
    folder = root / name
    (folder / "cases").mkdir(parents=True)
    (folder / OWNER_FILE).write_text(json.dumps({"pid": pid, "started": started}))
    return folder


def test_a_work_folder_names_its_owner(tmp_path):
    folder = make_work_dir(tmp_path)
    owner = json.loads((folder / OWNER_FILE).read_text())
    assert folder.name.startswith(PREFIX) and owner == {"pid": os.getpid(), "started": process_start(os.getpid())}
    assert oct(folder.stat().st_mode)[-3:] == "700"  # private to this user


def test_only_the_folders_of_gone_processes_are_removed_at_start(tmp_path):
    gone = stale(tmp_path, PREFIX + "gone", dead_pid())
    reused = stale(
        tmp_path, PREFIX + "reused", os.getppid(), started="1"
    )  # that id now belongs to a process started later
    live = stale(tmp_path, PREFIX + "live", os.getppid(), started=process_start(os.getppid()))
    mine = make_work_dir(tmp_path)
    unowned = tmp_path / (PREFIX + "unowned")
    unowned.mkdir()
    other = stale(tmp_path, "someone-else", dead_pid())
    removed = remove_stale_work_dirs(tmp_path)
    assert sorted(removed) == sorted([gone, reused])
    assert (
        not gone.exists()
        and not reused.exists()
        and live.exists()
        and mine.exists()
        and unowned.exists()
        and other.exists()
    )
    assert alive(os.getpid(), process_start(os.getpid())) and not alive(dead_pid(), None)


def test_the_clean_up_runs_once(tmp_path):
    calls = []
    cleanup = Cleanup(lambda: calls.append(1))
    cleanup.run()
    cleanup.run()
    assert calls == [1]
