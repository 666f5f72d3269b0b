"""labgrid places: the URL grammar, and a real coordinator and exporter on loopback.

The lab (``tests/labgrid_lab.py``) exports the real MicroPython unix port behind a PTY and
an emulated esp32, each as a place; the esp32 place also has a power port whose switch is
an HTTP stand-in. CI installs the ``labgrid`` extra and ser2net; without them the lab tests
skip, saying which is missing (and fail in CI, ``CI=true``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_mpsession.farm.labgrid import PlaceRequest, is_labgrid_url, parse_url

pytest_plugins = ["pytester"]

# -- the URL ------------------------------------------------------------------------------------


def test_url_by_name_and_by_tags() -> None:
    assert parse_url("labgrid://bench-3") == PlaceRequest("labgrid://bench-3", place="bench-3")
    req = parse_url("labgrid://?board=esp32&lab=2")
    assert req.place is None and req.tags == (("board", "esp32"), ("lab", "2"))
    assert req.filter() == {"board": "esp32", "lab": "2"}
    assert parse_url("labgrid://bench-3").filter() == {"name": "bench-3"}
    assert req.describe() == "a place with tags board=esp32, lab=2"
    assert is_labgrid_url("LABGRID://x") and not is_labgrid_url("rfc2217://x:1")


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("labgrid://", "names no place and no tags"),
        ("labgrid://a?b=c", "both a place and tags"),
        ("labgrid://a/b", "has no '/'"),
        ("labgrid://?board=", "needs a name and a value"),
        ("labgrid://?=x", "needs a name and a value"),
        ("labgrid://?a=1&a=2", "given twice"),
        ("socket://x:1", "is not a labgrid URL"),
    ],
)
def test_bad_urls_name_the_form(url: str, says: str) -> None:
    with pytest.raises(ValueError, match=says) as info:
        parse_url(url)
    assert "write labgrid://PLACE or labgrid://?TAG=VALUE" in str(info.value)


# -- a lab on loopback ---------------------------------------------------------------------


def _lab_missing() -> str | None:
    try:
        import labgrid  # noqa: F401
    except ImportError:
        return "labgrid is not installed: pip install 'pytest-mpsession[labgrid]'"
    from labgrid_lab import SER2NET

    if SER2NET is None:
        return "ser2net is not installed (Debian: apt-get install ser2net)"
    return None


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """The running lab (coordinator, exporter, two places), for the whole module."""
    missing = _lab_missing()
    if missing is not None:
        if os.environ.get("CI") == "true":  # CI installs the labgrid extra and ser2net
            pytest.fail(f"CI: {missing}")
        pytest.skip(missing)
    from labgrid_lab import Lab

    the_lab = Lab(Path(tmp_path_factory.mktemp("lab")))
    try:
        yield the_lab
    finally:
        the_lab.close()


def test_acquire_by_name_and_by_tags_then_release(lab: object) -> None:
    from labgrid_lab import Lab

    from pytest_mpsession.communicator import Communicator
    from pytest_mpsession.farm.labgrid import acquire_places, release_places

    assert isinstance(lab, Lab)
    got = acquire_places(
        [parse_url("labgrid://esp32"), parse_url("labgrid://?lab=mp")],
        timeout=20,
        address=lab.address,
    )
    try:
        assert [g.place for g in got] == ["esp32", "unix"]
        holders = lab.holders()
        assert all(holders[g.place][0] for g in got), holders
        for g, platform in zip(got, ["esp32", "linux"], strict=True):
            assert g.serial_url.startswith("rfc2217://127.0.0.1:")
            assert g.serial_url.endswith("?ign_set_control")
            comm = Communicator.open(g.serial_url, timeout=10)
            try:
                assert comm.eval("__import__('sys').platform") == platform
            finally:
                comm.close()
        assert got[0].power is not None and got[0].power["cls"] == "NetworkPowerPort"
        assert got[1].power is None
    finally:
        assert release_places(got) == []
    assert lab.wait_free() == {"unix": (None, None), "esp32": (None, None)}


def test_missing_place_unknown_tags_busy_and_unreachable(lab: object) -> None:
    from labgrid_lab import Lab, free_port

    from pytest_mpsession.farm.labgrid import LabgridError, acquire_places, release_places

    assert isinstance(lab, Lab)
    with pytest.raises(LabgridError, match=r"labgrid place 'nope' .* does not exist.*esp32, unix"):
        acquire_places([parse_url("labgrid://nope")], timeout=5, address=lab.address)
    with pytest.raises(LabgridError, match="no labgrid place has the tags of labgrid://\\?lab=x"):
        acquire_places([parse_url("labgrid://?lab=x")], timeout=5, address=lab.address)
    held = acquire_places([parse_url("labgrid://unix")], timeout=10, address=lab.address)
    try:
        with pytest.raises(LabgridError, match="no free labgrid place for labgrid://unix within"):
            acquire_places([parse_url("labgrid://unix")], timeout=1, address=lab.address)
        # three places wanted, two exist: the error, and nothing of the three is kept
        with pytest.raises(LabgridError, match="no free labgrid place"):
            acquire_places([parse_url("labgrid://?lab=mp")] * 2, timeout=1, address=lab.address)
        assert lab.holders()["esp32"] == (None, None)
    finally:
        release_places(held)
    with pytest.raises(LabgridError, match=r"cannot reach the labgrid coordinator at 127\.0\.0\.1"):
        acquire_places([parse_url("labgrid://unix")], timeout=3, address=f"127.0.0.1:{free_port()}")
    assert lab.wait_free() == {"unix": (None, None), "esp32": (None, None)}


def test_place_power_cycles_through_labgrids_driver(lab: object) -> None:
    from labgrid_lab import Lab

    from pytest_mpsession.farm.labgrid import PlacePower, acquire_places, release_places

    assert isinstance(lab, Lab)
    got = acquire_places([parse_url("labgrid://esp32")], timeout=10, address=lab.address)
    try:
        assert got[0].power is not None
        before = len(lab.power.switches)
        assert PlacePower(got[0].power, place="esp32", delay=0.05).cycle() is True
        assert lab.power.wait_for(before + 2)[before:] == [(0, 0), (0, 1)]
    finally:
        release_places(got)


# -- through the plugin ------------------------------------------------------------------------

ON_A_PLACE = """
import pytest

def platform(s):
    return s.eval("__import__('sys').platform")

@pytest.mark.requires_platform("linux")
def test_unix(device_session):
    assert platform(device_session) == "linux"

@pytest.mark.requires_platform("esp32")
def test_esp32(device_session):
    assert platform(device_session) == "esp32"

@pytest.mark.parametrize("n", range(4))
def test_any(device_session, n):
    assert platform(device_session) in ("linux", "esp32")
"""


@pytest.fixture
def on_lab(lab: object, monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    """The lab, with ``LG_COORDINATOR`` pointing at it (runs inherit it); every place is
    free again after the test."""
    from labgrid_lab import Lab

    assert isinstance(lab, Lab)
    monkeypatch.setenv("LG_COORDINATOR", lab.address)
    yield lab
    assert lab.wait_free() == {"unix": (None, None), "esp32": (None, None)}


def test_a_place_by_name_then_released(pytester: pytest.Pytester, on_lab: object) -> None:
    pytester.makepyfile(test_place=ON_A_PLACE)
    result = pytester.runpytest_subprocess("--mp-port=labgrid://unix", "-rs")
    result.assert_outcomes(passed=5, skipped=1)
    result.stdout.fnmatch_lines(
        [
            "mpsession: micropython * on linux at rfc2217://127.0.0.1:*",
            "mpsession: labgrid places unix (labgrid://unix) acquired in *.?? s",
        ]
    )


def test_a_place_by_tags(pytester: pytest.Pytester, on_lab: object) -> None:
    pytester.makepyfile(test_place=ON_A_PLACE)
    result = pytester.runpytest_subprocess("--mp-port=labgrid://?kind=esp32&lab=mp")
    result.assert_outcomes(passed=5, skipped=1)


def test_two_workers_on_two_places(pytester: pytest.Pytester, on_lab: object) -> None:
    pytester.makepyfile(test_place=ON_A_PLACE)
    result = pytester.runpytest_subprocess(
        "--mp-port=labgrid://?lab=mp", "--mp-port=labgrid://?lab=mp", "-n", "2"
    )
    # each place's own test went to the worker holding it: nothing skipped
    result.assert_outcomes(passed=6)
    lines = [ln for ln in result.outlines if re.match(r"mpsession: gw\d: ", ln)]
    assert len(lines) == 2 and {"on linux" in ln for ln in lines} == {True, False}
    # taken while the workers started (they waited for their boards), then said
    result.stdout.fnmatch_lines(["mpsession: labgrid places * acquired in *.?? s"])


def test_a_matrix_over_two_places(pytester: pytest.Pytester, on_lab: object) -> None:
    """``--mp-dist each`` over places: every device test once per board (the pool the
    workers put together at the rendezvous), the board in each test's id."""
    pytester.makepyfile(test_place=ON_A_PLACE)
    result = pytester.runpytest_subprocess(
        "--mp-port=labgrid://unix", "--mp-port=labgrid://esp32", "-n", "2", "--mp-dist", "each",
        "-v", "-rs",
    )  # fmt: skip
    # test_any on both boards, each platform's own test on its board (skipped on the other)
    result.assert_outcomes(passed=10, skipped=2)
    result.stdout.fnmatch_lines(["*PASSED test_place.py::test_esp32?esp32@rfc2217://*"])
    result.stdout.fnmatch_lines(["*PASSED test_place.py::test_unix?linux@rfc2217://*"])
    result.stdout.fnmatch_lines(["mpsession: esp32@rfc2217://*: 5 passed, 1 skipped"])


def test_a_missing_place_under_xdist_is_one_line(pytester: pytest.Pytester, on_lab: object) -> None:
    """Under xdist the places are taken while the workers start: a place that does not
    exist still ends the run as a usage error, in one line, before any test."""
    pytester.makepyfile("def test_x(device_session):\n    pass\n")
    result = pytester.runpytest_subprocess(
        "--mp-port=labgrid://unix", "--mp-port=labgrid://bench-9", "-n", "2"
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stdout.fnmatch_lines(
        ["*mpsession: labgrid place 'bench-9' (labgrid://bench-9) does not exist*"]
    )
    out = result.stdout.str() + result.stderr.str()
    assert "Traceback" not in out and "passed" not in out


def test_a_place_whose_board_does_not_answer_under_xdist_is_one_line(
    pytester: pytest.Pytester, on_lab: object
) -> None:
    """Under xdist each worker opens its own place's board and the pool is put together
    from what they found: a board that does not answer (the emulated esp32 stopped) ends
    the run as a usage error naming it, in one line, before any test; the places are free
    after (the fixture)."""
    import signal

    from labgrid_lab import Lab

    assert isinstance(on_lab, Lab)
    emulator = next(p for p in on_lab.procs if "pytest_mpsession.emulator" in p.args)
    pytester.makepyfile("def test_x(device_session):\n    pass\n")
    os.kill(emulator.pid, signal.SIGSTOP)
    try:
        result = pytester.runpytest_subprocess(
            "--mp-port=labgrid://unix", "--mp-port=labgrid://esp32", "-n", "2", "--mp-timeout", "2"
        )
    finally:
        os.kill(emulator.pid, signal.SIGCONT)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    out = result.stdout.str() + result.stderr.str()
    result.stdout.fnmatch_lines(
        ["*mpsession: labgrid place esp32 (labgrid://esp32): cannot use the board at "
         "rfc2217://127.0.0.1:*: no raw REPL answer from * within 2 s: it sent nothing*"]
    )  # fmt: skip
    assert "mpsession: mpsession:" not in out
    assert "Traceback" not in out and "passed" not in out


def test_a_failing_test_and_a_missing_place(pytester: pytest.Pytester, on_lab: object) -> None:
    pytester.makepyfile(
        "def test_fails(device_session):\n    assert device_session.eval('1') == 2\n"
    )
    result = pytester.runpytest_subprocess("--mp-port=labgrid://esp32")
    result.assert_outcomes(failed=1)
    result = pytester.runpytest_subprocess("--mp-port=labgrid://bench-9")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["ERROR: mpsession: labgrid place 'bench-9' (labgrid://bench-9) does not exist*"]
    )
    assert "Traceback" not in result.stderr.str()


def test_places_are_released_after_a_worker_crash(
    pytester: pytest.Pytester, on_lab: object
) -> None:
    pytester.makepyfile(
        """
        import os
        import pytest

        @pytest.mark.requires_platform("esp32")
        def test_dies(device_session):
            os._exit(3)

        @pytest.mark.requires_platform("linux")
        def test_lives(device_session):
            pass
        """
    )
    result = pytester.runpytest_subprocess(
        "--mp-port=labgrid://?lab=mp", "--mp-port=labgrid://?lab=mp", "-n", "2"
    )
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*crashed while running*test_dies*"])


@pytest.mark.parametrize("signame", ["SIGINT", "SIGTERM"])
def test_places_are_released_after_sigint(
    pytester: pytest.Pytester, on_lab: object, signame: str
) -> None:
    """Ctrl-C (or a CI job's cancel, SIGTERM) in the middle of a test, two workers on two
    places: both places free after."""
    import os
    import signal
    import subprocess
    import sys
    import threading

    from labgrid_lab import Lab

    assert isinstance(on_lab, Lab)
    fifo = pytester.path / "running"
    os.mkfifo(fifo)
    pytester.makepyfile(
        f"""
        import time

        def test_waits(device_session):
            with open({str(fifo)!r}, "w") as f:  # tells the outer test: running now
                f.write("running\\n")
            time.sleep(120)  # the outer test interrupts it long before
        """
    )
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "pytest",
            "--mp-port=labgrid://?lab=mp", "--mp-port=labgrid://?lab=mp", "-n", "2",
        ],
        cwd=pytester.path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip
    running = threading.Event()

    def wait_running() -> None:
        with open(fifo) as f:  # blocks until the test opens it
            f.read()
        running.set()

    threading.Thread(target=wait_running, daemon=True).start()
    try:
        assert running.wait(120), "the test did not start"
        assert all(v[0] for v in on_lab.holders().values())  # both places held now
        proc.send_signal(getattr(signal, signame))
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == pytest.ExitCode.INTERRUPTED, out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def test_places_are_released_after_sigint_while_they_are_taken(
    pytester: pytest.Pytester, on_lab: object
) -> None:
    """Ctrl-C as soon as the session starts: under xdist the controller takes the places in
    a thread while the workers start, so the signal lands while they are being acquired (or
    just after): the run ends as interrupted, and the places are free after (the fixture)."""
    import os
    import signal
    import subprocess
    import sys

    pytester.makepyfile("def test_x(device_session):\n    pass\n")
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "pytest", "-p", "no:cacheprovider",
            "--mp-port=labgrid://?lab=mp", "--mp-port=labgrid://?lab=mp", "-n", "2",
        ],
        cwd=pytester.path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        seen = b""
        while b"test session starts" not in seen:
            line = proc.stdout.readline()  # blocks until pytest prints its header
            assert line, seen
            seen += line
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
        text = (seen + out).decode(errors="replace")
        # interrupted, or (the signal after the last test) a normal end: never a hang
        assert proc.returncode in (pytest.ExitCode.INTERRUPTED, pytest.ExitCode.OK), text
        assert "Traceback" not in text or "KeyboardInterrupt" in text, text
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.communicate()


def test_a_hard_reset_of_a_place_is_its_power_cycle(
    pytester: pytest.Pytester, on_lab: object
) -> None:
    """The esp32 place has a power port: the board's hard reset (what recovery escalates
    to, and ``--mp-reset hard``) switches it off and on through labgrid's driver."""
    from labgrid_lab import Lab

    assert isinstance(on_lab, Lab)
    pytester.makepyfile(
        """
        def test_reset_by_hand(device_session_manager):
            device_session_manager.communicator.hard_reset()

        def test_then_works(device_session):
            assert device_session.eval("1 + 1") == 2
        """
    )
    before = len(on_lab.power.switches)
    result = pytester.runpytest_subprocess("--mp-port=labgrid://esp32")
    result.assert_outcomes(passed=2)
    assert on_lab.power.wait_for(before + 2)[before:] == [(0, 0), (0, 1)]


# -- usage errors without a lab ----------------------------------------------------------------


def test_a_bad_labgrid_url_is_one_line(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_x(device_session):\n    pass\n")
    result = pytester.runpytest_subprocess("--mp-port=labgrid://?board=")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["ERROR: mpsession: 'labgrid://?board=': tag board= needs a name and a value: write "
         "labgrid://PLACE or labgrid://?TAG=VALUE[[]&TAG=VALUE...[]] (--mp-port)"]
    )  # fmt: skip


def test_without_labgrid_installed_the_error_says_how(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a labgrid that cannot be imported, first on the path of the inner run
    fake = pytester.mkdir("nolabgrid") / "labgrid"
    fake.mkdir()
    (fake / "__init__.py").write_text("raise ImportError('not installed')\n")
    monkeypatch.setenv("PYTHONPATH", str(fake.parent))
    pytester.makepyfile("def test_x(device_session):\n    pass\n")
    result = pytester.runpytest_subprocess("--mp-port=labgrid://bench-1", "-p", "no:labgrid")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["ERROR: mpsession: labgrid:// ports need labgrid: pip install 'pytest-mpsession[labgrid]'"]
    )


def test_an_unreachable_coordinator_is_one_line(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    if _lab_missing() is not None and os.environ.get("CI") != "true":
        pytest.skip(str(_lab_missing()))
    from labgrid_lab import free_port

    monkeypatch.setenv("LG_COORDINATOR", f"127.0.0.1:{free_port()}")
    pytester.makepyfile("def test_x(device_session):\n    pass\n")
    result = pytester.runpytest_subprocess("--mp-port=labgrid://bench-1", "--mp-timeout=3")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["ERROR: mpsession: cannot reach the labgrid coordinator at 127.0.0.1:* (LG_COORDINATOR)*"]
    )
    assert "Traceback" not in result.stderr.str()


def test_labgrid_is_imported_past_pytests_assertion_rewriting(pytester: pytest.Pytester) -> None:
    """labgrid ships a pytest plugin, so pytest marks all of labgrid for assertion rewriting
    (also with ``-p no:labgrid``); without written bytecode that is 2 s of rewriting per
    run. The plugin imports it with Python's own importer, and leaves pytest's rewriting of
    test modules in place."""
    pytest.importorskip("labgrid", reason="pip install 'pytest-mpsession[labgrid]'")
    pytester.makeconftest(
        """
        import sys

        def pytest_configure(config):
            from pytest_mpsession.farm.labgrid import import_labgrid

            before = list(sys.meta_path)
            import_labgrid()
            assert sys.meta_path == before
            loader = type(sys.modules["labgrid.driver"].__loader__).__name__
            print("labgrid loaded by", loader)
        """
    )
    pytester.makepyfile("def test_rewritten():\n    x = 1\n    assert x == 2\n")
    result = pytester.runpytest_subprocess("-p", "no:labgrid", "-s")
    result.stdout.fnmatch_lines(["labgrid loaded by SourceFileLoader", "*assert 1 == 2*"])
    result.assert_outcomes(failed=1)
