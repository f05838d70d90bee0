"""The local lab: Debian "VMs" as systemd containers on a private Docker network.

This file is the single definition of the lab image recipe and of the container
settings. The demo (`make demo`) and every molecule scenario call it, so the
hosts they test on are the same.

    lab.py image [--distro bookworm|trixie]
    lab.py up --lab NAME [--distro D] HOST [HOST ...]
    lab.py up --lab NAME --inventory DIR      # hosts and distro from an inventory
    lab.py down --lab NAME
    lab.py status [--lab NAME]

Containers are named `<lab>-<host>`, carry the host name as their hostname and
as a DNS alias on the network `msa-<lab>`, so hosts resolve each other by name.
Standard library only: it runs before any virtualenv exists.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DISTROS = ("bookworm", "trixie")
# Where the lab keeps its SSH key and ssh_config: on the machine, outside any clone.
LAB_HOME = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "msa-platform" / "lab"
SSH_KEY = LAB_HOME / "ssh" / "id_ed25519"
SSH_CONFIG = LAB_HOME / "ssh_config"

DEFAULT_DISTRO = os.environ.get("MSA_LAB_DISTRO", "bookworm")
LABEL = "msa.lab"

# What goes into the base image. Changing anything here changes the image tag,
# which is what makes the cached image rebuild.
RECIPE = {
    "variant": "minbase",
    "packages": [
        "systemd",
        "systemd-sysv",
        "dbus",
        "python3",
        "python3-apt",
        "iproute2",
        "iputils-ping",
        "procps",
        "ca-certificates",
        "sudo",
        "curl",
        "gnupg",
        "netcat-openbsd",
        "less",
        "openssh-server",
    ],
    # Units that cannot work in a container and would leave systemd "degraded".
    "masked_units": [
        "systemd-modules-load.service",
        "systemd-udevd.service",
        "systemd-udevd-control.socket",
        "systemd-udevd-kernel.socket",
        "sys-kernel-config.mount",
        "sys-kernel-debug.mount",
        "sys-kernel-tracing.mount",
        "getty@tty1.service",
        "console-getty.service",
        "systemd-remount-fs.service",
        "systemd-firstboot.service",
    ],
    # The unprivileged account Ansible logs in as over SSH, with passwordless sudo, as on
    # a cloud VM; the lab's public key is added when a host starts (lab.py up).
    "login_user": "msa",
    # Security updates are applied when the image is built, all but one: the smallest
    # package with a pending update is held back, so every converge still proves that
    # unattended-upgrades installs what Debian-Security publishes (and stays quick).
    "patched": "all-but-one",
    "revision": 4,
}

# Installs every pending update but the smallest security one, then leaves no package
# lists behind (a lab host fetches its own, as a fresh VM does).
PATCH_SCRIPT = r"""
set -eu
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
pending=$(apt-get -s upgrade | awk '/^Inst / && /-security/ {print $2}')
keep=""
if [ -n "$pending" ]; then
  keep=$(dpkg-query -W -f '${Installed-Size} ${Package}\n' $pending | sort -n | head -n1 | cut -d' ' -f2)
  apt-mark hold "$keep" >/dev/null
fi
apt-get upgrade -y -qq -o Dpkg::Use-Pty=0 >/dev/null
[ -z "$keep" ] || apt-mark unhold "$keep" >/dev/null
echo "held back for the converge: ${keep:-nothing pending}"
apt-get clean
rm -rf /var/lib/apt/lists
mkdir -p /var/lib/apt/lists/partial
"""

# Every capability name this Docker engine knows, minus SYS_RESOURCE, which the
# sandbox's bounding set lacks (so --privileged fails), and minus PERFMON, BPF
# and CHECKPOINT_RESTORE, which engine 20.10 rejects by name.
CAPABILITIES = [
    "AUDIT_CONTROL",
    "AUDIT_READ",
    "AUDIT_WRITE",
    "BLOCK_SUSPEND",
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "IPC_LOCK",
    "IPC_OWNER",
    "KILL",
    "LEASE",
    "LINUX_IMMUTABLE",
    "MAC_ADMIN",
    "MAC_OVERRIDE",
    "MKNOD",
    "NET_ADMIN",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_RAW",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYSLOG",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_CHROOT",
    "SYS_MODULE",
    "SYS_NICE",
    "SYS_PACCT",
    "SYS_PTRACE",
    "SYS_RAWIO",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "WAKE_ALARM",
]

# systemd as PID 1 needs the host's cgroup tree and writable /run.
RUN_FLAGS = [
    "--security-opt",
    "seccomp=unconfined",
    "--security-opt",
    "apparmor=unconfined",
    "--cgroupns=host",
    "-v",
    "/sys/fs/cgroup:/sys/fs/cgroup:rw",
    "--tmpfs",
    "/run",
    "--tmpfs",
    "/run/lock",
    "--tmpfs",
    "/tmp",  # noqa: S108 - a tmpfs mount inside the container
    "--stop-signal",
    "SIGRTMIN+3",
    "--env",
    "container=docker",
] + [f"--cap-add={cap}" for cap in CAPABILITIES]


def log(message: str) -> None:
    print(f"lab: {message}", file=sys.stderr, flush=True)


def run(cmd: list[str], check: bool = True, capture: bool = True, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=check, text=True, capture_output=capture, **kwargs)


def docker(*args: str, check: bool = True) -> str:
    result = run(["docker", *args], check=False)
    if check and result.returncode != 0:
        raise SystemExit(f"lab: docker {' '.join(args[:2])} failed: {result.stderr.strip()}")
    return result.stdout.strip()


# --- the Docker engine ---------------------------------------------------------


def docker_answers() -> bool:
    return shutil.which("docker") is not None and run(["docker", "info"], check=False).returncode == 0


def ensure_docker() -> None:
    if docker_answers():
        return
    if shutil.which("dockerd") is None:
        log("installing the Docker engine (docker.io)")
        apt_install(["docker.io"])
    if docker_answers():
        return
    log("starting dockerd")
    with open("/var/log/msa-lab-dockerd.log", "ab") as logfile:
        subprocess.Popen(["dockerd"], stdout=logfile, stderr=logfile, start_new_session=True)  # noqa: S607
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if docker_answers():
            return
        time.sleep(1)
    raise SystemExit("lab: dockerd did not answer within 60 s; see /var/log/msa-lab-dockerd.log")


# systemd in every lab host takes inotify instances from the kernel's per-user limit (Debian's
# default 128 runs out at about 25 hosts, which then never finish booting).
INOTIFY_INSTANCES = Path("/proc/sys/fs/inotify/max_user_instances")
INOTIFY_INSTANCES_WANTED = 1024


def ensure_inotify_instances() -> None:
    try:
        current = int(INOTIFY_INSTANCES.read_text())
        if current < INOTIFY_INSTANCES_WANTED:
            INOTIFY_INSTANCES.write_text(f"{INOTIFY_INSTANCES_WANTED}\n")
            log(f"raised fs.inotify.max_user_instances from {current} to {INOTIFY_INSTANCES_WANTED}")
    except OSError as exc:
        log(f"could not raise fs.inotify.max_user_instances ({exc}); many lab hosts at once may not boot")


def apt_install(packages: list[str]) -> None:
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    run(["apt-get", "update", "-qq"], env=env, capture=False)
    run(["apt-get", "install", "-y", "-qq", *packages], env=env, capture=False)


# --- the base image ---------------------------------------------------------------


def host_mirrors() -> tuple[str, str]:
    """The Debian archive and security archive this machine's apt already uses.

    The lab uses the same mirror as its host, so no address is written here and
    the lab works wherever the host's apt does. MSA_LAB_MIRROR overrides.
    """
    archive = os.environ.get("MSA_LAB_MIRROR", "")
    security = os.environ.get("MSA_LAB_SECURITY_MIRROR", "")
    uris: list[str] = []
    for path in [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]:
        if not path.is_file() or path.name.endswith((".disabled", ".save")) or "disabled" in path.name:
            continue
        text = path.read_text(errors="replace")
        uris += re.findall(r"^URIs:\s*(\S+)", text, flags=re.M)
        uris += re.findall(r"^deb\s+(?:\[[^\]]*\]\s+)?(\S+)", text, flags=re.M)
    for uri in uris:
        if uri.rstrip("/").endswith("debian-security"):
            security = security or uri
        elif uri.rstrip("/").endswith("/debian"):
            archive = archive or uri
    if not archive:
        raise SystemExit("lab: no Debian mirror found in /etc/apt; set MSA_LAB_MIRROR")
    return archive.rstrip("/"), (security or archive.rsplit("/", 1)[0] + "/debian-security").rstrip("/")


def image_tag(distro: str) -> str:
    # The month is part of the key: images are rebuilt (and re-patched) once a month,
    # so the updates a converge installs stay few.
    key = [distro, RECIPE, PATCH_SCRIPT, time.strftime("%Y-%m", time.gmtime())]
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    return f"msa-lab/debian:{distro}-{digest}"


def build_image(distro: str) -> str:
    tag = image_tag(distro)
    if run(["docker", "image", "inspect", tag], check=False).returncode == 0:
        return tag
    if shutil.which("debootstrap") is None:
        log("installing debootstrap")
        apt_install(["debootstrap"])
    archive, security = host_mirrors()
    workdir = Path(tempfile.mkdtemp(prefix=f"msa-lab-{distro}-", dir="/var/tmp"))
    root = workdir / "root"
    started = time.monotonic()
    log(f"building {tag} with debootstrap (about a minute)")
    try:
        run(
            [
                "debootstrap",
                f"--variant={RECIPE['variant']}",
                "--include=" + ",".join(RECIPE["packages"]),
                distro,
                str(root),
                archive,
            ],
            capture=True,
        )
        configure_root(root, distro, archive, security)
        tar = subprocess.Popen(["tar", "-C", str(root), "-c", "."], stdout=subprocess.PIPE)
        run(
            [
                "docker",
                "import",
                "-c",
                'CMD ["/lib/systemd/systemd"]',
                "-c",
                "ENV container=docker",
                "-c",
                f"LABEL {LABEL}.recipe={tag}",
                "-",
                tag,
            ],
            stdin=tar.stdout,
        )
        tar.wait()
    except subprocess.CalledProcessError as err:
        raise SystemExit(f"lab: building {tag} failed: {(err.stderr or '')[-2000:]}") from err
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    patch_image(tag)
    remove_older_images(distro, tag)
    log(f"built {tag} in {time.monotonic() - started:.0f} s")
    return tag


def patch_image(tag: str) -> None:
    """Apply the security archive's updates (all but one) inside the image."""
    name = f"msa-lab-patch-{tag.rsplit(':', 1)[1]}"
    docker("rm", "-f", name, check=False)
    try:
        held = docker("run", "--name", name, tag, "/bin/sh", "-c", PATCH_SCRIPT)
        log(held.strip().splitlines()[-1] if held.strip() else "patched")
        docker("commit", "--change", 'CMD ["/lib/systemd/systemd"]', name, tag)
    except subprocess.CalledProcessError as err:
        docker("rmi", "-f", tag, check=False)
        raise SystemExit(f"lab: patching {tag} failed: {(err.stderr or '')[-2000:]}") from err
    finally:
        docker("rm", "-f", name, check=False)


def remove_older_images(distro: str, keep: str) -> None:
    """Drop this release's images from older recipes or months (in use ones stay)."""
    for line in docker("images", "--filter", f"label={LABEL}.recipe", "--format", "{{.Repository}}:{{.Tag}}").split():
        if line != keep and line.startswith(f"msa-lab/debian:{distro}-"):
            docker("rmi", line, check=False)


def configure_root(root: Path, distro: str, archive: str, security: str) -> None:
    (root / "etc/apt/sources.list").unlink(missing_ok=True)
    (root / "etc/apt/sources.list.d/debian.sources").write_text(
        "Types: deb\n"
        f"URIs: {archive}\n"
        f"Suites: {distro} {distro}-updates\n"
        "Components: main\n"
        "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n"
        "Types: deb\n"
        f"URIs: {security}\n"
        f"Suites: {distro}-security\n"
        "Components: main\n"
        "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
    )
    # Like a cloud image: no recommends, no docs, no prompts.
    (root / "etc/apt/apt.conf.d/90msa-lab").write_text(
        'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\nAcquire::Retries "3";\n'
    )
    (root / "etc/dpkg/dpkg.cfg.d/90msa-lab-nodoc").write_text(
        "path-exclude /usr/share/doc/*\npath-exclude /usr/share/man/*\npath-exclude /usr/share/locale/*\n"
    )
    for unit in RECIPE["masked_units"]:
        link = root / "etc/systemd/system" / unit
        link.unlink(missing_ok=True)
        link.symlink_to("/dev/null")
    (root / "etc/machine-id").write_text("")
    configure_ssh(root)
    for deb in (root / "var/cache/apt/archives").glob("*.deb"):
        deb.unlink()
    shutil.rmtree(root / "var/lib/apt/lists", ignore_errors=True)
    (root / "var/lib/apt/lists/partial").mkdir(parents=True, exist_ok=True)


def configure_ssh(root: Path) -> None:
    """An SSH login like a cloud VM's: key only, no root, one sudo user; host keys per host."""
    user = RECIPE["login_user"]
    run(["chroot", str(root), "useradd", "--create-home", "--shell", "/bin/bash", user])
    sudoers = root / "etc/sudoers.d" / f"90-{user}"
    sudoers.write_text(f"{user} ALL=(ALL:ALL) NOPASSWD: ALL\n")
    sudoers.chmod(0o440)
    (root / "etc/ssh/sshd_config.d/90-msa-lab.conf").write_text(
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nPermitRootLogin no\nUseDNS no\n"
    )
    # Keys made at image build time would be shared by every host: make them at first boot.
    for key in (root / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    dropin = root / "etc/systemd/system/ssh.service.d"
    dropin.mkdir(parents=True, exist_ok=True)
    (dropin / "host-keys.conf").write_text(
        "[Service]\nExecStartPre=\nExecStartPre=/usr/bin/ssh-keygen -A\nExecStartPre=/usr/sbin/sshd -t\n"
    )


# --- hosts ------------------------------------------------------------------------


def container_name(lab: str, host: str) -> str:
    return f"{lab}-{host}"


def network_name(lab: str) -> str:
    return f"msa-{lab}"


def valid_name(value: str, what: str) -> str:
    if not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,40}", value):
        raise SystemExit(f"lab: {what} {value!r} must be lower-case letters, digits and dashes")
    return value


def container_state(name: str) -> str:
    return docker("inspect", "-f", "{{.State.Status}}", name, check=False)


# --- SSH access like a VM's ---------------------------------------------------------


def ensure_ssh_key() -> str:
    if not SSH_KEY.exists():
        SSH_KEY.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "msa-lab", "-f", str(SSH_KEY)])
    return SSH_KEY.with_suffix(".pub").read_text().strip()


def authorize(name: str, public_key: str) -> None:
    user = RECIPE["login_user"]
    script = (
        f"install -d -m 0700 -o {user} -g {user} /home/{user}/.ssh && "
        f"printf '%s\\n' \"$1\" > /home/{user}/.ssh/authorized_keys && "
        f"chown {user}:{user} /home/{user}/.ssh/authorized_keys && chmod 0600 /home/{user}/.ssh/authorized_keys"
    )
    docker("exec", name, "sh", "-c", script, "sh", public_key)


def container_address(name: str) -> str:
    # Another lab may remove its hosts meanwhile: such a host simply has no address.
    return docker("inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", name, check=False)


def write_ssh_config() -> None:
    """One Host block per running lab container, by container name: `ssh -F <this> demo-gw-1`."""
    names = docker("ps", "--filter", f"label={LABEL}", "--format", "{{.Names}}").split()
    addresses = {name: container_address(name) for name in names}
    blocks = [
        f"Host {name}\n  HostName {address}\n  User {RECIPE['login_user']}\n"
        f"  IdentityFile {SSH_KEY}\n  IdentitiesOnly yes\n"
        # Lab hosts make new host keys whenever they are recreated.
        "  StrictHostKeyChecking no\n  UserKnownHostsFile /dev/null\n  LogLevel ERROR\n"
        for name, address in sorted(addresses.items())
        if address
    ]
    SSH_CONFIG.parent.mkdir(parents=True, exist_ok=True)
    tmp = SSH_CONFIG.with_suffix(f".{os.getpid()}.tmp")  # labs start side by side
    tmp.write_text("# Written by lab/lab.py up/down: the running lab hosts.\n" + "\n".join(blocks))
    tmp.replace(SSH_CONFIG)


def wait_for_ssh(name: str, timeout: float = 120) -> None:
    # Straight to the address: ssh_config is shared with labs starting side by side.
    address = container_address(name)
    options = ["-i", str(SSH_KEY), "-o", "IdentitiesOnly=yes", "-o", "StrictHostKeyChecking=no"]
    options += ["-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=3"]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        login = ["ssh", *options, f"{RECIPE['login_user']}@{address}", "sudo", "-n", "true"]
        result = run(login, check=False)
        if result.returncode == 0:
            return
        time.sleep(1)
    raise SystemExit(f"lab: {name}: no SSH login with sudo after {timeout:.0f} s: {result.stderr.strip()}")


def up(lab: str, hosts: list[str], distro: str) -> None:
    ensure_docker()
    ensure_inotify_instances()
    tag = build_image(distro)
    public_key = ensure_ssh_key()
    network = network_name(lab)
    if not docker("network", "ls", "-q", "--filter", f"name=^{network}$"):
        docker("network", "create", "--label", f"{LABEL}={lab}", network)
    for host in hosts:
        name = container_name(lab, host)
        state = container_state(name)
        if state == "running":
            continue
        if state:
            docker("rm", "-f", name)
        docker(
            "run",
            "-d",
            "--name",
            name,
            "--hostname",
            host,
            "--network",
            network,
            "--network-alias",
            host,
            "--label",
            f"{LABEL}={lab}",
            "--label",
            f"{LABEL}.host={host}",
            *RUN_FLAGS,
            tag,
        )
    for host in hosts:
        name = container_name(lab, host)
        wait_for_systemd(name)
        authorize(name, public_key)
    write_ssh_config()
    for host in hosts:
        wait_for_ssh(container_name(lab, host))
    log(f"lab {lab!r} up on {distro}: " + ", ".join(container_name(lab, h) for h in hosts))


def wait_for_systemd(name: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    state = ""
    while time.monotonic() < deadline:
        result = run(["docker", "exec", name, "systemctl", "is-system-running"], check=False)
        state = result.stdout.strip()
        if state in ("running", "degraded"):
            if state == "degraded":
                failed = docker("exec", name, "systemctl", "--failed", "--no-legend", "--plain", check=False)
                log(f"{name}: systemd degraded: {failed}")
            return
        time.sleep(1)
    raise SystemExit(f"lab: {name}: systemd not up after {timeout:.0f} s (state {state!r})")


def down(lab: str) -> None:
    if not docker_answers():
        return
    names = docker("ps", "-aq", "--filter", f"label={LABEL}={lab}").split()
    if names:
        docker("rm", "-f", "-v", *names)
    write_ssh_config()
    network = network_name(lab)
    if docker("network", "ls", "-q", "--filter", f"name=^{network}$"):
        docker("network", "rm", network)
    log(f"lab {lab!r} down")


def describe(lab: str) -> None:
    """How to reach a lab's running hosts, as JSON: by Docker and by SSH like a VM."""
    running = docker("ps", "--filter", f"label={LABEL}={lab}", "--format", "{{.Names}}") if docker_answers() else ""
    names = running.split()
    hosts = {}
    for name in sorted(names):
        host = docker("inspect", "-f", '{{index .Config.Labels "' + LABEL + '.host"}}', name, check=False)
        hosts[host or name] = {"container": name, "address": container_address(name)}
    print(json.dumps({"ssh_user": RECIPE["login_user"], "ssh_key": str(SSH_KEY), "hosts": hosts}))


def status(lab: str | None) -> None:
    if not docker_answers():
        print("docker is not running")
        return
    label = f"label={LABEL}={lab}" if lab else f"label={LABEL}"
    print(docker("ps", "-a", "--filter", label, "--format", '{{.Names}}\t{{.Status}}\t{{.Label "' + LABEL + '"}}'))


def hosts_from_inventory(inventory: str) -> tuple[list[str], str | None]:
    """Host names (and the lab distro, if the inventory names one) from an inventory."""
    result = run(["ansible-inventory", "-i", inventory, "--list"], check=False)
    if result.returncode != 0:
        raise SystemExit(f"lab: ansible-inventory failed: {result.stderr.strip()}")
    data = json.loads(result.stdout)
    hostvars = data.get("_meta", {}).get("hostvars", {})
    distros = {v.get("lab_distro") for v in hostvars.values() if v.get("lab_distro")}
    return sorted(hostvars), (distros.pop() if len(distros) == 1 else None)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    image = sub.add_parser("image", help="build (or reuse) the base image and print its tag")
    image.add_argument("--distro", choices=DISTROS, default=DEFAULT_DISTRO)
    start = sub.add_parser("up", help="start hosts (idempotent)")
    start.add_argument("--lab", required=True)
    start.add_argument("--distro", choices=DISTROS)
    start.add_argument("--inventory", help="take the host names from this inventory")
    start.add_argument("hosts", nargs="*")
    stop = sub.add_parser("down", help="remove a lab's hosts and network")
    stop.add_argument("--lab", required=True)
    hosts = sub.add_parser("hosts", help="a lab's hosts as JSON: container, address, SSH user and key")
    hosts.add_argument("--lab", required=True)
    show = sub.add_parser("status", help="list lab containers")
    show.add_argument("--lab")
    args = parser.parse_args(argv)

    if os.geteuid() != 0 and args.command in ("image", "up"):
        raise SystemExit("lab: run as root (it starts dockerd and runs debootstrap)")
    if args.command == "image":
        ensure_docker()
        print(build_image(args.distro))
    elif args.command == "up":
        hosts = list(args.hosts)
        distro = args.distro
        if args.inventory:
            inventory_hosts, inventory_distro = hosts_from_inventory(args.inventory)
            hosts += inventory_hosts
            distro = distro or inventory_distro
        if not hosts:
            raise SystemExit("lab: name at least one host, or --inventory")
        up(valid_name(args.lab, "lab"), [valid_name(h, "host") for h in hosts], distro or DEFAULT_DISTRO)
    elif args.command == "down":
        down(valid_name(args.lab, "lab"))
    elif args.command == "hosts":
        describe(valid_name(args.lab, "lab"))
    else:
        status(args.lab)


if __name__ == "__main__":
    main()
