"""A throw-away single-node SLURM cluster on 127.0.0.1 with fake GPUs, for the SLURM test.

Everything (slurm.conf, state, spool, logs, munge key and socket, MariaDB data) lives in one
directory given by the caller; the daemons (munged, mariadbd, slurmdbd, slurmctld, slurmd) run as
plain processes, since the test machines have no systemd, and are stopped by their PIDs.

Command line, for working on the SLURM test by hand (as root):

    python tests/slurm/slurm_cluster.py install          # apt-get the four Debian packages
    python tests/slurm/slurm_cluster.py up "$(mktemp -d)"  # start; prints `export SLURM_CONF=...`
    python tests/slurm/slurm_cluster.py down DIR         # stop the daemons recorded in DIR/pids.json
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

# The Debian packages of a SLURM cluster with accounting (sacct needs slurmdbd and a database).
PACKAGES = ("slurm-wlm", "munge", "slurmdbd", "mariadb-server")
CLUSTER_NAME = "lenspipe"
NODE_NAME = "lenspipe1"
ACCOUNT = "lenspipe_test"
CPU_PARTITION = "cpu"
GPU_PARTITION = "gpu"
GPU_TYPE = "fake"
# Device files that stand in for GPUs: SLURM drops a GPU without one (and the node goes INVAL).
# One per fake GPU, so the tiny study's four training jobs can hold one each at the same time.
FAKE_GPU_FILES = ("/dev/null", "/dev/zero", "/dev/full", "/dev/urandom")
# Daemons in start order; they are stopped in the reverse order.
DAEMONS = ("munged", "mariadbd", "slurmdbd", "slurmctld", "slurmd")
# Where SLURM clients look when SLURM_CONF is unset. The slurm-jobstep plugin (0.6.1) removes
# SLURM_CONF from the environment of the `srun` it starts inside each job, so that srun only finds
# the test cluster through this path: the cluster links it to its slurm.conf while it runs.
DEFAULT_CONF = Path("/etc/slurm/slurm.conf")
CONF_HEADER = "# Written by tests/slurm/slurm_cluster.py: a single-node test cluster with fake GPUs."


class ClusterError(RuntimeError):
    """The cluster could not be installed or started; the message names the step and its log."""


def install_packages(log: Path | None = None) -> None:
    """Install SLURM, munge, slurmdbd and MariaDB with apt-get (root only; a few seconds when cached)."""
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    out = log.open("a") if log else subprocess.DEVNULL
    try:
        for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", *PACKAGES]):
            if subprocess.run(cmd, env=env, stdout=out, stderr=subprocess.STDOUT).returncode != 0:
                raise ClusterError(f"`{' '.join(cmd)}` failed" + (f" (log: {log})" if log else ""))
    finally:
        if log:
            out.close()


def missing_programs() -> list[str]:
    """Programs of the cluster that are not on PATH (empty once the packages are installed)."""
    programs = (
        "munged",
        "mariadbd",
        "mariadb-install-db",
        "slurmdbd",
        "slurmctld",
        "slurmd",
        "sbatch",
        "sacct",
    )
    search = os.environ.get("PATH", "") + ":/usr/sbin:/sbin"
    return [p for p in programs if shutil.which(p, path=search) is None]


def _free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _program(name: str) -> str:
    """Absolute path of a daemon or tool (sbin is not always on root's PATH)."""
    path = shutil.which(name, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")
    if path is None:
        raise ClusterError(f"{name} not found: install {', '.join(PACKAGES)}")
    return path


def _memory_mb() -> int:
    """Physical memory of this machine in MB (from /proc/meminfo)."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024
    return 4096


@dataclass
class Cluster:
    """A running test cluster: its directory, client environment and daemon PIDs."""

    root: Path
    link_default_conf: bool = True
    ports: dict[str, int] = field(default_factory=dict)
    pids: dict[str, int] = field(default_factory=dict)
    procs: dict[str, subprocess.Popen] = field(default_factory=dict, repr=False)

    @property
    def conf(self) -> Path:
        """slurm.conf of this cluster (clients find it through SLURM_CONF)."""
        return self.root / "etc" / "slurm.conf"

    @property
    def env(self) -> dict[str, str]:
        """Environment for SLURM clients (sbatch, sacct, ...) talking to this cluster."""
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    def log(self, daemon: str) -> Path:
        """Log file of one daemon."""
        return self.root / "log" / f"{daemon}.log"

    def run(self, *cmd: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess:
        """Run a SLURM client command against this cluster and return its captured output."""
        proc = subprocess.run(list(cmd), env=self.env, capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise ClusterError(f"`{' '.join(cmd)}` failed ({proc.returncode}): {proc.stderr.strip()}")
        return proc

    # --- start ----------------------------------------------------------------------------------

    def _spawn(self, name: str, cmd: list[str], env: Mapping[str, str] | None = None) -> None:
        """Start one daemon in the foreground of its own session, its output into its log."""
        with self.log(name).open("ab") as out:
            proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=dict(env or self.env),
                start_new_session=True,
            )
        self.procs[name] = proc
        self.pids[name] = proc.pid
        (self.root / "pids.json").write_text(json.dumps(self.pids, indent=1))

    def _wait(self, what: str, daemon: str, ready, timeout: float = 30.0) -> None:
        """Poll `ready()` until it is true; fail with the daemon's log tail if it dies or times out."""
        deadline = time.monotonic() + timeout
        problem = f"not ready after {timeout:.0f} s"
        while time.monotonic() < deadline:
            proc = self.procs.get(daemon)
            if proc is not None and proc.poll() is not None:
                problem = f"exited with status {proc.returncode}"
                break
            try:
                if ready():
                    return
            except (OSError, subprocess.SubprocessError):
                pass
            time.sleep(0.2)
        tail = (
            "\n".join(self.log(daemon).read_text(errors="replace").splitlines()[-15:])
            if self.log(daemon).exists()
            else ""
        )
        raise ClusterError(f"{what}: {problem} (log {self.log(daemon)}):\n{tail}")

    def _write_configs(self) -> None:
        """slurm.conf, gres.conf, slurmdbd.conf and the munge key, all under root."""
        r = self.root
        munge_socket = r / "munge" / "munge.socket"
        auth = f"AuthType=auth/munge\nAuthInfo=socket={munge_socket}\n"
        # More CPUs than the machine has (SlurmdParameters=config_overrides lets slurmd believe it):
        # rules ask for up to 4 threads, and the tiny jobs mostly wait anyway.
        cpus = max(16, os.cpu_count() or 1)
        # Memory likewise (nothing enforces it without cgroups): four 3 GB training jobs fit at once.
        memory = max(32000, _memory_mb())
        hostname = socket.gethostname()
        (r / "etc" / "slurm.conf").write_text(
            f"""{CONF_HEADER}
ClusterName={CLUSTER_NAME}
SlurmctldHost={hostname}(127.0.0.1)
SlurmctldPort={self.ports["slurmctld"]}
SlurmdPort={self.ports["slurmd"]}
SlurmUser=root
SlurmdUser=root
{auth}StateSaveLocation={r / "state"}
SlurmdSpoolDir={r / "spool"}
SlurmctldPidFile={r / "run" / "slurmctld.pid"}
SlurmdPidFile={r / "run" / "slurmd.pid"}
SlurmctldLogFile={self.log("slurmctld")}
SlurmdLogFile={self.log("slurmd")}
SlurmctldDebug=info
SlurmdDebug=info
# No cgroups on the test machines: plain process tracking, no task binding.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# Without a default, a job that asks for no memory takes the whole node.
DefMemPerCPU=500
SchedulerType=sched/backfill
ReturnToService=2
SlurmdParameters=config_overrides
MinJobAge=300
# Memory limits enforced without cgroups: slurmstepd samples each step's memory every second and kills a
# step that exceeds the job's --mem (state OUT_OF_MEMORY), as a cluster's cgroups would.
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=task=1
JobAcctGatherParams=OverMemoryKill,UsePss
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort={self.ports["slurmdbd"]}
# Connections to slurmdbd take their munge socket from here, not from AuthInfo.
AccountingStoragePass={munge_socket}
AccountingStorageTRES=gres/gpu
# sacct shows the plugin's job comments (rule_<rule>_wildcards_<...>): the test maps jobs to rules by them.
AccountingStoreFlags=job_comment
AccountingStorageEnforce=associations
GresTypes=gpu
NodeName={NODE_NAME} NodeHostname={hostname} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={memory} \
Gres=gpu:{GPU_TYPE}:{len(FAKE_GPU_FILES)} State=UNKNOWN
PartitionName={CPU_PARTITION} Nodes={NODE_NAME} Default=YES MaxTime=INFINITE State=UP
PartitionName={GPU_PARTITION} Nodes={NODE_NAME} MaxTime=INFINITE State=UP
"""
        )
        (r / "etc" / "gres.conf").write_text(
            "AutoDetect=off\n"
            + "".join(f"NodeName={NODE_NAME} Name=gpu Type={GPU_TYPE} File={dev}\n" for dev in FAKE_GPU_FILES)
        )
        dbd = r / "etc" / "slurmdbd.conf"
        dbd.write_text(
            f"""{auth}DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort={self.ports["slurmdbd"]}
SlurmUser=root
PidFile={r / "run" / "slurmdbd.pid"}
LogFile={self.log("slurmdbd")}
DebugLevel=info
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort={self.ports["mariadbd"]}
StorageUser=root
StorageLoc=slurm_acct_db
"""
        )
        dbd.chmod(0o600)  # slurmdbd refuses a config that others can read
        key = r / "munge" / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)

    def start(self) -> Cluster:
        """Write the configs and start the five daemons; return once the node is idle."""
        for sub in ("etc", "state", "spool", "run", "log", "munge", "db"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        (self.root / "munge").chmod(0o700)
        self.ports = {name: _free_port() for name in ("mariadbd", "slurmdbd", "slurmctld", "slurmd")}
        self._write_configs()
        r = self.root
        munge_socket = r / "munge" / "munge.socket"
        self._spawn(
            "munged",
            [
                _program("munged"), "--foreground", "--force",
                f"--key-file={r / 'munge' / 'munge.key'}", f"--socket={munge_socket}",
                f"--pid-file={r / 'run' / 'munged.pid'}", f"--log-file={self.log('munged')}",
                f"--seed-file={r / 'munge' / 'munged.seed'}",
            ],
        )  # fmt: skip
        datadir = r / "db" / "data"
        if not datadir.exists():
            init = subprocess.run(
                [
                    _program("mariadb-install-db"), "--no-defaults", f"--datadir={datadir}", "--user=root",
                    "--auth-root-authentication-method=normal", "--skip-test-db",
                ],
                capture_output=True, text=True,
            )  # fmt: skip
            if init.returncode != 0:
                raise ClusterError(f"mariadb-install-db failed: {init.stdout[-2000:]}{init.stderr[-2000:]}")
        self._spawn(
            "mariadbd",
            [
                _program("mariadbd"), "--no-defaults", f"--datadir={datadir}", "--user=root",
                f"--socket={r / 'db' / 'mysqld.sock'}", f"--port={self.ports['mariadbd']}",
                "--bind-address=127.0.0.1", f"--pid-file={r / 'run' / 'mariadbd.pid'}",
                "--skip-log-bin", "--innodb-buffer-pool-size=64M", "--innodb-flush-log-at-trx-commit=0",
            ],
        )  # fmt: skip
        self._wait(
            "MariaDB",
            "mariadbd",
            lambda: (r / "db" / "mysqld.sock").exists() and _connects(self.ports["mariadbd"]),
        )
        self._wait("munged", "munged", munge_socket.exists)
        # slurmdbd reads slurmdbd.conf from the directory of SLURM_CONF.
        self._spawn("slurmdbd", [_program("slurmdbd"), "-D"])
        self._wait("slurmdbd", "slurmdbd", lambda: _connects(self.ports["slurmdbd"]))
        user = getpass.getuser()
        for args in (
            ("add", "cluster", CLUSTER_NAME),
            ("add", "account", ACCOUNT, f"cluster={CLUSTER_NAME}", "description=lenspipe SLURM test"),
            ("add", "user", user, f"account={ACCOUNT}", f"cluster={CLUSTER_NAME}"),
        ):
            self.run("sacctmgr", "-i", *args)
        self._spawn("slurmctld", [_program("slurmctld"), "-D", "-i"])
        self._wait(
            "slurmctld", "slurmctld", lambda: self.run("scontrol", "ping", check=False).returncode == 0
        )
        self._spawn("slurmd", [_program("slurmd"), "-D", "-N", NODE_NAME])
        self._wait("slurmd", "slurmd", self._node_idle)
        if self.link_default_conf:
            self._link_default_conf()
        return self

    def _link_default_conf(self) -> None:
        """Point /etc/slurm/slurm.conf at this cluster's slurm.conf (refused if a real one is there)."""
        if DEFAULT_CONF.is_symlink() and (not DEFAULT_CONF.exists() or _is_test_conf(DEFAULT_CONF)):
            DEFAULT_CONF.unlink()  # left behind by a test cluster that was killed before it stopped
        if DEFAULT_CONF.exists() or DEFAULT_CONF.is_symlink():
            raise ClusterError(
                f"{DEFAULT_CONF} exists: this machine has a SLURM configuration of its own, "
                "which the test cluster will not replace"
            )
        DEFAULT_CONF.parent.mkdir(parents=True, exist_ok=True)
        DEFAULT_CONF.symlink_to(self.conf)
        (self.root / "linked_conf").write_text(str(DEFAULT_CONF))

    def _node_idle(self) -> bool:
        """True once the node has registered and takes jobs."""
        state = self.run("sinfo", "-h", "-n", NODE_NAME, "-o", "%T", check=False).stdout.strip()
        return state.startswith("idle")

    # --- stop -----------------------------------------------------------------------------------

    def stop(self, timeout: float = 10.0) -> None:
        """Cancel all jobs, then stop each daemon by its PID (TERM, then KILL) in reverse start order."""
        if "slurmctld" in self.pids and _alive(self.pids["slurmctld"]):
            try:
                self.run("scancel", f"--user={getpass.getuser()}", check=False, timeout=10)
            except subprocess.SubprocessError:
                pass
        for name in reversed(DAEMONS):
            pid = self.pids.get(name)
            if pid is None:
                continue
            _stop_pid(pid, self.procs.get(name), timeout)
        self.pids.clear()
        self.procs.clear()
        linked = self.root / "linked_conf"
        if linked.exists():
            if DEFAULT_CONF.is_symlink() and Path(os.readlink(DEFAULT_CONF)) == self.conf:
                DEFAULT_CONF.unlink()
            linked.unlink()
        pids_file = self.root / "pids.json"
        if pids_file.exists():
            pids_file.unlink()


def _is_test_conf(path: Path) -> bool:
    """True if `path` is a slurm.conf written by this module (not a real cluster's)."""
    try:
        with path.open() as f:
            return f.readline().startswith(CONF_HEADER)
    except OSError:
        return False


def _connects(port: int) -> bool:
    """True if something accepts TCP connections on 127.0.0.1:port."""
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _alive(pid: int) -> bool:
    """True if process `pid` exists (and is not a zombie of ours)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (OSError, IndexError):
        return False


def _stop_pid(pid: int, proc: subprocess.Popen | None, timeout: float) -> None:
    """SIGTERM one daemon, SIGKILL it if it is still there after `timeout` seconds, and reap it."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if proc is not None and proc.poll() is not None:
                return
            if proc is None and not _alive(pid):
                return
            time.sleep(0.1)
    if proc is not None:
        proc.poll()


def start_cluster(root: Path) -> Cluster:
    """Start a test cluster under `root`; on failure stop what was started and re-raise."""
    cluster = Cluster(root=Path(root).resolve())
    try:
        return cluster.start()
    except BaseException:
        cluster.stop()
        raise


def stop_recorded(root: Path) -> None:
    """Stop the daemons whose PIDs a command-line `up` recorded in root/pids.json."""
    pids_file = Path(root) / "pids.json"
    if not pids_file.exists():
        return
    cluster = Cluster(root=Path(root).resolve(), pids=json.loads(pids_file.read_text()))
    cluster.stop()


def main(argv: list[str] | None = None) -> int:
    """Command line: install | up DIR | down DIR."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("install", help="apt-get install " + " ".join(PACKAGES))
    for name in ("up", "down"):
        sub.add_parser(name).add_argument("root", type=Path, help="directory for configs, state, logs, DB")
    args = parser.parse_args(argv)
    if args.command == "install":
        install_packages()
    elif args.command == "up":
        cluster = start_cluster(args.root)
        print(f"export SLURM_CONF={cluster.conf}")
        print(f"# daemons: {json.dumps(cluster.pids)}; stop with: {sys.argv[0]} down {args.root}")
    else:
        stop_recorded(args.root)
    return 0


if __name__ == "__main__":
    sys.exit(main())
