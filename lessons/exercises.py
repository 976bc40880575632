"""Exercise copies of the lessons: the marked functions' bodies left for you.

A lesson marks a teaching function with a ``# exercise`` line right above its
``def``. The exercise copy is the same lesson with each marked body (after its
docstring) replaced by ``raise NotImplementedError  # your code``: the lessons
are the solutions, and nothing is written twice.

    python -m lessons.exercises l03 --out my_course    # or several lessons, or none for all
    python -m lessons.check l03 my_course/l03_conv2d.py

The copies import the package from this checkout, so they run from any folder.
"""
import argparse
import ast
import pathlib
import sys

LESSONS_DIR = pathlib.Path(__file__).resolve().parent
MARK = "# exercise"
STUB = "raise NotImplementedError  # your code"
# the line of each lesson that finds the repository root from the lesson's own folder
HERE_LINE = 'HERE = pathlib.Path(__file__).parent if "__file__" in globals() else pathlib.Path.cwd()'


def lesson_files():
    """Every lesson, in order: [Path('.../l01_dense.py'), ...]."""
    return sorted(LESSONS_DIR.glob("l[0-9][0-9]_*.py"))


def find_lesson(name):
    """'l03', 'l03_conv2d' or '3' -> the lesson's Path; ValueError naming the choices."""
    key = name if name.startswith("l") else f"l{int(name):02d}" if name.isdigit() else name
    hits = [p for p in lesson_files() if p.stem == key or p.stem.split("_")[0] == key]
    if len(hits) != 1:
        raise ValueError(f"no lesson {name!r}; choose one of {', '.join(p.stem.split('_')[0] for p in lesson_files())}")
    return hits[0]


def marked_functions(source):
    """The top-level ``def`` nodes of ``source`` marked ``# exercise``, in order."""
    lines = source.splitlines()
    return [node for node in ast.parse(source).body
            if isinstance(node, ast.FunctionDef) and node.lineno >= 2
            and lines[node.lineno - 2].strip() == MARK]


def exercise_source(source, repo_root=None):
    """``source`` with every marked body replaced by the stub.

    With ``repo_root``, the lesson's root-finding line points at it, so the
    copy runs from any folder.
    """
    lines = source.splitlines(keepends=True)
    for node in reversed(marked_functions(source)):          # bottom up: line numbers stay valid
        body = node.body
        has_doc = (isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
                   and isinstance(body[0].value.value, str))
        if has_doc and len(body) == 1:
            continue                                        # nothing but a docstring
        first = body[1] if has_doc else body[0]
        indent = " " * first.col_offset
        lines[first.lineno - 1:node.end_lineno] = [f"{indent}{STUB}\n"]
    out = "".join(lines)
    if repo_root is not None:
        out = out.replace(HERE_LINE, f'HERE = pathlib.Path(r"{pathlib.Path(repo_root) / "lessons"}")')
    return out


def write_exercises(names, out):
    """Write the exercise copies of ``names`` (all lessons if empty) into ``out``; their paths."""
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for path in ([find_lesson(n) for n in names] if names else lesson_files()):
        src = path.read_text(encoding="utf-8")
        target = out / path.name
        target.write_text(exercise_source(src, LESSONS_DIR.parent), encoding="utf-8")
        todo = [f.name for f in marked_functions(src)]
        print(f"wrote {target}: write {', '.join(todo) if todo else '(no exercise in this lesson)'}")
        paths.append(target)
    return paths


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m lessons.exercises",
                                description="Write exercise copies of the lessons (function bodies to fill in).")
    p.add_argument("lessons", nargs="*", help="lessons to copy, e.g. l01 l03 (default: all)")
    p.add_argument("--out", default="tinyvae-exercises", help="folder for the copies (default ./tinyvae-exercises)")
    args = p.parse_args(argv)
    try:
        paths = write_exercises(args.lessons, args.out)
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    print(f"\nfill in the bodies, run a copy (python {paths[0]}), and check it:\n"
          f"  python {LESSONS_DIR / 'check.py'} {paths[0].stem.split('_')[0]} {paths[0]}")


if __name__ == "__main__":
    main()
