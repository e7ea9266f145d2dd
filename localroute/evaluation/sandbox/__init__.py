"""The code sandbox: one untrusted program run against trusted tests.

program.py (the grader's entry, `run_program`), supervisor.py (pid 1 inside the namespaces),
mounts.py and paths.py (what is hidden or read-only), caps.py (what this machine allows),
checker.py (the trusted tests, outside), runner.py and codec.py (the program's side and the
plain data that crosses), verdict.py (the verdict from evidence the program cannot write),
models.py (the data types).
"""
