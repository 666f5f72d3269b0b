"""Capability detection: the probe script on the real MicroPython unix port, its parsing
(fuzzed), the result object, the cache key and firmware specifiers."""

from __future__ import annotations

import io
import re
import shutil
import subprocess
import tokenize
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_mpsession.capabilities import (
    KNOWN_FEATURES,
    DeviceCapabilities,
    FeatureProbes,
    FirmwareSpec,
    PerformanceProfile,
    cache_key,
    detect,
    identify,
    identity_scripts,
    parse_probe_output,
    parse_version,
    probe_script,
    small_scripts,
)
from pytest_mpsession.errors import DeviceError, MpSessionError, ProtocolError

MICROPYTHON = shutil.which("micropython")
needs_micropython = pytest.mark.skipif(MICROPYTHON is None, reason="no micropython command")

API_FEATURES = {
    "threading", "asyncio", "float", "complex", "bigint", "filesystem", "machine", "network",
    "wifi", "bluetooth", "socket", "ssl", "json", "re", "struct", "framebuf", "native",
    "viper", "raw_paste", "deflate", "select",
}  # fmt: skip


def run_micropython(code: str, heap: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``code`` on the real unix port (``heap``: its GC heap size, e.g. ``"16k"``)."""
    assert MICROPYTHON is not None
    argv = [MICROPYTHON]
    if heap:
        argv += ["-X", f"heapsize={heap}"]
    # Piped on stdin, so the whole script is buffered like a board's raw REPL does.
    return subprocess.run(argv, input=code, capture_output=True, text=True, timeout=30, check=False)


class SubprocessBoard:
    """A stand-in communicator: each exec runs the real unix port once."""

    def __init__(self, heap: str | None = None, raw_paste: bool = True) -> None:
        self.heap = heap
        self.raw_paste: bool | None = None
        self._raw_paste = raw_paste
        self.calls = 0

    def exec(
        self,
        code: str | bytes,
        timeout: float | None = None,
        on_stdout: Callable[[bytes], None] | None = None,
    ) -> str:
        self.calls += 1
        self.raw_paste = self._raw_paste
        text = code.decode() if isinstance(code, bytes) else code
        proc = run_micropython(text, self.heap)
        if proc.returncode != 0 or "Traceback" in proc.stderr:
            last = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "Error"
            raise DeviceError(last, exc_type=last.split(":")[0], traceback=proc.stderr)
        if on_stdout is not None and proc.stdout:
            on_stdout(proc.stdout.encode())
        return proc.stdout


# -- the probe script ---------------------------------------------------------------------------


def test_known_features_cover_the_api() -> None:
    assert API_FEATURES <= KNOWN_FEATURES
    assert FeatureProbes().names() == KNOWN_FEATURES


@pytest.mark.parametrize(
    "make",
    [probe_script, lambda: "".join(identity_scripts()), lambda: "".join(small_scripts())],
)
def test_board_code_uses_no_syntax_newer_than_micropython_1_9(make: Callable[[], str]) -> None:
    script = make()
    tokens = list(tokenize.generate_tokens(io.StringIO(script).readline))
    # No f-strings anywhere (MicroPython 1.9 has none); CPython 3.12 tokenizes them apart.
    assert not any(
        t.type == tokenize.STRING and re.match(r"[A-Za-z]*[fF]", t.string) for t in tokens
    )
    assert not any(getattr(tokenize, "FSTRING_START", -1) == t.type for t in tokens)
    # Types have no __name__ on 1.9, and there is no os.stat there.
    assert "__name__" not in script
    assert "stat(" not in script
    assert "\t" not in script
    script.encode("ascii")


@needs_micropython
@pytest.mark.timeout(60)
def test_probe_on_the_real_unix_port() -> None:
    proc = run_micropython(probe_script())
    assert proc.returncode == 0, proc.stderr
    out = parse_probe_output(proc.stdout)
    assert out.implementation == "micropython"
    assert out.device_type == "linux"
    assert out.version >= (1, 20, 0)
    assert out.firmware_version.startswith(".".join(map(str, out.version)))
    # The unix port's truth, checked feature by feature.
    present = {"threading", "asyncio", "float", "complex", "bigint", "filesystem", "socket",
               "ssl", "json", "re", "struct", "framebuf", "native", "viper", "deflate",
               "select"}  # fmt: skip
    absent = {"machine", "network", "wifi", "bluetooth"}  # the unix machine module has no Pin
    assert present <= out.features
    assert not (absent & out.features)
    assert out.memory_free is not None and out.memory_free > 100_000
    assert out.unique_id is None  # the unix port's machine has no unique_id
    assert out.ops is not None and out.ops > 1000
    assert out.ops_us is not None and out.ops_us >= 10_000


@needs_micropython
@pytest.mark.timeout(60)
def test_probe_leaves_the_board_globals_alone() -> None:
    code = (
        "before=sorted(globals())\n"
        + probe_script()
        + "print(sorted(globals())==before+['before'] or sorted(globals()))\n"
    )
    proc = run_micropython(code)
    assert proc.stdout.strip().splitlines()[-1] == "True"


@needs_micropython
@pytest.mark.timeout(60)
def test_probe_fits_a_small_board() -> None:
    # A legacy-size heap (the emulator's 'legacy' profile has 16 KB); it still reaches the end
    # and finds every feature it finds with a large heap.
    small = parse_probe_output(run_micropython(probe_script(), heap="16k").stdout)
    large = parse_probe_output(run_micropython(probe_script()).stdout)
    assert small.features == large.features
    assert small.memory_free is not None and small.memory_free < 16 * 1024


@needs_micropython
@pytest.mark.timeout(60)
def test_identity_script_on_the_real_unix_port() -> None:
    board = SubprocessBoard()
    ident = identify(board)
    assert ident.implementation == "micropython"
    assert ident.device_type == "linux"
    assert parse_version(ident.firmware_version) >= (1, 20, 0)
    assert board.calls == 2  # two small pieces, so that even an 8 KB board can answer


@needs_micropython
@pytest.mark.timeout(60)
def test_detect_in_one_exchange_with_performance_and_raw_paste() -> None:
    board = SubprocessBoard(raw_paste=True)
    caps = detect(board)
    assert board.calls == 1
    assert caps.supports_feature("raw_paste")
    assert caps.supports_feature("float")
    assert not caps.supports_feature("bluetooth")
    assert caps.performance.ops_per_s > 10_000
    assert caps.performance.round_trip_ms > 0
    assert caps.performance.write_bytes_per_s > 0
    assert caps.describe().startswith("micropython 1.")
    no_paste = detect(SubprocessBoard(raw_paste=False))
    assert not no_paste.supports_feature("raw_paste")


@needs_micropython
@pytest.mark.timeout(60)
def test_custom_probes_by_import_and_behaviour() -> None:
    probes = FeatureProbes()
    probes.add("has_json_dumps", "import json\njson.dumps")
    probes.add("big_heap", "assert __import__('gc').mem_free() > 100000")
    probes.add("lora", "import sx127x")
    probes.add("noisy", "print('chatter', end='')")  # stray output must not confuse parsing
    caps = detect(SubprocessBoard(), probes)
    assert {"has_json_dumps", "big_heap", "noisy"} <= caps.features
    assert "lora" not in caps.features
    small = detect(SubprocessBoard(heap="16k"), probes)
    assert "big_heap" not in small.features


def test_probe_names_and_code_are_checked() -> None:
    probes = FeatureProbes(builtin=False)
    assert len(probes) == 0
    for bad in ["", "1x", "has space", "dash-ed"]:
        with pytest.raises(ValueError, match="not valid"):
            probes.add(bad, "import x")
    with pytest.raises(ValueError, match="empty"):
        probes.add("x", "  ")
    with pytest.raises(ValueError, match="protocol"):
        probes.add("raw_paste", "import x")
    with pytest.raises(ValueError, match="ASCII"):
        probes.add("x", "s='é'")
    probes.add("x", "import x")
    probes.add("x", "import y")  # replaces
    assert probes.items() == [("x", "import y")]
    assert "x" in probes and "raw_paste" in probes and "nope" not in probes
    probes.remove("x")
    assert list(probes) == []


def test_probe_digest_tracks_the_probe_set() -> None:
    a, b = FeatureProbes(), FeatureProbes()
    assert a.digest() == b.digest()
    b.add("lora", "import sx127x")
    assert a.digest() != b.digest()


# -- parsing --------------------------------------------------------------------------------------

GOOD = (
    "boot chatter\r\n@mps:go=1\r\n@mps:impl=micropython\r\n@mps:ver=1.9.2\r\n"
    "@mps:plat=microbit\r\n@mps:mach=micro:bit with nRF51822\r\n@mps:uid=9d3c61a2b4e5f607\r\n"
    "@mps:mem=8112\r\n@mps:f=float\r\nprobe says hi@mps:f=struct\r\n@mps:ops=4200\r\n"
    "@mps:opus=10020\r\n@mps:us=55000\r\n@mps:end=1\r\n"
)


def test_parse_a_legacy_board_with_noise() -> None:
    out = parse_probe_output(GOOD)
    assert out.version == (1, 9, 2)
    assert out.device_type == "microbit"
    assert out.machine == "micro:bit with nRF51822"
    assert out.unique_id == "9d3c61a2b4e5f607"
    assert out.memory_free == 8112
    assert out.features == {"float", "struct"}
    assert (out.ops, out.ops_us, out.board_us) == (4200, 10020, 55000)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("", "incomplete"),
        ("MicroPython v1.22 REPL\r\n>>> ", "incomplete"),
        (GOOD.replace("@mps:end=1", ""), "incomplete"),
        (GOOD.replace("ver=1.9.2", "ver=unknown"), "firmware version"),
        (GOOD.replace("mem=8112", "mem=-3"), "not a number"),
        (GOOD.replace("uid=9d3c", "uid=XYZ"), "unique id"),
        (GOOD.replace("f=float", "f=fl oat"), "feature name"),
    ],
)
def test_parse_rejects_what_makes_no_sense(text: str, match: str) -> None:
    with pytest.raises(ProtocolError, match=match):
        parse_probe_output(text)


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_parse_fuzz_random_text_only_typed_errors(text: str) -> None:
    try:
        parse_probe_output(text)
    except ProtocolError:
        pass


_KEYS = st.sampled_from(
    ["go", "impl", "ver", "plat", "mach", "uid", "mem", "f", "ops", "opus", "us", "end"]
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(_KEYS, st.text(max_size=20)), max_size=20), st.text(max_size=30))
def test_parse_fuzz_marker_lines_only_typed_errors(
    pairs: list[tuple[str, str]], noise: str
) -> None:
    text = noise + "".join(f"@mps:{k}={v}\n" for k, v in pairs)
    try:
        out = parse_probe_output(text)
    except ProtocolError:
        return
    assert isinstance(out.features, frozenset)
    assert len(out.version) == 3


@settings(max_examples=100, deadline=None)
@given(
    st.sampled_from(["1.9.2", "1.22.0", "1.29.0-preview", "9.0.0"]),
    st.from_regex(r"[a-z0-9_]{1,12}", fullmatch=True),
    st.frozensets(st.from_regex(r"[a-z_][a-z0-9_]{0,10}", fullmatch=True), max_size=8),
    st.text(alphabet="abc \r\n>", max_size=20),
)
def test_parse_fuzz_valid_output_round_trips(
    ver: str, plat: str, feats: frozenset[str], noise: str
) -> None:
    lines = [f"@mps:ver={ver}", f"@mps:plat={plat}"] + [f"@mps:f={f}" for f in feats]
    text = noise + "\r\n" + "\r\n".join([*lines, "@mps:end=1"]) + "\r\n" + noise
    out = parse_probe_output(text)
    assert out.features == feats
    assert out.device_type == plat
    assert out.firmware_version == ver


@pytest.mark.parametrize(
    ("text", "version"),
    [("1.22.0", (1, 22, 0)), ("v1.9.2-34-gd64154c73", (1, 9, 2)), ("1.29.0-preview", (1, 29, 0)),
     ("2", (2, 0, 0)), ("1.20", (1, 20, 0))],
)  # fmt: skip
def test_parse_version(text: str, version: tuple[int, int, int]) -> None:
    assert parse_version(text) == version


def test_parse_version_rejects_garbage() -> None:
    with pytest.raises(ValueError, match="not a firmware version"):
        parse_version("preview")


# -- DeviceCapabilities ---------------------------------------------------------------------------


def make_caps(**kw: object) -> DeviceCapabilities:
    args: dict[str, object] = dict(
        firmware_version="1.22.0", version=(1, 22, 0), device_type="esp32", machine="ESP32 module",
        features=frozenset({"float", "threading"}),
        performance=PerformanceProfile(3.5, 11000.0, 1e6),
        memory_free=100000, unique_id="3c61aa",
    )  # fmt: skip
    args.update(kw)
    return DeviceCapabilities(**args)  # type: ignore[arg-type]


def test_to_dict_from_dict_round_trip() -> None:
    import json

    caps = make_caps()
    again = DeviceCapabilities.from_dict(json.loads(json.dumps(caps.to_dict())))
    assert again == caps
    assert again.features == frozenset({"float", "threading"})
    assert DeviceCapabilities.from_dict(
        make_caps(memory_free=None, unique_id=None).to_dict()
    ) == make_caps(memory_free=None, unique_id=None)


@pytest.mark.parametrize(
    "damage",
    [
        lambda d: d.pop("version"),
        lambda d: d.update(version=[1, 2]),
        lambda d: d.update(features="float"),
        lambda d: d.update(memory_free="lots"),
        lambda d: d.update(performance=None),
        lambda d: d.update(device_type=3),
        lambda d: d.update(unique_id=5),
    ],
)
def test_from_dict_rejects_damaged_cache(damage: Callable[[dict[str, object]], object]) -> None:
    data = make_caps().to_dict()
    damage(data)
    with pytest.raises(ValueError, match="malformed capabilities"):
        DeviceCapabilities.from_dict(data)


def test_refresh_updates_in_place_and_reports_changes() -> None:
    caps = make_caps()
    with pytest.raises(MpSessionError, match="not bound"):
        caps.refresh_capabilities()
    answers = [
        make_caps(performance=PerformanceProfile(9, 9, 9), memory_free=5),  # same board state
        make_caps(firmware_version="1.23.0", version=(1, 23, 0)),  # a firmware update
    ]
    timeouts: list[float | None] = []
    changes: list[DeviceCapabilities] = []

    def refresh(timeout: float | None) -> DeviceCapabilities:
        timeouts.append(timeout)
        return answers.pop(0)

    caps.bind(refresh, changes.append)
    same = caps
    caps.refresh_capabilities(timeout=2.0)
    assert caps.performance == PerformanceProfile(9, 9, 9) and caps.memory_free == 5
    assert changes == []
    caps.refresh_capabilities()
    assert same is caps and caps.version == (1, 23, 0)
    assert changes == [caps]
    assert timeouts == [2.0, None]


def test_cache_key_needs_a_unique_id() -> None:
    probes = FeatureProbes()
    key = cache_key("3c61aa", "1.29.0-preview", probes)
    assert key is not None and key.startswith("mpsession/capabilities/3c61aa_1.29.0-preview_")
    assert cache_key(None, "1.22.0", probes) is None
    assert cache_key("3c61aa", "1.22.0", probes) != key
    other = FeatureProbes()
    other.add("lora", "import sx127x")
    assert cache_key("3c61aa", "1.29.0-preview", other) != key
    assert "/" not in cache_key("x", "a/b c", probes)[len("mpsession/capabilities/") :]  # type: ignore[index]


# -- firmware specifiers --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "version", "ok"),
    [
        (">=1.20", (1, 22, 0), True), (">=1.20", (1, 9, 2), False), (">=1.20", (1, 20, 0), True),
        ("<1.20", (1, 9, 2), True), (">1.22", (1, 22, 0), False), ("<=1.22", (1, 22, 0), True),
        (">=1.20,<1.23", (1, 22, 1), True), (">=1.20, <1.23", (1, 23, 0), False),
        ("==1.22", (1, 22, 0), True), ("==1.22", (1, 22, 1), False), ("1.22", (1, 22, 0), True),
        ("==1.22.*", (1, 22, 4), True), ("!=1.22.*", (1, 22, 4), False),
        ("!=1.22", (1, 21, 0), True),
        ("~=1.20", (1, 25, 0), True), ("~=1.20", (2, 0, 0), False), ("~=1.20.1", (1, 20, 5), True),
        ("~=1.20.1", (1, 21, 0), False), (" >= 1.9 ", (1, 9, 0), True),
    ],
)  # fmt: skip
def test_firmware_spec(spec: str, version: tuple[int, int, int], ok: bool) -> None:
    assert FirmwareSpec(spec).matches(version) is ok


@pytest.mark.parametrize(
    "bad", ["", "  ", ">=", "1.x", "=>1.2", ">=1.2.3.4", ">=1.*", "latest", ">=1.2;"]
)
def test_firmware_spec_rejects_garbage(bad: str) -> None:
    with pytest.raises(ValueError, match="firmware requirement"):
        FirmwareSpec(bad)


@needs_micropython
def test_probe_failure_surfaces_as_device_error() -> None:
    class Broken(SubprocessBoard):
        def exec(self, code: str | bytes, timeout: float | None = None,
                 on_stdout: Callable[[bytes], None] | None = None) -> str:  # fmt: skip
            return super().exec("raise OSError(5)", timeout, on_stdout)

    with pytest.raises(DeviceError):
        detect(Broken())


# -- small boards ---------------------------------------------------------------------------------


@needs_micropython
@pytest.mark.timeout(60)
def test_small_scripts_are_small_and_agree_with_the_one_shot_probe() -> None:
    scripts = small_scripts()
    assert all(len(s) < 640 for s in scripts), [len(s) for s in scripts]
    texts = [run_micropython(s, heap="12k").stdout for s in scripts]
    small = parse_probe_output("".join(texts) + "@mps:end=1\n")
    large = parse_probe_output(run_micropython(probe_script()).stdout)
    assert small.features == large.features
    assert (small.version, small.device_type, small.machine) == (
        large.version,
        large.device_type,
        large.machine,
    )
    assert small.ops and small.memory_free


@needs_micropython
@pytest.mark.timeout(60)
def test_identity_script_runs_in_a_tiny_heap() -> None:
    # The cache lookup must work on a micro:bit-size board (about 8 KB free).
    scripts = identity_scripts()
    assert all(len(s) < 512 for s in scripts)
    text = "".join(run_micropython(s, heap="9k").stdout for s in scripts)
    out = parse_probe_output(text + "@mps:end=1\n")
    assert out.implementation == "micropython" and out.device_type == "linux"


@needs_micropython
@pytest.mark.timeout(60)
def test_boards_without_raw_paste_are_probed_in_small_exchanges() -> None:
    board = SubprocessBoard(raw_paste=False)
    board.raw_paste = False  # known after an identify() exchange
    caps = detect(board)
    assert board.calls == len(small_scripts())
    assert "raw_paste" not in caps.features
    assert {"float", "threading", "native"} <= caps.features
    assert caps.performance.ops_per_s > 0


@needs_micropython
@pytest.mark.timeout(60)
def test_a_memory_error_in_the_one_shot_probe_falls_back_to_small_exchanges() -> None:
    # A 12 KB heap runs the small scripts but not the one-shot script with a big probe.
    probes = FeatureProbes()
    probes.add("huge", "x=" + repr("y" * 6000))
    board = SubprocessBoard(heap="12k")
    caps = detect(board, probes)
    # The one-shot, then the small exchanges (the one of "huge" fails: feature absent).
    assert board.calls == 1 + len(small_scripts(probes))
    assert {"float", "bigint"} <= caps.features
    assert "huge" not in caps.features


def test_memory_errors_are_reported_by_the_parser() -> None:
    out = parse_probe_output("@mps:ver=1.9.2\n@mps:m=asyncio\n@mps:m=-\n@mps:end=1\n")
    assert out.memory_errors == {"asyncio", "-"}


# -- through the communicator, on emulated boards and the bare unix port ----------------------

PROFILE_FACTS = {
    # profile: (sys.platform, has threading, has raw-paste); stm32 boards say 'pyboard'.
    "unix": ("linux", True, True),
    "generic": ("generic", True, True),
    "esp32": ("esp32", True, True),
    "rp2": ("rp2", True, True),
    "stm32": ("pyboard", True, True),
    "legacy": ("microbit", False, False),
}


@pytest.mark.timeout(120)
def test_detect_through_the_communicator(board_port: str, request: pytest.FixtureRequest) -> None:
    from pytest_mpsession.communicator import Communicator

    profile = request.node.callspec.params["board_port"]
    platform, threads, paste = PROFILE_FACTS[profile]
    with Communicator.open(board_port) as comm:
        before = comm.exec("print(sorted(globals()))")
        ident = identify(comm)
        caps = detect(comm, identity=ident)  # as the plugin does: no second identity
        # The probe leaves the board's globals as they were.
        assert comm.exec("print(sorted(globals()))") == before
    assert ident.device_type == caps.device_type
    assert caps.device_type == platform
    assert caps.supports_feature("threading") is threads
    assert caps.supports_feature("raw_paste") is paste
    assert caps.supports_feature("float")
    assert caps.memory_free and caps.performance.ops_per_s > 0
    if profile == "legacy":
        assert caps.version == (1, 9, 2)
        assert caps.memory_free < 16 * 1024
    if profile != "unix":
        # Emulated boards have a machine.unique_id(): the cache key.
        assert caps.unique_id and ident.unique_id == caps.unique_id


@pytest.mark.timeout(120)
def test_manager_refresh_reprobes_and_reports_changes(unix_port: str) -> None:
    from pytest_mpsession.session import DeviceSessionManager

    probes = FeatureProbes()
    probes.add("marker_module", "import mps_marker_mod")
    with DeviceSessionManager.connect(unix_port, probes=probes) as manager:
        caps = manager.capabilities
        assert not caps.supports_feature("marker_module")
        events: list[DeviceCapabilities] = []
        manager.add_listener("capabilities_changed", events.append)
        caps.refresh_capabilities(timeout=10)
        assert events == []  # nothing changed but the measurements
        # The board gains the module (a frozen module after a firmware update, say).
        manager.communicator.exec(
            "import sys\nclass M:\n    pass\nsys.modules['mps_marker_mod'] = M()"
        )
        caps.refresh_capabilities(timeout=10)
        assert caps.supports_feature("marker_module")
        assert events == [caps]
