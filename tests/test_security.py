"""Security: no unpickling, no eval/exec, archives read by name and never extracted.

The scan works on the package's code (comments and docstrings may mention
pickle to say that it is not used) and on its raw text for the one pattern that
must appear nowhere at all (``allow_pickle=True``). The scanner is itself
tested on snippets that contain each forbidden thing, so it can fail.
"""
import io
import pathlib
import re
import tokenize

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "tinyvae"

#: modules that deserialize arbitrary objects
UNSAFE_MODULES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "joblib", "shelve", "marshal"}
RAW_PATTERNS = {
    "allow_pickle=True": re.compile(r"allow_pickle\s*=\s*True"),
}


def forbidden(source):
    """Every forbidden use in Python ``source``: a list of (line, what)."""
    found = [(source.count("\n", 0, m.start()) + 1, what)
             for what, rx in RAW_PATTERNS.items() for m in rx.finditer(source)]
    tokens = [t for t in tokenize.generate_tokens(io.StringIO(source).readline)
              if t.type not in (tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT,
                                tokenize.DEDENT, tokenize.STRING)]
    for i, t in enumerate(tokens):
        if t.type != tokenize.NAME:
            continue
        prev = tokens[i - 1].string if i else ""
        nxt = tokens[i + 1].string if i + 1 < len(tokens) else ""
        line = t.start[0]
        if t.string in UNSAFE_MODULES or "pickle" in t.string.lower() and t.string != "allow_pickle":
            found.append((line, f"uses {t.string}"))
        elif t.string in ("eval", "exec") and nxt == "(" and prev != ".":
            found.append((line, f"calls {t.string}("))
        elif t.string in ("extractall", "extract") and prev == ".":
            found.append((line, f"extracts an archive (.{t.string})"))
        elif t.string == "__import__" or (t.string == "import_module" and prev == "."):
            found.append((line, "imports by computed name"))
        elif t.string == "allow_pickle" and nxt == "=":
            value = tokens[i + 2].string if i + 2 < len(tokens) else ""
            if value != "False":
                found.append((line, f"allow_pickle={value}"))
        elif t.string == "load" and prev == "." and i >= 2 and tokens[i - 2].string in ("np", "numpy"):
            call = "".join(tok.string for tok in tokens[i:i + 40])
            if "allow_pickle=False" not in call:
                found.append((line, "np.load without allow_pickle=False"))
    return sorted(found)


@pytest.mark.parametrize("snippet, what", [
    ("import pickle\n", "uses pickle"),
    ("from pickle import loads\n", "uses pickle"),
    ("import cPickle as p\n", "uses cPickle"),
    ("import dill\n", "uses dill"),
    ("x = pickle.loads(b)\n", "uses pickle"),
    ("import marshal\n", "uses marshal"),
    ("x = eval('1 + 1')\n", "calls eval("),
    ("exec(code)\n", "calls exec("),
    ("y = f(eval (s))\n", "calls eval("),
    ("tar.extractall(path)\n", "extracts an archive (.extractall)"),
    ("zf.extract('a.npy')\n", "extracts an archive (.extract)"),
    ("np.load(path, allow_pickle=True)\n", "allow_pickle=True"),
    ("np.load(path)\n", "np.load without allow_pickle=False"),
    ("numpy.load(f, mmap_mode='r')\n", "np.load without allow_pickle=False"),
    ("np.save(f, a, allow_pickle=flag)\n", "allow_pickle=flag"),
    ("m = __import__(name)\n", "imports by computed name"),
    ("m = importlib.import_module(name)\n", "imports by computed name"),
    ('"""Docs may say allow_pickle=True is never used."""\n', "allow_pickle=True"),
])
def test_scanner_finds_each_forbidden_thing(snippet, what):
    assert what in [w for _, w in forbidden(snippet)]


@pytest.mark.parametrize("snippet", [
    '"""Nothing is ever unpickled; eval( and exec( appear only in this docstring."""\n',
    "# no pickle here, and no tar.extractall(...)\n",
    "a = np.load(path, allow_pickle=False)\n",
    "np.savez(f, **arrays)\n",
    "data = tar.extractfile(member).read()\n",
    "model.eval()\n",
    "evaluate(model, x)\n",
    "executor = 1\n",
])
def test_scanner_allows_safe_code(snippet):
    assert forbidden(snippet) == []


def package_sources():
    files = sorted(PACKAGE.rglob("*.py"))
    assert len(files) >= 10 and PACKAGE / "checkpoint.py" in files
    return files


@pytest.mark.parametrize("path", package_sources(), ids=lambda p: p.name)
def test_package_source_is_clean(path):
    assert forbidden(path.read_text(encoding="utf-8")) == [], path


def test_archives_are_read_by_name():
    """The two archive readers open members by name into memory."""
    data = (PACKAGE / "formats.py").read_text()
    checkpoint = (PACKAGE / "checkpoint.py").read_text()
    assert "if member.name in names:" in data and "tar.fileobj.read(member.size)" in data
    assert "zf.open(info)" in checkpoint and "np.load(" not in checkpoint
