"""Network namespaces for the partition faults (cluster-design 3.2): one namespace per broker,
each with a veth pair to one bridge in the root namespace, where the test's clients live.

Owns: creating and deleting that network (names `jff<pid>-<i>`, bridge `jffb<pid>`, a /24 in
10.77-10.126.x.0 not already routed here, broker i at .i, the bridge at .254) and the cuts:
  cut(a, b)          both directions between two namespaces
  cut_one_way(a, b)  packets from a to b are lost, b to a still arrive
  heal()             removes every cut
Two ways to lose packets, both set from inside the sender's namespace:
  "silent"     a permanent neighbour entry mapping the peer's address to a MAC nobody owns,
               so frames go out and are dropped by the bridge/peers: the sender sees nothing,
               TCP retransmits and times out, as on a real partition (the default);
  "blackhole"  `ip route add blackhole PEER/32`: the sender's own sends fail at once with
               EINVAL (the issue's `ip route blackhole`; faster to notice than a real cut).
Delay uses `tc netem` when the kernel has it (`delay()` raises NetemUnavailable otherwise:
this machine's kernel has no sch_netem module).
Must never: touch interfaces or namespaces it did not create (stale ones of dead test
processes, recognised by the `jff<pid>` prefix, are removed), or leave anything behind
after `close()`.
"""

import ipaddress
import os
import re
import subprocess

PREFIX = "jff"
BOGUS_MAC = "02:00:00:00:00:99"


class NetnsUnavailable(Exception):
    pass


class NetnsCommandFailed(Exception):
    pass


class NetemUnavailable(Exception):
    pass


def _run(*args, check=True):
    proc = subprocess.run(list(args), capture_output=True, text=True, timeout=20)
    if check and proc.returncode != 0:
        raise NetnsCommandFailed(f"{' '.join(args)}: exit {proc.returncode}: {proc.stderr.strip()}")
    return proc


def availability() -> str | None:
    """None if namespaces, veths and bridges can be made here, else why not."""
    if os.geteuid() != 0:
        return "network namespaces need root (ip netns add)"
    try:
        _run("ip", "-V")
    except (FileNotFoundError, NetnsCommandFailed) as exc:
        return f"no iproute2 `ip`: {exc}"
    probe = f"{PREFIX}{os.getpid()}-probe"
    try:
        _run("ip", "netns", "add", probe)
    except NetnsCommandFailed as exc:
        return f"ip netns add is not permitted here: {exc}"
    try:
        _run("ip", "link", "add", f"{PREFIX}p{os.getpid() % 100000}", "type", "bridge")
        _run("ip", "link", "del", f"{PREFIX}p{os.getpid() % 100000}")
    except NetnsCommandFailed as exc:
        return f"cannot create a bridge: {exc}"
    finally:
        _run("ip", "netns", "del", probe, check=False)
    return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def remove_stale():
    """Namespaces and bridges of earlier test processes that are gone."""
    out = _run("ip", "netns", "list", check=False).stdout
    for line in out.splitlines():
        name = line.split()[0] if line.split() else ""
        m = re.match(rf"^{PREFIX}(\d+)-", name)
        if m and not _pid_alive(int(m.group(1))):
            _run("ip", "netns", "del", name, check=False)
    links = _run("ip", "-o", "link", "show", "type", "bridge", check=False).stdout
    for m in re.finditer(rf"\d+: ({PREFIX}b(\d+))[:@]", links):
        if not _pid_alive(int(m.group(2))):
            _run("ip", "link", "del", m.group(1), check=False)


def _free_subnet() -> ipaddress.IPv4Network:
    routes = _run("ip", "-4", "route", "show", check=False).stdout + _run("ip", "-4", "addr", check=False).stdout
    used = set(re.findall(r"\b10\.(\d+)\.(\d+)\.", routes))
    base = os.getpid()
    for i in range(50 * 250):
        second = 77 + (base + i) % 50
        third = 1 + (base // 50 + i) % 250
        if (str(second), str(third)) not in used:
            return ipaddress.ip_network(f"10.{second}.{third}.0/24")
    raise NetnsUnavailable("no free 10.x.y.0/24 subnet")


class Network:
    """`n` namespaces on one bridge. Node i (1-based) is `ns(i)` at `ip(i)`."""

    def __init__(self, n: int):
        reason = availability()
        if reason:
            raise NetnsUnavailable(reason)
        remove_stale()
        self.n = n
        self.tag = f"{PREFIX}{os.getpid()}"
        self.bridge = f"{PREFIX}b{os.getpid()}"
        self.subnet = _free_subnet()
        self.cuts = set()  # (src, dst, mode)
        self.delays = set()
        self._created = []
        try:
            self._create()
        except BaseException:
            self.close()
            raise

    def ns(self, i: int) -> str:
        return f"{self.tag}-{i}"

    def ip(self, i: int) -> str:
        return str(self.subnet.network_address + i)

    @property
    def bridge_ip(self) -> str:
        return str(self.subnet.network_address + 254)

    def _veth(self, i):  # both ends <= 15 characters
        return f"{PREFIX}{os.getpid() % 100000}v{i}", f"{PREFIX}{os.getpid() % 100000}n{i}"

    def _create(self):
        _run("ip", "link", "add", self.bridge, "type", "bridge")
        self._created.append(("link", self.bridge))
        _run("ip", "addr", "add", f"{self.bridge_ip}/24", "dev", self.bridge)
        _run("ip", "link", "set", self.bridge, "up")
        for i in range(1, self.n + 1):
            ns = self.ns(i)
            outer, inner = self._veth(i)
            _run("ip", "netns", "add", ns)
            self._created.append(("netns", ns))
            _run("ip", "link", "add", outer, "type", "veth", "peer", "name", inner)
            self._created.append(("link", outer))
            _run("ip", "link", "set", inner, "netns", ns)
            _run("ip", "link", "set", outer, "master", self.bridge)
            _run("ip", "link", "set", outer, "up")
            _run("ip", "-n", ns, "addr", "add", f"{self.ip(i)}/24", "dev", inner)
            _run("ip", "-n", ns, "link", "set", inner, "up")
            _run("ip", "-n", ns, "link", "set", "lo", "up")

    def prefix(self, i: int) -> list:
        """The command prefix that runs a program inside node i's namespace."""
        return ["ip", "netns", "exec", self.ns(i)]

    # --- faults -------------------------------------------------------------------------------

    def cut_one_way(self, src: int, dst: int, mode: str = "silent"):
        """Packets from node `src` to node `dst` are lost from now on."""
        ns = self.ns(src)
        if mode == "silent":
            _run("ip", "-n", ns, "neigh", "replace", self.ip(dst), "lladdr", BOGUS_MAC, "nud", "permanent",
                 "dev", self._veth(src)[1])
        elif mode == "blackhole":
            _run("ip", "-n", ns, "route", "replace", "blackhole", f"{self.ip(dst)}/32")
        else:
            raise ValueError(mode)
        self.cuts.add((src, dst, mode))

    def cut(self, a: int, b: int, mode: str = "silent"):
        self.cut_one_way(a, b, mode)
        self.cut_one_way(b, a, mode)

    def isolate(self, a: int, mode: str = "silent"):
        """Node `a` from every other node (the clients in the root namespace still reach it)."""
        for b in range(1, self.n + 1):
            if b != a:
                self.cut(a, b, mode)

    def heal(self):
        for src, dst, mode in sorted(self.cuts):
            if mode == "silent":
                _run("ip", "-n", self.ns(src), "neigh", "del", self.ip(dst), "dev", self._veth(src)[1], check=False)
            else:
                _run("ip", "-n", self.ns(src), "route", "del", "blackhole", f"{self.ip(dst)}/32", check=False)
        self.cuts.clear()
        for i in sorted(self.delays):
            _run("ip", "netns", "exec", self.ns(i), "tc", "qdisc", "del", "dev", self._veth(i)[1], "root", check=False)
        self.delays.clear()

    def delay(self, i: int, ms: int, jitter_ms: int = 0):
        """Every packet node i sends waits `ms` (tc netem); NetemUnavailable without sch_netem."""
        args = ["ip", "netns", "exec", self.ns(i), "tc", "qdisc", "replace", "dev", self._veth(i)[1], "root",
                "netem", "delay", f"{ms}ms"]
        if jitter_ms:
            args.append(f"{jitter_ms}ms")
        proc = _run(*args, check=False)
        if proc.returncode != 0:
            raise NetemUnavailable(f"tc netem not available here: {proc.stderr.strip()}")
        self.delays.add(i)

    def close(self):
        for kind, name in reversed(self._created):
            if kind == "netns":
                _run("ip", "netns", "del", name, check=False)
            else:
                _run("ip", "link", "del", name, check=False)
        self._created.clear()


def netem_availability() -> str | None:
    """None if `tc netem` works here, else why not (tried on a throwaway veth pair)."""
    if availability() is not None:
        return availability()
    a, b = f"{PREFIX}{os.getpid() % 100000}ta", f"{PREFIX}{os.getpid() % 100000}tb"
    try:
        _run("ip", "link", "add", a, "type", "veth", "peer", "name", b)
        proc = _run("tc", "qdisc", "add", "dev", a, "root", "netem", "delay", "10ms", check=False)
        return None if proc.returncode == 0 else f"tc netem not available here: {proc.stderr.strip()}"
    except (FileNotFoundError, NetnsCommandFailed) as exc:
        return f"tc netem not available here: {exc}"
    finally:
        _run("ip", "link", "del", a, check=False)
