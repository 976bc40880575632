"""README.md's example runs and prints what README.md says; its commands are the real ones."""
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:e-?\d+)?")


def blocks(lang):
    """The fenced code blocks of README.md whose info string is ``lang``."""
    found, current, info = [], None, None
    for line in README.splitlines():
        if line.startswith("```") and current is None:
            current, info = [], line[3:].strip()
        elif line.startswith("```"):
            if info == lang:
                found.append("\n".join(current) + "\n")
            current = None
        elif current is not None:
            current.append(line)
    return found


def test_readme_example_prints_what_readme_shows():
    code, shown = blocks("python")[0], blocks("")[0]
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr
    got, want = run.stdout.strip().splitlines(), shown.strip().splitlines()
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert NUMBER.sub("#", g) == NUMBER.sub("#", w), (g, w)
        for a, b in zip(NUMBER.findall(g), NUMBER.findall(w)):
            if "e" in b:                                   # a rel error: same order of magnitude or better
                assert float(a) < 10 * float(b), (g, w)
            else:                                          # float32 losses rounded to 2 decimals
                assert abs(float(a) - float(b)) <= 0.02, (g, w)


def test_readme_leads_with_two_commands_and_ci_runs_them():
    lines = [l.split("#")[0].strip() for l in blocks("bash")[0].splitlines() if l.split("#")[0].strip()]
    assert len(lines) == 2, lines
    install, study = [part.strip() for part in lines[0].split("&&")]
    assert study == "python run_all.py" and (ROOT / "run_all.py").exists()
    assert lines[1] == "python -m pytest"
    ci = [l.strip() for l in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert install in ci and lines[1] in ci
    assert ci.index(install) < ci.index(lines[1])
    assert README.index("## Two commands") < README.index("```python")    # the commands come first
