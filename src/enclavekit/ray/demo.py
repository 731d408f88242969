"""``enclavekit demo --nodes N``: the joint statistics partitioned over N local Ray nodes.

Each node hosts a VM (sizes cycle DC1s_v2, DC2s_v2, DC4s_v2) in a temporary data directory;
N worker enclaves go one per node, an aggregator beside them; they attest one another in the
enclaves before any data moves; the owner's records travel encrypted, partials under the
attested channels, the result under the owner's key, and it must equal the single-VM
computation. Ray must stay on 127.0.0.1: as root the demo re-runs itself
(``enclavekit demo --nodes N``) in a network namespace with only ``lo``; otherwise it
explains and refuses. Progress is reported as :mod:`enclavekit.jointstats.events`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from ..errors import EnclaveKitError
from ..jointstats.events import Outcome, Report, Say, Title
from . import netns

__all__ = ["run_nodes"]

SIZES = ("Standard_DC1s_v2", "Standard_DC2s_v2", "Standard_DC4s_v2")


def run_nodes(report: Report, count: int, examples: Path | None = None) -> Outcome:
    """Run the partitioned demo on ``count`` nodes, reporting each step to ``report``; the
    outcome is ``ok`` when the result equals the single-VM computation.

    Raises:
        EnclaveKitError: ``count`` is below 1, or Ray cannot be kept on 127.0.0.1 here.
    """
    if count < 1:
        raise EnclaveKitError(f"--nodes must be at least 1, found {count}")
    if netns.loopback_only():
        return _inside(report, count, examples)
    why = netns.can_isolate()
    if why:
        raise EnclaveKitError(
            "the Ray demo must keep Ray on 127.0.0.1, and Ray binds the machine's interface "
            f"address unless the network namespace has only lo; {why} (or run it inside "
            "'unshare --net' with lo up yourself)")
    argv = ["-m", "enclavekit", "demo", "--nodes", str(count)]
    if examples is not None:
        argv += ["--examples", str(examples)]
    report(Say("running in a network namespace with only lo: "
               f"{' '.join(netns.python_isolated(argv)[:3])} ...", "note"))
    started = time.monotonic()
    code = subprocess.run(netns.python_isolated(argv), check=False).returncode
    return Outcome(code == 0, time.monotonic() - started,
                   "" if code == 0 else f"the demo in the network namespace exited with {code}")


def _inside(report: Report, count: int, examples: Path | None) -> Outcome:
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    import enclavekit

    from .cluster import LocalCluster
    from .jointstats import (
        all_records,
        app_dir,
        partitioned_job,
        pin_roots,
        reference_statistics,
    )
    from .mesh import job_advisories, job_roots
    from .placement import place, place_spread

    started = time.monotonic()
    app = (examples / "ray_stats") if examples is not None else app_dir()
    sizes = [SIZES[i % len(SIZES)] for i in range(count)]
    report(Title(f"enclavekit demo on Ray: joint statistics over {count} node(s)"))
    with tempfile.TemporaryDirectory(prefix="enclavekit-ray-demo-") as tmp:
        temp = Path(f"/tmp/ekrd-{os.getpid()}")
        with LocalCluster(sizes, Path(tmp) / "home", temp_dir=temp) as cluster:
            report(Say(f"{count} Ray node(s) on 127.0.0.1, one VM each: " + ", ".join(
                f"{vm} ({size})" for vm, size in zip(cluster.vm_names, sizes, strict=True)),
                "item"))
            advisories = job_advisories(cluster.data_dir, cluster.vm_names)
            if advisories:
                report(Say(f"development platforms: the host user holds their secrets; the "
                           f"job allows advisory {', '.join(advisories)} by name", "warn"))
            # the job's root (the data directory's emulation root) measured into the build
            pinned = pin_roots(job_roots(cluster.data_dir), Path(tmp) / "ray_stats", app)
            image = enclavekit.build(pinned).sign(enclavekit.SigningKey.generate())
            workers = place_spread(image, count)
            aggregator = place(image)
            try:
                report(Say(f"ray_stats (the job's root measured in; MRENCLAVE "
                           f"{image.mrenclave.hex()[:16]}…) placed by its EPC need: workers "
                           f"on {', '.join(w.vm for w in workers)}; aggregator on "
                           f"{aggregator.vm}", "item"))
                rows = all_records()
                result = partitioned_job(workers, aggregator, cluster.data_dir, rows=rows)
                report(Say(f"{len(result.mesh.fingerprints)} quote verifications inside the "
                           "enclaves (DCAP, the job's root, same MRENCLAVE, not DEBUG); every "
                           "channel's two sides agree", "item"))
                report(Say(f"{len(rows)} records partitioned over {count} worker(s), "
                           "encrypted; partials sealed to the aggregator; result encrypted "
                           "for the owner", "item"))
            finally:
                for handle in [*workers, aggregator]:
                    handle.close()
        shutil.rmtree(temp, ignore_errors=True)
        reference = reference_statistics(rows)
        for name, stats in sorted(result.stats.items()):
            report(Say(f"{name}: {stats}"))
        if result.stats != reference:
            failure = "the partitioned result differs from the single-VM computation"
            report(Say(failure, "fail"))
            return Outcome(False, time.monotonic() - started, failure)
        report(Say("equals the single-VM result", "ok"))
    seconds = time.monotonic() - started
    report(Title(f"Ray demo complete in {seconds:.1f} s", final=True))
    return Outcome(True, seconds)
