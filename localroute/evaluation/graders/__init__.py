"""Graders. code.py: a completion run in the sandbox against its tests. math.py: a final answer
against the reference (math_extract.py finds it, math_normalize.py and math_relations.py make
equal answers written another way compare equal, math_worker.py runs math-verify in a worker
with a hard timeout)."""
