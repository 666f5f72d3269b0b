"""Which files collection takes for board test files (every xdist worker of a pool collects
every file, so the check is cached per folder): the answers must not change for it."""

from __future__ import annotations

from pathlib import Path

from pytest_mpsession.boardtests.plugin import BoardTestPaths


def test_board_test_paths_answer_per_file(tmp_path: Path) -> None:
    board = tmp_path / "board"
    (board / "sub").mkdir(parents=True)
    host = tmp_path / "host"
    host.mkdir()
    for path in (board / "a.py", board / "sub" / "b.py", host / "h.py", host / "one.py"):
        path.write_text("print(1)\n")
    (board / "conftest.py").write_text("")
    (board / "data.txt").write_text("")
    # a board file linked from a host folder, a host file linked into the board folder
    (host / "linked.py").symlink_to(board / "a.py")
    (board / "from_host.py").symlink_to(host / "h.py")
    # a folder reached through a symlinked folder
    (tmp_path / "alias").symlink_to(board)
    paths = BoardTestPaths()
    paths.add(board)
    paths.add(host / "one.py")
    answers = {
        board / "a.py": True,
        board / "sub" / "b.py": True,
        board / "conftest.py": False,
        board / "data.txt": False,
        host / "h.py": False,
        host / "one.py": True,
        host / "linked.py": True,  # where the file really is counts
        board / "from_host.py": False,
        tmp_path / "alias" / "a.py": True,
        tmp_path / "alias" / "sub" / "b.py": True,
    }
    for _ in range(2):  # the second time from what was cached about each folder
        assert {p: paths.contains(p) for p in answers} == answers
    # a path added later is seen (the cache is dropped)
    paths.add(host / "h.py")
    assert paths.contains(host / "h.py")
    assert paths.contains(board / "from_host.py")
