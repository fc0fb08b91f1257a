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
from nbclient.exceptions import CellExecutionError

args = sys.argv[1:]
save = None
if args[:1] == ["--save"]:
    save, args = Path(args[1]), args[2:]
results = {}
for path in args:
    nb = nbformat.read(path, as_version=4)
    try:
        NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": "."}}).execute()
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
