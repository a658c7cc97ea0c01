"""The docking agent now lives in the `evidence_dock` package (stdlib + httpx only, so a
docking PC installs it without the server's dependencies; docs/dock.md).

`evidence.dock` stays importable for code written against it: it is the very same module
object as `evidence_dock.agent`, not a copy of its names, so that replacing a function on
either (as tests do with `monkeypatch.setattr(dock, ...)`) changes what the agent calls.
"""

import sys

from evidence_dock import agent as _agent

sys.modules[__name__] = _agent
