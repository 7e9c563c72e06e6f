"""`timeout(seconds)`: an async context manager that cancels its body past `seconds`
(asyncio.TimeoutError), and the only deadline the code uses.

Not `asyncio.wait_for`: on Python 3.11 and older, a task cancelled while its `wait_for` is
waiting can lose that cancellation when the awaited thing finishes in the same loop turn
(python/cpython#86296); a loop that then goes on (a poller, a flusher) never ends and the
`await task` after `task.cancel()` hangs (seen: a pipeline's stop hung after a poll). The
context manager counts cancellations (`Task.uncancel`), so an outer cancel always wins; Python
3.10 gets the same from `async_timeout`, from which `asyncio.timeout` was taken."""

from __future__ import annotations

import sys

if sys.version_info >= (3, 11):
    from asyncio import timeout
else:  # pragma: no cover - Python 3.10
    from async_timeout import timeout

__all__ = ["timeout"]
