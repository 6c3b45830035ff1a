"""Regenerate the screenshots of docs/ui.md: ``python docs/ui_screenshots.py`` (needs chromium).

Fills a fresh store by running ``examples/mlops/train.py``'s training flow twice with
different ``cs``, serves it with ``flowkit ui`` and screenshots four pages at 1280x800.
"""

from __future__ import annotations

import os
import runpy
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    home = Path(tempfile.mkdtemp(prefix="uidocs-"))
    os.environ["FLOWKIT_HOME"] = str(home)
    sys.path.insert(0, str(ROOT))
    example = runpy.run_path(str(ROOT / "examples/mlops/train.py"))  # defines the flows, runs nothing
    first = example["training"].run()
    second = example["training"].run(cs=[0.05, 0.5, 5.0])
    print("runs:", first.id, first.status, second.id, second.status)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen([sys.executable, "-m", "flowkit", "ui", "--port", str(port), "--home", str(home)], env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                urllib.request.urlopen(url + "/api/runs", timeout=2)
                break
            except OSError:
                time.sleep(0.1)
        chromium = shutil.which("chromium") or "/usr/bin/chromium"
        metric = "auc"
        pages = {"ui-runs.png": "/", "ui-run.png": f"/runs/{first.id}", "ui-models.png": "/models",
                 "ui-compare.png": f"/compare?run={first.id}&run={second.id}&metric={metric}"}
        for name, path in pages.items():
            subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                            f"--user-data-dir={home / 'profile'}", f"--screenshot={ROOT / 'docs' / name}",
                            "--window-size=" + ("1280,1500" if name == "ui-run.png" else "1280,800"), url + path], check=True, capture_output=True, timeout=120)
            print(name, (ROOT / "docs" / name).stat().st_size, "bytes")
    finally:
        proc.terminate()
        proc.wait(20)


if __name__ == "__main__":
    main()
