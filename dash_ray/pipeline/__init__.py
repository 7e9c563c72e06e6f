"""One pipeline's life in plain Python: admission, mapping schedule, hot cache, commit to
storage, recovery. The Ray actor in `actors/pipeline.py` is a shell around `PipelineCore`."""
