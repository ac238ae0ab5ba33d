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


@pytest.mark.parametrize("name", ["f" * 255, "é" * 127 + "x", "m.prom"], ids=["255-ascii", "255-utf8", "short"])
def test_any_name_the_folder_takes_is_written(tmp_path, name):
    # The temporary name must fit wherever the target's does: a 255-byte target (NAME_MAX
    # on Linux) used to fail with "File name too long" because the temporary repeated it.
    assert len(os.fsencode(name)) <= 255
    path = tmp_path / name
    write_atomically(path, "x 1\n")
    assert path.read_text() == "x 1\n"
    assert [p.name for p in tmp_path.iterdir()] == [name]


def test_a_name_too_long_for_the_folder_is_still_refused(tmp_path):
    with pytest.raises(OSError):
        write_atomically(tmp_path / ("f" * 256), "x")
    assert list(tmp_path.iterdir()) == []


def test_a_symlink_to_a_folder_is_replaced_not_written_into(tmp_path):
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    link = tmp_path / ("s" * 255)
    link.symlink_to(folder)
    write_atomically(link, "a 1\n")
    assert list(folder.iterdir()) == []
    assert not link.is_symlink() and link.read_text() == "a 1\n"


def test_the_temporary_file_is_created_exclusively_beside_the_target(tmp_path, monkeypatch):
    opened = []
    real_open = os.open

    def recording_open(file, flags, *args, **kwargs):
        opened.append((os.fspath(file), flags))
        return real_open(file, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", recording_open)
    write_atomically(tmp_path / ("t" * 255), "x")
    temporaries = [(f, flags) for f, flags in opened if f.endswith(".tmp")]
    assert len(temporaries) == 1
    file, flags = temporaries[0]
    assert os.path.dirname(file) == str(tmp_path)
    assert flags & os.O_CREAT and flags & os.O_EXCL  # never opens what is already there
    assert len(os.fsencode(os.path.basename(file))) <= 255


def test_a_write_that_fails_midway_removes_the_temporary(tmp_path):
    path = tmp_path / ("w" * 255)
    write_atomically(path, "old")
    with pytest.raises(UnicodeEncodeError):
        write_atomically(path, "half \udc80 written")  # a lone surrogate cannot be UTF-8
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == [path.name]
