"""The chaos soak (issue #28): every fault at once, for minutes, with nothing lost.

``python -m tests.soak [--seconds N] [--seed S] [--break NAME]``; see docs/soak.md.
"""
