"""Helpers of `benchmarks/run.py` (one command for the figures in benchmarks/RESULTS.md).

- `testsupport`: the only module that imports from the tests package (the fakes and the bridge launcher).
- `common`: progress output, result rows, child processes and their cleanup, tool installation.
- `payloads`: Datadog and Alertmanager bodies, and the wrk body template.
- `floor_app`: the bare Flask app (the ingest floor) served by gunicorn with 2 sync workers.
- `fakepd`: FakePagerDuty in its own process, with an endpoint that lists the events and their arrival times.
- `load`: wrk, a closed-loop client pool, and a paced open-loop sender.
- `postgres`, `alertmanager`: the throwaway PostgreSQL server and the Prometheus Alertmanager.
- `sections`: the measurements (a) to (e); `report`: RESULTS.md.
"""
