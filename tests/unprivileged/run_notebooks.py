"""Execute notebooks headless (used by tests/test_notebooks.py to run them as nobody).

    python run_notebooks.py NOTEBOOK...   -> prints one JSON object: {path: "ok" | error text}
"""

import json
import sys

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

results = {}
for path in sys.argv[1:]:
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
    except CellExecutionError as exc:
        results[path] = str(exc)[-3000:]
print(json.dumps(results))
