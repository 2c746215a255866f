"""`netboot initrd` and `netboot nfs` with real programs: cpio unpacks the add-on, busybox
checks and runs the client scripts, modules come from Debian's cloud kernel, published
images are real squashfs files read back with unsquashfs."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import threading
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from netboot.commands import nfs as nfs_cmd
from netboot.image.receiver import shared_libraries
from netboot.image.standalone import (
    CLIENT_DIR,
    InitrdError,
    read_modules_dep,
    resolve_modules,
)
from testbed.cli import run_netboot
from testbed.kernel import KernelTree, cloud_kernel

CLIENT_SCRIPTS = ["lib.sh", "udhcpc.script", "scripts/netboot", "init"]


def unpack(archive: Path, dest: Path, decompress: list[str] | None = None) -> Path:
    """Unpack with GNU cpio (and zstd/gzip first when compressed)."""
    dest.mkdir(parents=True)
    data = archive.read_bytes()
    if decompress:
        data = subprocess.run(decompress, input=data, capture_output=True, check=True).stdout
    subprocess.run(["cpio", "-idm", "--quiet"], input=data, cwd=dest, check=True)
    return dest


@pytest.fixture(scope="module")
def kernel() -> KernelTree:
    return cloud_kernel()


def publish(root: Path, kernel: KernelTree, tmp: Path, merged_usr: bool, zstd: bool) -> Path:
    """A published image `demo` version 1 whose squashfs holds the cloud kernel's modules
    (only those the initrds need, to stay small) and optionally its kernel config."""
    tree = tmp / "tree"
    modules = tree / ("usr/lib" if merged_usr else "lib") / "modules" / kernel.version
    for name in ("modules.dep", "modules.builtin", "modules.order"):
        (modules / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(kernel.modules / name, modules / name)
    for path in resolve_modules(kernel.modules):
        (modules / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(kernel.modules / path, modules / path)
    if merged_usr:
        (tree / "lib").symlink_to("usr/lib")
    (tree / "boot").mkdir()
    config = (kernel.root / "boot" / f"config-{kernel.version}").read_text()
    if not zstd:
        config = config.replace("CONFIG_RD_ZSTD=y", "# CONFIG_RD_ZSTD is not set")
    (tree / "boot" / f"config-{kernel.version}").write_text(config)
    directory = root / "images/demo/versions/1"
    directory.mkdir(parents=True)
    squashfs = directory / "root.squashfs"
    subprocess.run(
        ["mksquashfs", str(tree), str(squashfs), "-noappend", "-quiet", "-comp", "gzip"],
        check=True, capture_output=True,
    )  # fmt: skip
    manifest = {
        "name": "demo",
        "version": "1",
        "kernel_version": kernel.version,
        "size": squashfs.stat().st_size,
        "sha256": "",
        "created": "",
        "source": "",
    }
    (directory / "manifest.json").write_text(json.dumps(manifest))
    (root / "images/demo/current").symlink_to("versions/1")
    return directory


# -- the client scripts -------------------------------------------------------------------


@pytest.mark.parametrize("script", CLIENT_SCRIPTS)
def test_client_scripts_parse_with_busybox_sh(script: str) -> None:
    result = subprocess.run(["busybox", "sh", "-n", str(CLIENT_DIR / script)],
                            capture_output=True, text=True)  # fmt: skip
    assert result.returncode == 0, result.stderr


def test_addon_unpacks_to_the_expected_tree(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    result = run_netboot("initrd", "--root", str(root))
    assert result.returncode == 0, result.stderr
    addon = root / "netboot.img"
    assert addon.read_bytes()[:6] == b"070701", "the add-on must be an uncompressed newc cpio"
    tree = unpack(addon, tmp_path / "x")
    files = sorted(p.relative_to(tree).as_posix() for p in tree.rglob("*") if not p.is_dir())
    loader, libraries = shared_libraries(Path("/usr/bin/udp-receiver").resolve())
    bundled = ["netboot/bin/udp-receiver", "netboot/lib/ld.so",
               *(f"netboot/lib/{lib.name}" for lib in libraries)]  # fmt: skip
    assert files == sorted(["netboot/bin/busybox", "netboot/lib.sh", "netboot/udhcpc.script",
                            "scripts/netboot", *bundled])  # fmt: skip
    assert (tree / "netboot/lib/ld.so").read_bytes() == loader.read_bytes()
    # the bundled receiver runs through the bundled loader (as lib.sh runs it)
    receiver = subprocess.run([str(tree / "netboot/lib/ld.so"), "--library-path",
                               str(tree / "netboot/lib"), str(tree / "netboot/bin/udp-receiver"),
                               "--help"], capture_output=True, text=True)  # fmt: skip
    assert "portbase" in receiver.stdout + receiver.stderr
    assert (tree / "netboot/bin/busybox").read_bytes() == Path("/bin/busybox").read_bytes()
    assert (tree / "scripts/netboot").read_text() == (CLIENT_DIR / "scripts/netboot").read_text()
    assert (tree / "netboot/udhcpc.script").stat().st_mode & 0o111
    # the packed busybox runs and has the applets the client library calls
    applets = subprocess.run([str(tree / "netboot/bin/busybox"), "--list"],
                             capture_output=True, text=True, check=True).stdout.split()  # fmt: skip
    for applet in ("wget", "sha256sum", "losetup", "udhcpc", "insmod", "switch_root", "mount"):
        assert applet in applets


def test_addon_carries_modules_of_published_kernels(tmp_path: Path, kernel: KernelTree) -> None:
    root = tmp_path / "root"
    publish(root, kernel, tmp_path, merged_usr=True, zstd=True)
    result = run_netboot("initrd", "--root", str(root), "-o", str(tmp_path / "addon.img"))
    assert result.returncode == 0, result.stderr
    assert kernel.version in result.stdout
    tree = unpack(tmp_path / "addon.img", tmp_path / "x")
    bundled = tree / "netboot/modules" / kernel.version
    order = (bundled / "order").read_text().split()
    assert order == resolve_modules(kernel.modules)
    for path in order:
        assert (bundled / path).read_bytes() == (kernel.modules / path).read_bytes()
    assert not (root / "netboot.img").exists(), "-o must be honoured"


def test_module_resolution_on_debian_cloud_kernel(kernel: KernelTree) -> None:
    order = resolve_modules(kernel.modules)
    names = [Path(p).name for p in order]
    for wanted in ("virtio_net.ko", "virtio_pci.ko", "squashfs.ko", "overlay.ko", "loop.ko"):
        assert wanted in names
    # virtio_net's dependencies, from modules.dep itself, all come before it
    dep = read_modules_dep(kernel.modules)
    assert set(dep["virtio_net"].deps) >= {"kernel/drivers/virtio/virtio.ko",
                                           "kernel/net/core/failover.ko"}  # fmt: skip
    for position, path in enumerate(order):
        module = next(m for m in dep.values() if m.path == path)
        for required in module.deps:
            assert order.index(required) < position, f"{required} must load before {path}"
    assert len(order) == len(set(order))


def test_missing_required_module_is_an_error(tmp_path: Path) -> None:
    directory = tmp_path / "lib/modules/9.9"
    directory.mkdir(parents=True)
    (directory / "modules.dep").write_text("kernel/fs/squashfs/squashfs.ko:\n")
    (directory / "modules.builtin").write_text("kernel/drivers/block/loop.ko\n")
    with pytest.raises(InitrdError, match="no overlay module"):
        resolve_modules(directory)


# -- standalone.img ---------------------------------------------------------------------


@pytest.mark.root  # unpacking creates its device nodes (dev/console, dev/null)
@pytest.mark.parametrize(("zstd", "magic"), [(True, b"\x28\xb5\x2f\xfd"), (False, b"\x1f\x8b")])
def test_standalone_for_published_image(
    tmp_path: Path, kernel: KernelTree, zstd: bool, magic: bytes
) -> None:
    root = tmp_path / "root"
    version_dir = publish(root, kernel, tmp_path, merged_usr=False, zstd=zstd)
    result = run_netboot("initrd", "--standalone", "demo", "--root", str(root))
    assert result.returncode == 0, result.stderr
    image = version_dir / "standalone.img"
    assert image.read_bytes()[: len(magic)] == magic
    tree = unpack(image, tmp_path / "x", ["zstd", "-dc"] if zstd else ["gzip", "-dc"])
    assert (tree / "init").read_text() == (CLIENT_DIR / "init").read_text()
    assert (tree / "init").stat().st_mode & 0o111
    assert (tree / "netboot/lib.sh").is_file()
    order = (tree / "netboot/modules" / kernel.version / "order").read_text().split()
    assert any(p.endswith("/virtio_net.ko") for p in order)
    # a published file is never rewritten: a second build refuses and changes nothing
    before = hashlib.sha256(image.read_bytes()).hexdigest()
    again = run_netboot("initrd", "--standalone", "demo", "--version", "1", "--root", str(root))
    assert again.returncode == 1
    assert again.stderr.count("\n") == 1 and "already exists" in again.stderr
    assert hashlib.sha256(image.read_bytes()).hexdigest() == before


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--standalone", "nosuch"], "image 'nosuch' has no current version"),
        (["--standalone", "demo", "--version", "7"], "image 'demo' has no version 7"),
        (["--version", "1"], "--version only applies with --standalone"),
        (["--config", "/nonexistent/netboot.toml"], "config error: --config"),
    ],
)
def test_initrd_bad_input_is_one_clear_line(tmp_path: Path, args: list[str], message: str) -> None:
    root = tmp_path / "root"
    (root / "images/demo/versions/1").mkdir(parents=True)
    result = run_netboot("initrd", "--root", str(root), *args)
    assert result.returncode == (2 if "config error" in message else 1)
    assert result.stderr.count("\n") == 1, result.stderr
    assert message in result.stderr
    assert not (root / "netboot.img").exists()


# -- the client library run by busybox on this machine ---------------------------------


@pytest.fixture
def http_dir(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    served = tmp_path / "www"
    served.mkdir()
    handler = partial(SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *args: None  # type: ignore[method-assign]
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", served
    finally:
        server.shutdown()
        server.server_close()


def run_lib(tmp_path: Path, body: str) -> subprocess.CompletedProcess:
    """Source lib.sh in busybox sh with a stub nb_die and a plain directory as 'RAM'."""
    script = f"""
NB_BB=/bin/busybox
. {CLIENT_DIR}/lib.sh
NB_RUN={tmp_path}/run
NB_STALL=10
nb_die() {{ echo "DIE: $*"; exit 3; }}
nb_ram_mount() {{ mkdir -p "$NB_RUN/ram"; }}
mkdir -p "$NB_RUN"
{body}
"""
    return subprocess.run(["busybox", "sh", "-c", script], capture_output=True, text=True,
                          timeout=60)  # fmt: skip


def test_lib_fetches_and_verifies(tmp_path: Path, http_dir: tuple[str, Path]) -> None:
    base, served = http_dir
    payload = bytes(range(256)) * 5000
    (served / "root.squashfs").write_bytes(payload)
    good = hashlib.sha256(payload).hexdigest()
    result = run_lib(
        tmp_path,
        f"""
NB_URL={base}/root.squashfs NB_SIZE={len(payload)} NB_SHA256={good.upper()}
nb_get_http
echo "GOT $NB_SQUASHFS"
""",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "netboot: image fetched and verified" in result.stdout
    fetched = Path(result.stdout.split("GOT ")[1].strip())
    assert fetched.read_bytes() == payload


@pytest.mark.parametrize(
    ("size", "sha", "message"),
    [
        ("1", "", "DIE: size mismatch for {run}/run/ram/root.squashfs: expected 1 bytes, got 3"),
        ("", "ab" * 32, "DIE: sha256 mismatch for {base}/root.squashfs: expected " + "ab" * 32),
    ],
)
def test_lib_refuses_a_bad_image(
    tmp_path: Path, http_dir: tuple[str, Path], size: str, sha: str, message: str
) -> None:
    base, served = http_dir
    (served / "root.squashfs").write_bytes(b"abc")
    result = run_lib(tmp_path, f"NB_URL={base}/root.squashfs NB_SIZE={size} NB_SHA256={sha}\n"
                               "nb_get_http\necho NOT-REACHED")  # fmt: skip
    assert result.returncode == 3
    assert message.format(run=tmp_path, base=base) in result.stdout
    assert "NOT-REACHED" not in result.stdout


def test_lib_retries_then_fails_clearly(tmp_path: Path, http_dir: tuple[str, Path]) -> None:
    base, _ = http_dir
    result = run_lib(tmp_path, f"NB_RETRIES=2 NB_URL={base}/missing.squashfs\nnb_get_http")
    assert result.returncode == 3
    assert "failed (try 1 of 2), retrying in 2s" in result.stdout
    assert f"DIE: could not download {base}/missing.squashfs after 2 tries" in result.stdout


def test_lib_applies_settings(tmp_path: Path, http_dir: tuple[str, Path]) -> None:
    base, served = http_dir
    image = tmp_path / "image"
    (image / "etc").mkdir(parents=True)
    (image / "etc/hosts").write_text("127.0.0.1\tlocalhost\n127.0.1.1\told\n")
    (image / "etc/shadow").write_text("root:*:19000:0:99999:7:::\nbin:*:19000::::::\n")
    hashed = "$6$ab/cd$x.y|z&w"  # crypt alphabet plus characters sed would mangle
    (served / "client").write_text(
        f"NETBOOT_HOSTNAME='pc07'\nNETBOOT_ROOT_PASSWORD_HASH='{hashed}'\n"
        "NETBOOT_KERNEL_PARAMS='quiet splash'\n"
    )
    # nb_set_hostname is stubbed: this runs on the test machine, not in a client
    result = run_lib(tmp_path, f"NB_SETTINGS={base}/client\n"
                               f"nb_set_hostname() {{ echo SETHOST $1; }}\n"
                               f"nb_apply_settings {image}")  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SETHOST pc07" in result.stdout
    assert (image / "etc/hostname").read_text() == "pc07\n"
    assert (image / "etc/hosts").read_text() == "127.0.0.1\tlocalhost\n127.0.1.1\tpc07\n"
    assert (image / "etc/shadow").read_text().splitlines() == [
        f"root:{hashed}:19000:0:99999:7:::",
        "bin:*:19000::::::",
    ]
    assert "NETBOOT_KERNEL_PARAMS='quiet splash'" in (image / "etc/netboot/settings").read_text()


def test_lib_ignores_settings_that_are_not_a_fragment(
    tmp_path: Path, http_dir: tuple[str, Path]
) -> None:
    base, served = http_dir
    image = tmp_path / "image"
    (image / "etc").mkdir(parents=True)
    (served / "client").write_text("touch /tmp/owned\nNETBOOT_HOSTNAME='x'\n")
    result = run_lib(tmp_path, f"NB_SETTINGS={base}/client\nnb_set_hostname() {{ :; }}\n"
                               f"nb_apply_settings {image}")  # fmt: skip
    assert result.returncode == 0
    assert "warning: ignoring settings" in result.stdout
    assert not (image / "etc/hostname").exists()


# -- netboot nfs --------------------------------------------------------------------------


def test_nfs_prints_exports(tmp_path: Path) -> None:
    result = run_netboot("nfs", "--root", str(tmp_path))
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if not line.startswith("#")]
    assert lines == [f"{tmp_path}  *(ro,async,crossmnt,no_subtree_check,no_root_squash,insecure)"]


def test_nfs_exports_ltsp_tree_in_compat_mode(tmp_path: Path) -> None:
    config = tmp_path / "netboot.toml"
    config.write_text(
        f'[server]\nroot = "{tmp_path}/srv netboot"\nltsp_compat = true\n'
        f'ltsp_root = "{tmp_path}"\nltsp_tftp_root = "/srv/tftp/ltsp"\n'
    )
    result = run_netboot("nfs", "--config", str(config))
    assert result.returncode == 0, result.stderr
    lines = [line.split("  ")[0] for line in result.stdout.splitlines() if line[0] != "#"]
    assert lines == [f"{tmp_path}/srv\\040netboot", str(tmp_path), "/srv/tftp/ltsp"]
    assert "not a directory" in result.stderr


def test_nfs_install_writes_exports_file(tmp_path: Path) -> None:
    target = tmp_path / "exports.d/netboot.exports"
    text = nfs_cmd.exports_text([tmp_path])
    status = nfs_cmd.install(text, target)
    assert target.read_text() == text
    if shutil.which("exportfs") or Path("/usr/sbin/exportfs").exists():
        assert status in ("exports reloaded",) or status.startswith("exportfs -ra failed")
    else:
        assert status == "exportfs not found: install nfs-kernel-server, then run `exportfs -ra`"


def test_nfs_bad_config_is_one_line(tmp_path: Path) -> None:
    config = tmp_path / "netboot.toml"
    config.write_text("[server]\nltsp_compat = 'yes'\n")
    result = run_netboot("nfs", "--config", str(config))
    assert result.returncode == 2
    assert (
        result.stderr.strip() == f"netboot nfs: config error: server.ltsp_compat: must be "
        f"true or false (in {config})"
    )


@pytest.mark.parametrize("toram", ["0", "1"])
def test_lib_nfs_method(tmp_path: Path, toram: str) -> None:
    """The NFS chain with nfsmount stubbed by a symlink to a local 'export'."""
    export = tmp_path / "export"
    (export / "images/demo/versions/1").mkdir(parents=True)
    payload = b"squashfs" * 1000
    (export / "images/demo/versions/1/root.squashfs").write_bytes(payload)
    result = run_lib(
        tmp_path,
        f"""
nb_mount_nfs4() {{ echo "NFS4 $*"; return 1; }}
nfsmount() {{ echo "NFSMOUNT $*"; rmdir "$4" && ln -s {export} "$4"; }}
NB_NFS=10.0.0.1:/srv/netboot NB_PATH=images/demo/versions/1/root.squashfs NB_TORAM={toram}
NB_SIZE={len(payload)} NB_SHA256={hashlib.sha256(payload).hexdigest()}
nb_get_nfs
echo "GOT $NB_SQUASHFS"
""",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # NFSv4 is tried first; when it fails the NFSv3 mount (klibc nfsmount) takes over
    assert result.stdout.index("NFS4 10.0.0.1:/srv/netboot") < result.stdout.index("NFSMOUNT")
    assert "NFSMOUNT -o ro,nolock 10.0.0.1:/srv/netboot" in result.stdout
    got = result.stdout.split("GOT ")[1].strip()
    if toram == "1":
        assert got == f"{tmp_path}/run/ram/root.squashfs"
        assert "netboot: checking sha256" in result.stdout
    else:
        assert got == f"{tmp_path}/run/nfs/images/demo/versions/1/root.squashfs"
        assert "checking sha256" not in result.stdout
    assert Path(got).read_bytes() == payload


def test_lib_nfs_missing_image_fails_clearly(tmp_path: Path) -> None:
    (tmp_path / "export").mkdir()
    result = run_lib(
        tmp_path,
        f"""
nb_mount_nfs4() {{ return 1; }}
nfsmount() {{ rmdir "$4" && ln -s {tmp_path}/export "$4"; }}
NB_NFS=10.0.0.1:/srv/netboot NB_PATH=images/x.squashfs
nb_get_nfs
""",
    )
    assert result.returncode == 3
    assert "DIE: images/x.squashfs not found in NFS export 10.0.0.1:/srv/netboot" in result.stdout
