"""residency concern of localroute: which instances are loaded, and loading them on demand.

`scheduler` is the decision tree (pure, no I/O); `manager` runs it on the event loop against the
backends' control planes; `view` is what routing, status and the CLI may read.
"""
