"""Supervising pipelines in plain Python: the restart policy and the supervisor's state
machine over a small runtime interface; `actors/registry.py` wires it to Ray."""
