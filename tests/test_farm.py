"""Board pools: routing (``--mp-dist load``) and the matrix (``--mp-dist each``), with and
without pytest-xdist, on pools of emulated boards of different profiles.

Each test below runs a small suite whose device tests check, on the board, that they run
where they must (``sys.platform``), so a misrouted test fails instead of passing by luck.
Platforms of the profiles: ``generic`` -> generic, ``esp32`` -> esp32, ``rp2`` -> rp2,
``legacy`` -> microbit (MicroPython 1.9.2, no threads, no asyncio).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

#: twelve device tests of which each board of (generic, legacy) can run some and not others,
#: plus one no board can run and a host test (the issue's case: half were skipped before)
SUITE = """
import pytest

def platform(s):
    return s.eval("__import__('sys').platform")

def test_host():
    pass

@pytest.mark.requires_feature("threading")
@pytest.mark.parametrize("n", range(4))
def test_threads(device_session, n):
    assert platform(device_session) == "generic"
    device_session.exec("import _thread")

@pytest.mark.requires_platform("microbit")
@pytest.mark.parametrize("n", range(4))
def test_microbit(device_session, n):
    assert platform(device_session) == "microbit"

@pytest.mark.requires_firmware("<1.10")
def test_old_firmware(device_capabilities):
    assert device_capabilities.firmware_version == "1.9.2"

@pytest.mark.requires_firmware(">=1.20")
def test_new_firmware(device_capabilities):
    assert device_capabilities.version >= (1, 20, 0)

@pytest.mark.parametrize("n", range(2))
def test_any_board(device_session, n):
    assert platform(device_session) in ("generic", "microbit")

@pytest.mark.requires_platform("pyboard")
def test_no_board(device_session):
    raise AssertionError("must not run")
"""

NO_BOARD = re.compile(
    r"no board of the pool can run it: generic@mpmock://generic: requires_platform: board is "
    r"'generic', not 'pyboard' \(micropython 1\.24\.1 on generic\); microbit@mpmock://legacy: "
    r"requires_platform: board is 'microbit', not 'pyboard' \(micropython 1\.9\.2 on microbit\)"
)


def pool(*profiles: str) -> list[str]:
    return [f"--mp-port=mpmock://{p}" for p in profiles]


def summary_lines(result: pytest.RunResult) -> dict[str, str]:
    """``{label: "40 passed, 2 skipped"}`` from the per-board summary lines."""
    out = {}
    for line in result.outlines:
        m = re.match(r"mpsession: (\S+@\S+): (\d+ \w+(?:, \d+ \w+)*|no tests)$", line)
        if m:
            out[m.group(1)] = m.group(2)
    return out


# -- routing in one process --------------------------------------------------------------------


def test_one_process_runs_each_test_on_a_board_that_can(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_suite=SUITE)
    result = pytester.runpytest(*pool("generic", "legacy"), "-rs", "-v")
    result.assert_outcomes(passed=13, skipped=1)
    # ids do not change: the board is a hidden parameter
    result.stdout.fnmatch_lines(["*test_suite.py::test_threads[[]0[]] PASSED*"])
    result.stdout.re_match_lines([".*" + NO_BOARD.pattern])
    assert summary_lines(result) == {
        "generic@mpmock://generic": "7 passed",
        "microbit@mpmock://legacy": "5 passed",
    }
    # the header names every board of the pool
    result.stdout.fnmatch_lines(
        [
            "mpsession: micropython 1.24.1 on generic at mpmock://generic*",
            "mpsession: micropython 1.9.2 on microbit at mpmock://legacy*",
            "mpsession: --mp-dist load: each device test runs on the first of these 2 boards "
            "that can run it",
        ]
    )


def test_one_process_groups_tests_by_board(pytester: pytest.Pytester) -> None:
    """The pool's boards stay connected; a session fixture is made once per board."""
    pytester.makeconftest(
        """
        import pytest
        made = []

        @pytest.fixture(scope="session")
        def board_name(device_capabilities):
            made.append(device_capabilities.device_type)
            return device_capabilities.device_type

        def pytest_sessionfinish(session):
            print("made:", made)
        """
    )
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.requires_platform("microbit")
        def test_a(board_name):
            assert board_name == "microbit"

        @pytest.mark.requires_platform("rp2")
        def test_b(board_name):
            assert board_name == "rp2"

        @pytest.mark.requires_platform("microbit")
        def test_c(board_name):
            assert board_name == "microbit"
        """
    )
    result = pytester.runpytest(*pool("rp2", "legacy"), "-s")
    result.assert_outcomes(passed=3)
    # a and c (microbit) together, then b: one fixture per board, made once each
    assert "made: ['microbit', 'rp2']" in result.stdout.str()


# -- the matrix ----------------------------------------------------------------------------------


MATRIX = """
import pytest

def test_host():
    pass

def test_every_board(device_capabilities, request):
    # the board of the test's id is the board it runs on
    assert "[" + device_capabilities.device_type + "@" in request.node.name

@pytest.mark.requires_feature("threading")
def test_threads(device_session):
    device_session.exec("import _thread")

@pytest.mark.requires_platform("esp32")
def test_esp32_only(device_session):
    assert device_session.eval("__import__('sys').platform") == "esp32"
"""


def test_each_runs_every_device_test_on_every_board(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_matrix=MATRIX)
    xml = pytester.path / "junit.xml"
    result = pytester.runpytest(
        *pool("generic", "esp32", "legacy", "rp2"), "--mp-dist=each", "-v", f"--junitxml={xml}"
    )
    # 1 host test + 3 device tests x 4 boards
    result.assert_outcomes(passed=9, skipped=4)
    labels = [
        "generic@mpmock://generic",
        "esp32@mpmock://esp32",
        "microbit@mpmock://legacy",
        "rp2@mpmock://rp2",
    ]
    for label in labels:
        result.stdout.fnmatch_lines([f"*test_matrix.py::test_every_board[[]{label}[]] PASSED*"])
    result.stdout.fnmatch_lines(["*test_threads[[]microbit@mpmock://legacy[]] SKIPPED*"])
    assert "test_host[" not in result.stdout.str()
    assert summary_lines(result) == {
        "generic@mpmock://generic": "2 passed, 1 skipped",
        "esp32@mpmock://esp32": "3 passed",
        "microbit@mpmock://legacy": "1 passed, 2 skipped",
        "rp2@mpmock://rp2": "2 passed, 1 skipped",
    }
    # the JUnit record: one testcase per test per board, each naming its board
    cases = ET.parse(xml).getroot().iter("testcase")
    boards: dict[str, str] = {}
    for case in cases:
        props = {p.get("name"): p.get("value") for p in case.iter("property")}
        boards[case.get("name", "")] = props.get("mpsession_board", "")
    assert boards["test_host"] == ""
    for label in labels:
        assert boards[f"test_threads[{label}]"] == label


def test_each_with_one_board_and_a_parametrized_test(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.parametrize("x", [1, 2])
        def test_p(device_capabilities, x):
            pass
        """
    )
    result = pytester.runpytest(*pool("esp32", "rp2"), "--mp-dist=each", "-v")
    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines(
        ["*test_p[[]esp32@mpmock://esp32-1[]] PASSED*", "*test_p[[]rp2@mpmock://rp2-2[]] PASSED*"]
    )


def test_two_boards_of_one_profile_have_distinct_labels(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_x(device_session):\n    pass\n")
    result = pytester.runpytest(*pool("rp2", "rp2"), "--mp-dist=each", "-v")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(
        ["*test_x[[]rp2@mpmock://rp2[]] PASSED*", "*test_x[[]rp2@mpmock://rp2#2[]] PASSED*"]
    )


# -- options and errors ----------------------------------------------------------------------------


def test_mp_dist_from_the_ini_and_a_bad_value(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_x(device_session):\n    pass\n")
    pytester.makeini("[pytest]\nmp_dist = each\n")
    result = pytester.runpytest(*pool("rp2", "esp32"))
    result.assert_outcomes(passed=2)
    result = pytester.runpytest(*pool("rp2", "esp32"), "--mp-dist=every")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["ERROR: mpsession: --mp-dist 'every' is not a way to share tests among boards: use load*"]
    )
    pytester.makeini("[pytest]\nmp_dist = all\n")
    result = pytester.runpytest(*pool("rp2", "esp32"))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: mpsession: mp_dist in tox.ini 'all' is not a way*"])


def test_a_pool_board_that_cannot_be_opened_is_one_line(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_x(device_session):\n    pass\n")
    missing = str(pytester.path / "no-such-tty")
    result = pytester.runpytest("--mp-port=mpmock://rp2", f"--mp-port={missing}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: mpsession: cannot use the board at {missing}: *"])
    assert "Traceback" not in result.stderr.str()


def test_a_bad_marker_is_still_a_usage_error_in_a_pool(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.requires_firmware("newest")
        def test_x(device_session):
            pass
        """
    )
    result = pytester.runpytest(*pool("rp2", "esp32"))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: mpsession: *requires_firmware('newest'): cannot parse*"])


# -- under pytest-xdist ----------------------------------------------------------------------------


def test_xdist_routes_each_test_to_a_worker_whose_board_can_run_it(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_suite=SUITE)
    xml = pytester.path / "junit.xml"
    result = pytester.runpytest_subprocess(
        *pool("generic", "legacy"), "-n", "2", "-rs", f"--junitxml={xml}"
    )
    result.assert_outcomes(passed=13, skipped=1)
    result.stdout.re_match_lines([".*" + NO_BOARD.pattern])
    # each board ran its own five; the two any board can run went to either
    counts = {k: int(v.split()[0]) for k, v in summary_lines(result).items()}
    assert counts.keys() == {"generic@mpmock://generic", "microbit@mpmock://legacy"}
    assert sum(counts.values()) == 12 and min(counts.values()) >= 5
    # the skip of a test no board can run is reported once
    assert result.stdout.str().count("no board of the pool can run it") == 1
    names = [c.get("name") for c in ET.parse(xml).getroot().iter("testcase")]
    assert len(names) == 14 and len(set(names)) == 14


def test_xdist_matrix(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_matrix=MATRIX)
    result = pytester.runpytest_subprocess(*pool("esp32", "legacy"), "-n", "2", "--mp-dist=each")
    # 1 host test + 3 device tests x 2 boards (legacy lacks threads and is no esp32)
    result.assert_outcomes(passed=5, skipped=2)
    assert summary_lines(result) == {
        "esp32@mpmock://esp32": "3 passed",
        "microbit@mpmock://legacy": "1 passed, 2 skipped",
    }


def test_collect_only_lists_the_matrix_copies_a_run_runs(pytester: pytest.Pytester) -> None:
    """``--co`` under ``--mp-dist each`` lists each device test once per board, with the ids
    the run gives them (host tests and board test files alike), with and without xdist."""
    pytester.makepyfile(test_matrix=MATRIX)
    board = pytester.mkdir("board")
    (board / "hello.py").write_text("print('hello')\n")
    (board / "hello.py.exp").write_text("hello\n")
    args = [*pool("esp32", "legacy"), "--mp-dist=each", "--mp-board-tests=board"]
    ran = pytester.runpytest_subprocess(*args, "-n", "2", "-v")
    ran.assert_outcomes(passed=7, skipped=2)
    run_ids = set(re.findall(r"(?:PASSED|SKIPPED) (\S+::\S+)", ran.stdout.str()))
    assert len(run_ids) == 9, ran.stdout.str()
    assert "board/hello.py::hello.py[microbit@mpmock://legacy]" in run_ids
    for extra in (["-n", "2"], []):
        listed = pytester.runpytest_subprocess(*args, *extra, "--co", "-q")
        assert listed.ret == 0, listed.stdout.str()
        ids = {line for line in listed.outlines if "::" in line}
        assert ids == run_ids, listed.stdout.str()
        listed.stdout.fnmatch_lines(["9 tests collected*"])
        assert not summary_lines(listed)  # nothing ran: no per-board summary


def test_xdist_a_crashed_workers_board_goes_to_its_replacement(
    pytester: pytest.Pytester,
) -> None:
    """A worker dies in a test only its board can run: xdist starts another worker, which
    gets the same board and runs that board's remaining tests."""
    pytester.makepyfile(
        """
        import os
        import pytest

        @pytest.mark.requires_platform("microbit")
        def test_a_dies(device_session):
            os._exit(1)

        @pytest.mark.requires_platform("microbit")
        @pytest.mark.parametrize("n", range(3))
        def test_b_after(device_session, n):
            assert device_session.eval("__import__('sys').platform") == "microbit"

        @pytest.mark.requires_platform("rp2")
        @pytest.mark.parametrize("n", range(3))
        def test_rp2(device_session, n):
            pass
        """
    )
    result = pytester.runpytest_subprocess(*pool("rp2", "legacy"), "-n", "2")
    result.assert_outcomes(passed=6, failed=1)
    result.stdout.fnmatch_lines(["*replacing crashed worker*"])


def test_xdist_each_needs_load_distribution(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_x(device_session):\n    pass\n")
    result = pytester.runpytest_subprocess(
        *pool("rp2", "legacy"), "-n", "2", "--dist=loadfile", "--mp-dist=each"
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: mpsession: --mp-dist each runs through pytest-xdist*"])


def test_items_of_another_collector_join_the_matrix_and_routing(
    pytester: pytest.Pytester,
) -> None:
    """Items that are not functions (board test files, say) carry their requirements as
    markers, and join the matrix through ``matrix_boards`` and ``BOARD_INDEX``."""
    pytester.makeconftest(
        """
        import pytest
        from pytest_mpsession.farm.hooks import matrix_boards
        from pytest_mpsession.farm.requirements import BOARD_INDEX

        class BoardItem(pytest.Item):
            def __init__(self, **kw):
                super().__init__(**kw)
                self.fixturenames = ["device_session"]  # a device test

            def reportinfo(self):
                return self.path, 0, self.name

            def runtest(self):
                from pytest_mpsession.plugin.fixtures import board_or_skip
                platform = board_or_skip(self.config).capabilities.device_type
                if "[" in self.name:
                    assert self.name.split("[")[1].startswith(platform + "@")
                else:
                    assert platform == "microbit"

        class BoardFile(pytest.File):
            def collect(self):
                self.add_marker(pytest.mark.requires_feature("float"))
                for index, label in matrix_boards(self.config) or [(None, "")]:
                    item = BoardItem.from_parent(self, name=f"t[{label}]" if label else "t")
                    if self.path.stem == "old":
                        item.add_marker(pytest.mark.requires_firmware("<1.10"))
                    if index is not None:
                        item.stash[BOARD_INDEX] = index
                    yield item

        def pytest_collect_file(file_path, parent):
            if file_path.suffix == ".brd":
                return BoardFile.from_parent(parent, path=file_path)
        """
    )
    (pytester.path / "old.brd").write_text("")
    result = pytester.runpytest(*pool("rp2", "legacy"), "--mp-dist=each", "-v")
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines(
        [
            "*old.brd::t[[]rp2@mpmock://rp2[]] SKIPPED (requires_firmware: board has 1*",
            "*old.brd::t[[]microbit@mpmock://legacy[]] PASSED*",
        ]
    )
    # routing: the one item goes to the board that meets the file's requirements
    result = pytester.runpytest(*pool("rp2", "legacy"), "-v")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        ["*old.brd::t PASSED*", "mpsession: microbit@mpmock://legacy: 1 passed"]
    )


def test_one_boards_death_does_not_skip_the_other_boards_tests(
    pytester: pytest.Pytester, tmp_path: Path
) -> None:
    """One process, two boards: the first dies for good in a test; its remaining tests skip
    as broken, and the other board's tests run (each board has its own fault state)."""
    from pytest_mpsession.emulator import PtyBoard

    board = PtyBoard("unix")
    link = tmp_path / "ttyBOARD"
    link.symlink_to(board.path)

    class Plug:
        @pytest.fixture
        def pull_the_plug(self) -> Callable[[], None]:
            def vanish() -> None:
                link.unlink(missing_ok=True)
                board.close()

            return vanish

    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.requires_platform("linux")
        def test_a_dies(device_session, pull_the_plug):
            pull_the_plug()
            device_session.exec("x = 2")

        @pytest.mark.requires_platform("linux")
        @pytest.mark.parametrize("i", range(3))
        def test_b_linux(device_session, i):
            pass

        @pytest.mark.requires_platform("microbit")
        @pytest.mark.parametrize("i", range(3))
        def test_c_microbit(device_session, i):
            assert device_session.eval("1 + 1") == 2
        """
    )
    try:
        result = pytester.runpytest(
            f"--mp-port={link}", "--mp-port=mpmock://legacy", "--mp-timeout=5", "-rs",
            plugins=[Plug()],
        )  # fmt: skip
    finally:
        board.close()
    result.assert_outcomes(passed=3, failed=1, skipped=3)
    result.stdout.fnmatch_lines([f"SKIPPED [[]3[]] *board at {link} is broken after *"])
    counts = summary_lines(result)
    assert counts[f"linux@{link}"] == "1 failed, 3 skipped"
    assert counts["microbit@mpmock://legacy"] == "3 passed"


def test_a_replacement_worker_gets_the_crashed_workers_board(pytester: pytest.Pytester) -> None:
    """The controller's board assignment: a worker that finished keeps its board (nothing
    replaces it); one that crashed frees it for the worker xdist starts in its place."""
    from types import SimpleNamespace

    from pytest_mpsession.capabilities import DeviceCapabilities
    from pytest_mpsession.farm import hooks
    from pytest_mpsession.farm.pool import make_pool

    config = pytester.parseconfigure()
    farm = hooks.get_farm(config)
    assert farm is not None
    caps = [DeviceCapabilities("1.24.1", (1, 24, 1), p) for p in ("rp2", "esp32")]
    farm.pool = make_pool(["mpmock://rp2", "mpmock://esp32"], caps)

    def node(name: str) -> SimpleNamespace:
        return SimpleNamespace(config=config, gateway=SimpleNamespace(id=name), workerinput={})

    gw0, gw1 = node("gw0"), node("gw1")
    hooks.pytest_configure_node(gw0)
    hooks.pytest_configure_node(gw1)
    assert (gw0.workerinput["mpsession_port"], gw1.workerinput["mpsession_port"]) == (
        "mpmock://rp2",
        "mpmock://esp32",
    )
    hooks.pytest_testnodedown(gw0, None)  # finished
    hooks.pytest_testnodedown(gw1, "Not properly terminated")  # crashed
    gw2 = node("gw2")
    hooks.pytest_configure_node(gw2)
    assert gw2.workerinput["mpsession_port"] == "mpmock://esp32"
    assert gw2.workerinput["mpsession_board"] == 1


@pytest.mark.parametrize("xdist", [False, True], ids=["one-process", "xdist"])
def test_board_test_files_are_routed_by_their_requirements(
    pytester: pytest.Pytester, xdist: bool
) -> None:
    """A board test file's ``requires_*`` assignments route its tests like markers."""
    for platform in ("esp32", "rp2"):
        pytester.path.joinpath("bt").mkdir(exist_ok=True)
        pytester.path.joinpath("bt", f"test_{platform}.py").write_text(
            f"requires_platform = ({platform!r},)\n"
            "import sys\n\n"
            "def test_platform():\n"
            f"    assert sys.platform == {platform!r}\n"
        )
    args = ["--mp-board-tests=bt", *pool("rp2", "esp32"), "-v"]
    result = pytester.runpytest_subprocess(*args, "-n", "2") if xdist else pytester.runpytest(*args)
    result.assert_outcomes(passed=2)
    assert summary_lines(result) == {
        "rp2@mpmock://rp2": "1 passed",
        "esp32@mpmock://esp32": "1 passed",
    }


# -- probes from a conftest file found while collecting ----------------------------------------


@pytest.mark.parametrize("xdist", [False, True], ids=["one-process", "xdist"])
def test_probes_of_a_conftest_found_while_collecting_route_tests(
    pytester: pytest.Pytester, xdist: bool
) -> None:
    """``hw/conftest.py`` is loaded only when collection reaches ``hw/`` (after the pool was
    identified, and never in the xdist controller): its probes still run on every board of
    the pool, so a test that needs one goes to the board that has it, and a test no board
    can run is skipped once, naming every board."""
    hw = pytester.mkpydir("hw")
    (hw / "conftest.py").write_text(
        "def pytest_mpsession_probe_features(probes):\n"
        "    probes.add('is_esp', \"import sys\\nassert sys.platform == 'esp32'\")\n"
        "    probes.add('lora', 'import sx127x')\n"
    )
    (hw / "test_radio.py").write_text(
        "import pytest\n\n"
        "@pytest.mark.requires_feature('is_esp')\n"
        "@pytest.mark.parametrize('n', range(3))\n"
        "def test_esp(device_session, n):\n"
        "    assert device_session.eval(\"__import__('sys').platform\") == 'esp32'\n\n"
        "@pytest.mark.requires_feature('lora')\n"
        "def test_lora(device_session):\n"
        "    raise AssertionError('no board has it')\n\n"
        "def test_any(device_session):\n"
        "    pass\n"
    )
    args = [*pool("generic", "esp32"), "-rs", "-p", "no:cacheprovider"]
    if xdist:
        # the matrix too: each board's copy of a test is skipped by its own board's answer
        each = pytester.runpytest_subprocess(*args, "-n", "2", "--mp-dist=each")
        each.assert_outcomes(passed=5, skipped=5)
        assert summary_lines(each) == {
            "generic@mpmock://generic": "1 passed, 4 skipped",
            "esp32@mpmock://esp32": "4 passed, 1 skipped",
        }
    result = pytester.runpytest_subprocess(*args, "-n", "2") if xdist else pytester.runpytest(*args)
    result.assert_outcomes(passed=4, skipped=1)
    result.stdout.re_match_lines(
        [
            r".*no board of the pool can run it: generic@mpmock://generic: requires_feature: "
            r"board lacks 'lora' .*; esp32@mpmock://esp32: requires_feature: board lacks 'lora'"
        ]
    )
    counts = summary_lines(result)
    assert counts["esp32@mpmock://esp32"].startswith(("3 passed", "4 passed")), counts
    assert sum(int(c.split()[0]) for c in counts.values() if c != "no tests") == 4, counts


def test_rendezvous_answers_once_every_board_answered() -> None:
    """Each worker blocks until every board of the pool gave its answer for the same probe
    set; a stranger without the key is refused; a board that never answers leaves the
    others with what is known once the deadline passes."""
    import concurrent.futures
    from multiprocessing.connection import AuthenticationError, Client

    from pytest_mpsession.farm.rendezvous import Rendezvous, exchange

    meet = Rendezvous(2, timeout=30)
    try:
        with pytest.raises((AuthenticationError, EOFError, OSError)):
            Client(meet.address, authkey=b"wrong key").close()
        info = meet.to_dict()
        with concurrent.futures.ThreadPoolExecutor(2) as ex:
            first = ex.submit(exchange, info, "d1", 0, ["a"])
            second = ex.submit(exchange, info, "d1", 1, None)
            assert first.result(60) == second.result(60) == {0: ["a"], 1: None}
        # a later worker (one replacing a crashed one) is answered at once
        assert exchange(info, "d1", 1, ["b"]) == {0: ["a"], 1: ["b"]}
    finally:
        meet.close()
    lonely = Rendezvous(2, timeout=0.2)
    try:
        assert exchange(lonely.to_dict(), "d2", 0, ["x"]) == {0: ["x"]}
    finally:
        lonely.close()


def test_rendezvous_hands_the_pool_to_workers_that_started_before_it() -> None:
    """labgrid places are taken while the workers start: a worker asking for the pool
    blocks until the controller offers it (an error, too); one asking later gets it at
    once; one asking past the deadline gets a one-line error, not a hang."""
    import concurrent.futures

    from pytest_mpsession.farm.rendezvous import Rendezvous, fetch_pool

    meet = Rendezvous(2, timeout=30)
    try:
        info = meet.to_dict()
        with concurrent.futures.ThreadPoolExecutor(2) as ex:
            waiting = [ex.submit(fetch_pool, info, "pool") for _ in range(2)]
            assert not concurrent.futures.wait(waiting, 0.2).done  # no offer yet
            meet.offer("pool", {"pool": [1, 2]})
            assert [f.result(60) for f in waiting] == [{"pool": [1, 2]}] * 2
        meet.offer("pool", {"error": "too late: the first offer stands"})
        assert fetch_pool(info, "pool") == {"pool": [1, 2]}
    finally:
        meet.close()
    lonely = Rendezvous(2, timeout=0.2)
    try:
        assert "did not find the pool" in fetch_pool(lonely.to_dict(), "pool")["error"]
    finally:
        lonely.close()


def test_rendezvous_gathers_every_boards_part() -> None:
    """labgrid places: each worker gives what its board is, and blocks until every board's
    part is in; all of them and the controller get the parts in pool order (the first that
    failed, in pool order, when one did); a board that never comes is a one-line error."""
    import concurrent.futures

    from pytest_mpsession.farm.rendezvous import Rendezvous, gather

    meet = Rendezvous(2, timeout=30)
    try:
        info = meet.to_dict()
        with concurrent.futures.ThreadPoolExecutor(1) as ex:
            second = ex.submit(gather, info, "boards", 1, {"caps": "B"})
            assert not concurrent.futures.wait([second], 0.2).done  # board 0 not in yet
            first = gather(info, "boards", 0, {"caps": "A"})
            assert first == second.result(60) == {"answers": [{"caps": "A"}, {"caps": "B"}]}
        assert meet.wait("boards") == first
        # a part given again (a worker replacing a crashed one) does not change the pool
        assert gather(info, "boards", 1, {"caps": "C"}) == first
    finally:
        meet.close()
    failing = Rendezvous(3, timeout=30)
    try:
        info = failing.to_dict()
        with concurrent.futures.ThreadPoolExecutor(2) as ex:
            parts = [{"caps": "A"}, {"error": "board 1 is dead"}, {"error": "board 2 too"}]
            waiting = [ex.submit(gather, info, "boards", i, parts[i]) for i in (2, 1)]
            got = gather(info, "boards", 0, parts[0])
            assert got == {"error": "board 1 is dead"}
            assert [f.result(60) for f in waiting] == [got, got]
    finally:
        failing.close()
    lonely = Rendezvous(2, timeout=0.3)
    try:
        got = gather(lonely.to_dict(), "boards", 0, {"caps": "A"})
        assert got == {
            "error": "1 board(s) of the pool were not identified in time (their "
            "pytest-xdist workers did not start or could not reach the controller)"
        }
        assert lonely.wait("boards", 0.1) == got
    finally:
        lonely.close()


def test_a_run_without_labgrid_ports_does_not_import_labgrid(pytester: pytest.Pytester) -> None:
    """Every process of a run pays for what the plugin imports: labgrid (and the module
    that drives it, with asyncio) only where a ``labgrid://`` port asks for it."""
    pytester.makeconftest(
        """
        import sys

        def pytest_unconfigure(config):
            names = ("labgrid", "pytest_mpsession.farm.labgrid")
            held = sorted(m for m in names if m in sys.modules)
            print("imported:", held or "none")
        """
    )
    pytester.makepyfile("def test_x(device_session):\n    pass\n")
    result = pytester.runpytest_subprocess(*pool("generic", "esp32"), "-p", "no:labgrid", "-s")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["imported: none"])


def test_workers_take_their_boards_capabilities_from_the_controller(
    pytester: pytest.Pytester,
) -> None:
    """The controller identified every board moments before the workers start: a worker
    whose board says it is the same one takes those capabilities, also where pytest's cache
    cannot serve (no cache here; the unix port has no unique id), instead of probing again;
    a board that is not the one identified is probed."""
    from pytest_mpsession.capabilities import BoardIdentity, DeviceCapabilities
    from pytest_mpsession.plugin.boards import _same_board

    pytester.makepyfile(
        """
        import pytest
        from pytest_mpsession.plugin.state import get_state

        @pytest.mark.parametrize("n", range(4))
        def test_board(device_session, request, n):
            board = get_state(request.config).board
            assert board.from_cache and board.known is not None
            assert board.capabilities.to_dict() == board.known.to_dict()
        """
    )
    result = pytester.runpytest_subprocess(
        *pool("unix", "generic"), "-n", "2", "-p", "no:cacheprovider"
    )
    result.assert_outcomes(passed=4)
    caps = DeviceCapabilities("1.24.1", (1, 24, 1), "esp32", machine="ESP32 module")
    same = BoardIdentity("micropython", "1.24.1", "esp32", None, "ESP32 module")
    assert _same_board(caps, same)
    for other in (
        BoardIdentity("micropython", "1.24.0", "esp32", None, "ESP32 module"),
        BoardIdentity("micropython", "1.24.1", "rp2", None, "ESP32 module"),
        BoardIdentity("micropython", "1.24.1", "esp32", "c0ffee", "ESP32 module"),
    ):
        assert not _same_board(caps, other)


def test_a_board_that_hangs_on_a_late_probe_lacks_the_feature(pytester: pytest.Pytester) -> None:
    """A probe found while collecting that hangs one board: that board's answer is unknown
    (it lacks the feature), the other boards route the test, and the hung board is brought
    back for its own tests."""
    hw = pytester.mkpydir("hw")
    (hw / "conftest.py").write_text(
        "HANG = \"import sys\\nif sys.platform == 'esp32':\\n while 1:\\n  pass\\n\"\n\n"
        "def pytest_mpsession_probe_features(probes):\n"
        "    probes.add('stuck', HANG)\n"
    )
    (hw / "test_a.py").write_text(
        "import pytest\n\n"
        "@pytest.mark.requires_feature('stuck')\n"
        "def test_stuck(device_session):\n"
        "    assert device_session.eval(\"__import__('sys').platform\") == 'generic'\n\n"
        "@pytest.mark.requires_platform('esp32')\n"
        "def test_esp32(device_session):\n"
        "    assert device_session.eval('1 + 1') == 2\n"
    )
    result = pytester.runpytest(
        *pool("generic", "esp32"), "--mp-timeout=3", "-p", "no:cacheprovider"
    )
    result.assert_outcomes(passed=2)
    assert summary_lines(result) == {
        "generic@mpmock://generic": "1 passed",
        "esp32@mpmock://esp32": "1 passed",
    }
