"""`make bench`: the busy hour (Marvin and bare Bolt under open-loop load, each in its own
process), then the ack path alone; each reports ratios against a baseline run alongside."""

from __future__ import annotations

import asyncio
import sys

from benchmarks import ack, busy_hour

if __name__ == "__main__":
    code = busy_hour.main(sys.argv[1:])
    asyncio.run(ack.main(300, concurrent=False))
    raise SystemExit(code)
