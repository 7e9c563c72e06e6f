"""Top frames by self time from py-spy's raw (collapsed-stack) output, as `ingest.py
--profile` records it beside each flame graph.

    .venv/bin/python benchmarks/profile_top.py benchmarks/profiles/single-actor.txt [N]

py-spy cannot tell a thread blocked inside C++ (Ray's core worker loop) or in epoll from one
that works, so those waits are listed apart and the percentages of the rest are of the busy
samples only.
"""

from __future__ import annotations

import re
import sys
from collections import Counter

# Frames whose own samples are a thread waiting: Ray's core worker loop (C++), an event
# loop's select (Serve runs the replica's loop in `_run_user_code_event_loop`; the actor's
# runs in a thread, `Thread.run`), and a condition wait.
WAITS = ("Worker.main_loop", "Thread.run", "_run_user_code_event_loop", "Condition.wait")


def main() -> int:
    path, top = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 10
    own: Counter[str] = Counter()
    samples = 0
    for line in open(path):
        stack, _, count = line.rstrip().rpartition(" ")
        if not stack:
            continue
        samples += int(count)
        own[re.sub(r" \((/.*/)?", " (", stack.split(";")[-1])] += int(count)
    waits = {f: n for f, n in own.items() if f.split(" ")[0].split(".<locals>.")[-1] in WAITS}
    busy = samples - sum(waits.values())
    print(f"{samples} samples, {100 * busy / samples:.0f}% busy; waits: "
          + ", ".join(f"{f.split(' ')[0]} {100 * n / samples:.0f}%" for f, n in waits.items()))
    print(f"top {top} frames by self time, % of busy samples:")
    for frame, n in [(f, n) for f, n in own.most_common() if f not in waits][:top]:
        print(f"  {100 * n / busy:5.1f}%  {frame}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
