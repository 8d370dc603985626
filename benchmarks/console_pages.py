"""How long the web console takes to answer its heaviest pages with a day of alerts in the database.

    PYTHONPATH=. python benchmarks/console_pages.py [--alerts 10000] [--repeat 5]

One in-process app (Flask test client, SQLite in a temp dir), one Alertmanager batch of `--alerts` alerts received
now and decided by the pipeline stage, then each page fetched `--repeat` times after one warm-up: the overview
(the chart reads every alert of the last day), the alerts list (first page, and filtered), an alert's detail, and
a silence preview (matches the last day's alerts, at most 5,000, in Python). Prints the median and the slowest
milliseconds per page. No target: figures to watch as the console grows.
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bridge.config import Secret, Settings  # noqa: E402
from bridge.pipeline.stage import PipelineStage  # noqa: E402
from bridge.web import create_app  # noqa: E402
from tests.support.bodies import alertmanager_batch  # noqa: E402

ADMIN = "benchmark-admin-token"
LOOPBACK = {"REMOTE_ADDR": "127.0.0.1"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alerts", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(database_url=f"sqlite:///{Path(tmp) / 'b.db'}", admin_token=Secret(ADMIN),
                            receivers={"alertmanager": {"token": ""}}, rules_path=str(REPO / "rules"),
                            max_alerts_per_request=max(args.alerts, 1000), max_body_bytes=64 * 1024 * 1024)
        app = create_app(settings)
        client = app.test_client()
        started = time.perf_counter()
        r = client.post("/webhooks/alertmanager", data=alertmanager_batch(args.alerts), environ_base=LOOPBACK,
                        content_type="application/json")
        if r.status_code != 202:
            print(f"the batch was refused: {r.status_code} {r.get_data(as_text=True)[:300]}", file=sys.stderr)
            return 1
        holder = app.config["BRIDGE_HOLDER"]
        PipelineStage(app.config["BRIDGE_STORE"], lambda: holder.current).drain()
        print(f"seeded {args.alerts} alerts in {time.perf_counter() - started:.1f} s")
        token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/ui/", environ_base=LOOPBACK)
                          .get_data(as_text=True))
        assert token, "no CSRF token on the sign-in page"
        client.post("/ui/sign-in", data={"token": ADMIN, "csrf_token": token.group(1)}, environ_base=LOOPBACK)
        # Signing in starts a new session, with a new CSRF secret: the form's token comes from a signed-in page.
        fresh = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/ui/silences", environ_base=LOOPBACK)
                          .get_data(as_text=True))
        assert fresh, "no CSRF token on the silences page"
        csrf = fresh.group(1)
        pages = [
            ("GET /ui/overview", lambda: client.get("/ui/overview", environ_base=LOOPBACK)),
            ("GET /ui/alerts", lambda: client.get("/ui/alerts", environ_base=LOOPBACK)),
            ("GET /ui/alerts?action=record", lambda: client.get("/ui/alerts?action=record", environ_base=LOOPBACK)),
            ("GET /ui/alerts/1", lambda: client.get("/ui/alerts/1", environ_base=LOOPBACK)),
            ("POST /ui/silences (preview)", lambda: client.post(
                "/ui/silences", environ_base=LOOPBACK, data={"csrf_token": csrf, "matchers": "service=checkout",
                                                             "owner": "a", "reason": "b", "ends_at": "+1h",
                                                             "do": "preview"})),
        ]
        print(f"{'page':32} {'status':>6} {'median ms':>10} {'max ms':>8}")
        for name, fetch in pages:
            first = fetch()
            times = []
            for _ in range(args.repeat):
                t0 = time.perf_counter()
                fetch()
                times.append((time.perf_counter() - t0) * 1000)
            print(f"{name:32} {first.status_code:>6} {statistics.median(times):>10.1f} {max(times):>8.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
