"""Hostile names: nothing is ever written (or removed) outside the store, and each is refused, named.

The names: ``../x`` and deeper climbs, absolute paths (one of them a file that exists), NUL bytes, very
long names, names with ``/``, ``.``/``..``, the empty name, and, from the seed, random mixes of such
pieces. They go where a user, a script or a damaged database could pass a name: artifact ids given to
the store's read functions and to its artifact files (read, write, delete...), registry model and
alias names, ``fk.File`` inputs and ``fk.Model`` inputs, task names, and the ``flowkit`` CLI's
arguments. (Task results are always stored under the digest of their bytes, never under a name.)

Around the store (``<tmp>/a/b/store``) lie victim files that the climbing names point at; after every
call the files under ``<tmp>`` outside the store are exactly as before, and the victims untouched.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

import flowkit as fk
from flowkit.cli import main
from flowkit.errors import FlowkitError
from flowkit.store import Store

from tests.faults.harness import env, tally, tiers, tree

pytestmark = pytest.mark.sqlite_only

FIXED = ["../x", "../../victim", "../../../victim", "ab/../../../../victim", "/", "..", ".", "", "a/b", "a\x00b",
         "\x00", "x" * 5000, "../" * 300 + "victim", "ab" * 16 + "/../x", "AB" * 16, " " + "ab" * 16, "ab" * 16 + "\n",
         "%2e%2e%2fvictim", "..\\..\\victim", "\u2215victim"]
PIECES = ["..", "/", "\\", "\x00", "x", "ab", "0f", ".", "~", "\n", "é", "%2f", "victim", "x" * 200]


def hostile(size: int, seed: int, victim: Path) -> list[str]:
    """The fixed names, the victim's absolute path, and ``size`` random mixes of hostile pieces."""
    rng = random.Random(seed)
    names = FIXED + [str(victim), str(victim) + "\x00.txt"]
    for _ in range(size):
        names.append("".join(rng.choice(PIECES) for _ in range(rng.randint(1, 12))))
    return names


@fk.task
def make() -> dict[str, int]:
    return {"model": 1}


@fk.flow
def produce() -> dict[str, int]:
    return make()


@fk.task
def read_input(path: Path) -> str:
    return path.read_text()


@fk.flow
def reads(name: str = "x") -> str:
    return read_input(fk.File(name))


@fk.task
def use_model(model: object) -> object:
    return model


@fk.flow
def uses(name: str = "x") -> object:
    return use_model(fk.Model(name))


def path_like(name: str) -> bool:
    """Whether a name could mean a path or hide what it is: what the registry must refuse."""
    return (any(p in name for p in ("/", "\\", "..", "\x00", "@", ":")) or not name.strip(".") or len(name) > 200
            or not name.isprintable() or name != name.strip())


def shown(name: str) -> str:
    """How a message quotes (the beginning of) a name."""
    return repr(name)[1:-1][:29] if name else "''"


def refused(call, name: str, *kinds: type[BaseException]) -> str:
    """Call; it must raise one of ``kinds`` whose message names ``name``; return the message."""
    with pytest.raises(kinds or (FlowkitError, KeyError, ValueError)) as caught:
        call()
    error = caught.value
    text = str(error.args[0]) if isinstance(error, KeyError) and error.args else str(error)  # KeyError reprs itself
    assert shown(name).lower() in text.lower(), f"{name!r} not named in: {text[:300]}"
    return text


@pytest.fixture
def around(tmp_path):
    """A store three folders down, with victim files around it; checks nothing outside it changed."""
    home = tmp_path / "a" / "b" / "store"
    victims = [tmp_path / "victim", tmp_path / "a" / "victim", tmp_path / "a" / "b" / "victim", tmp_path / "x"]
    for v in victims:
        v.parent.mkdir(parents=True, exist_ok=True)
        v.write_text("victim")
    run = produce.with_options(store=str(home)).run()
    assert run.status == "completed"
    before = {k: v for k, v in tree(tmp_path).items() if not k.startswith("a/b/store/")}
    yield home, run.task_runs[0].artifact_id, tmp_path / "victim"
    after = {k: v for k, v in tree(tmp_path).items() if not k.startswith("a/b/store/")}
    assert after == before, "files outside the store were written or removed"
    assert all(v.read_text() == "victim" for v in victims)


@pytest.mark.parametrize(("size", "seed"), tiers((5, 1), [(300, 2), (300, 3)]))
def test_hostile_artifact_ids_never_become_paths(around, size, seed):
    home, good, victim = around
    store = Store(home)
    names = hostile(size, seed, victim)
    for name in names:
        refused(lambda: store.load(name), name, KeyError)
        refused(lambda: store.find_artifact(name), name, KeyError)
        assert store.artifact(name) is None
        files = store.files
        for call in (lambda: files.read(name), lambda: files.path(name), lambda: files.exists(name),
                     lambda: files.verify(name), lambda: files.delete(name), lambda: files.write(name, b"evil")):
            text = refused(call, name, fk.errors.StoreError)
            assert "is not an artifact id" in text
        refused(lambda: fk.lineage(name, store=store), name, KeyError)
    assert store.load(good) == {"model": 1}  # the store itself is fine
    tally("hostile_names", names=len(names), refused=len(names) * 10, written_outside=0)


@pytest.mark.parametrize(("size", "seed"), tiers((5, 1), [(300, 2)]))
def test_hostile_registry_names_and_model_inputs_are_refused(around, size, seed):
    home, good, victim = around
    store = Store(home)
    mv = fk.registry.register("ok-model", good, store=store)
    for name in hostile(size, seed, victim):
        if not path_like(name):  # "%2e%2e", "~", "é": odd, but no path; the registry keeps them as text
            continue
        refused(lambda: fk.registry.register(name, good, store=store), name, fk.errors.RegistryError)
        refused(lambda: fk.registry.register("ok-model", name, store=store), name, fk.errors.RegistryError)
        refused(lambda: fk.registry.load(name, store=store), name, fk.errors.RegistryError)
        refused(lambda: fk.registry.promote("ok-model", mv.version, to=name, store=store), name,
                fk.errors.RegistryError)
        refused(lambda: uses.with_options(store=str(home)).run(name=name), name, FlowkitError)
    assert fk.registry.load("ok-model:1", store=store) == {"model": 1}
    tally("hostile_names", registry_names=sum(map(path_like, hostile(size, seed, victim))))


def test_hostile_file_inputs_and_task_names_are_refused(around):
    home, _, victim = around
    run_reads = reads.with_options(store=str(home))
    for name in ["../nope", "../../../../nope", "/nope/at/all", "x" * 5000]:
        # named as resolved (an absolute path), or by its beginning when it is very long
        text = refused(lambda: run_reads.run(name=name), os.path.basename(name)[:20], fk.errors.CacheKeyError)
        assert "task 'read_input', argument 'path'" in text
    text = refused(lambda: run_reads.run(name="a\x00b"), "a\x00b", ValueError)
    assert "NUL" in text
    assert run_reads.run(name=str(victim)).value == "victim"  # reading outside is the user's right; nothing is written
    for name in ["../../evil", "a/b", "/abs", "x[0]", "#1", ""]:
        refused(lambda: fk.task(name=name)(lambda: 1), name, FlowkitError, ValueError, TypeError)


CLI = [
    ["artifacts", "get", "{}"],
    ["lineage", "{}"],
    ["show", "{}"],
    ["metrics", "{}"],
    ["models", "show", "{}"],
    ["models", "history", "{}"],
    ["models", "promote", "{}", "1"],
    ["models", "promote", "ok-model", "1", "--to", "{}"],
    ["run", "{}"],
    ["run", "{}.py:flow"],
]


@pytest.mark.parametrize(("size", "seed"), tiers((0, 1), [(40, 2)]))
def test_hostile_cli_arguments_are_refused_by_name(around, size, seed):
    home, good, victim = around
    fk.registry.register("ok-model", good, store=Store(home))
    names = [n for n in hostile(size, seed, victim) if n and "\x00" not in n and path_like(n)] + ["a\x00b"]
    runner = CliRunner()
    for name in names:
        for args in CLI:
            result = runner.invoke(main, ["--home", str(home)] + [a.format(name) for a in args])
            assert result.exit_code != 0, (args, name, result.output)
            assert "Traceback" not in result.output
            said = result.output.replace("\n", "")
            assert "error" in said.lower(), (args, name, result.output)
            start = name[:12].replace("\n", "").lower()
            assert shown(name)[:12].lower() in said.lower() or start in said.lower(), (args, name, said)
    # and through a real process (argv cannot carry a NUL byte)
    for name in ["../../victim", str(victim), "x" * 3000]:
        done = subprocess.run([sys.executable, "-m", "flowkit", "artifacts", "get", name, "-o", "out.bin"],
                              env=env(home), cwd=home, capture_output=True, text=True, timeout=60)
        assert done.returncode != 0 and "no artifact" in done.stderr and shown(name)[:20] in done.stderr
        assert not (home / "out.bin").exists()
    tally("hostile_names", cli_calls=len(names) * len(CLI) + 3)


def test_a_hostile_id_in_a_damaged_database_removes_nothing_outside(around):
    """gc removes the files of records nothing needs; a record whose id climbs out of the store has none."""
    home, _, victim = around
    store = Store(home)
    for name in ["../../../victim", str(victim), "../../victim"]:
        store.db.write(lambda c, n=name: c.execute(
            "INSERT INTO artifacts (id, uri, serializer, type, size, created) VALUES (?, NULL, 'pickle', 'x', 5, 0)",
            (n,)))
    report = store.gc(keep_days=0, grace_seconds=0)
    assert set(report.artifacts) >= {"../../../victim", str(victim), "../../victim"}
    assert victim.read_text() == "victim" and os.path.exists(victim)
