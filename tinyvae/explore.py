"""Move through a trained run's latent space in the browser and watch the decoder answer.

    python -m tinyvae explore RUN_DIR [--port N]      # a local web app over the run's checkpoint
    python -m tinyvae explore RUN_DIR --html FILE     # one self-contained page (2-D runs)

The page (``explore_page.html``) shows the test set's latent means as a
scatter coloured by class, decodes the code under the pointer, shows a clicked
test image with its reconstruction decode(mu), its code and a slider per
latent dimension, and the interpolation between the last two clicked points.
Runs with more than two latent dimensions are shown through a PCA of the means
or two chosen dimensions, the other directions held at the selected image's code.

The server decodes with the run's own NumPy model. Its routes (GET only):

=========================  ===================================================
``/``                      the page
``/api/run``               the run: config, labels, means (base64 float32), PCA
``/api/decode?z=a,b,..``   decode 1 to 64 codes (one ``z`` each): base64 uint8
``/api/image?i=K``         test image K (base64 uint8), its mu and logvar
=========================  ===================================================

A bad request gets a 4xx status with the reason as plain text; the server
keeps serving. The static page holds the means and an n x n grid of decodes
(one PNG) instead, and shows the decode of the grid point nearest the pointer.
"""
import base64
import errno
import json
import math
import struct
import sys
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from urllib.parse import parse_qs, urlsplit

import numpy as np

from .archs import image_shape_of
from .data import CLASS_NAMES
from .errors import ConfigError
from .threads import set_threads

MAX_CODES = 64            # codes per /api/decode request
PAD = 0.05                # the scatter's axes reach this fraction beyond the means
GRID_BYTES = 3_500_000    # default static grid: at most this many decoded pixel bytes


def to_uint8(xhat):
    """Decoder output in [0, 1] -> uint8 pixels, rounded (within 1/510 of xhat)."""
    return np.clip(np.rint(xhat * 255), 0, 255).astype(np.uint8)                 # (N, H, W, C)


def b64(array):
    return base64.b64encode(np.ascontiguousarray(array).tobytes()).decode("ascii")


def run_info(config, labels, mu):
    """What the page needs to draw the scatter (JSON-ready): means as little-endian float32."""
    mu = np.asarray(mu, dtype="<f4")                                             # (N, L)
    centred = mu - mu.mean(axis=0)                                               # (N, L)
    _, _, vt = np.linalg.svd(centred.astype(np.float64), full_matrices=False)    # (L, L)
    return {"config": {k: config.get(k) for k in ("model", "dataset", "epochs", "seed", "test_subset")},
            "shape": list(image_shape_of(config["dataset"])), "latent": int(mu.shape[1]),
            "n": int(len(mu)), "class_names": list(CLASS_NAMES[config["dataset"]]),
            "labels": b64(np.asarray(labels, dtype=np.uint8)), "mu": b64(mu),
            "pca": {"mean": mu.mean(axis=0, dtype=np.float64).tolist(), "components": vt[:2].tolist()}}


def page(data):
    """The explorer page with ``data`` (JSON-ready) embedded."""
    html = resources.files(__package__).joinpath("explore_page.html").read_text(encoding="utf-8")
    text = json.dumps(data, allow_nan=False).replace("<", "\\u003c")            # no '</script>' inside
    return html.replace("__RUN_DATA__", text)


# --------------------------------------------------------------------------- static page


def png_bytes(pixels):
    """uint8 (H, W) or (H, W, 3) -> an 8-bit grey or RGB PNG file (each row 'Up'-filtered)."""
    h, w = pixels.shape[:2]
    rows = np.ascontiguousarray(pixels).reshape(h, -1)                           # (H, W*C)
    up = np.diff(rows, axis=0, prepend=np.zeros_like(rows[:1]))                  # (H, W*C), mod 256
    raw = np.hstack([np.full((h, 1), 2, np.uint8), up]).tobytes()                # filter type 2: Up

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", w, h, 8, 0 if pixels.ndim == 2 else 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 9))
            + chunk(b"IEND", b""))


def axis_range(values):
    """(lo, hi) of ``values`` widened by PAD on both sides (never empty)."""
    lo, hi = float(np.min(values)), float(np.max(values))
    pad = PAD * (hi - lo) if hi > lo else 1.0
    return lo - pad, hi + pad


def grid_size(image_shape, budget=GRID_BYTES):
    """The finest n (8 to 96) whose n x n decodes fit in ``budget`` bytes of pixels."""
    return int(min(96, max(8, math.isqrt(budget // math.prod(image_shape)))))


def static_page(model, config, labels, mu, n=None):
    """The self-contained explorer page of a 2-D run: means, labels and an n x n grid of decodes.

    Grid point (i, j) is z = (lo0 + (i + 1/2) step0, lo1 + (j + 1/2) step1), the centre of
    cell (i, j) of the scatter's axes; its decode is the tile at column i, row j of one PNG.
    """
    if mu.shape[1] != 2:
        raise ConfigError(f"a static page needs a 2-D latent space; this run has {mu.shape[1]} "
                          f"latent dimensions (serve it instead: python -m tinyvae explore RUN_DIR)")
    H, W, C = model.image_shape
    n = n or grid_size(model.image_shape)
    ranges = [axis_range(mu[:, d]) for d in range(2)]
    centres = [lo + (np.arange(n) + 0.5) * (hi - lo) / n for lo, hi in ranges]   # 2 x (n,)
    zi, zj = np.meshgrid(centres[0], centres[1])                                 # (n, n): row j, col i
    codes = np.stack([zi.ravel(), zj.ravel()], axis=1).astype(model.dtype)       # (n*n, 2)
    tiles = np.concatenate([to_uint8(model.decode(codes[k:k + 256]))             # (n*n, H, W, C)
                            for k in range(0, len(codes), 256)])
    sprite = tiles.reshape(n, n, H, W, C).transpose(0, 2, 1, 3, 4).reshape(n * H, n * W, C)
    data = run_info(config, labels, mu)
    data["grid"] = {"n": n, "lo": [r[0] for r in ranges], "hi": [r[1] for r in ranges],
                    "png": base64.b64encode(png_bytes(sprite[..., 0] if C == 1 else sprite)).decode()}
    return page(data)


def write_static_page(path, model, config, labels, mu, n=None):
    """Write :func:`static_page` to ``path`` atomically; returns its size in bytes."""
    from .checkpoint import save_text
    text = static_page(model, config, labels, mu, n)
    save_text(path, text)
    return len(text.encode("utf-8"))


# --------------------------------------------------------------------------- server


class BadRequest(Exception):
    """A request the explorer refuses: ``status`` (4xx) and the reason."""

    def __init__(self, status, reason):
        super().__init__(reason)
        self.status = status


class Explorer:
    """The server's state: the run, its page and run data, the decoding thread, decode times.

    The model runs on one long-lived thread, pinned to one numba and BLAS thread: its layers
    keep caches, a fresh request thread would start a fresh numba thread pool, and one image
    is too small to share between cores.
    """

    def __init__(self, run):
        self.run, self.decode_ms = run, []
        self.worker = ThreadPoolExecutor(1, thread_name_prefix="decode", initializer=set_threads, initargs=(1,))
        self.page = page({"mode": "server"}).encode("utf-8")
        self.info = json.dumps(run_info(run.config, run.labels, run.mu)).encode("utf-8")

    def _decode(self, z):
        t0 = time.perf_counter()
        images = to_uint8(self.run.model.decode(z))                              # (K, H, W, C)
        self.decode_ms.append((time.perf_counter() - t0) * 1e3)
        return images, self.decode_ms[-1]

    def decode(self, query):
        zs = query.get("z", [])
        if not 1 <= len(zs) <= MAX_CODES:
            raise BadRequest(400, f"give 1 to {MAX_CODES} codes as z=a,b,...; got {len(zs)}")
        L = self.run.mu.shape[1]
        try:
            z = np.array([[float(v) for v in row.split(",")] for row in zs])     # (K, L)
        except ValueError:
            raise BadRequest(400, "z must be comma-separated numbers") from None
        if z.shape != (len(zs), L) or not np.all(np.isfinite(z)):
            raise BadRequest(400, f"each z must hold {L} finite numbers (this run's latent size)")
        images, ms = self.worker.submit(self._decode, z).result()
        return {"images": [b64(im) for im in images], "decode_ms": ms}

    def image(self, query):
        i = query.get("i", [""])[-1]
        n = len(self.run.images)
        if not (i.isascii() and i.isdigit() and int(i) < n):
            raise BadRequest(400, f"i must be a test image index 0..{n - 1}, got {i!r}")
        i = int(i)
        return {"index": i, "label": int(self.run.labels[i]), "image": b64(self.run.images[i]),
                "mu": self.run.mu[i].tolist(), "logvar": self.run.logvar[i].tolist()}

    def respond(self, path, query):
        """(status, content type, body) for a GET of ``path`` with parsed ``query``."""
        if path in ("/", "/index.html"):
            return 200, "text/html; charset=utf-8", self.page
        if path == "/api/run":
            return 200, "application/json", self.info
        routes = {"/api/decode": self.decode, "/api/image": self.image}
        if path not in routes:
            raise BadRequest(404, f"no such page {path!r}; the explorer serves /, /api/run, "
                                  f"/api/decode?z=... and /api/image?i=...")
        return 200, "application/json", json.dumps(routes[path](query)).encode("utf-8")


class Handler(BaseHTTPRequestHandler):
    server_version = "tinyvae-explore"
    timeout = 30                                 # a silent connection is dropped, not waited on

    def parse_request(self):
        if not super().parse_request():
            return False
        if self.command != "GET":
            self.reply(405, "text/plain; charset=utf-8",
                       f"method {self.command} not allowed; the explorer answers GET only".encode())
            return False
        return True

    def do_GET(self):
        try:
            url = urlsplit(self.path)
            query = parse_qs(url.query, keep_blank_values=True, max_num_fields=MAX_CODES + 8)
            self.reply(*self.server.explorer.respond(url.path, query))
        except BadRequest as e:
            self.reply(e.status, "text/plain; charset=utf-8", str(e).encode())
        except ValueError as e:                  # parse_qs: too many fields, bad encoding
            self.reply(400, "text/plain; charset=utf-8", f"bad query: {e}".encode())
        except Exception as e:                   # a bug: say so in one line, keep serving
            print(f"tinyvae explore: error on {self.path!r}: {type(e).__name__}: {e}", file=sys.stderr)
            self.reply(500, "text/plain; charset=utf-8", f"{type(e).__name__}: {e}".encode())

    def reply(self, status, ctype, body):
        self.send_response(status)
        if status == 405:
            self.send_header("Allow", "GET")
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def log_message(self, format, *args):      # quiet: one line per request would drown the output
        pass


def make_server(run, host="127.0.0.1", port=0):
    """A threading HTTP server for ``run`` bound to ``host:port`` (0: a free port)."""
    try:
        server = ThreadingHTTPServer((host, port), Handler)
    except OSError as e:
        what = "is in use" if e.errno == errno.EADDRINUSE else f"cannot be opened ({e.strerror or e})"
        raise ConfigError(f"port {port} on {host} {what}; choose another with --port "
                          f"(--port 0 picks a free one)") from None
    server.daemon_threads = True
    server.explorer = Explorer(run)
    return server


# --------------------------------------------------------------------------- command line


def add_parser(subparsers):
    """Register ``explore`` on the command line's subparsers."""
    e = subparsers.add_parser("explore", help="browse a trained run's latent space in a web page",
                              description="Serve a page over RUN_DIR's checkpoint that decodes the "
                                          "latent code under the pointer, or write a static page.")
    e.add_argument("run_dir", metavar="RUN_DIR", help="a finished run's folder (holds checkpoint.npz)")
    e.add_argument("--port", type=int, default=8000, help="port to serve on (default 8000; 0: any free)")
    e.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine)")
    e.add_argument("--html", metavar="FILE", default=None,
                   help="write a self-contained static page to FILE instead of serving (2-D runs)")
    e.add_argument("--grid", type=int, default=None,
                   help="the static page's decodes per axis (default: as many as 3.5 MB of pixels allow)")
    e.add_argument("--data-dir", default=None, help="folder with mnist/ and cifar10/ (default as for train)")


def run(args):
    """``python -m tinyvae explore``: returns the exit status."""
    if not 0 <= args.port <= 65535:
        raise ConfigError(f"--port must be 0..65535, got {args.port}")
    if args.grid is not None and not 2 <= args.grid <= 256:
        raise ConfigError(f"--grid must be 2..256, got {args.grid}")
    from .runs import load_run                   # here, so that the command line starts without numba
    r = load_run(args.run_dir, args.data_dir)
    name = f"{r.config['model']}/{r.config['dataset']}"
    if args.html:
        size = write_static_page(args.html, r.model, r.config, r.labels, r.mu, args.grid)
        print(f"wrote {args.html} ({size / 1e6:.2f} MB): {name}, {len(r.mu)} test images")
        return 0
    server = make_server(r, args.host, args.port)
    server.explorer.worker.submit(r.model.decode, r.mu[:1]).result()   # load the kernels before a visit
    host, port = server.server_address[:2]
    print(f"serving {name} ({r.mu.shape[1]}-D latent, {len(r.mu)} test images) at "
          f"http://{host}:{port}/ ; Ctrl-C stops", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        times = server.explorer.decode_ms
        if times:
            print(f"stopped; median decode {np.median(times):.2f} ms over {len(times)} requests")
    finally:
        server.server_close()
    return 0
