"""Starting and joining Ray: the local instance `dash-ray up` runs."""
