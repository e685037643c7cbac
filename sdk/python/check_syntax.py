"""Check that every .py of a plugin parses, before anything is built.

    python3 check_syntax.py APP_DIR

componentize-py reports a syntax error as an AssertionError about
`/0/app.py`; this prints each one as FILE:LINE:COLUMN: SyntaxError: MESSAGE
with the line itself, and exits 1. Only the standard library is used, so it
runs before the toolchain is installed (`sdk/python/build.sh` and
`sluice plugin build` both run it).
"""

import ast
import pathlib
import sys

SKIPPED = {"__pycache__", ".venv", "dist", "wit"}

root = pathlib.Path(sys.argv[1])
bad = 0
for path in sorted(root.rglob("*.py")):
    if SKIPPED & set(path.relative_to(root).parts):
        continue
    try:
        ast.parse(path.read_bytes(), str(path))
    except SyntaxError as e:
        bad += 1
        print(f"{e.filename}:{e.lineno}:{e.offset}: SyntaxError: {e.msg}", file=sys.stderr)
        if e.text:
            print("    " + e.text.strip(), file=sys.stderr)
sys.exit(1 if bad else 0)
