"""A one-node SLURM cluster on loopback, in a temporary directory, for the SLURM backend's tests.

munged with a generated key and its own socket, pid and log files; a generated slurm.conf with
free ports (not SLURM's 6817 / 6818), state and spool directories in the temporary directory;
slurmctld and slurmd started as daemons and stopped through their pid files. The same steps try
the backend on a laptop (docs/grids.md). Needs root (slurmd starts jobs as their user) and the
Debian packages slurmctld, slurmd, slurm-client and munge.

    python tests/slurm_cluster.py DIR      # start one, print the SLURM_CONF to export; Ctrl-C stops it
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "squeue", "scontrol", "sinfo", "scancel", "srun")
PARTITION = "debug"
MAX_TIME_MIN = 60  # the partition's MaxTime: a longer --slurm-time is refused before submitting


def unavailable() -> str | None:
    """Why a cluster cannot be started here, or None."""
    missing = [b for b in DAEMONS + CLIENTS if shutil.which(b) is None and not Path(f"/usr/sbin/{b}").exists()]
    if missing:
        return f"SLURM or munge binaries missing ({', '.join(missing)}): apt-get install slurmctld slurmd " \
               "slurm-client munge"
    if os.geteuid() != 0:
        return "slurmd must run as root to start jobs as their user; the SLURM tests need root"
    return None


def _free_ports(n: int) -> list[int]:
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


def _binary(name: str) -> str:
    return shutil.which(name) or f"/usr/sbin/{name}"


class SlurmCluster:
    """Start with :meth:`start`, stop with :meth:`stop`; ``env`` is what a client needs (SLURM_CONF)."""

    def __init__(self, root: Path, cpus: int = 2):
        self.root = Path(root)
        self.cpus = cpus
        self.node = socket.gethostname().split(".")[0]
        self.conf = self.root / "slurm.conf"
        self.munge_socket = self.root / "munge" / "munge.socket"
        self.env = {"SLURM_CONF": str(self.conf)}
        self._pid_files = {"slurmd": self.root / "slurmd.pid", "slurmctld": self.root / "slurmctld.pid",
                           "munged": self.root / "munge" / "munged.pid"}

    def start(self, timeout: float = 60.0) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        try:
            self._start_munge()
            self._write_conf()
            env = {**os.environ, **self.env}
            for daemon in ("slurmctld", "slurmd"):
                extra = ["-c"] if daemon == "slurmctld" else []  # -c: no state from a previous cluster
                subprocess.run([_binary(daemon), "-f", str(self.conf), *extra], env=env, check=True,
                               capture_output=True, text=True, timeout=30)
            self._wait_idle(timeout)
        except BaseException:
            self.stop()
            raise

    def _start_munge(self) -> None:
        d = self.munge_socket.parent
        d.mkdir(mode=0o700, exist_ok=True)
        key = d / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o600)
        subprocess.run([_binary("munged"), "--force", f"--socket={self.munge_socket}", f"--key-file={key}",
                        f"--pid-file={self._pid_files['munged']}", f"--log-file={d / 'munged.log'}",
                        f"--seed-file={d / 'munged.seed'}"], check=True, capture_output=True, text=True, timeout=30)

    def _write_conf(self) -> None:
        ctld_port, slurmd_port = _free_ports(2)
        mem_mb = int(int(Path("/proc/meminfo").read_text().split()[1]) / 1024 * 0.8)
        self.mem_mb = mem_mb
        (self.root / "state").mkdir(exist_ok=True)
        (self.root / "spool").mkdir(exist_ok=True)
        r = self.root
        self.conf.write_text("\n".join([
            "ClusterName=trpobench",
            f"SlurmctldHost={self.node}(127.0.0.1)",
            f"SlurmctldPort={ctld_port}",
            f"SlurmdPort={slurmd_port}",
            "SlurmUser=root",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            # cred_expire also sets how long a requeued job waits before it may start again (default 120 s)
            f"AuthInfo=socket={self.munge_socket},cred_expire=5",
            f"StateSaveLocation={r / 'state'}",
            f"SlurmdSpoolDir={r / 'spool'}",
            f"SlurmctldPidFile={self._pid_files['slurmctld']}",
            f"SlurmdPidFile={self._pid_files['slurmd']}",
            f"SlurmctldLogFile={r / 'slurmctld.log'}",
            f"SlurmdLogFile={r / 'slurmd.log'}",
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_CPU_Memory",
            "DefMemPerCPU=1000",  # without it a job holds all of the node's memory, and jobs run one at a time
            "SchedulerType=sched/backfill",
            "SchedulerParameters=sched_interval=1",
            "MpiDefault=none",
            "JobAcctGatherType=jobacct_gather/none",
            "AccountingStorageType=accounting_storage/none",
            "JobCompType=jobcomp/none",
            "ReturnToService=2",
            "KillWait=10",  # seconds between SIGTERM and SIGKILL: a run checkpoints in between
            "MinJobAge=600",  # finished jobs stay visible to squeue for this long
            "PlugStackConfig=/dev/null",
            f"NodeName={self.node} NodeAddr=127.0.0.1 CPUs={self.cpus} RealMemory={mem_mb} State=UNKNOWN",
            f"PartitionName={PARTITION} Nodes={self.node} Default=YES MaxTime={MAX_TIME_MIN} State=UP",
            "",
        ]))

    def _wait_idle(self, timeout: float) -> None:
        env = {**os.environ, **self.env}
        deadline = time.monotonic() + timeout
        state = ""
        while time.monotonic() < deadline:
            res = subprocess.run(["sinfo", "-h", "-N", "-o", "%T"], env=env, capture_output=True, text=True)
            state = res.stdout.strip() or res.stderr.strip()
            if state == "idle":
                return
            time.sleep(0.2)
        raise RuntimeError(f"the SLURM node is not idle after {timeout:.0f} s ({state!r}); "
                           f"logs: {self.root}/slurmctld.log, slurmd.log")

    def stop(self) -> None:
        """Stop the daemons this cluster started (by their pid files), jobs first."""
        env = {**os.environ, **self.env}
        if self._pid_files["slurmctld"].exists():
            subprocess.run(["scancel", "--full", "--user", str(os.getuid())], env=env, capture_output=True, timeout=30)
        for name in ("slurmd", "slurmctld", "munged"):
            pid = _read_pid(self._pid_files[name])
            if pid is not None:
                _terminate(pid)


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _terminate(pid: int, timeout: float = 15.0) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


if __name__ == "__main__":
    import sys

    why = unavailable()
    if why:
        sys.exit(why)
    cluster = SlurmCluster(Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/trpo-bench-slurm").resolve())
    cluster.start()
    print(f"cluster up; in another shell:\n  export SLURM_CONF={cluster.conf}\n  sinfo\nCtrl-C stops it")
    try:
        signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        cluster.stop()
