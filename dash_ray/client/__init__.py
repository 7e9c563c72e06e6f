"""The Python SDK: `Client` over Dash's HTTP API and its live WebSocket (`api.py`), what it
answers (`answers.py`), its transport and retry bounds (`transport.py`), live records
(`stream.py`), query answers as Arrow (`query.py`), and where the running platform is
(`discovery.py`, with `connect`)."""

from dash_ray.client.answers import Dashboard, IngestResult, Pipeline
from dash_ray.client.api import Client
from dash_ray.client.discovery import connect
from dash_ray.client.stream import Gap, LiveStream
from dash_ray.client.transport import ClientSettings

__all__ = ["Client", "ClientSettings", "Dashboard", "Gap", "IngestResult", "LiveStream", "Pipeline", "connect"]
