"""The Ray cluster scenarios, run once in a loopback-only network namespace.

``python -m tests.ray.cluster_checks WORKDIR OUT.json`` starts a local 3-node cluster
(Standard_DC1s_v2 28 MiB, DC2s_v2 56 MiB, DC4s_v2 112 MiB EPC; one VM each), runs every
scenario, records what happened in OUT.json for ``test_cluster.py`` to assert on, and stops
every node and VM it started.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

SIZES = ["Standard_DC1s_v2", "Standard_DC2s_v2", "Standard_DC4s_v2"]
SECRET_INCOME = 987_654_321
DEV = ["EK-DEV-0001"]  # the advisory of a development platform's quotes, which the job names


def _error(exc: BaseException) -> dict[str, str]:
    return {"type": type(exc).__name__, "message": str(exc)}


def _build(work: Path, name: str, edit: Callable[[str], str] | None, key: Any) -> Any:
    import enclavekit
    from enclavekit.ray.jointstats import app_dir

    app = work / name
    shutil.copytree(app_dir(), app)
    if edit is not None:
        toml = app / "enclave.toml"
        toml.write_text(edit(toml.read_text()))
    return enclavekit.build(app).sign(key)


def main(argv: list[str]) -> int:
    work, out = Path(argv[0]), Path(argv[1])
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    import ray

    import enclavekit
    from enclavekit.errors import EnclaveKitError
    from enclavekit.ray import (
        LocalCluster,
        Mesh,
        Replicated,
        job_collateral,
        job_roots,
        netns,
        nodes,
        place,
        place_spread,
    )
    from enclavekit.ray.jointstats import all_records, partitioned_job, reference_statistics

    results: dict[str, Any] = {}
    home = work / "home"
    temp = Path(f"/tmp/ekray-{os.getpid()}")
    key = enclavekit.SigningKey.generate()
    image = _build(work, "app", None, key)
    big = _build(work, "big", lambda t: t.replace('heap_size = "8M"', 'heap_size = "40M"'),
                 key)
    huge = _build(work, "huge", lambda t: t.replace('heap_size = "8M"', 'heap_size = "120M"'),
                  key)
    other = _build(work, "other", lambda t: t.replace("product_id = 7", "product_id = 8"), key)
    debug = _build(work, "debug", lambda t: t.replace("debug = false", "debug = true"), key)

    def record(name: str, fn: Callable[[], Any]) -> None:
        started = time.monotonic()
        try:
            results[name] = {"ok": True, "value": fn()}
        except Exception as exc:
            results[name] = {"ok": False, "error": _error(exc),
                             "trace": traceback.format_exc()[-2000:]}
        results[name]["seconds"] = round(time.monotonic() - started, 2)

    cluster = LocalCluster(SIZES, home, temp_dir=temp)
    try:
        record("start", lambda: cluster.start() and None)
        if not results["start"]["ok"]:
            return 0
        results["nodes"] = [[n.vm, n.size, n.epc_mib] for n in nodes()]
        results["listening"] = netns.listening_addresses()
        results["loopback_only"] = netns.loopback_only()
        vm_size = dict(zip(cluster.vm_names, SIZES, strict=True))

        def placement() -> dict[str, Any]:
            got = [place(big) for _ in range(2)]
            where = [h.vm for h in got]
            for h in got:
                h.close()
            return {"big_on": where, "big_sizes": [vm_size[v] for v in where]}

        record("placement", placement)
        record("too_big", lambda: place(huge))
        record("spread_too_big", lambda: place_spread(big, 3))

        def spread() -> list[str]:
            handles = place_spread(image, 3)
            vms = [h.vm for h in handles]
            for h in handles:
                h.close()
            return vms

        record("spread", spread)

        def ecalls() -> dict[str, Any]:
            with place(image) as h:
                sync = h.ecalls.digest(b"x")
                ref = h.ecalls.digest.remote(b"x")
                from enclavekit.ray import get

                out = {"sync": sync.hex(), "remote": get(ref).hex(),
                       "ray_get_type": type(ray.get(h.ecalls.digest.remote(b"x"))).__name__,
                       "expected": hashlib.sha256(b"ray-stats/v1/digest/x").hexdigest()}
                try:  # an enclave error: typed through enclavekit.ray.get
                    h.ecalls.add_partition(0, b"x" * 40)
                except EnclaveKitError as exc:
                    out["typed_error"] = _error(exc)
                try:  # and a RayTaskError naming it through plain ray.get
                    ray.get(h.ecalls.add_partition.remote(0, b"x" * 40))
                except Exception as exc:
                    out["ray_get_error"] = str(exc)
                return out

        record("ecalls", ecalls)

        def tampered() -> None:
            from enclavekit.jointstats.scenario import tamper

            place(tamper(image))

        record("tampered_image", tampered)

        # the partitioned job, with a known secret in the data
        rows = all_records()
        rows[5] = {"age": 44, "income": SECRET_INCOME}
        data_key = os.urandom(32)
        workers = place_spread(image, 3)
        aggregator = place(image)

        def job() -> dict[str, Any]:
            got = partitioned_job(workers, aggregator, home, key=data_key, rows=rows)
            objects = [ray.get(ref) for ref in got.transported]
            blob = b"".join(x if isinstance(x, bytes) else repr(x).encode() for x in objects)
            return {"stats": got.stats, "reference": reference_statistics(rows),
                    "workers_on": sorted(w.vm for w in workers),
                    "fingerprints": len(got.mesh.fingerprints),
                    "secret_in_objects": _leaks(blob, data_key)}

        record("job", job)

        def refuse(rogue_image: Any) -> dict[str, Any]:
            rogue = place(rogue_image)
            try:
                context = os.urandom(16)
                roots = job_roots(home)
                collateral = job_collateral(home, [rogue.vm, aggregator.vm])
                honest_hello = aggregator.ecalls.join(context, roots, [], DEV)
                rogue_hello = rogue.ecalls.join(context, roots, [], DEV)
                out: dict[str, Any] = {"debug": rogue.info["debug"]}
                try:
                    aggregator.ecalls.accept("rogue", rogue_hello, collateral[rogue.vm])
                    out["honest_accepted_rogue"] = True
                except EnclaveKitError as exc:
                    out["refusal"] = _error(exc)
                # even a rogue that accepts gets no channel: the honest side has none with it
                try:
                    rogue.ecalls.accept("honest", honest_hello, collateral[aggregator.vm])
                    payload = rogue.ecalls.send("honest", 16)
                    aggregator.ecalls.receive("rogue", payload)
                    out["honest_opened_rogue_payload"] = True
                except EnclaveKitError as exc:
                    out["payload_refusal"] = _error(exc)
                return out
            finally:
                rogue.close()

        record("refuse_other_mrenclave", lambda: refuse(other))
        record("refuse_debug", lambda: refuse(debug))

        def tamper() -> dict[str, Any]:
            pair = place_spread(image, 2)
            try:
                mesh = Mesh.attest({"a": pair[0], "b": pair[1]}, os.urandom(16),
                                   job_roots(home), job_collateral(home, [h.vm for h in pair]),
                                   None, DEV)
                out: dict[str, Any] = {"fingerprints": len(mesh.fingerprints)}
                payload = pair[0].ecalls.send("b", 64)
                bad = bytearray(payload)
                bad[20] ^= 1
                for label, blob in (("flipped", bytes(bad)), ("truncated", payload[:-1])):
                    try:
                        pair[1].ecalls.receive("a", blob)
                        out[label] = "accepted"
                    except EnclaveKitError as exc:
                        out[label] = _error(exc)
                out["genuine"] = pair[1].ecalls.receive("a", payload)
                try:
                    pair[1].ecalls.receive("a", payload)
                    out["replayed"] = "accepted"
                except EnclaveKitError as exc:
                    out["replayed"] = _error(exc)
                try:  # a payload sealed for b presented as if from b to a
                    pair[0].ecalls.receive("b", payload)
                    out["reflected"] = "accepted"
                except EnclaveKitError as exc:
                    out["reflected"] = _error(exc)
                return out
            finally:
                for h in pair:
                    h.close()

        record("tamper", tamper)

        def sealing() -> dict[str, Any]:
            first = place(image, vm=cluster.vm_names[0])
            first.ecalls.count([1, 2, 3])
            blob = first.ecalls.checkpoint()
            state = home / "ray-state.bin"
            from enclavekit._fs import atomic_write

            atomic_write(state, blob)
            first.close()
            out: dict[str, Any] = {}
            with place(image, vm=cluster.vm_names[0]) as same:
                out["same_platform"] = same.ecalls.resume(state.read_bytes())
                out["total"] = same.ecalls.count([])
            with place(image, vm=cluster.vm_names[1]) as elsewhere:
                try:
                    elsewhere.ecalls.resume(state.read_bytes())
                    out["other_platform"] = "resumed"
                except EnclaveKitError as exc:
                    out["other_platform"] = _error(exc)
            return out

        record("sealing", sealing)

        # availability: replicas on the three nodes; then a node dies mid-job
        replicas = Replicated(place_spread(image, 3))
        victim = cluster.vm_names[2]

        def failover() -> dict[str, Any]:
            before = [replicas.call("digest", b"%d" % i).hex() for i in range(3)]
            cluster.kill_node(victim)
            after = [replicas.call("digest", b"%d" % i).hex() for i in range(6)]
            expect = [hashlib.sha256(b"ray-stats/v1/digest/%d" % i).hexdigest()
                      for i in range(6)]
            return {"before_ok": before == expect[:3], "after_ok": after == expect,
                    "live": len(replicas.live), "lost": [r for _, r in replicas.lost]}

        record("failover", failover)
        record("job_after_node_kill",
               lambda: partitioned_job(workers, aggregator, home, key=data_key, rows=rows).stats)

        replicas.close()
        for h in [*workers, aggregator]:
            h.close()  # (their placement group, missing a bundle now, goes with them)

        # a node dies mid-job: after the records are in the workers, before the partials
        pair = [place(image, vm=cluster.vm_names[0]), place(image, vm=cluster.vm_names[1])]
        agg = place(image, vm=cluster.vm_names[0])
        killed: list[str] = []

        def kill_mid_job(phase: str) -> None:
            if phase == "partitioned":
                victim = next(h.vm for h in pair if h.vm != cluster.vm_names[0])
                killed.append(victim)
                cluster.kill_node(victim)

        def mid_job() -> Any:
            return partitioned_job(pair, agg, home, key=data_key, rows=rows,
                                   on_phase=kill_mid_job).stats

        record("node_killed_mid_job", mid_job)
        results["node_killed_mid_job"]["killed"] = killed
        for h in [*pair, agg]:
            h.close()
        results["leaks_in_ray_dirs"] = _scan_dir(temp, data_key)
    finally:
        cluster.stop()
        out.write_text(json.dumps(results, indent=1, default=str))
        shutil.rmtree(temp, ignore_errors=True)
    return 0


def _needles(data_key: bytes) -> list[bytes]:
    return [data_key, data_key.hex().encode(), str(SECRET_INCOME).encode(),
            b'"income": %d' % SECRET_INCOME]


def _leaks(blob: bytes, data_key: bytes) -> list[str]:
    return [n.decode(errors="replace")[:20] for n in _needles(data_key) if n in blob]


def _scan_dir(root: Path, data_key: bytes) -> dict[str, Any]:
    found: list[str] = []
    files = 0
    for path in root.rglob("*"):
        if not path.is_file() or path.is_symlink():
            continue
        try:
            data = path.read_bytes()
        except OSError:
            continue
        files += 1
        if _leaks(data, data_key):
            found.append(str(path))
    return {"files": files, "found": found}


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
