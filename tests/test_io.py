"""Atomic writes: all or nothing, no temporary files left behind, and the permissions of a plain open()."""

import os

import pytest

from pdesolve.io import write_json, write_text, write_with


def test_write_replaces_the_file_whole_and_leaves_nothing_behind(tmp_path):
    target = tmp_path / "sub" / "metrics.json"
    write_json(target, {"a": 1})
    write_json(target, {"a": 2})
    assert target.read_text().strip().endswith("}") and '"a": 2' in target.read_text()
    assert os.listdir(target.parent) == ["metrics.json"]


def test_a_failing_writer_keeps_the_old_file_and_removes_its_temporary(tmp_path):
    target = tmp_path / "figure.png"
    write_text(target, "old")

    def broken(path):
        path.write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_with(target, broken)
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["figure.png"]


def test_new_files_get_the_umask_mode_and_rewrites_keep_theirs(tmp_path):
    mask = os.umask(0o022)
    try:
        write_text(tmp_path / "new.txt", "x")
        assert (tmp_path / "new.txt").stat().st_mode & 0o777 == 0o644  # not mkstemp's private 0600
        os.chmod(tmp_path / "new.txt", 0o640)
        write_text(tmp_path / "new.txt", "y")
        assert (tmp_path / "new.txt").stat().st_mode & 0o777 == 0o640
    finally:
        os.umask(mask)
