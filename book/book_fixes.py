"""A local Sphinx extension (``_config.yml``: ``sphinx.local_extensions``) for what the browser
test (``tests/test_browser.py``) found in the published pages.

Jupyter Book 1 makes sphinx-thebe add its inline configuration script (``const THEBE_JS_URL =
...``) to every page twice; the second copy throws "Identifier 'THEBE_JS_URL' has already been
declared" in every reader's console. Each page here keeps the first copy of any script.
"""
from __future__ import annotations


def _drop_repeated_scripts(app, pagename, templatename, context, doctree):
    scripts, seen = [], set()
    for script in context.get("script_files", []):
        key = (str(getattr(script, "filename", script) or ""),  # (None and "" both mean inline)
               tuple(sorted(getattr(script, "attributes", {}).items())))
        if key not in seen:
            seen.add(key)
            scripts.append(script)
    context["script_files"] = scripts


def setup(app):
    app.connect("html-page-context", _drop_repeated_scripts, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
