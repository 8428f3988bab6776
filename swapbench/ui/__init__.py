"""The local editor page of `swapbench ui`: a Starlette server (server.py) around
:class:`swapbench.editing.session.EditSession`, one HTML/JS page (static/), and the headless-chromium
driver its screenshot command and browser tests use (browser.py)."""
