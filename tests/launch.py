"""Launch a command the way a multi-node job does, with every "node" on this machine.

``torchrun_nodes`` starts one ``torchrun`` per node with ``--nnodes N --node_rank R`` and a
static rendezvous at 127.0.0.1 (what ``--master_addr HOST`` does across machines), so the
multi-node path (process groups spanning launchers, global ranks from node rank x processes per
node) runs for real on one CPU machine.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun_nodes(command: list[str], nodes: int = 2, per_node: int = 1,
                   timeout: float = 600) -> list[subprocess.CompletedProcess]:
    """Run ``command`` (a console script and its arguments) as ``nodes`` launchers of
    ``per_node`` processes each; returns every launcher's completed process (stdout, stderr)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    port = free_port()
    procs = [subprocess.Popen(
        [str(BIN / "torchrun"), "--nnodes", str(nodes), "--nproc_per_node", str(per_node),
         "--node_rank", str(rank), "--master_addr", "127.0.0.1", "--master_port", str(port),
         *command], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for rank in range(nodes)]
    done = []
    try:
        for p in procs:
            out, err = p.communicate(timeout=timeout)
            done.append(subprocess.CompletedProcess(p.args, p.returncode, out, err))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    return done
