#!/usr/bin/env python3
"""Pack the filter's .wasm as an OCI image layout directory, without Docker (`make oci`).

    oci.py [--wasm FILE] [--out DIR] [--version V] [--variant compat|oci|both]

Writes DIR/oci-layout, DIR/index.json, DIR/blobs/sha256/<hex> and DIR/digests.json, then
prints the digests and how to push the layout. Two image formats exist for Envoy Wasm
plugins; both are understood by Istio's agent and by Envoy Gateway (their image fetchers
try Docker, then "compat", then "oci"; see deploy/README.md), and this script writes them
side by side in one layout, one tag each:

  <version>      "compat" variant (recommended): a standard OCI image whose single
                 `application/vnd.oci.image.layer.v1.tar+gzip` layer is a tar holding
                 `plugin.wasm`; annotation `module.wasm.image/variant=compat`. Any registry
                 and any image tool (skopeo, crane, oras, Kubernetes image volumes) handle it.
  <version>-oci  "oci" (artifact) variant: config `application/vnd.module.wasm.config.v1+json`
                 and exactly TWO layers, the runtime config (same media type) and the raw
                 module (`application/vnd.module.wasm.content.layer.v1+wasm`). Istio and
                 Envoy Gateway refuse this variant with any other layer count. Needs a
                 registry that accepts custom media types.

Output is deterministic: the same .wasm gives the same blobs and manifest digests (tar
entries and gzip headers carry no time stamps; the gzip stream is as deterministic as the
local zlib).

Which digest goes where:
  - Istio `WasmPlugin.sha256` / EnvoyFilter `remote.sha256` with an `oci://` URL, and Envoy
    Gateway `code.image.sha256`: the MANIFEST digest of the pushed tag (both compare the image
    digest, not the module's).
  - An `http(s)://` URL to the bare .wasm (Istio, Envoy Gateway `code.http.sha256`, Envoy
    `remote.sha256`): the sha256 of the .wasm itself.

Standard library only.
"""
import argparse
import gzip
import hashlib
import io
import json
import re
import sys
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_WASM = ROOT / "target" / "wasm32-wasip1" / "release" / "duo_bedrock_filter.wasm"
DEFAULT_OUT = ROOT / "target" / "oci"
DEFAULT_REPO = "registry.example.com/duo-bedrock-filter"
ROOT_ID = "duo_bedrock"

INDEX = "application/vnd.oci.image.index.v1+json"
MANIFEST = "application/vnd.oci.image.manifest.v1+json"
IMAGE_CONFIG = "application/vnd.oci.image.config.v1+json"
TAR_GZIP_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
WASM_CONFIG = "application/vnd.module.wasm.config.v1+json"
WASM_LAYER = "application/vnd.module.wasm.content.layer.v1+wasm"
REF_NAME = "org.opencontainers.image.ref.name"
TITLE = "org.opencontainers.image.title"
VERSION = "org.opencontainers.image.version"
WASM_MAGIC = b"\0asm"


def canonical_json(value):
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


class Layout:
    """An OCI image layout being written: content-addressed blobs plus tagged manifests."""

    def __init__(self, out):
        self.out = Path(out)
        self.blobs = self.out / "blobs" / "sha256"
        self.blobs.mkdir(parents=True, exist_ok=True)
        self.tags = []

    def blob(self, data, media_type, annotations=None):
        """Stores `data`; returns its descriptor."""
        digest = hashlib.sha256(data).hexdigest()
        path = self.blobs / digest
        if not path.exists() or path.read_bytes() != data:
            path.write_bytes(data)
        desc = {"mediaType": media_type, "digest": f"sha256:{digest}", "size": len(data)}
        if annotations:
            desc["annotations"] = annotations
        return desc

    def tag(self, manifest, ref_name):
        desc = self.blob(canonical_json(manifest), MANIFEST, {REF_NAME: ref_name})
        self.tags.append(desc)
        return desc

    def finish(self):
        (self.out / "oci-layout").write_bytes(canonical_json({"imageLayoutVersion": "1.0.0"}))
        index = {"schemaVersion": 2, "mediaType": INDEX, "manifests": self.tags}
        (self.out / "index.json").write_bytes(canonical_json(index))
        referenced = set()
        for desc in self.tags:
            referenced.add(desc["digest"].split(":", 1)[1])
            manifest = json.loads((self.blobs / referenced_hex(desc)).read_bytes())
            for child in [manifest["config"], *manifest["layers"]]:
                referenced.add(referenced_hex(child))
        for stale in self.blobs.iterdir():
            if stale.name not in referenced:
                stale.unlink()


def referenced_hex(desc):
    return desc["digest"].split(":", 1)[1]


def plugin_tar_gz(wasm):
    """A reproducible tar.gz holding `plugin.wasm`; returns (compressed, uncompressed)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        info = tarfile.TarInfo("plugin.wasm")
        info.size = len(wasm)
        info.mode = 0o444
        info.mtime = 0
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        tar.addfile(info, io.BytesIO(wasm))
    uncompressed = raw.getvalue()
    return gzip.compress(uncompressed, compresslevel=9, mtime=0), uncompressed


def compat_manifest(layout, wasm, version):
    layer, uncompressed = plugin_tar_gz(wasm)
    config = {
        "architecture": "wasm",
        "os": "wasip1",
        "config": {"Labels": {VERSION: version}},
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{hashlib.sha256(uncompressed).hexdigest()}"]},
    }
    return {
        "schemaVersion": 2,
        "mediaType": MANIFEST,
        "config": layout.blob(canonical_json(config), IMAGE_CONFIG),
        "layers": [layout.blob(layer, TAR_GZIP_LAYER)],
        "annotations": {"module.wasm.image/variant": "compat", VERSION: version},
    }


def oci_manifest(layout, wasm, version):
    runtime = canonical_json({
        "type": "envoy_proxy",
        "abiVersions": ["proxy_abi_version_0_2_1"],
        "config": {"rootIds": [ROOT_ID]},
    })
    return {
        "schemaVersion": 2,
        "mediaType": MANIFEST,
        "config": layout.blob(runtime, WASM_CONFIG),
        "layers": [
            layout.blob(runtime, WASM_CONFIG, {TITLE: "runtime-config.json"}),
            layout.blob(wasm, WASM_LAYER, {TITLE: "plugin.wasm"}),
        ],
        "annotations": {VERSION: version},
    }


def crate_version():
    text = (ROOT / "Cargo.toml").read_text()
    package = text.split("[package]", 1)[-1]
    match = re.search(r'^version\s*=\s*"([^"]+)"', package, re.M)
    if not match:
        raise SystemExit("no [package] version in Cargo.toml: pass --version")
    return match.group(1)


def pack(wasm_path, out, version, variant):
    wasm = Path(wasm_path).read_bytes()
    if not wasm.startswith(WASM_MAGIC):
        raise SystemExit(f"{wasm_path}: not a WebAssembly module (no \\0asm magic)")
    layout = Layout(out)
    summary = {"wasm_sha256": hashlib.sha256(wasm).hexdigest(), "wasm_size": len(wasm), "tags": {}}
    if variant in ("compat", "both"):
        desc = layout.tag(compat_manifest(layout, wasm, version), version)
        summary["tags"][version] = {"variant": "compat", "manifest_digest": desc["digest"]}
    if variant in ("oci", "both"):
        desc = layout.tag(oci_manifest(layout, wasm, version), f"{version}-oci")
        summary["tags"][f"{version}-oci"] = {"variant": "oci", "manifest_digest": desc["digest"]}
    layout.finish()
    (Path(out) / "digests.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    return summary


def report(summary, out, repo):
    lines = [f"OCI image layout: {out}",
             f"  plugin.wasm sha256 {summary['wasm_sha256']} ({summary['wasm_size']} bytes; for http(s):// URLs)"]
    for tag, info in summary["tags"].items():
        lines.append(f"  {repo + ':' + tag:<52} {info['variant']:<7} manifest {info['manifest_digest']}")
    lines.append("")
    lines.append("Push (not run here; neither tool is needed to build):")
    for tag in summary["tags"]:
        lines.append(f"  skopeo copy --preserve-digests oci:{out}:{tag} docker://{repo}:{tag}")
        lines.append(f"  # or: oras cp --from-oci-layout {out}:{tag} {repo}:{tag}")
    compat = [t for t, i in summary["tags"].items() if i["variant"] == "compat"]
    if compat:
        digest = summary["tags"][compat[0]]["manifest_digest"].split(":", 1)[1]
        lines.append("")
        lines.append("Pin the manifests (Istio sha256 / Envoy Gateway image.sha256 = manifest digest):")
        lines.append(f"  export DUO_FILTER_MANIFEST_SHA256={digest}")
        lines.append("  envsubst '$DUO_FILTER_MANIFEST_SHA256' < deploy/istio/envoyfilter.yaml | kubectl apply -f -")
    return "\n".join(lines)


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--wasm", default=str(DEFAULT_WASM), help="the filter module (default: the release build)")
    parser.add_argument("--out", default=str(DEFAULT_OUT), help="layout directory (default: target/oci)")
    parser.add_argument("--version", default=None, help="image tag (default: the crate version)")
    parser.add_argument("--variant", choices=("compat", "oci", "both"), default="both")
    parser.add_argument("--repo", default=DEFAULT_REPO, help="registry/repository shown in the push commands")
    args = parser.parse_args(argv)
    if not Path(args.wasm).is_file():
        print(f"{args.wasm} is missing: run `make wasm` first", file=sys.stderr)
        return 2
    version = args.version or crate_version()
    if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,120}", version):
        print(f"--version {version!r} is not a valid image tag", file=sys.stderr)
        return 2
    summary = pack(args.wasm, args.out, version, args.variant)
    print(report(summary, args.out, args.repo))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
