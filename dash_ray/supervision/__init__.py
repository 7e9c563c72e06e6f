"""Supervising pipelines in plain Python: the restart policy and the supervisor's state
machine over a small runtime interface; `dash_ray.registry` builds it, `actors/registry.py`
runs it on Ray."""
