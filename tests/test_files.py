"""migrator._files.write_atomically: whole files only, and a symlink at the path is replaced,
never written through (issue 18: `--metrics-file P` and the emulator state followed links)."""

from __future__ import annotations

import os

import pytest

from migrator._files import write_atomically


def test_writes_the_text_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "m.prom"
    write_atomically(path, "a 1\n")
    write_atomically(path, "a 2\n")
    assert path.read_text() == "a 2\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.prom"]


def test_a_symlink_at_the_path_is_replaced_not_followed(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("precious")
    link = tmp_path / "m.prom"
    link.symlink_to(victim)
    (tmp_path / "m.prom.tmp").symlink_to(victim)  # the old fixed temporary name, planted
    write_atomically(link, "a 1\n")
    assert victim.read_text() == "precious"
    assert not link.is_symlink() and link.read_text() == "a 1\n"


def test_a_failed_write_keeps_the_old_file_and_cleans_up(tmp_path, monkeypatch):
    path = tmp_path / "state.json"
    write_atomically(path, "old")

    def broken(*args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", broken)
    with pytest.raises(OSError, match="disk full"):
        write_atomically(path, "new")
    assert path.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]


def test_a_missing_folder_is_an_os_error_before_anything_is_written(tmp_path):
    with pytest.raises(OSError):
        write_atomically(tmp_path / "no" / "such" / "file", "x")
