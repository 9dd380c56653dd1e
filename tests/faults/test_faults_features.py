"""Issue 21, feature files and stores: bad inputs and faults, each refused clearly or handled.

The table
---------
``CASES`` lists every case; ``test_case`` runs each one, so the suite reports the count
("N passed") - the figure "N cases, all refused clearly or handled". A case is::

    Case(name, group, run, expect, check=None)

    name    pytest id: short, unique, says what is wrong ("box beyond the image")
    group   the group of issue 21 it belongs to (4 values, 5 OSError, 6 interrupted
            imports, 7 vague messages)
    run     run(env) -> result: builds the input under ``env.tmp`` and does what a user
            does - calls the API, or ``cli(...)`` for the command line (which returns a
            ``Cli(rc, out, err)`` instead of raising). ``env.monkeypatch`` injects faults;
            ``env.big_tsv()`` is a shared TSV large enough to kill an import mid-way.
    expect  "refused: <regex>": ``run`` raises one of the clear error types (the package's own,
            ValueError, OSError;
            never IndexError / KeyError / TypeError) whose message matches ``<regex>``
            (``re.search``), or returns a Cli with rc != 0, no traceback and stderr
            matching ``<regex>``. After a refusal nothing may be left in a ``*.tmp-*``
            directory under ``env.tmp``.
            "handled: <what>": ``run`` returns normally (a Cli with rc 0) and
            ``check(env, result)`` asserts ``<what>``.
    check   required for "handled", optional extra assertions for "refused" (it then
            receives the exception or the Cli result).

To add a group: write small ``run`` functions (helpers below build records, TSVs and
stores) and append ``Case`` entries; keep each case well under a second unless it must
kill a real process.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

from support.faults import Case, Cli, check_table, cli, run_case
from support.faults import exactly_one_line as one_line

from lxmert.features import FeatureStore, build_store, check_store, verify_checksums
from lxmert.features.build import ArrayWriter
from lxmert.features.tsv import FIELDNAMES, encode_row, write_tsv

# ---------------------------------------------------------------------------- the runner


@dataclass
class Env:
    """What a case of this table gets (the runner is support.faults's)."""
    tmp: Path
    monkeypatch: pytest.MonkeyPatch
    big_tsv: Callable[[], Path]


def temp_dirs(tmp: Path) -> list[str]:
    return sorted(p.name for p in tmp.rglob("*.tmp-*"))


# ---------------------------------------------------------------------------- inputs


def rec(img_id: str, n: int = 4, dim: int = 8, seed: int = 0, h: int = 480, w: int = 640, **over: Any) -> dict:
    """A valid record (boxes inside the image, ids within the VG detector's classes)."""
    rng = np.random.default_rng(seed)
    x1 = rng.random(n, dtype=np.float32) * (w / 2)
    y1 = rng.random(n, dtype=np.float32) * (h / 2)
    r = {
        "img_id": img_id, "img_h": h, "img_w": w, "num_boxes": n,
        "objects_id": rng.integers(0, 1600, n), "objects_conf": rng.random(n, dtype=np.float32),
        "attrs_id": rng.integers(0, 400, n), "attrs_conf": rng.random(n, dtype=np.float32),
        "boxes": np.stack([x1, y1, x1 + w / 3, y1 + h / 3], axis=1).astype(np.float32),
        "features": rng.standard_normal((n, dim)).astype(np.float32),
    }
    r.update(over)
    return r


def line(img_id: str, **raw: str) -> str:
    """A TSV line of a valid record with some fields replaced by raw text."""
    parts = encode_row(rec(img_id)).split("\t")
    for name, value in raw.items():
        parts[FIELDNAMES.index(name)] = value
    return "\t".join(parts)


def b64(arr: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(arr).tobytes()).decode()


def tsv(env: Env, *rows: dict | str, name: str = "a.tsv", prefix: bytes = b"") -> Path:
    """A TSV of good rows g1, g2 around ``rows`` (dicts are encoded, strings kept as is)."""
    lines = [encode_row(rec("g1")), *(r if isinstance(r, str) else encode_row(r) for r in rows),
             encode_row(rec("g2", seed=2))]
    path = env.tmp / name
    path.write_bytes(prefix + ("\n".join(lines) + "\n").encode())
    return path


def good_store(env: Env, name: str = "s", ids: tuple[str, ...] = ("old1", "old2")) -> Path:
    src = env.tmp / f"{name}-src.tsv"
    write_tsv(src, [rec(i, seed=k) for k, i in enumerate(ids)])
    build_store(src, env.tmp / name, progress=False)
    return env.tmp / name


def import_(env: Env, path: Path, **kw: Any) -> Any:
    kw.setdefault("progress", False)
    return build_store(path, env.tmp / "s", **kw)


def refuse_row(*rows: dict | str, **kw: Any) -> Callable[[Env], Any]:
    return lambda env: import_(env, tsv(env, *rows), **kw)


def edit_manifest(mutate: Callable[[dict], None],
                  then: Callable[[Path], Any] = FeatureStore.open) -> Callable[[Env], Any]:
    def run(env: Env) -> Any:
        s = good_store(env)
        man = json.loads((s / "manifest.json").read_text())
        mutate(man)
        (s / "manifest.json").write_text(json.dumps(man))
        return then(s)
    return run


def rewrite_index(value: Any, then: Callable[[Path], Any]) -> Callable[[Env], Any]:
    """Replace ids.json by ``value`` and record its size and CRC in the manifest as an import
    would, so only the shape check can catch it."""
    import zlib

    def run(env: Env) -> Any:
        s = good_store(env)
        raw = json.dumps(value).encode()
        (s / "ids.json").write_bytes(raw)
        man = json.loads((s / "manifest.json").read_text())
        man["index"].update(bytes=len(raw), crc32=f"{zlib.crc32(raw):08x}")
        (s / "manifest.json").write_text(json.dumps(man))
        return then(s)
    return run


def check_cli(s: Path) -> Cli:
    return cli("features", "check", s, "--quiet")


# ---------------------------------------------------------------------------- group 4: values


def other_detector_store(env: Env) -> Any:
    """A detector with 1700 classes imports with its count; a 1600-label model refuses it."""
    r = rec("x", objects_id=np.array([3, 1699, 5, 7]))
    s = import_(env, tsv(env, r), num_object_labels=1700).path
    return FeatureStore.open(s).check_label_ids(1600, 400)


def older_store_label_check(env: Env) -> Any:
    """A store without recorded id ranges (older lxmert) is scanned for them."""
    r = rec("x", attrs_id=np.array([3, 450, 5, 7]))
    s = import_(env, tsv(env, r), num_attr_labels=None).path
    man = json.loads((s / "manifest.json").read_text())
    del man["labels"]
    (s / "manifest.json").write_text(json.dumps(man))
    return FeatureStore.open(s).check_label_ids(1600, 400)


def union_label_check(env: Env) -> Any:
    """The datasets' union of stores (``lxmert.data.ImageFeatures``) checks every store."""
    from lxmert.data import ImageFeatures

    coco = good_store(env, "coco")
    vg = build_store(tsv(env, rec("x", attrs_id=np.array([3, 450, 5, 7]))), env.tmp / "vg",
                     num_attr_labels=None, progress=False).path
    return ImageFeatures([coco, vg]).check_label_ids(1600, 400)


def label_ids_within(env: Env) -> Any:
    info = import_(env, tsv(env, rec("x", objects_id=np.array([0, 1599, 5, 7]))))
    FeatureStore.open(info.path).check_label_ids(1600, 400)
    return info


def boxes_on_the_edge(env: Env) -> Any:
    return import_(env, tsv(env, rec("x", boxes=np.array([[0, 0, 640, 480]] * 4, np.float32))))


def bom_first_id(env: Env) -> Any:
    return import_(env, tsv(env, prefix=b"\xef\xbb\xbf"))


def check_bom(env: Env, info: Any) -> None:
    ids = FeatureStore.open(info.path).ids
    assert ids == ["g1", "g2"], ids
    assert any("byte-order mark" in n for n in info.notes)


def many_boxes_truncated(env: Env) -> Any:
    return import_(env, tsv(env, rec("huge", n=20_000)), max_boxes=36)


def check_truncated(env: Env, info: Any) -> None:
    assert info.max_boxes == 36 and info.truncated_rows == 1
    assert FeatureStore.open(info.path).stored_max_boxes == 36
    assert "max boxes  36 (max_boxes given)" in info.summary()


def states_max_boxes(env: Env) -> Any:
    return cli("features", "import", tsv(env, rec("x", n=7)), "--out", env.tmp / "s", "--quiet")


def store_beyond_free_disk(env: Env) -> Any:
    real = shutil.disk_usage
    env.monkeypatch.setattr(shutil, "disk_usage",
                            lambda p: real(p)._replace(free=100))  # a nearly full disk
    return import_(env, tsv(env))


def verify_finds_flipped_byte(env: Env) -> Any:
    s = good_store(env)
    with open(s / "features.bin", "r+b") as f:
        f.seek(5)
        b = f.read(1)
        f.seek(5)
        f.write(bytes([b[0] ^ 0x01]))
    return verify_checksums(s)


def box_edited_outside(env: Env) -> Any:
    s = good_store(env)
    boxes = np.memmap(s / "boxes.bin", dtype="<f4", mode="r+", shape=(2, 4, 4))
    boxes[1, 2, 2] = 5000.0
    boxes.flush()
    del boxes
    return check_cli(s)


# ---------------------------------------------------------------------------- group 5: OSError


def disk_full_mid_write(env: Env) -> Any:
    good_store(env)
    real = ArrayWriter.write
    count = {"n": 0}

    def write(self: ArrayWriter, row: np.ndarray) -> None:
        if self.path.name == "features.bin":
            count["n"] += 1
            if count["n"] > 1:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(self, row)

    env.monkeypatch.setattr(ArrayWriter, "write", write)
    return cli("features", "import", tsv(env), "--out", env.tmp / "s", "--force", "--quiet")


def old_store_intact(env: Env, _: Any) -> None:
    st = FeatureStore.open(env.tmp / "s")
    assert st.ids == ["old1", "old2"]
    assert check_store(env.tmp / "s", progress=False) == []


def out_is_a_file(env: Env) -> Any:
    (env.tmp / "s").write_text("precious")
    return cli("features", "import", tsv(env), "--out", env.tmp / "s", "--force", "--quiet")


def out_is_a_directory(env: Env) -> Any:
    (env.tmp / "s").mkdir()
    (env.tmp / "s" / "notes.txt").write_text("precious")
    return cli("features", "import", tsv(env), "--out", env.tmp / "s", "--force", "--quiet")


def untouched(name: str) -> Callable[[Env, Any], None]:
    def check(env: Env, result: Any) -> None:
        p = env.tmp / "s"
        assert (p / name if p.is_dir() else p).read_text() == "precious"
    return check


# ---------------------------------------------------------------------------- group 6: interrupted imports

BIG_ROWS = 900  # ~355 MB: the decoding pass lasts a few seconds with two workers


def write_big_tsv(path: Path, rows: int = BIG_ROWS) -> Path:
    """Real-sized rows (36 boxes x 2048 features), quick to write: one encoded body, many ids."""
    r = rec("X", n=36, dim=2048)
    body = encode_row(r)[1:].encode() + b"\n"
    with open(path, "wb") as f:
        for i in range(rows):
            f.write(f"img{i:07d}".encode() + body)
    return path


def children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            text = stat.read_text()
            if int(text[text.rindex(")") + 2:].split()[1]) == pid:
                out.append(int(stat.parent.name))
    return out


def running(pid: int) -> bool:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return text[text.rindex(")") + 2] not in "ZX"


@dataclass
class Killed:
    rc: int
    err: str
    workers: list[int]
    survivors: list[int]
    temp_after_kill: list[str]
    ids_after_kill: list[str]
    problems_after_kill: list[str]
    next_notes: list[str] | None = None


def kill_import(sig: int) -> Callable[[Env], Killed]:
    def run(env: Env) -> Killed:
        good_store(env)
        big = env.big_tsv()
        cmd = [sys.executable, "-m", "lxmert", "features", "import", str(big), "--out", str(env.tmp / "s"),
               "--force", "--workers", "2", "--quiet"]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            deadline = time.monotonic() + 120
            workers: list[int] = []
            while time.monotonic() < deadline:
                assert proc.poll() is None, f"import ended before it could be killed: {proc.communicate()}"
                partial = [p for p in env.tmp.glob("s.tmp-*") if (p / "features.bin").is_file()
                           and (p / "features.bin").stat().st_size > 0]
                workers = children(proc.pid)
                if partial and len(workers) >= 2:
                    break
                time.sleep(0.01)
            else:
                raise AssertionError("the import never reached its decoding pass")
            os.kill(proc.pid, sig)
            # communicate() returns only once every holder of the pipes has exited: a
            # surviving worker would make it time out (the caller would hang).
            _, err = proc.communicate(timeout=20)
            deadline = time.monotonic() + 5
            while any(map(running, workers)) and time.monotonic() < deadline:
                time.sleep(0.05)
            survivors = [w for w in workers if running(w)]
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            for w in workers:  # a failing run must not leave hung workers behind
                if running(w):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(w, signal.SIGKILL)
        result = Killed(proc.returncode, err.decode(), workers, survivors, temp_dirs(env.tmp),
                        FeatureStore.open(env.tmp / "s").ids, check_store(env.tmp / "s", progress=False))
        if sig == signal.SIGKILL:
            result.next_notes = import_(env, tsv(env), overwrite=True).notes
        return result
    return run


def check_sigterm(env: Env, k: Killed) -> None:
    assert k.rc == 143, (k.rc, k.err)
    assert "Traceback" not in k.err, k.err
    assert k.survivors == [], f"decode workers {k.survivors} outlived their parent"
    assert k.temp_after_kill == [], "SIGTERM left the temporary directory"
    assert (k.ids_after_kill, k.problems_after_kill) == (["old1", "old2"], []), "old store damaged"


def check_sigkill(env: Env, k: Killed) -> None:
    assert k.rc == -signal.SIGKILL
    assert k.survivors == [], f"decode workers {k.survivors} outlived their parent"
    assert k.temp_after_kill, "expected the killed import's partial directory"
    assert (k.ids_after_kill, k.problems_after_kill) == (["old1", "old2"], []), "old store damaged"
    assert k.next_notes is not None
    assert any("removed (partial import of dead process" in n for n in k.next_notes), k.next_notes
    assert temp_dirs(env.tmp) == [], "the next import left the partial directory"
    assert FeatureStore.open(env.tmp / "s").ids == ["g1", "g2"]


_KILL_BETWEEN_RENAMES = textwrap.dedent("""
    import os, sys
    from lxmert.features import build_store
    real = os.rename
    def rename(src, dst, *args, **kwargs):
        real(src, dst, *args, **kwargs)
        if ".old-" in str(dst):
            os._exit(9)  # as a SIGKILL would: right after the old store was moved aside
    os.rename = rename
    build_store(sys.argv[1], sys.argv[2], overwrite=True, progress=False)
""")


def kill_between_renames(then: str) -> Callable[[Env], Any]:
    def run(env: Env) -> Any:
        good_store(env)
        new = tsv(env)
        done = subprocess.run([sys.executable, "-c", _KILL_BETWEEN_RENAMES, str(new), str(env.tmp / "s")],
                              capture_output=True, timeout=120)
        assert done.returncode == 9, done.stderr.decode()
        assert not (env.tmp / "s").exists(), "the simulated kill did not fall between the renames"
        if then == "open":
            st = FeatureStore.open(env.tmp / "s")
            return st.ids, st.recovery_notes
        info = import_(env, new, overwrite=True)
        return FeatureStore.open(info.path).ids, info.notes
    return run


def check_restored_on_open(env: Env, result: Any) -> None:
    ids, notes = result
    assert ids == ["old1", "old2"]
    assert any("restored the previous store" in n for n in notes), notes
    assert check_store(env.tmp / "s", progress=False) == []


def check_restored_then_replaced(env: Env, result: Any) -> None:
    ids, notes = result
    assert ids == ["g1", "g2"]
    assert any("restored the previous store" in n for n in notes), notes
    assert sorted(p.name for p in env.tmp.iterdir() if p.name.startswith("s.")) == [], "leftovers remain"


def stale_dir(owner: str) -> Callable[[Env], Any]:
    """A leftover ``s.tmp-...`` with a partial file, by a dead, a live or an unknown owner."""
    def run(env: Env) -> Any:
        pid: int | None = None
        if owner in ("dead", "live"):
            child = subprocess.Popen(["sleep", "60" if owner == "live" else "0"])
            if owner == "dead":
                child.wait()  # exited and reaped: its pid names no process
            pid = child.pid
        name = f"s.tmp-{pid}-abcd1234" if pid is not None else "s.tmp-abcd1234"
        (env.tmp / name).mkdir()
        (env.tmp / name / "features.bin").write_bytes(b"\0" * 4096)
        try:
            return name, import_(env, tsv(env))
        finally:
            if owner == "live":
                child.kill()
                child.wait()
    return run


def check_stale(kept: bool, says: str) -> Callable[[Env, Any], None]:
    def check(env: Env, result: Any) -> None:
        name, info = result
        assert (env.tmp / name).exists() == kept
        assert any(name in n and says in n for n in info.notes), info.notes
        assert FeatureStore.open(info.path).ids == ["g1", "g2"]
    return check


# ---------------------------------------------------------------------------- the table

_nan = np.zeros((4, 8), np.float32)
_nan[2, 3] = np.nan
_inf_box = np.tile(np.array([1, 2, 30, 40], np.float32), (4, 1))
_inf_box[1, 2] = np.inf

CASES: list[Case] = [
    # group 4: values that passed import and `features check`, then corrupted or crashed later
    Case("object id beyond the detector's classes", 4, refuse_row(rec("x", objects_id=np.array([1, 2, 1600, 3]))),
         r"refused: a\.tsv, line 2: field 'objects_id': 1 id\(s\) outside \[0, 1600\), first 1600 at box 2"),
    Case("negative object id", 4, refuse_row(rec("x", objects_id=np.array([1, -1, 2, 3]))),
         r"refused: a\.tsv, line 2: field 'objects_id': .*first -1 at box 1"),
    Case("attribute id beyond the detector's classes", 4, refuse_row(rec("x", attrs_id=np.array([400, 1, 2, 3]))),
         r"refused: a\.tsv, line 2: field 'attrs_id': .*outside \[0, 400\).*num_attr_labels"),
    Case("ids of another detector vs the model's label count", 4, other_detector_store,
         r"refused: feature store \S+/s: object ids span \d+\.\.1699, but the model has num_object_labels=1600"),
    Case("label check on a store without recorded ranges", 4, older_store_label_check,
         r"refused: feature store \S+/s: attribute ids span \d+\.\.450, but the model has num_attr_labels=400"),
    Case("label check across the stores a dataset reads", 4, union_label_check,
         r"refused: feature store \S+/vg: attribute ids span \d+\.\.450"),
    Case("label ids at the limits", 4, label_ids_within, "handled: ids 0 and 1599 pass the 1600-label check",
         lambda env, info: None if info.labels["obj_id_max"] == 1599 else pytest.fail(str(info.labels))),
    Case("img_h beyond int32", 4, refuse_row(line("x", img_h="99999999999")),
         r"refused: a\.tsv, line 2: field 'img_h': 99999999999 exceeds the store's int32 range"),
    Case("box of 1e30", 4, refuse_row(rec("x", boxes=np.full((4, 4), 1e30, np.float32))),
         r"refused: a\.tsv, line 2: field 'boxes': 4 box\(es\) outside the 640 x 480 image, first box 0 = \(1e\+30"),
    Case("negative box", 4, refuse_row(rec("x", boxes=np.tile(np.array([-3, 2, 30, 40], np.float32), (4, 1)))),
         r"refused: a\.tsv, line 2: field 'boxes': .*outside the 640 x 480 image"),
    Case("box beyond the image", 4,
         refuse_row(rec("x", boxes=np.tile(np.array([10, 20, 645, 40], np.float32), (4, 1)))),
         r"refused: a\.tsv, line 2: field 'boxes': .*first box 0 = \(10, 20, 645, 40\)"),
    Case("boxes on the image border", 4, boxes_on_the_edge, "handled: [0, w] x [0, h] is inside",
         lambda env, info: None if info.num_images == 3 else pytest.fail(str(info))),
    Case("NaN features", 4, refuse_row(line("x", features=b64(_nan))),
         r"refused: a\.tsv, line 2: field 'features': 1 non-finite"),
    Case("inf box", 4, refuse_row(line("x", boxes=b64(_inf_box))),
         r"refused: a\.tsv, line 2: field 'boxes': 1 non-finite"),
    Case("UTF-8 byte-order mark before the first id", 4, bom_first_id,
         "handled: the first id is 'g1', and a note says the mark was ignored", check_bom),
    Case("one 20,000-box row", 4, refuse_row(rec("huge", n=20_000)),
         r"refused: a\.tsv, line 2: num_boxes=20000: .*every image would be padded to 20000 slots.*--max-boxes"),
    Case("reading a store with max_boxes=1e9", 4,
         lambda env: FeatureStore.open(good_store(env), max_boxes=10**9),
         r"refused: max_boxes=1000000000 pads each image to \d+\.\d GiB \(the store holds at most \d+ boxes"),
    Case("one 20,000-box row with --max-boxes 36", 4, many_boxes_truncated,
         "handled: truncated to 36, counted and stated", check_truncated),
    Case("the store's max boxes is stated", 4, states_max_boxes, "handled: import prints the capacity and its row",
         lambda env, r: None if re.search(r"max boxes  7 \(largest num_boxes: \S+a\.tsv, line 2\)", r.out)
         else pytest.fail(r.out)),
    Case("--max-boxes 1000000000", 4,
         lambda env: cli("features", "import", tsv(env), "--out", env.tmp / "s", "--max-boxes", "1000000000",
                         "--quiet"),
         r"refused: max_boxes=1000000000 would make every image 52\.2 GiB "
         r"\(\[2, 1000000000, 8\] float16: 104\.3 GiB in all.*refusing before allocating", one_line),
    Case("max_boxes not an integer", 4, lambda env: import_(env, tsv(env), max_boxes=36.5),
         r"refused: max_boxes must be an integer >= 1, got 36\.5"),
    Case("store larger than the free disk", 4, store_beyond_free_disk,
         r"refused: (?i)cannot write \S+: no space left on device "
         r"\(the store needs 472 B \(\[2, 4, 8\] float16\), 100 B free"),
    Case("check: ids.json not a list", 4, rewrite_index({"old1": 0, "old2": 1}, check_cli),
         r"refused: ids\.json: expected a JSON list of image ids, got dict"),
    Case("check: ids.json holding numbers", 4, rewrite_index(["old1", 7], check_cli),
         r"refused: ids\.json: 1 entr\(y/ies\) not a non-empty string, first at position 1 \(7\)"),
    Case("check: ids.json with duplicates", 4, rewrite_index(["old1", "old1"], check_cli),
         r"refused: ids\.json: duplicate image ids \(first: 'old1'\)"),
    Case("check: ids.json of the wrong length", 4, rewrite_index(["old1"], check_cli),
         r"refused: ids\.json: 1 ids for 2 rows"),
    Case("reading: ids.json holding numbers", 4,
         rewrite_index(["old1", 7], lambda s: FeatureStore.open(s).get("old1")),
         r"refused: ids\.json: 1 entr\(y/ies\) not a non-empty string.*damaged store"),
    Case("check: a box edited outside the image", 4, box_edited_outside,
         r"refused: boxes: 1 image\(s\) with a box outside \[0, img_w\] x \[0, img_h\]"),
    Case("full checksum verification", 4, verify_finds_flipped_byte, "handled: verify_checksums names the file",
         lambda env, problems: None if problems and "features.bin: CRC-32 mismatch" in problems[0]
         else pytest.fail(str(problems))),
    # group 7 (feature stores): every manifest problem names the store and the key
    Case("manifest: dtype float64", 7, edit_manifest(lambda m: m.update(dtype="float64")),
         r"refused: s/manifest\.json: key 'dtype': expected one of \['float16', 'float32'\], got 'float64'"),
    Case("manifest: array without dtype", 7, edit_manifest(lambda m: m["arrays"]["features"].pop("dtype")),
         r"refused: s/manifest\.json: key 'arrays\.features\.dtype': missing"),
    Case("manifest: array without file", 7, edit_manifest(lambda m: m["arrays"]["boxes"].pop("file")),
         r"refused: s/manifest\.json: key 'arrays\.boxes\.file': missing"),
    Case("manifest: file outside the store", 7, edit_manifest(lambda m: m["arrays"]["boxes"].update(file="../../x")),
         r"refused: s/manifest\.json: key 'arrays\.boxes\.file': expected a file name inside the store"),
    Case("manifest: num_images a string", 7, edit_manifest(lambda m: m.update(num_images="2")),
         r"refused: s/manifest\.json: key 'num_images': expected an integer >= 1, got '2'"),
    Case("manifest: shape disagrees", 7, edit_manifest(lambda m: m["arrays"]["obj_ids"].update(shape=[2, 5])),
         r"refused: s/manifest\.json: key 'arrays\.obj_ids\.shape': expected \[2, 4\]"),
    Case("manifest: no index entry", 7, edit_manifest(lambda m: m.pop("index")),
         r"refused: s/manifest\.json: key 'index': missing"),
    Case("manifest: empty", 7, edit_manifest(lambda m: m.clear()),
         r"refused: s/manifest\.json: key 'format': not a lxmert-feature-store manifest"),
    Case("manifest: damaged sources, `features info`", 7,
         edit_manifest(lambda m: m["sources"][0].pop("path"), then=lambda s: cli("features", "info", s)),
         r"refused: s/manifest\.json: key 'sources': expected a list of"),
    # group 5 (feature import): OSError as one line naming the path
    Case("disk full while writing", 5, disk_full_mid_write,
         r"refused: (?i)^lxmert features import: error: cannot write \S+/s\.tmp-\d+-\w+/features\.bin: "
         r"no space left on device$",
         lambda env, r: (one_line(env, r), old_store_intact(env, r))),
    Case("read-only directory", 5,
         lambda env: cli("features", "import", tsv(env), "--out", "/sys/lxmert-test-store", "--quiet"),
         r"refused: cannot write /sys\S*: (Operation not permitted|Permission denied|Read-only file system)",
         one_line),
    Case("output's parent is a file", 5,
         lambda env: cli("features", "import", tsv(env), "--out", env.tmp / "a.tsv" / "s", "--quiet"),
         r"refused: cannot write \S+a\.tsv\S*: (Not a directory|File exists)", one_line),
    Case("output is a file, --force", 5, out_is_a_file,
         r"refused: \S+/s exists and is not a directory: refusing to replace it", untouched("")),
    Case("output is an unrelated directory, --force", 5, out_is_a_directory,
         r"refused: \S+/s is a non-empty directory without manifest\.json, not a feature store",
         untouched("notes.txt")),
    Case("input is a directory", 5, lambda env: cli("features", "import", env.tmp, "--out", env.tmp / "s", "--quiet"),
         r"refused: TSV input \S+ is a directory", one_line),
    Case("export into a read-only directory", 5,
         lambda env: cli("features", "export", good_store(env), "--out", "/sys/lxmert-test.tsv", "--quiet"),
         r"refused: ^lxmert features export: error: "
         r".*(Operation not permitted|Permission denied|Read-only file system).*/sys/",
         one_line),
    # group 6: interrupted imports
    Case("SIGTERM during import", 6, kill_import(signal.SIGTERM),
         "handled: exit 143, workers gone, temporary directory removed, old store intact", check_sigterm),
    Case("SIGKILL during import", 6, kill_import(signal.SIGKILL),
         "handled: workers die with the parent, the next import removes the partial directory", check_sigkill),
    Case("kill between the two renames, then open", 6, kill_between_renames("open"),
         "handled: opening restores the previous store", check_restored_on_open),
    Case("kill between the two renames, then import", 6, kill_between_renames("import"),
         "handled: the next import restores, then replaces it; no leftovers", check_restored_then_replaced),
    Case("partial directory of a dead import", 6, stale_dir("dead"),
         "handled: removed and named", check_stale(False, "removed (partial import of dead process")),
    Case("partial directory of a running import", 6, stale_dir("live"),
         "handled: left alone and named", check_stale(True, "still running")),
    Case("partial directory of an older lxmert", 6, stale_dir("unknown"),
         "handled: left alone and named", check_stale(True, "owner unknown")),
]


@pytest.fixture(scope="module")
def big_tsv_factory(tmp_path_factory):
    made: list[Path] = []

    def get() -> Path:
        if not made:
            made.append(write_big_tsv(tmp_path_factory.mktemp("big") / "big.tsv"))
        return made[0]

    yield get
    for p in made:  # ~355 MB: do not leave it in pytest's retained temp directories
        p.unlink(missing_ok=True)


def test_case_table_is_well_formed():
    check_table(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_case(case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, big_tsv_factory) -> None:
    def no_temporary_left() -> None:
        assert temp_dirs(tmp_path) == [], "a refused import left a temporary directory"

    run_case(case, Env(tmp_path, monkeypatch, big_tsv_factory), after_refusal=no_temporary_left)
