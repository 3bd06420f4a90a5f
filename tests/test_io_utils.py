"""Atomic writes leave either the old or the complete new output, never a partial one."""
import os
import pathlib
import stat

import pytest

from t5x_like import io_utils


def test_atomic_directory_replaces_whole_and_has_mkdir_permissions(tmp_path):
    target = tmp_path / "out"
    with io_utils.atomic_directory(str(target)) as tmp:
        with open(os.path.join(tmp, "a.txt"), "w") as f:
            f.write("new")
        assert not target.exists()
    assert (target / "a.txt").read_text() == "new"
    reference = tmp_path / "made_by_mkdir"
    reference.mkdir()
    assert stat.S_IMODE(target.stat().st_mode) == stat.S_IMODE(reference.stat().st_mode)


def test_atomic_file_writes_have_open_permissions_and_exact_content(tmp_path):
    io_utils.atomic_write_text(str(tmp_path / "t.md"), "α|β\n")
    io_utils.atomic_write_bytes(str(tmp_path / "b.png"), b"\x89PNG\x00")
    reference = tmp_path / "made_by_open"
    reference.write_text("")
    assert (tmp_path / "t.md").read_bytes() == "α|β\n".encode("utf-8")
    assert (tmp_path / "b.png").read_bytes() == b"\x89PNG\x00"
    for name in ("t.md", "b.png"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == stat.S_IMODE(reference.stat().st_mode)
    assert sorted(os.listdir(tmp_path)) == ["b.png", "made_by_open", "t.md"]


def test_failed_atomic_writes_leave_no_trace(tmp_path):
    with pytest.raises(RuntimeError):
        with io_utils.atomic_directory(str(tmp_path / "out")):
            raise RuntimeError("killed")
    with pytest.raises(TypeError):
        io_utils.atomic_write_json(str(tmp_path / "x.json"), {1: 2, "a": 1})  # unsortable keys fail mid-write
    assert sorted(os.listdir(tmp_path)) == []


def test_read_jsonl_names_file_and_line(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text('{"a": 1}\n\n{"a": \n')
    with pytest.raises(ValueError, match=r"r\.jsonl:3: malformed JSON"):
        io_utils.read_jsonl(str(path))


def test_atomic_directory_keeps_the_old_result_when_the_final_move_fails(tmp_path, monkeypatch):
    """The old directory is moved aside, not deleted, until the new one is in place (before, io_utils
    deleted it first: a failing rename lost both)."""
    target = tmp_path / "out"
    target.mkdir()
    (target / "old.txt").write_text("previous result")
    real_replace = os.replace

    def failing_replace(src, dst):
        if ".tmp" in os.path.basename(str(src)):
            raise OSError("disk full")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        with io_utils.atomic_directory(str(target)) as tmp:
            (pathlib.Path(tmp) / "new.txt").write_text("new result")
    assert (target / "old.txt").read_text() == "previous result"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
