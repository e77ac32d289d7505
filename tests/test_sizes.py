"""Size limits of the code (issue 17): no file over 400 lines and no function over 80 lines, in the package, the
plugins' packages and the integrations (tests and benchmarks are not counted). Lengths are read with :mod:`ast`:
a file's lines, a function's lines from its ``def`` to its last line (decorators left out), every function counted,
methods and nested functions too (``Class.method``, ``outer.inner``).

What is over the limits and stays so for now is listed below, each entry with why it is not split now and what
splits it. A new file or function over a limit fails the test; an entry that is no longer over is reported as a
warning, so that it can go.
"""

from __future__ import annotations

import ast
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MAX_FILE_LINES = 400
MAX_FUNCTION_LINES = 80

# file (relative to the repository) -> why it may be longer than MAX_FILE_LINES for now
LONG_FILES: dict[str, str] = {}

# (file, function) -> why it may be longer than MAX_FUNCTION_LINES for now
LONG_FUNCTIONS: dict[tuple[str, str], str] = {}


def source_files(repo: Path = REPO) -> list[Path]:
    """The Python files the limits apply to: the package, the plugins' packages, the integrations (no tests)."""
    found = sorted((repo / "a2k_toolkit").rglob("*.py"))
    for top in ("plugins", "integrations"):
        found += sorted((repo / top).rglob("*.py"))
    skip = {"tests", "build", "dist", "__pycache__", ".venv"}
    return [
        p
        for p in found
        if not any(part in skip or part.endswith(".egg-info") for part in p.relative_to(repo).parts[:-1])
    ]


def file_lines(path: Path) -> int:
    return len(path.read_text("utf-8").splitlines())


def function_lines(path: Path) -> dict[str, int]:
    """Qualified name -> lines from ``def`` to the function's last line, for every function of ``path``."""
    out: dict[str, int] = {}

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                name = f"{prefix}{child.name}"
                out[name] = max(out.get(name, 0), child.end_lineno - child.lineno + 1)
                visit(child, f"{name}.")
            elif isinstance(child, ast.ClassDef):
                visit(child, f"{prefix}{child.name}.")
            else:
                visit(child, prefix)

    visit(ast.parse(path.read_text("utf-8"), filename=str(path)), "")
    return out


def over_limits(files: list[Path], repo: Path = REPO) -> tuple[dict[str, int], dict[tuple[str, str], int]]:
    """The files over MAX_FILE_LINES and the functions over MAX_FUNCTION_LINES, with their lengths."""
    long_files, long_functions = {}, {}
    for path in files:
        rel = path.relative_to(repo).as_posix()
        if (n := file_lines(path)) > MAX_FILE_LINES:
            long_files[rel] = n
        for name, n in function_lines(path).items():
            if n > MAX_FUNCTION_LINES:
                long_functions[(rel, name)] = n
    return long_files, long_functions


# ------------------------------------------------------------------------------------------------------ the tests


def test_no_file_or_function_over_the_limits():
    files = source_files()
    assert len(files) > 100, "the package was not found"
    long_files, long_functions = over_limits(files)
    failures = [
        f"{path}: {n} lines (at most {MAX_FILE_LINES}); split it by concern"
        for path, n in sorted(long_files.items())
        if path not in LONG_FILES
    ] + [
        f"{path}: {name}() has {n} lines (at most {MAX_FUNCTION_LINES}); split it into named steps"
        for (path, name), n in sorted(long_functions.items())
        if (path, name) not in LONG_FUNCTIONS
    ]
    for gone in sorted(set(LONG_FILES) - set(long_files)):
        warnings.warn(f"{gone} is no longer over {MAX_FILE_LINES} lines: remove it from LONG_FILES", UserWarning, 1)
    for path, name in sorted(set(LONG_FUNCTIONS) - set(long_functions)):
        warnings.warn(f"{path}: {name}() is within the limit: remove it from LONG_FUNCTIONS", UserWarning, 1)
    assert not failures, "\n".join(["over the size limits (tests/test_sizes.py):", *failures])


def test_every_exception_says_why():
    for key, why in [*LONG_FILES.items(), *LONG_FUNCTIONS.items()]:
        assert len(why) > 20, f"say why {key} may be over the limit, and what splits it"
    for path, _ in LONG_FUNCTIONS:
        assert (REPO / path).is_file(), path
    for path in LONG_FILES:
        assert (REPO / path).is_file(), path


def test_the_counts_on_a_small_file(tmp_path):
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION_LINES))  # with its def: one line too many
    code = (
        "import os\n\n\n"
        f"def long():\n{body}\n\n\n"
        "class A:\n    @property\n    def short(self):\n        return 1\n\n"
        "    async def outer(self):\n        def inner():\n            pass\n\n        return inner\n"
    )
    (tmp_path / "a2k_toolkit").mkdir()
    path = tmp_path / "a2k_toolkit" / "mod.py"
    path.write_text(code)
    assert function_lines(path) == {"long": MAX_FUNCTION_LINES + 1, "A.short": 2, "A.outer": 5, "A.outer.inner": 2}
    long_files, long_functions = over_limits([path], tmp_path)
    assert long_files == {} and long_functions == {("a2k_toolkit/mod.py", "long"): MAX_FUNCTION_LINES + 1}
    path.write_text("\n" * MAX_FILE_LINES + "x = 1\n")
    assert over_limits([path], tmp_path) == ({"a2k_toolkit/mod.py": MAX_FILE_LINES + 1}, {})
    (tmp_path / "plugins" / "p" / "tests").mkdir(parents=True)
    (tmp_path / "plugins" / "p" / "tests" / "test_x.py").write_text("")
    (tmp_path / "plugins" / "p" / "p.py").write_text("")
    assert [f.relative_to(tmp_path).as_posix() for f in source_files(tmp_path)] == [
        "a2k_toolkit/mod.py",
        "plugins/p/p.py",
    ]
