"""Give numba's ``cache=True`` a folder it can write, even on a read-only install.

numba caches compiled kernels next to their source (``__pycache__``), else in
the user's cache folder (``$XDG_CACHE_HOME/numba`` or ``~/.cache/numba``);
where it can write neither, ``@njit(cache=True)`` raises "no locator
available" as the module is imported. :func:`ensure_writable_cache` runs
before tinyvae imports numba: it tries those folders the way numba does (make
the folder, create a temporary file in it) and, only if both fail, points
``NUMBA_CACHE_DIR`` at a private folder in the temporary directory, saying so
once on stderr. Worker processes inherit the variable and stay quiet.
"""

from __future__ import annotations

import os
import pathlib
import stat
import sys
import tempfile


def _writable(folder: str | os.PathLike) -> bool:
    try:
        os.makedirs(folder, exist_ok=True)
        tempfile.TemporaryFile(dir=folder).close()
        return True
    except OSError:
        return False


def _user_cache() -> str:
    """numba's user-wide cache folder (its vendored appdirs' rule)."""
    if sys.platform == "darwin":
        return os.path.expanduser("~/Library/Caches/numba")
    if sys.platform == "win32":
        return os.path.join(os.environ.get("LOCALAPPDATA", os.path.expanduser("~")), "numba", "Cache")
    return os.path.join(os.getenv("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "numba")


def _private_folder() -> str | None:
    """A folder under the temporary directory that only this user can write, or None."""
    try:
        user = os.getuid() if hasattr(os, "getuid") else os.getlogin()
        folder = pathlib.Path(tempfile.gettempdir(), f"tinyvae-numba-cache-{user}")
        try:
            folder.mkdir(mode=0o700)
        except FileExistsError:
            info = folder.lstat()  # numba's index files are pickles: never load another user's
            if (not stat.S_ISDIR(info.st_mode) or info.st_mode & 0o022
                    or (hasattr(os, "getuid") and info.st_uid != os.getuid())):
                folder = pathlib.Path(tempfile.mkdtemp(prefix="tinyvae-numba-cache-"))
        return str(folder) if _writable(folder) else None
    except OSError:
        return None


def ensure_writable_cache() -> None:
    """Set ``NUMBA_CACHE_DIR`` to a private temporary folder if numba could not cache anywhere."""
    if os.environ.get("NUMBA_CACHE_DIR"):
        return  # the user's (or a parent process's) choice
    package = pathlib.Path(__file__).parent
    sources = [package, *(p for p in package.iterdir() if (p / "__init__.py").is_file())]
    if all(_writable(folder / "__pycache__") for folder in sources) or _writable(_user_cache()):
        return
    folder = _private_folder()
    if folder is None:
        print(f"tinyvae: numba can write no cache folder ({package}, {_user_cache()} or the "
              "temporary directory); set NUMBA_CACHE_DIR to a writable folder", file=sys.stderr)
        return
    os.environ["NUMBA_CACHE_DIR"] = folder
    if "numba" in sys.modules:  # imported before tinyvae: its config has read the environment already
        sys.modules["numba"].config.CACHE_DIR = folder
    print(f"tinyvae: cannot write numba's cache in {package} or {_user_cache()}; "
          f"caching compiled kernels in {folder}", file=sys.stderr)
