"""localroute: a local-first orchestrator for a stack of locally served language models."""

__version__ = "0.1.0"
