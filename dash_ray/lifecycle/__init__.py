"""The lake's lifecycle: compaction of small files, retention by age, and the background
maintenance that runs them for one pipeline."""
