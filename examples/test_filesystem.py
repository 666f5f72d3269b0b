"""The board's filesystem: files the firmware reads (configuration) and writes (logs).

On the emulator the flash is a littlefs image, kept across soft and hard resets; the
host's files are out of reach, as on a real board.
"""

from __future__ import annotations

import json

import pytest

from pytest_mpsession import DeviceError, SessionResource

# Moving files needs RAM for the transfer buffers: not for a 16 KB board.
pytestmark = pytest.mark.requires_feature("filesystem", "large_heap")


class BoardFile(SessionResource):
    """A file put on the board for one test, and removed when the session ends, even if
    the test fails: resources are cleaned up newest first."""

    resource_type = "file"

    def __init__(self, path: str, data: bytes) -> None:
        super().__init__()
        self.resource_id = path
        self.data = data

    def initialize(self, session):
        session.fs.write(self.resource_id, self.data)

    def cleanup(self, session):
        session.fs.remove(self.resource_id)


@pytest.fixture
def config_file(device_session):
    device_session.register_resource(BoardFile("config.json", b'{"interval": 5, "unit": "C"}'))
    return "config.json"


def test_firmware_reads_its_configuration(device_session, config_file):
    out = device_session.exec(
        f"import json\nwith open({config_file!r}) as f:\n    print(json.load(f)['interval'])"
    )
    assert out == "5\n"
    assert config_file in device_session.fs.listdir()


def test_firmware_writes_a_log_the_host_reads(device_session):
    device_session.register_resource(BoardFile("log.txt", b""))
    device_session.exec(
        "with open('log.txt', 'a') as f:\n"
        "    for i in range(3):\n"
        "        f.write('reading %d\\n' % i)"
    )
    assert device_session.fs.read("log.txt") == b"reading 0\nreading 1\nreading 2\n"


def test_host_writes_board_reads_binary(device_session):
    blob = bytes(range(256)) * 4
    device_session.register_resource(BoardFile("blob.bin", blob))
    assert device_session.eval("len(open('blob.bin', 'rb').read())") == len(blob)
    assert device_session.fs.read("blob.bin") == blob


def test_missing_file_is_oserror_enoent(device_session):
    with pytest.raises(DeviceError) as excinfo:
        device_session.exec("open('no-such-file.txt')")
    assert excinfo.value.exc_type == "OSError"
    assert "2" in str(excinfo.value) or "ENOENT" in str(excinfo.value)


def test_json_state_survives_a_soft_reset(device_session, device_session_manager):
    state = {"boots": 1, "calibration": [1.0, 0.5]}
    device_session.register_resource(BoardFile("state.json", json.dumps(state).encode()))
    device_session_manager.reset_board("soft")  # RAM is gone, flash is not
    assert json.loads(device_session.fs.read("state.json")) == state
