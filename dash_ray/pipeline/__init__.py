"""One pipeline's life in plain Python: admission, mapping schedule, hot cache, commit to
storage, recovery, and the process it runs in (`host.py`). The Ray actor in
`actors/pipeline.py` is a shell around `PipelineHost`."""
