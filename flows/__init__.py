"""Prefect flows over mmpipe's library functions: ``extract-video``, ``backfill``, ``train``,
``score``. The flows hold no logic of their own (see ``pipeline.batch``, ``pipeline.extract``,
``mmlatch``); they add retries, bounded parallel task runners, GPU slots and artifacts.

Importing this package stays cheap (no Prefect import) so ``mmpipe --help`` is fast.
"""

import os as _os

# The ephemeral/local server must not try to phone home from an offline machine (it logs an
# error per attempt otherwise).
_os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
# The embedded (ephemeral) API gets 20 s to start by default; on a loaded 2-core machine its
# first start (database creation, migrations) can take longer and the whole run would fail.
_os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
# Prefect creates its home folder without parents; a project-local PREFECT_HOME such as
# ``.cache/prefect`` in a fresh checkout would leave the embedded server without a database
# ("unable to open database file") and every run would time out waiting for it.
if _os.environ.get("PREFECT_HOME"):
    _os.makedirs(_os.path.expanduser(_os.environ["PREFECT_HOME"]), exist_ok=True)
