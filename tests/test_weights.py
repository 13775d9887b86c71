"""Weight resolution order, sha256 verification, the offline error, and the `fdbench weights` command."""

from __future__ import annotations

import hashlib
import socket
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import torch

import feature_spaces as fs
from bench.cli import main as cli_main
from feature_spaces.spec import WeightsFile
from feature_spaces.weights import (
    MissingWeightsError,
    WeightsFormatError,
    WeightsHashError,
    import_file,
    read_state_dict,
    resolve,
    strip_prefix,
    unwrap_state_dict,
)

URL = "https://example.invalid/models/tiny-weights.pth"


@pytest.fixture
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Empty FDBENCH_WEIGHTS unset, cache in tmp, and every network call fails as it would offline."""
    monkeypatch.delenv("FDBENCH_WEIGHTS", raising=False)
    monkeypatch.delenv("FDBENCH_OFFLINE", raising=False)
    monkeypatch.setenv("FDBENCH_CACHE", str(tmp_path / "cache"))

    def no_network(*args, **kwargs):
        raise urllib.error.URLError(socket.gaierror(-3, "Temporary failure in name resolution"))

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    return tmp_path


def write(path: Path, payload: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(payload)
    return path


def test_offline_without_the_file_names_file_size_url_and_destination(isolated: Path) -> None:
    weights = WeightsFile("tiny-weights.pth", url=URL, size=1234567)
    with pytest.raises(MissingWeightsError) as raised:
        resolve(weights, space="tiny")
    message = str(raised.value)
    assert isinstance(raised.value, FileNotFoundError)
    assert "tiny-weights.pth" in message and URL in message
    assert "1.2 MB" in message
    assert str(isolated / "cache" / "weights" / "tiny-weights.pth") in message
    assert "download failed" in message and "\n" not in message


def test_offline_flag_skips_the_network(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FDBENCH_OFFLINE", "1")
    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: pytest.fail("network touched"))
    with pytest.raises(MissingWeightsError, match="FDBENCH_OFFLINE"):
        resolve(WeightsFile("tiny-weights.pth", url=URL))


def test_builtin_space_offline_error_is_one_clear_line(isolated: Path) -> None:
    with pytest.raises(MissingWeightsError) as raised:
        fs.get("dinov2-vits14").load("cpu")
    message = str(raised.value)
    assert "dinov2_vits14_pretrain.pth" in message
    assert "https://dl.fbaipublicfiles.com/dinov2/dinov2_vits14/dinov2_vits14_pretrain.pth" in message
    assert str(isolated / "cache" / "weights") in message


def test_resolution_order(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    weights = WeightsFile("tiny-weights.pth", url=URL)
    cache = write(isolated / "cache" / "weights" / "tiny-weights.pth", b"cache")
    assert resolve(weights) == cache
    env = write(isolated / "env" / "tiny-weights.pth", b"env")
    monkeypatch.setenv("FDBENCH_WEIGHTS", str(isolated / "env"))
    assert resolve(weights) == env
    explicit = write(isolated / "mine.bin", b"explicit")
    assert resolve(weights, explicit=explicit) == explicit
    assert resolve(weights, explicit=isolated / "env") == env  # a folder: the file name inside it
    with pytest.raises(FileNotFoundError, match="does-not-exist"):
        resolve(weights, explicit=isolated / "does-not-exist.pth")


def test_package_shipped_file_is_found_without_importing_the_package(isolated: Path) -> None:
    spec = fs.get("augnet-r50").spec
    path = resolve(spec.weights[0])
    assert path.name == "model.pth" and path.parent.name == "imgsim"


def test_sha256_full_and_prefix_are_enforced(isolated: Path) -> None:
    payload = b"some weights"
    digest = hashlib.sha256(payload).hexdigest()
    path = write(isolated / "cache" / "weights" / "w.bin", payload)
    assert resolve(WeightsFile("w.bin", sha256=digest)) == path
    assert resolve(WeightsFile("w.bin", sha256=digest[:8])) == path
    wrong = "0" * 64 if not digest.startswith("0") else "1" * 64
    with pytest.raises(WeightsHashError, match=digest):
        resolve(WeightsFile("w.bin", sha256=wrong))


def test_unknown_sha256_is_used_with_a_warning(isolated: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = write(isolated / "cache" / "weights" / "unpinned-test.bin", b"x")
    with caplog.at_level("WARNING"):
        assert resolve(WeightsFile("unpinned-test.bin")) == path
    assert "no sha256" in caplog.text and "unpinned-test.bin" in caplog.text


def test_download_when_online_is_verified_and_atomic(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    payload = b"downloaded weights"
    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout=None: io.BytesIO(payload))
    good = WeightsFile("dl.bin", url=URL, sha256=hashlib.sha256(payload).hexdigest())
    path = resolve(good)
    assert path.read_bytes() == payload and path.parent == isolated / "cache" / "weights"
    bad = WeightsFile("dl-bad.bin", url=URL, sha256="f" * 64)
    with pytest.raises(WeightsHashError):
        resolve(bad)
    assert not any(p.name.startswith("dl-bad") for p in path.parent.iterdir())  # no partial file left


def test_state_dict_readers(isolated: Path) -> None:
    state = {"module.a.weight": torch.ones(2), "module.b": torch.zeros(1)}
    torch.save({"epoch": 3, "state_dict": state}, isolated / "ckpt.pth")
    loaded = strip_prefix(unwrap_state_dict(read_state_dict(isolated / "ckpt.pth")), "module.")
    assert set(loaded) == {"a.weight", "b"}
    from safetensors.torch import save_file

    save_file({"x": torch.arange(3.0)}, str(isolated / "w.safetensors"))
    assert torch.equal(read_state_dict(isolated / "w.safetensors")["x"], torch.arange(3.0))
    write(isolated / "junk.pth", b"not a pickle")
    with pytest.raises(WeightsFormatError, match=r"junk\.pth"):
        read_state_dict(isolated / "junk.pth")


def test_import_file_copies_under_the_expected_name(isolated: Path) -> None:
    source = write(isolated / "downloads" / "backbone.pth", b"arcface bytes")
    target = import_file(source, fs.get("arcface-r34").spec.weights[0])
    assert target == isolated / "cache" / "weights" / "glint360k_cosface_r34_fp16_0.1_backbone.pth"
    assert target.read_bytes() == b"arcface bytes"
    assert fs.available()["arcface-r34"].ok


# -------------------------------------------------------------------------------------------------- CLI


def test_cli_weights_status_lists_every_space(isolated: Path, capsys: pytest.CaptureFixture) -> None:
    assert cli_main(["weights"]) == 0
    out = capsys.readouterr().out
    for name in fs.names():
        assert name in out
    assert "found (package imgsim)" in out
    assert "missing" in out and "pt_inception-2015-12-05-6726825d.pth" in out


def test_cli_weights_import(isolated: Path, capsys: pytest.CaptureFixture) -> None:
    source = write(isolated / "downloads" / "ffhq.pth", b"swav ffhq")
    assert cli_main(["weights", "import", str(source), "--space", "swav-ffhq"]) == 0
    assert (isolated / "cache" / "weights" / "swav_ffhq.pth").read_bytes() == b"swav ffhq"
    assert "swav-ffhq" in capsys.readouterr().out
    by_name = write(isolated / "downloads" / "dinov2_vits14_pretrain.pth", b"dino")
    assert cli_main(["weights", "import", str(by_name)]) == 0
    assert (isolated / "cache" / "weights" / "dinov2_vits14_pretrain.pth").exists()
    unknown = write(isolated / "downloads" / "mystery.bin", b"?")
    assert cli_main(["weights", "import", str(unknown)]) == 2
    assert "--space" in capsys.readouterr().err
    assert cli_main(["weights", "import", str(isolated / "nope.pth")]) == 2


def test_cli_spaces_table_and_json(isolated: Path, capsys: pytest.CaptureFixture) -> None:
    import json

    assert cli_main(["spaces"]) == 0
    out = capsys.readouterr().out
    assert "inception-fid" in out and "ready" in out and fs.get("inception-fid").spec_hash in out
    assert cli_main(["spaces", "--json", "--available"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert {row["name"] for row in payload} >= {"pixels-randproj", "spectrum-durall"}
    assert all(row["available"] for row in payload)
