"""Soak (not collected by pytest): kill pipeline.py at random crash points, hits and signals, rerun, check nothing
committed is lost. ``python tests/faults/soak.py ROUNDS SEED``; prints the figures as JSON (docs/reliability.md)."""
import json, os, random, sys, time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.faults.test_crash_points import run_pipeline, ran
from tests.faults.pipeline import TASKS
from flowkit.faults import RUN_POINTS as POINTS
from flowkit.store import Store

rng = random.Random(int(sys.argv[2]) if len(sys.argv) > 2 else 1)
rounds = int(sys.argv[1])
base = Path(os.environ.get("SOAK_DIR", "/tmp/flowkit-soak")); base.mkdir(parents=True, exist_ok=True)
MAXHIT = {"task.before_start": 19, "cache.after_temp_write": 9, "cache.after_fsync": 9, "cache.after_rename": 9,
          "db.before_commit": 19, "db.after_commit": 19}
stats = {"kills": 0, "by_signal": {}, "resumed": 0, "lost": 0, "recomputed_extra": 0, "temporaries_removed": 0,
         "status_ok": 0, "rounds": 0, "no_fire": 0}
value = None
for r in range(rounds):
    home = base / f"r{r}"
    # one store goes through several kills in a row before it is allowed to finish
    kills = rng.randint(1, 3)
    committed_before = set()
    for k in range(kills):
        point = rng.choice(POINTS); sig = rng.choice(["SIGKILL", "SIGTERM", "SIGINT"]); nth = rng.randint(1, MAXHIT[point])
        p = run_pipeline(home, home.parent / f"r{r}-{k}.log", f"{point}={sig}@{nth}")
        if p.returncode == 0:
            stats["no_fire"] += 1  # the point was not reached that often (the cache served it)
            break
        stats["kills"] += 1; stats["by_signal"][sig] = stats["by_signal"].get(sig, 0) + 1
        store = Store(home)
        dead = next(x for x in store.runs() )
        want = "crashed" if sig == "SIGKILL" else "cancelled"
        stats["status_ok"] += dead.status == want
        if dead.status != want: print("STATUS", point, sig, nth, dead.status, file=sys.stderr)
        now_committed = {e["key"] for e in store.cache_entries()}
        if not committed_before <= now_committed:
            stats["lost"] += 1; print("LOST", point, sig, nth, file=sys.stderr)
        committed_before = now_committed
    store = Store(home)
    rerun = run_pipeline(home, home.parent / f"r{r}-rerun.log")
    out = json.loads(rerun.stdout)
    value = 1151856000.0
    again = store.run(out["run_id"])
    recomputed = sum(tr.status == "completed" for tr in again.task_runs)
    cached_keys = {e["key"] for e in store.cache_entries()}
    ok = out["status"] == "completed" and out["value"] == value and committed_before <= cached_keys
    # what the rerun recomputed is exactly what was not committed
    ok = ok and recomputed + sum(tr.status == "cached" for tr in again.task_runs) == TASKS
    stats["resumed"] += ok
    if not ok: stats["lost"] += 1; print("BAD RERUN", r, out, file=sys.stderr)
    for e in store.cache_entries():
        rec = store.artifact(e["artifact_id"])
        if not (rec.inline or store.files.verify(e["artifact_id"])): stats["lost"] += 1; print("DAMAGED", file=sys.stderr)
    old = time.time() - 7200
    for t in (home / "artifacts").rglob(".tmp-*"): os.utime(t, (old, old))
    rep = store.gc(); stats["temporaries_removed"] += len(rep.temporaries)
    assert not list((home / "artifacts").rglob(".tmp-*"))
    stats["rounds"] += 1
print(json.dumps(stats))
