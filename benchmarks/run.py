"""`make bench`: every benchmark, each reporting ratios against a baseline run alongside."""

from __future__ import annotations

import asyncio

from benchmarks import ack

if __name__ == "__main__":
    asyncio.run(ack.main(300, concurrent=False))
    asyncio.run(ack.main(300, concurrent=True))
