"""Artifacts on S3: a large DataFrame stored through flowkit and loaded back, against raw s3fs.

Starts moto's S3 server (in its own process, as the tests do) on
127.0.0.1, makes a bucket, and times in the same process, alternating which goes
first, the best of ``--repeat`` runs of each (``gc.collect()`` before each):

- flowkit: ``flowkit._worker.store_value`` of a DataFrame of about ``--mb`` MB into an
  ``s3://`` artifact store (Arrow IPC, xxh3 digest, a verified multipart upload to the
  final key), then ``flowkit.store.serializers.load_artifact`` (fetch, check the digest,
  deserialize);
- s3fs: ``pipe_file`` of the same artifact bytes (already in memory), then ``cat_file``:
  the transfer alone, no format, no digest, no check;
- informational: the same s3fs calls with flowkit's part size, and the same bytes published
  the way a temporary key would be (``pipe_file`` to a temporary key, ``copy`` to the final
  key, ``rm``), to show what a server-side copy costs.

Each repetition runs every path once, starting with another one each time; each object is
deleted before the next path, so every write really writes. The target:
flowkit's write+read at least 0.80x the speed of s3fs's (its time at most 1.25x).
The server shares the machine's cores with this process, so compare ratios, not
MB/s. Exit code is 0 whatever the numbers: this is a benchmark, not a test.

    python benchmarks/s3.py [--mb 200] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import s3fs

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))  # the tests' moto server

from cache import make_frame, timed
from s3_server import MotoServer
from shapes import verdict

import flowkit as fk
from flowkit._worker import store_value
from flowkit.store.artifacts import artifact_files
from flowkit.store.s3 import S3ArtifactFiles, part_size
from flowkit.store.serializers import load_artifact

SPEED_TARGET = 0.80  # flowkit's speed over s3fs's, write + read


def measure(df: pd.DataFrame, files: S3ArtifactFiles, fs: Any, bucket: str, repeat: int) -> dict[str, list[float]]:
    """Best [write, read] seconds of each path; the first flowkit read-back is compared with ``df``."""
    best: dict[str, list[float]] = {}
    raw: list[bytes] = []
    final, tmp = f"{bucket}/raw/artifact", f"{bucket}/raw/.tmp-artifact"

    def keep(name: str, w: float, r: float) -> None:
        first = best.setdefault(name, [float("inf")] * 2)
        best[name] = [min(first[0], w), min(first[1], r)]

    def flowkit_round() -> None:
        w, info = timed(lambda: store_value(files, df, None))
        assert info.uri is not None and info.serializer == "feather", info
        if not raw:
            raw.append(bytes(files.read(info.digest)))
        r, back = timed(lambda: load_artifact(files, info.digest, info.serializer, None))
        if "flowkit" not in best:
            pd.testing.assert_frame_equal(back, df)
        del back
        files.delete(info.digest)  # so that the next write really writes
        keep("flowkit", w, r)

    def s3fs_round(name: str = "s3fs", **put: Any) -> None:
        w, _ = timed(lambda: fs.pipe_file(final, raw[0], **put))
        r, back = timed(lambda: fs.cat_file(final))
        assert back == raw[0]
        del back
        fs.rm(final)
        keep(name, w, r)

    def copy_round() -> None:
        def publish() -> None:
            fs.pipe_file(tmp, raw[0])
            fs.copy(tmp, final)
            fs.rm(tmp)

        w, _ = timed(publish)
        fs.rm(final)
        keep("temporary key + copy", w, 0.0)

    rounds: list[Callable[[], None]] = [
        flowkit_round, s3fs_round, copy_round,
        lambda: s3fs_round("s3fs, parts like flowkit's", chunksize=part_size(len(raw[0])))]
    flowkit_round()  # first: it also makes the bytes the others send
    for rep in range(repeat):  # each path once per repetition, starting from another one each time
        start = rep % len(rounds)
        for fn in rounds[start:] + rounds[:start]:
            if fn is not flowkit_round or rep:
                fn()
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=200, help="size of the DataFrame in MB (default 200)")
    parser.add_argument("--repeat", type=int, default=3, help="repetitions per path; the best is kept")
    args = parser.parse_args()
    import moto

    server = MotoServer()
    try:
        os.environ.update(server.env)
        bucket = server.bucket()
        files = artifact_files(f"s3://{bucket}/flowkit")
        assert isinstance(files, S3ArtifactFiles)
        fs = s3fs.S3FileSystem(skip_instance_cache=True)  # s3fs as it comes, through the same environment
        df = make_frame(args.mb)
        mb = df.memory_usage(deep=True).sum() / 1e6
        print(f"flowkit {fk.__version__}, s3fs {s3fs.__version__}, moto {moto.__version__} server at "
              f"{server.endpoint}, pandas {pd.__version__}, Python {platform.python_version()} on "
              f"{platform.machine()}; best of {args.repeat}\n")
        store_value(files, make_frame(1), None)  # first calls, imports and connections: not timed
        best = measure(df, files, fs, bucket, args.repeat)
        size = store_value(files, df, None).size
    finally:
        server.stop()
    return report(df, mb, size, best)


def report(df: pd.DataFrame, mb: float, size: int, best: dict[str, list[float]]) -> int:
    print(f"DataFrame {len(df):,} rows x {df.shape[1]} columns = {mb:,.1f} MB in memory (flowkit artifact: "
          f"{size / 1e6:,.1f} MB, sent in parts of {part_size(size) >> 20} MiB); seconds (MB/s of the frame)")
    header = f"  {'path':<66} {'write':>13} {'read':>13} {'write+read':>13}"
    print(header + "\n  " + "-" * (len(header) - 2))
    labels = {"flowkit": "flowkit store_value + load_artifact (format, digest, verified)",
              "s3fs": "s3fs pipe_file + cat_file of the same bytes (transfer alone)",
              "s3fs, parts like flowkit's": "informational: the same, pipe_file(chunksize=flowkit's part size)",
              "temporary key + copy": "informational: pipe_file to a temporary key, copy, rm (no read)"}
    for name, label in labels.items():
        w, r = best[name]
        read = f"{r:>6.2f} ({mb / r:>4,.0f})" if r else f"{'-':>13}"
        print(f"  {label:<66} {w:>6.2f} ({mb / w:>4,.0f}) {read} {w + r:>6.2f} ({mb / (w + r):>4,.0f})")
    speed = sum(best["s3fs"]) / sum(best["flowkit"])
    print("\ntargets")
    print(f"  flowkit write+read >= {SPEED_TARGET:.2f}x the speed of s3fs: {speed:.2f}x "
          f"({verdict(speed >= SPEED_TARGET)}; flowkit takes {1 / speed:.2f}x the time of s3fs)")
    copy = best["temporary key + copy"][0] / best["flowkit"][0]
    print(f"  informational, no target: publishing through a temporary key and a copy takes {copy:.1f}x "
          f"flowkit's write")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
