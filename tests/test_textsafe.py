"""Output safety: log text made inert for every output, report files written safely."""
from __future__ import annotations

import os
import stat

import pytest

from losslens import textsafe as ts
from losslens.errors import OutputError

OSC52 = "loss\x1b]52;c;ZWNobyBwd25lZA==\x07"
CLEAR = "lm\x1b[2Jloss"
GH = "loss\n::error::pwned"


def test_terminal_shows_escape_sequences_instead_of_running_them():
    assert ts.terminal(OSC52) == "loss\\e]52;c;ZWNobyBwd25lZA==\\x07"
    assert ts.terminal(CLEAR) == "lm\\e[2Jloss"
    assert ts.terminal("a\x9bb\x7fc\u202ed") == "a\\x9bb\\x7fc\\u202ed"
    assert ts.terminal("cr\rover") == "cr\\rover"
    assert ts.terminal("keeps\ttabs\nand lines") == "keeps\ttabs\nand lines"
    assert ts.terminal("lm loss") == "lm loss"


def test_line_folds_newlines_so_no_workflow_command_starts_a_line():
    out = ts.line(GH)
    assert out == "loss\\n::error::pwned"
    assert "\n" not in out


def test_lone_surrogate_becomes_visible_and_encodable():
    out = ts.line("loss\ud800")
    assert out == "loss\\ud800"
    out.encode("utf-8")


def test_github_escaping_is_githubs():
    assert ts.github_message("50% up\nnext") == "50%25 up%0Anext"
    assert ts.github_property("a:b,c") == "a%3Ab%2Cc"
    assert "\n" not in ts.github_message(GH)


def test_markdown_is_inert():
    assert ts.markdown("# run *x*") == "\\# run \\*x\\*"
    assert ts.markdown("<img src=x onerror=alert(1)>") == "&lt;img src=x onerror=alert\\(1\\)&gt;"
    assert ts.markdown("a|b\nc") == "a\\|b\\\\nc"  # renders as a|b\nc, on one line
    assert ts.markdown("[click](http://evil)") == "\\[click\\]\\(http://evil\\)"
    assert ts.markdown_code("a`b") == "``a`b``"
    assert ts.markdown_code("`x") == "`` `x ``"


def test_html_escapes_quotes_and_controls():
    assert ts.html('"><script>\x1b') == "&quot;&gt;&lt;script&gt;\\e"


@pytest.mark.parametrize("cell,expected", [
    ("=HYPERLINK(\"http://x\",\"y\")", "'=HYPERLINK(\"http://x\",\"y\")"),
    ("+1+1", "'+1+1"), ("-2+3", "'-2+3"), ("@SUM(A1)", "'@SUM(A1)"),
    ("\t=1", "'\\t=1"), ("lm loss", "lm loss"), ("train/loss", "train/loss"),
])
def test_csv_cells_cannot_be_formulas(cell, expected):
    assert ts.csv_cell(cell) == expected


# --------------------------------------------------------------------------- files

@pytest.fixture
def umask022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def _mode(p) -> int:
    return stat.S_IMODE(os.stat(p).st_mode)


def test_new_file_honours_the_umask(tmp_path, umask022):
    p = tmp_path / "r.html"
    ts.write_file(p, "x")
    assert p.read_text() == "x"
    assert _mode(p) == 0o644
    assert ts.umask() == 0o022
    assert [q.name for q in tmp_path.iterdir()] == ["r.html"]  # no temp file left


def test_existing_file_keeps_its_mode(tmp_path, umask022):
    p = tmp_path / "r.json"
    p.write_text("old")
    os.chmod(p, 0o640)
    ts.write_file(p, "new")
    assert p.read_text() == "new" and _mode(p) == 0o640


def test_symlink_is_written_through_not_replaced(tmp_path):
    target = tmp_path / "real.md"
    target.write_text("old")
    link = tmp_path / "link.md"
    link.symlink_to(target)
    ts.write_file(link, "new")
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert target.read_text() == "new"


def test_dangling_symlink_creates_its_target(tmp_path):
    link = tmp_path / "link.md"
    link.symlink_to(tmp_path / "made.md")
    ts.write_file(link, "x")
    assert link.is_symlink() and (tmp_path / "made.md").read_text() == "x"


def test_refuses_to_overwrite_an_input(tmp_path):
    log = tmp_path / "train.log"
    log.write_text("iteration 1 | lm loss: 2.0\n")
    with pytest.raises(OutputError, match="one of the inputs"):
        ts.write_file(log, "report", inputs=[log])
    link = tmp_path / "alias"
    link.symlink_to(log)
    with pytest.raises(OutputError, match="one of the inputs"):
        ts.write_file(link, "report", inputs=[str(log)])
    assert log.read_text() == "iteration 1 | lm loss: 2.0\n"


def test_devices_are_written_in_place(tmp_path):
    ts.write_file("/dev/null", "x")  # not replaced by a regular file, whoever runs it
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    r = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        ts.write_file(fifo, "through the pipe")
        assert os.read(r, 100) == b"through the pipe"
    finally:
        os.close(r)
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)


def test_errors_are_one_line_output_errors(tmp_path):
    with pytest.raises(OutputError, match="does not exist"):
        ts.write_file(tmp_path / "no" / "r.md", "x")
    with pytest.raises(OutputError, match="is a folder"):
        ts.write_file(tmp_path, "x")


def test_full_disk_keeps_the_old_file(tmp_path, monkeypatch):
    p = tmp_path / "r.md"
    p.write_text("old")

    def full(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OutputError, match="No space left on device"):
        ts.write_file(p, "new")
    assert p.read_text() == "old"
    assert [q.name for q in tmp_path.iterdir()] == ["r.md"]
