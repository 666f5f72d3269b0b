"""labgrid places: the URL grammar, and a real coordinator and exporter on loopback.

The lab (``tests/labgrid_lab.py``) exports the real MicroPython unix port behind a PTY and
an emulated esp32, each as a place; the esp32 place also has a power port whose switch is
an HTTP stand-in. CI installs the ``labgrid`` extra and ser2net; without them the lab tests
skip, saying which is missing.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_mpsession.farm.labgrid import PlaceRequest, is_labgrid_url, parse_url

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
