"""Files written whole, and the run folder's names."""

from __future__ import annotations

import pytest

from ukd_compress.errors import UserError
from ukd_compress.files import cache_folder, replace_folder, write_json, write_with
from ukd_compress.run_folder import RunFolder


def fail(_tmp):
    raise RuntimeError("disk full")


def test_a_failed_write_keeps_the_old_file_and_leaves_nothing_beside_it(tmp_path):
    path = write_json(tmp_path / "report.json", {"old": 1})
    with pytest.raises(RuntimeError):
        write_with(path, lambda tmp: (tmp.write_text("half"), fail(tmp)))
    assert path.read_text() == '{\n "old": 1\n}'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]


def test_a_failed_folder_keeps_the_old_folder_and_leaves_nothing_beside_it(tmp_path):
    folder = replace_folder(tmp_path / "onnx", lambda tmp: (tmp.mkdir(), (tmp / "a").write_text("1")))
    with pytest.raises(RuntimeError):
        replace_folder(folder, lambda tmp: (tmp.mkdir(), (tmp / "b").write_text("2"), fail(tmp)))
    assert [p.name for p in folder.iterdir()] == ["a"]
    assert [p.name for p in tmp_path.iterdir()] == ["onnx"]
    replace_folder(folder, lambda tmp: (tmp.mkdir(), (tmp / "b").write_text("2")))
    assert [p.name for p in folder.iterdir()] == ["b"]


def test_a_cache_folder_is_filled_once_and_then_read(tmp_path):
    calls = []

    def fill(tmp):
        calls.append(tmp)
        tmp.mkdir()
        (tmp / "tokenizer.json").write_text(str(len(calls)))

    (tmp_path / "tokenizers").mkdir()
    first = cache_folder(tmp_path / "tokenizers" / "trim-8000", fill)
    again = cache_folder(first, fill)
    assert again == first and len(calls) == 1
    assert (first / "tokenizer.json").read_text() == "1"
    assert [p.name for p in first.parent.iterdir()] == ["trim-8000"]


def test_a_run_folder_knows_its_partial_and_final_names(tmp_path):
    run = RunFolder(tmp_path / "sst2-ukd").partial()
    assert run.path.name == "sst2-ukd.partial" and run.is_partial and not run.is_resumable
    run.path.mkdir()
    run.write_recipe("method: {}\n")
    assert run.is_resumable and run.partial() is run
    run.write_status({"phase": "training", "step": 3})
    assert run.status()["step"] == 3
    final = run.finish()
    assert final.path == tmp_path / "sst2-ukd" and final.final() is final
    assert not run.path.exists() and final.recipe_file.is_file()
    with pytest.raises(UserError, match="not a finished run folder"):
        final.report()
    final.write_report({"task": "sst2"})
    assert final.report() == {"task": "sst2"}
