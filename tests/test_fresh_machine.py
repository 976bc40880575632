"""A fresh machine: run_all.py and tinyvae train fetch missing data themselves.

The real files from the data dir are served over HTTP on 127.0.0.1, and
``TINYVAE_RESOURCES`` points the downloader at them, with digests this test
computes itself (the shared copy is a rebuild, not the official file).
"""
import functools
import hashlib
import http.server
import json
import os
import pathlib
import socket
import subprocess
import sys
import threading
import time

import pytest

from conftest import require_data
from tinyvae.data import OFFICIAL_URLS

ROOT = pathlib.Path(__file__).resolve().parents[1]


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Serves the folder; records every request; ``drop`` paths stop after half the file."""
    requests, drop = [], set()

    def log_message(self, *args):
        pass

    def do_GET(self):
        type(self).requests.append(self.path)
        if self.path.lstrip("/") in type(self).drop:
            body = (pathlib.Path(self.directory) / self.path.lstrip("/")).read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[:len(body) // 2])
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)     # the connection drops mid-file
            return
        super().do_GET()


@pytest.fixture
def mirror(tmp_path):
    """(write_resources(**overrides) -> path of a TINYVAE_RESOURCES file, handler class)."""
    served = require_data()
    handler = type("Handler", (_Handler,), {"requests": [], "drop": set()})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                             functools.partial(handler, directory=str(served)))
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_address[1]}"

    def write_resources(sha_override=None):
        listed = {}
        for dataset, files in OFFICIAL_URLS.items():
            listed[dataset] = []
            for rel in files:
                blob = (served / rel).read_bytes()
                sha = (sha_override or {}).get(rel) or hashlib.sha256(blob).hexdigest()
                listed[dataset].append({"path": rel, "url": f"{base}/{rel}", "sha256": sha, "size": len(blob)})
        path = tmp_path / "resources.json"
        path.write_text(json.dumps(listed))
        return path

    yield write_resources, handler
    server.shutdown()
    server.server_close()
    thread.join()


def _run(args, data_dir, resources, cwd):
    env = {**os.environ, "TINYVAE_DATA_DIR": str(data_dir), "TINYVAE_RESOURCES": str(resources),
           "MPLBACKEND": "Agg", "PYTHONUNBUFFERED": "1"}
    env.pop("TINYVAE_NO_DOWNLOAD", None)           # conftest turns downloads off; here they are the test
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=900)


def _files(folder):
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")) if folder.exists() else []


@pytest.mark.slow
def test_run_all_downloads_verifies_trains_and_a_second_run_downloads_nothing(tmp_path, mirror):
    write_resources, handler = mirror
    data_dir, out = tmp_path / "fresh-data", tmp_path / "results"
    first = _run([str(ROOT / "run_all.py"), "--quick", "--threads", "1", "--no-progress", "--out", str(out)],
                 data_dir, write_resources(), tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "downloading mnist" in first.stdout and "downloading cifar10" in first.stdout
    assert sorted(handler.requests) == sorted(f"/{rel}" for files in OFFICIAL_URLS.values() for rel in files)
    served = require_data()
    for files in OFFICIAL_URLS.values():
        for rel in files:
            assert (data_dir / rel).read_bytes() == (served / rel).read_bytes()
    assert _files(data_dir) == sorted({"mnist", "cifar10", *(r for f in OFFICIAL_URLS.values() for r in f)})
    assert (out / "REPORT.md").is_file()

    handler.requests.clear()
    again = _run([str(ROOT / "run_all.py"), "--quick", "--resume", "--threads", "1", "--no-progress",
                  "--out", str(out)], data_dir, write_resources(), tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert handler.requests == [] and "downloading" not in again.stdout


@pytest.mark.parametrize("problem", ["checksum", "dropped"])
def test_a_bad_download_lands_nothing_bad_and_exits_2(tmp_path, mirror, problem):
    write_resources, handler = mirror
    rel = "mnist/t10k-labels-idx1-ubyte.gz"                  # small: the test stays quick
    if problem == "dropped":
        handler.drop.add(rel)
        resources = write_resources()
    else:
        resources = write_resources(sha_override={rel: "0" * 64})
    data_dir, out = tmp_path / "fresh-data", tmp_path / "results"
    run = _run(["-m", "tinyvae", "train", "--dataset", "mnist", "--epochs", "1", "--out", str(out)],
               data_dir, resources, tmp_path)
    assert run.returncode == 2, run.stderr[-3000:]
    assert "Traceback" not in run.stderr and "tinyvae: error:" in run.stderr
    assert rel.split("/")[1] in run.stderr and "python -m tinyvae fetch mnist --data-dir" in run.stderr
    assert not out.exists() and not (data_dir / rel).exists()
    served = require_data()                  # no temporaries; only whole, verified files were kept
    for name in _files(data_dir):
        if (data_dir / name).is_file():
            assert name in OFFICIAL_URLS["mnist"] and (data_dir / name).read_bytes() == (served / name).read_bytes()


def test_offline_fails_fast_lists_everything_and_creates_nothing(tmp_path):
    with socket.socket() as s:                                # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    listed = {d: [{"path": rel, "url": f"http://127.0.0.1:{port}/{rel}", "sha256": "0" * 64, "size": 1}
                  for rel in files] for d, files in OFFICIAL_URLS.items()}
    resources = tmp_path / "resources.json"
    resources.write_text(json.dumps(listed))
    data_dir, out = tmp_path / "fresh-data", tmp_path / "results"
    start = time.perf_counter()
    run = _run([str(ROOT / "run_all.py"), "--out", str(out)], data_dir, resources, tmp_path)
    took = time.perf_counter() - start
    assert run.returncode == 2 and "Traceback" not in run.stderr
    for rel in (r for files in OFFICIAL_URLS.values() for r in files):   # every missing file, at once
        assert rel in run.stderr
    assert "cannot reach" in run.stderr and "laid out like this" in run.stderr
    assert not data_dir.exists() and not out.exists()
    assert took < 20, took                                   # about 1 s to give up, plus start-up


def test_no_download_lists_every_missing_file_and_creates_nothing(tmp_path):
    data_dir, out = tmp_path / "fresh-data", tmp_path / "results"
    run = _run([str(ROOT / "run_all.py"), "--no-download", "--out", str(out)], data_dir,
               tmp_path / "unused.json", tmp_path)
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert "--no-download" in run.stderr
    for rel in (r for files in OFFICIAL_URLS.values() for r in files):
        assert str(data_dir / rel) in run.stderr
    assert not data_dir.exists() and not out.exists()
