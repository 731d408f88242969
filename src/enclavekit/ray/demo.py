"""``enclavekit demo --nodes N``: the joint statistics partitioned over N local Ray nodes.

Each node hosts a VM (sizes cycle DC1s_v2, DC2s_v2, DC4s_v2) in a temporary data directory;
N worker enclaves go one per node, an aggregator beside them; they attest one another in the
enclaves before any data moves; the owner's records travel encrypted, partials under the
attested channels, the result under the owner's key, and it must equal the single-VM
computation. Ray must stay on 127.0.0.1: as root the demo re-runs itself in a network
namespace with only ``lo``; otherwise it explains and refuses.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console

from ..errors import EnclaveKitError
from . import netns

__all__ = ["run_nodes"]

SIZES = ("Standard_DC1s_v2", "Standard_DC2s_v2", "Standard_DC4s_v2")


def run_nodes(console: Console, count: int, examples: Path | None = None) -> int:
    """Run the partitioned demo on ``count`` nodes; 0 when the result matches, else 1."""
    if count < 1:
        raise EnclaveKitError(f"--nodes must be at least 1, found {count}")
    if netns.loopback_only():
        return _inside(console, count, examples)
    why = netns.can_isolate()
    if why:
        raise EnclaveKitError(
            "the Ray demo must keep Ray on 127.0.0.1, and Ray binds the machine's interface "
            f"address unless the network namespace has only lo; {why} (or run it inside "
            "'unshare --net' with lo up yourself)")
    argv = ["-m", "enclavekit.ray.demo", str(count)]
    if examples is not None:
        argv.append(str(examples))
    console.print(f"[dim]running in a network namespace with only lo: "
                  f"{' '.join(netns.python_isolated(argv)[:3])} ...[/]")
    return subprocess.run(netns.python_isolated(argv), check=False).returncode


def _inside(console: Console, count: int, examples: Path | None) -> int:
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
    from .mesh import job_roots
    from .placement import place, place_spread

    started = time.monotonic()
    app = (examples / "ray_stats") if examples is not None else app_dir()
    sizes = [SIZES[i % len(SIZES)] for i in range(count)]
    console.rule(f"[bold]enclavekit demo on Ray: joint statistics over {count} node(s)")
    with tempfile.TemporaryDirectory(prefix="enclavekit-ray-demo-") as tmp:
        temp = Path(f"/tmp/ekrd-{os.getpid()}")
        with LocalCluster(sizes, Path(tmp) / "home", temp_dir=temp) as cluster:
            console.print(f"▸ {count} Ray node(s) on 127.0.0.1, one VM each: " + ", ".join(
                f"{vm} ({size})" for vm, size in zip(cluster.vm_names, sizes, strict=True)))
            # the job's root (the data directory's emulation root) measured into the build
            pinned = pin_roots(job_roots(cluster.data_dir), Path(tmp) / "ray_stats", app)
            image = enclavekit.build(pinned).sign(enclavekit.SigningKey.generate())
            workers = place_spread(image, count)
            aggregator = place(image)
            try:
                console.print(f"▸ ray_stats (the job's root measured in; MRENCLAVE "
                              f"{image.mrenclave.hex()[:16]}…) placed by "
                              f"its EPC need: workers on {', '.join(w.vm for w in workers)}; "
                              f"aggregator on {aggregator.vm}")
                rows = all_records()
                result = partitioned_job(workers, aggregator, cluster.data_dir, rows=rows)
                console.print(f"▸ {len(result.mesh.fingerprints)} quote verifications inside "
                              "the enclaves (DCAP, the job's root, same MRENCLAVE, not DEBUG); "
                              "every channel's two sides agree")
                console.print(f"▸ {len(rows)} records partitioned over {count} worker(s), "
                              "encrypted; partials sealed to the aggregator; result "
                              "encrypted for the owner")
            finally:
                for handle in [*workers, aggregator]:
                    handle.close()
        shutil.rmtree(temp, ignore_errors=True)
        reference = reference_statistics(rows)
        for name, stats in sorted(result.stats.items()):
            console.print(f"  {name}: {stats}", highlight=False)
        if result.stats != reference:
            console.print("[red]FAIL: the partitioned result differs from the single-VM "
                          "computation[/]")
            return 1
        console.print("  [green]✓[/] equals the single-VM result")
    console.rule(f"[bold green]Ray demo complete in {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_nodes(Console(highlight=False, soft_wrap=True), int(sys.argv[1]),
                               Path(sys.argv[2]) if len(sys.argv) > 2 else None))
