"""The web process freezes its start-up objects once the application and every view are
loaded (tradingsite/wsgi.py): a full garbage collection then scans what requests made, not
the ~100,000 objects of start-up."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import gc, sys
import tradingsite.wsgi
print(gc.get_freeze_count(), "orders.api.views" in sys.modules, len(gc.get_objects()))
"""


def test_the_web_process_freezes_its_start_up_objects_after_loading_every_view():
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tradingsite.settings"}
    result = subprocess.run(  # noqa: S603
        [sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    frozen, views_loaded, tracked = result.stdout.split()
    assert views_loaded == "True"
    assert int(frozen) > 50_000
    assert int(tracked) < int(frozen) // 10  # what a collection still scans
