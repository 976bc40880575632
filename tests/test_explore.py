"""The latent explorer, in a real browser: headless Chromium driven by Playwright.

Two tiny runs on synthetic data (a 2-D simple VAE and the 16-D highdim one,
one epoch each) are served with ``python -m tinyvae explore``; the page's
pixels are read back from its canvases and compared with ``decode(z)``
computed here, for the z the page's own axis mapping (``explorer.toLatent``)
gives at the pointer's position. The static page is opened from file:// with
the network off. Without Chromium or Playwright the browser tests skip, except
under CI, where they fail.
"""
import http.client
import json
import os
import pathlib
import re
import shutil
import signal
import socket
import subprocess
import sys

import numpy as np
import pytest

from conftest import _in_ci
from synthetic import write_mnist_dir
from tinyvae import checkpoint as ckpt
from tinyvae.explore import write_static_page
from tinyvae.runs import load_run
from tinyvae.models import VAE
from tinyvae.train import TrainConfig, load_data, train

ROOT = pathlib.Path(__file__).resolve().parents[1]
N_TEST = 24
# A one-epoch run on random pixels decodes every z to the same grey within 1/255, so a wrong z
# would pass unseen. Its first decoder layer is scaled up by this (ReLU layers pass the scale on
# to the sigmoid's input): then one pixel on the page changes the image by several levels,
# which every comparison below checks.
SHARPEN = {"simple": 1e4, "highdim": 3e3}


def explore_cli(*args, **kw):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen([sys.executable, "-m", "tinyvae", "explore", *map(str, args)], cwd=ROOT, env=env,
                            text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=_ctrl_c_stops, **kw)


def _ctrl_c_stops():
    """In the server's process, before Python starts: SIGINT at its default, even where the
    test suite itself runs with SIGINT ignored (a background job), so that stop() can use it."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def explore_run(*args):
    p = explore_cli(*args)
    out, err = p.communicate(timeout=120)
    return p.returncode, out, err


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two finished tiny runs, {"simple": dir, "highdim": dir}, and their data dir."""
    root = tmp_path_factory.mktemp("explore")
    data_dir = write_mnist_dir(root / "data", n_train=40, n_test=30)
    dirs = {}
    for model in ("simple", "highdim"):
        cfg = TrainConfig(model=model, epochs=1, batch_size=10, train_subset=20, test_subset=N_TEST)
        train(cfg, out_dir=root / model, data_dir=data_dir, progress=False)
        path = root / model / "checkpoint.npz"
        arrays = ckpt.load_arrays(path)
        for k in ("param/dec0_dense.w", "param/dec0_dense.b"):
            arrays[k] = arrays[k] * np.float32(SHARPEN[model])
        ckpt.save_arrays(path, arrays)
        dirs[model] = root / model
    return dirs, data_dir


@pytest.fixture(scope="module")
def loaded(runs):
    dirs, data_dir = runs
    return {m: load_run(d, data_dir) for m, d in dirs.items()}


class Server:
    def __init__(self, run_dir, data_dir):
        self.proc = explore_cli(run_dir, "--port", "0", "--data-dir", data_dir)
        line = self.proc.stdout.readline()
        m = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
        assert m, f"no address in {line!r}; stderr: {self.proc.stderr.read() if self.proc.poll() is not None else ''}"
        self.url, self.port = m.group(0), int(m.group(1))

    def request(self, method, path):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        c.request(method, path)
        r = c.getresponse()
        body = r.read().decode("utf-8", "replace")
        c.close()
        return r.status, body

    def stop(self):
        self.proc.send_signal(signal.SIGINT)
        out, err = self.proc.communicate(timeout=30)
        return self.proc.returncode, out, err


@pytest.fixture(scope="module")
def servers(runs):
    dirs, data_dir = runs
    started = {m: Server(d, data_dir) for m, d in dirs.items()}
    yield started
    for s in started.values():
        if s.proc.poll() is None:
            s.stop()


@pytest.fixture(scope="module")
def browser():
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sync_playwright = None
    if exe is None or sync_playwright is None:
        reason = ("no Chromium (apt-get install chromium)" if exe is None else
                  "no Playwright for Python (pip install playwright)")
        if _in_ci():
            pytest.fail(f"CI runs the browser tests: {reason}")
        pytest.skip(reason)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe)
        yield b
        b.close()


def open_page(browser, url, offline=False):
    context = browser.new_context(viewport={"width": 1280, "height": 900}, offline=offline)
    page = context.new_page()
    page.goto(url)
    page.wait_for_function("window.explorer && (explorer.state.ready || explorer.state.error)")
    assert page.evaluate("explorer.state.error") is None
    return context, page


def settle(page):
    page.wait_for_function("explorer.idle()")


def shown(page, canvas, shape):
    """The canvas's pixels as floats (H, W, C); grey images must have R = G = B."""
    H, W, C = shape
    px = np.array(page.evaluate(f"explorer.pixels('{canvas}')"), dtype=np.uint8).reshape(H, W, 4)
    assert np.all(px[..., 3] == 255)
    if C == 1:
        assert np.array_equal(px[..., 0], px[..., 1]) and np.array_equal(px[..., 0], px[..., 2])
    return px[..., :C] / 255


def assert_decodes(pixels, model, z, not_z):
    """``pixels`` are decode(z) within 1/255, and not decode(not_z) (a code a few pixels away)."""
    xhat = model.decode(np.array([z, not_z], dtype=np.float64))            # (2, H, W, C)
    assert np.abs(pixels - xhat[0]).max() <= 1 / 255 + 1e-12
    assert np.abs(pixels - xhat[1]).max() > 1 / 255


def point_at(page, z):
    """The pointer position (whole pixels) of code z under the page's axes."""
    x, y = page.evaluate("z => explorer.toClient(z)", list(map(float, z)))
    return round(x), round(y)


def to_latent(page, x, y):
    return np.array(page.evaluate("([x, y]) => explorer.toLatent(x, y)", [x, y]))


def assert_round_trip(page, zs):
    """The page's pointer -> z mapping inverts its z -> pointer mapping (on the scatter's plane)."""
    for z in zs:
        x, y = page.evaluate("z => explorer.toClient(z)", list(map(float, z)))
        assert np.allclose(to_latent(page, x, y), z, rtol=0, atol=1e-6)


def hover(page, x, y):
    """Move the pointer to (x, y); returns the z the page's mapping gives there and the z it shows."""
    page.mouse.move(x, y)
    settle(page)
    assert page.evaluate("explorer.state.pointer") == [x, y]
    return to_latent(page, x, y), np.array(page.evaluate("explorer.state.hoverZ"))


def separate_point(page, mu):
    """A test point with no other point within 8 pixels (so a click picks it)."""
    xy = np.array([point_at(page, z) for z in mu], dtype=float)            # (N, 2)
    d = np.linalg.norm(xy[:, None] - xy[None], axis=-1) + np.eye(len(xy)) * 1e9
    k = int(np.argmax(d.min(axis=1)))
    assert d[k].min() > 8, "the tiny run's means overlap on the page"
    return k, tuple(int(v) for v in xy[k])


def test_load_run_gives_the_runs_own_test_subset(runs, loaded):
    dirs, data_dir = runs
    r = loaded["simple"]
    cfg = TrainConfig(**r.config)
    images, labels = load_data(cfg, data_dir)["test"]
    assert len(r.images) == N_TEST and np.array_equal(r.images, images) and np.array_equal(r.labels, labels)
    assert np.array_equal(r.mu, r.model.encode(images / np.float32(255))[0])


def test_server_page_decodes_under_the_pointer_and_on_click(browser, servers, loaded):
    r, shape = loaded["simple"], loaded["simple"].images.shape[1:]
    context, page = open_page(browser, servers["simple"].url)
    assert page.evaluate("explorer.pointCount()") == len(r.images) == N_TEST
    assert_round_trip(page, r.mu[:3])

    box = page.locator("#scatter").bounding_box()
    for fx, fy in ((0.3, 0.7), (0.85, 0.2)):                                # two places between the points
        x, y = round(box["x"] + fx * box["width"]), round(box["y"] + fy * box["height"])
        z, z_shown = hover(page, x, y)
        assert np.array_equal(z, z_shown)
        assert_decodes(shown(page, "hover", shape), r.model, z, not_z=to_latent(page, x + 1, y))

    k, (x, y) = separate_point(page, r.mu)
    page.mouse.click(x, y)
    settle(page)
    assert page.evaluate("explorer.state.selected") == k
    assert_decodes(shown(page, "recon", shape), r.model, r.mu[k], not_z=to_latent(page, x + 2, y))
    assert np.array_equal(shown(page, "image", shape), r.images[k] / 255)  # the test image itself

    page.evaluate("v => { const s = document.getElementById('slider-1'); s.value = v;"
                  " s.dispatchEvent(new Event('input')); }", float(r.mu[k, 1]) + 0.5)
    settle(page)
    edited = np.array(page.evaluate("explorer.state.edit"))
    assert edited[0] == r.mu[k, 0] and abs(edited[1] - r.mu[k, 1] - 0.5) < 1e-9
    assert_decodes(shown(page, "edit", shape), r.model, edited, not_z=r.mu[k])

    k2 = (k + 1) % N_TEST                                                   # a second point: the strip
    page.evaluate("k => explorer.select(k)", k2)
    settle(page)
    strip = page.evaluate("Array.from(document.querySelectorAll('#strip canvas'), c =>"
                          " Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data))")
    t = np.linspace(0, 1, 10)[:, None]
    want = r.model.decode(r.mu[k].astype(np.float64) + t * (r.mu[k2] - r.mu[k].astype(np.float64)))
    got = np.array(strip, dtype=np.uint8).reshape(10, *shape[:2], 4)[..., :1] / 255
    assert np.abs(got - want).max() <= 1 / 255 + 1e-12
    assert np.abs(got[1:] - want[:-1]).max() > 1 / 255                     # the steps differ
    context.close()


def test_highdim_page_holds_the_other_directions_at_the_chosen_code(browser, servers, loaded):
    r, shape = loaded["highdim"], loaded["highdim"].images.shape[1:]
    context, page = open_page(browser, servers["highdim"].url)
    assert page.evaluate("explorer.pointCount()") == N_TEST
    k = 3
    page.evaluate("k => explorer.select(k)", k)
    settle(page)
    box = page.locator("#scatter").bounding_box()
    x, y = round(box["x"] + 0.4 * box["width"]), round(box["y"] + 0.6 * box["height"])

    assert_round_trip(page, [r.mu[k]])
    z, z_shown = hover(page, x, y)                                          # PCA of the means
    v = np.array(page.evaluate("explorer.run().pca.components"))            # (2, L)
    rest = (z - r.mu[k]) - v.T @ (v @ (z - r.mu[k]))
    assert np.array_equal(z, z_shown) and np.abs(rest).max() < 1e-5 and np.abs(z - r.mu[k]).max() > 1e-3
    assert_decodes(shown(page, "hover", shape), r.model, z, not_z=to_latent(page, x + 1, y))

    page.evaluate("explorer.setAxes('dims', 3, 7)")                         # two chosen dimensions
    assert_round_trip(page, [r.mu[k]])
    z, z_shown = hover(page, x + 5, y)
    changed = np.flatnonzero(z != r.mu[k].astype(np.float64))
    assert np.array_equal(z, z_shown) and set(changed) <= {3, 7} and len(changed) > 0
    assert_decodes(shown(page, "hover", shape), r.model, z, not_z=to_latent(page, x + 9, y + 3))
    context.close()


def check_static_page(browser, html, model, mu):
    """Open ``html`` from file:// offline; check points, pointer and click against ``model``'s grid."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, offline=True)
    requested, blocked = [], []
    context.on("request", lambda req: requested.append(req.url))
    context.route(re.compile(r"^(https?|wss?)://"), lambda route: (blocked.append(route.request.url), route.abort()))
    page = context.new_page()
    page.goto(html.as_uri())
    page.wait_for_function("window.explorer && (explorer.state.ready || explorer.state.error)")
    assert page.evaluate("explorer.state.error") is None
    assert page.evaluate("explorer.pointCount()") == len(mu)

    g = page.evaluate("explorer.run().grid")
    lo, hi, n = np.array(g["lo"]), np.array(g["hi"]), g["n"]
    step = (hi - lo) / n

    def grid_point(z):                                                      # the point the page shows
        return lo + (np.clip(np.floor((z - lo) / step), 0, n - 1) + 0.5) * step

    box = page.locator("#scatter").bounding_box()
    z, z_shown = hover(page, round(box["x"] + 0.35 * box["width"]), round(box["y"] + 0.55 * box["height"]))
    assert np.allclose(z_shown, grid_point(z), rtol=0, atol=1e-12)
    assert_decodes(shown(page, "hover", model.image_shape), model, z_shown, not_z=z_shown + step * [1, 0])

    k, (x, y) = separate_point(page, mu)
    page.mouse.click(x, y)
    settle(page)
    assert page.evaluate("explorer.state.selected") == k
    centre = grid_point(mu[k])
    assert_decodes(shown(page, "recon", model.image_shape), model, centre, not_z=centre + step * [0, 1])

    assert blocked == [] and all(u.startswith(("file:", "data:")) for u in requested), requested
    context.close()
    return n


def test_static_page_works_from_file_with_the_network_off(browser, runs, loaded, tmp_path):
    dirs, data_dir = runs
    html = tmp_path / "explore.html"
    rc, out, err = explore_run(dirs["simple"], "--html", html, "--grid", "16", "--data-dir", data_dir)
    assert rc == 0 and "wrote" in out, err
    assert check_static_page(browser, html, loaded["simple"].model, loaded["simple"].mu) == 16


def test_static_page_of_a_colour_model(browser, tmp_path):
    """RGB tiles: an untrained CIFAR-shaped model's page, written in-process."""
    rng = np.random.default_rng(1)
    model = VAE("simple", (32, 32, 3), rng)
    for k in ("dec0_dense.w", "dec0_dense.b"):
        model.params[k] *= np.float32(SHARPEN["highdim"])
    mu = rng.standard_normal((40, 2)).astype(np.float32)                   # (N, 2)
    html = tmp_path / "colour.html"
    config = {"model": "simple", "dataset": "cifar10", "epochs": 1, "seed": 0}
    write_static_page(html, model, config, rng.integers(0, 10, 40), mu, n=12)
    assert check_static_page(browser, html, model, mu) == 12


def one_line_error(rc, out, err, *words):
    assert rc == 2 and out == "", (rc, out, err)
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    for w in words:
        assert w in err, (w, err)


def test_bad_run_folders_and_flags_exit_2_with_one_line(runs, tmp_path):
    dirs, data_dir = runs
    (tmp_path / "empty").mkdir()
    one_line_error(*explore_run(tmp_path / "empty"), "holds no checkpoint.npz")
    one_line_error(*explore_run(tmp_path / "nowhere"), "holds no checkpoint.npz")

    arrays = ckpt.load_arrays(dirs["simple"] / "checkpoint.npz")
    arrays["state/done"] = np.array(0, dtype=np.int64)
    (tmp_path / "unfinished").mkdir()
    ckpt.save_arrays(tmp_path / "unfinished" / "checkpoint.npz", arrays)
    one_line_error(*explore_run(tmp_path / "unfinished", "--data-dir", data_dir), "unfinished run", "--resume")

    (tmp_path / "corrupt").mkdir()
    (tmp_path / "corrupt" / "checkpoint.npz").write_bytes(b"not a checkpoint")
    one_line_error(*explore_run(tmp_path / "corrupt"), "not a tinyvae checkpoint")

    one_line_error(*explore_run(dirs["highdim"], "--html", tmp_path / "x.html", "--data-dir", data_dir),
                   "2-D latent space", "16 latent dimensions")
    assert not (tmp_path / "x.html").exists()
    one_line_error(*explore_run(dirs["simple"], "--port", "70000"), "--port")

    with socket.socket() as s:                                              # a port in use
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        one_line_error(*explore_run(dirs["simple"], "--port", port, "--data-dir", data_dir),
                       f"port {port}", "in use")


def test_bad_requests_get_a_4xx_with_a_reason_and_the_server_lives(servers):
    s = servers["simple"]
    cases = [("GET", "/nope", 404, "no such page"),
             ("GET", "/../../etc/passwd", 404, "no such page"),
             ("GET", "/api/decode", 400, "1 to 64 codes"),
             ("GET", "/api/decode?z=abc,1", 400, "numbers"),
             ("GET", "/api/decode?z=1,2,3", 400, "2 finite numbers"),
             ("GET", "/api/decode?z=nan,1", 400, "finite"),
             ("GET", "/api/decode?z=1e999,1", 400, "finite"),
             ("GET", "/api/decode?" + "&".join(["z=0,0"] * 65), 400, "1 to 64 codes"),
             ("GET", "/api/decode?" + "&".join(["q=1"] * 200), 400, "bad query"),
             ("GET", "/api/image?i=-1", 400, "0..23"),
             ("GET", "/api/image?i=24", 400, "0..23"),
             ("GET", "/api/image?i=x", 400, "test image index"),
             ("GET", "/api/image", 400, "test image index"),
             ("POST", "/api/decode?z=0,0", 405, "GET only"),
             ("DELETE", "/", 405, "GET only"),
             ("FOO", "/", 405, "GET only")]
    for method, path, status, words in cases:
        got, body = s.request(method, path)
        assert (got, words in body) == (status, True), (method, path, got, body)

    for line, reply in ((b"GET /a b HTTP/1.1", b"HTTP/1.0 400 Bad request syntax"),   # malformed
                        (b"THIS IS NOT HTTP", b"Error code: 400")):                     # not HTTP
        with socket.create_connection(("127.0.0.1", s.port), timeout=30) as c:
            c.sendall(line + b"\r\n\r\n")
            assert reply in c.recv(1000)

    status, body = s.request("GET", "/api/decode?z=0.5,-0.25")
    assert status == 200 and len(json.loads(body)["images"]) == 1
    assert s.proc.poll() is None
    rc, out, err = s.stop()
    assert rc == 0 and "median decode" in out and "Traceback" not in err, (rc, out, err)
