"""The parts of ``build_sync.py``, the generator of the sync twins (not shipped: the wheel
holds only ``src/wrenn``).

* ``branches``: resolves ``if IS_ASYNC:`` statements for the sync side;
* ``prose``: rewrites docstrings, comments and messages for the sync reader, and finds
  the async spelling left in them;
* ``clashes``: finds renames that make two names of one scope one.

``build_sync.py`` holds the renaming table and runs unasync, these, and ruff in order.
These modules parse Python with ``ast``; the tests run them in a child process (CPython
3.11's ``ast`` can race a traceback formatted in another thread of the test process).
"""

from __future__ import annotations


class GenerationError(Exception):
    """The async source uses a form the generator does not understand, or a rename clashes."""
