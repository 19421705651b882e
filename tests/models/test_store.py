"""engine/models/store.py: the weights folder, resumable checked downloads, the ImageNet class names."""
from __future__ import annotations

import hashlib

import pytest

from engine.models import store

pytestmark = pytest.mark.usefixtures("tmp_weights")

PAYLOAD = bytes(range(256)) * 4000  # 1 MB


def test_download_resumes_after_an_interruption(server, tmp_path):
    server.files["/f.bin"] = PAYLOAD
    server.truncate_next = 1
    seen = []
    dest = store.download_file(server.url("/f.bin"), tmp_path / "out" / "f.bin",
                                  hashlib.sha256(PAYLOAD).hexdigest(), progress=lambda n, d, t: seen.append((d, t)),
                                  chunk=65536)
    assert dest.read_bytes() == PAYLOAD
    assert not (tmp_path / "out" / "f.bin.part").exists()
    assert [r for _, r in server.log] == [None, f"bytes={len(PAYLOAD) // 2}-"]
    assert seen[-1] == (len(PAYLOAD), len(PAYLOAD))


def test_download_resumes_a_part_file_left_by_an_earlier_run(server, tmp_path):
    server.files["/f.bin"] = PAYLOAD
    (tmp_path / "f.bin.part").write_bytes(PAYLOAD[:1000])
    store.download_file(server.url("/f.bin"), tmp_path / "f.bin")
    assert (tmp_path / "f.bin").read_bytes() == PAYLOAD
    assert server.log == [("/f.bin", "bytes=1000-")]
    # complete .part (the server answers 416): nothing more to fetch
    (tmp_path / "g.bin.part").write_bytes(PAYLOAD)
    server.files["/g.bin"] = PAYLOAD
    store.download_file(server.url("/g.bin"), tmp_path / "g.bin", hashlib.sha256(PAYLOAD).hexdigest())
    assert (tmp_path / "g.bin").read_bytes() == PAYLOAD
    # already there with the right checksum: no request at all
    n = len(server.log)
    store.download_file(server.url("/g.bin"), tmp_path / "g.bin", hashlib.sha256(PAYLOAD).hexdigest())
    assert len(server.log) == n


def test_download_restarts_when_the_server_ignores_ranges(server, tmp_path):
    server.files["/f.bin"] = PAYLOAD
    server.ignore_range = True
    (tmp_path / "f.bin.part").write_bytes(b"garbage" * 10)
    store.download_file(server.url("/f.bin"), tmp_path / "f.bin")
    assert (tmp_path / "f.bin").read_bytes() == PAYLOAD


def test_download_checksum_mismatch_and_http_errors(server, tmp_path):
    server.files["/f.bin"] = PAYLOAD
    with pytest.raises(store.ChecksumError, match="sha256 mismatch"):
        store.download_file(server.url("/f.bin"), tmp_path / "f.bin", "0" * 64)
    assert not (tmp_path / "f.bin").exists() and not (tmp_path / "f.bin.part").exists()
    with pytest.raises(store.DownloadError, match="HTTP 404"):
        store.download_file(server.url("/nope"), tmp_path / "n.bin")
    server.truncate_next = 10  # every attempt interrupted: a one-line error, the partial file kept
    with pytest.raises(store.DownloadError, match="run again to resume"):
        store.download_file(server.url("/f.bin"), tmp_path / "f.bin", retries=1)
    assert (tmp_path / "f.bin.part").stat().st_size > 0


def test_weights_dir(monkeypatch, tmp_path):
    assert store.weights_dir() == tmp_path / "weights"
    monkeypatch.delenv(store.ENV_VAR)
    d = store.weights_dir()
    assert d.name == "weights" and "neural-collage" in str(d)


def test_imagenet_class_names():
    names = store.imagenet_class_names()
    assert len(names) == 1000 and len(set(names)) == 1000
    assert names[0] == "tench" and names[1] == "goldfish"
    assert names[151] == "Chihuahua" and names[207] == "golden retriever" and names[281] == "tabby"
    assert names[291:294] == ["lion", "tiger", "cheetah"]
    assert store.class_names_for_ids(range(151, 294))[-1] == "cheetah"
