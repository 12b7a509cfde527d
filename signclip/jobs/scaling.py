"""Asking an autoscaling Ray cluster for GPUs before a job plans on them.

A job plans its stages on the cluster as it is when it starts (``signclip.embedding.resources.plan``), so on a
cluster whose GPU group scales from zero (``cluster/kuberay/raycluster.yaml``, ``cluster/aws.yaml``) it would
find no GPU. :func:`wait_for_gpus` asks the autoscaler for them (``ray.autoscaler.sdk.request_resources``) and
waits until they have joined. The request is withdrawn as soon as the wait ends, so nothing keeps the nodes
once the job's own actors are gone (and a job killed later leaves no standing request behind).
"""

from __future__ import annotations

import logging
import time

log = logging.getLogger(__name__)

POLL_S = 5.0  # between looks at the cluster's resources while waiting


def cluster_gpus() -> float:
    """The GPUs of the live nodes of the Ray cluster this process is connected to."""
    import ray

    return float(ray.cluster_resources().get("GPU", 0))


def wait_for_gpus(wanted: int, timeout_s: float, poll_s: float = POLL_S) -> float:
    """Returns once the cluster has ``wanted`` GPUs (at once when it has them already), asking its autoscaler
    for one-GPU bundles meanwhile; returns the GPUs it then has. Raises ``TimeoutError``, naming what it has
    and what was asked for, when they have not joined after ``timeout_s`` seconds."""
    from ray.autoscaler.sdk import request_resources

    have = cluster_gpus()
    if have >= wanted:
        return have
    request_resources(bundles=[{"GPU": 1}] * wanted)
    log.info("asked the cluster's autoscaler for %d GPUs (it has %g); waiting up to %g s for them", wanted, have,
             timeout_s)
    started = time.monotonic()
    try:
        while True:
            have = cluster_gpus()
            waited = time.monotonic() - started
            if have >= wanted:
                log.info("%g GPUs after %.0f s", have, waited)
                return have
            if waited >= timeout_s:
                raise TimeoutError(f"--wait-for-gpus {timeout_s:g}: the cluster has {have:g} of the {wanted} GPUs "
                                   f"asked for after {waited:.0f} s (has it a GPU node group its autoscaler can "
                                   "grow, with room for that many?)")
            time.sleep(min(poll_s, max(0.0, timeout_s - waited)))
    finally:
        request_resources(bundles=[])
