"""`dash-ray`: run the platform and manage pipelines from a shell. Thin over `dash_ray.client`;
the environment is read once, into `Settings` (`up`, `down`) or `ClientEnv` (the rest).

    dash-ray up [--demo]            start Ray, the registry and the web tier; print the URL
    dash-ray down [--drain S]       stop them; leaves no process, port or temp folder behind
    dash-ray status [ID]            the platform at a glance, or one pipeline in full
    dash-ray ls                     pipelines and their status
    dash-ray deploy FILE.yaml       create or update a pipeline; prints its ingest secret once
    dash-ray delete ID [--purge]    stop a pipeline and forget it (its data too with --purge)
    dash-ray restart ID             restart a pipeline by hand (also revives a failed one)
    dash-ray rotate-secret ID       a new ingest secret; the old one stays valid for --grace s
    dash-ray records ID             the newest mapped records
    dash-ray tail ID                follow the live records (resumes by itself after a disconnect)
    dash-ray query ID               rows or aggregates of the pipeline's silver store
    dash-ray replay ID              re-run the mapping over stored raw records (a job)
    dash-ray dead ID                the newest dead letters; `dead-replay ID` re-runs them
    dash-ray tokens create|ls|revoke  scoped API tokens
    dash-ray secrets set|ls|rm      named secrets for sources and sinks (values never shown)

Every command but `up` and `down` talks to a running platform: the one `up` recorded in
`$DASH_HOME/run.json`, or `$DASH_URL`. It never creates a token: it uses `$DASH_TOKEN`, else
`$DASH_ADMIN_TOKEN`, else `$DASH_HOME/admin.token`, and says plainly when Dash is not running.
`--json` (ls, status, records, query, dead, replay, dead-replay, job, tokens ls, secrets ls) prints one
JSON document instead of a table.

Modules: `commandline` (the parser and `main`), `platform` (up, down, status), `pipelines`
(ls, deploy, delete, restart, rotate-secret), `data` (records, tail, query, replay, dead
letters, jobs), `tokens`, `secrets`, `connection` (which platform and token), `output` (what is printed).
"""
from dash_ray.cli.commandline import main

__all__ = ["main"]
