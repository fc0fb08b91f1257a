"""Execute notebooks headless (used by tests/test_notebooks.py to run them as nobody).

    python run_notebooks.py [--save DIR] NOTEBOOK...
        -> prints one JSON object: {path: "ok" | error text}; --save keeps the executed
           notebooks in DIR, for tests that look at what a learner would see
"""

import json
import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, CellTimeoutError

args = sys.argv[1:]
save = None
if args[:1] == ["--save"]:
    save, args = Path(args[1]), args[2:]
results = {}

def execute(path):
    """The executed notebook.  A cell that gets no reply for 300 s (on a machine loaded by
    parallel test runs, a kernel's reply has been seen to go missing while the kernel sat
    idle) is run once more in a fresh kernel, and stderr says so; a second silence fails."""
    for attempt in (1, 2):
        nb = nbformat.read(path, as_version=4)
        try:
            NotebookClient(nb, timeout=300, kernel_name="python3",
                           resources={"metadata": {"path": "."}}).execute()
            return nb
        except CellTimeoutError:
            if attempt == 2:
                raise
            print(f"{path}: a cell got no reply within 300 s; running the notebook again", file=sys.stderr)


for path in args:
    try:
        nb = execute(path)
        outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
        errors = [o for o in outputs if o.get("output_type") == "error"]
        errors += [o for o in outputs if o.get("output_type") == "stream"
                   and o.get("name") == "stderr" and "Traceback" in o.get("text", "")]
        # A figure must reach the learner as a picture, not as "<Figure size ...>" text.
        errors += [o for o in outputs if "image/png" not in o.get("data", {})
                   and str(o.get("data", {}).get("text/plain", "")).startswith("<Figure")]
        results[path] = "ok" if not errors else json.dumps(errors)[:2000]
        if save is not None:
            nbformat.write(nb, save / Path(path).name)
    except CellExecutionError as exc:
        results[path] = str(exc)[-3000:]
print(json.dumps(results))
