#!/usr/bin/env python3
"""Writes a synthetic `docker save` archive of about SIZE_MB MiB for the pack benchmark.

The layout is what `docker save` (Docker 20.10) produces: manifest.json, repositories, <config-sha>.json and
<layer-id>/{VERSION,json,layer.tar}, with rootfs.diff_ids matching the layer tars' SHA-256. Contents mimic a real
image: text (docs, configs, logs), binary code, zero-padded data files and incompressible assets, all drawn from
a seeded PRNG so the same size and seed give byte-identical output.

usage: make_image.py OUTPUT.tar SIZE_MB [SEED] [TAG]
"""

import hashlib
import io
import json
import os
import random
import sys
import tarfile

MIB = 1024 * 1024
FILE_SIZE = 4 * MIB  # files of a few MiB, like libraries and assets in real layers
MTIME = 1_700_000_000  # fixed timestamps keep the output deterministic

WORDS = (
    "the of and to in is for on with as by this that from are be at or an it not which can all use "
    "service request response error warning info debug tenant user device measurement event alarm "
    "inventory application microservice platform config value key default enabled disabled timeout "
    "connection server client http https port host path version build library module function return "
    "license copyright permission software distributed warranty without including limited merchantability"
).split()
LOG_LEVELS = ["INFO", "INFO", "INFO", "DEBUG", "DEBUG", "WARN", "ERROR"]
LOG_TEMPLATES = [
    "{ts} {lvl} [{thread}] c.c.s.{cls} - Processed request id={n} tenant=t{t} in {ms} ms",
    "{ts} {lvl} [{thread}] c.c.m.{cls} - Subscription {n} for tenant t{t} is ACTIVE",
    '{{"time":"{ts}","level":"{lvl}","logger":"{cls}","msg":"measurement stored","id":{n},"tenant":"t{t}"}}',
    "{ts} {lvl} [{thread}] o.a.h.{cls} - Connection to 10.0.{t}.{ms} closed after {n} bytes",
]
CLASSES = ["ApiController", "TenantService", "InventoryRepository", "HealthIndicator", "PoolManager"]


def text_file(rng, size):
    """Documentation/config-like prose: words drawn from a small vocabulary, wrapped into lines."""
    out, total = [], 0
    while total < size:
        words = rng.choices(WORDS, k=rng.randint(6, 14))
        line = " ".join(words).capitalize() + (" = %d" % rng.randint(0, 9999) if rng.random() < 0.3 else ".")
        out.append(line)
        total += len(line) + 1
    return "\n".join(out).encode()[:size]


def log_file(rng, size):
    """Application logs and JSON lines: repeated templates with varying numbers and timestamps."""
    out, total, second = [], 0, rng.randint(0, 86_000)
    while total < size:
        second += rng.randint(0, 2)
        ts = "2026-11-%02dT%02d:%02d:%02d.%03dZ" % (
            1 + second // 86_400 % 28, second // 3600 % 24, second // 60 % 60, second % 60, rng.randint(0, 999))
        line = rng.choice(LOG_TEMPLATES).format(
            ts=ts, lvl=rng.choice(LOG_LEVELS), thread="worker-%d" % rng.randint(1, 16),
            cls=rng.choice(CLASSES), n=rng.randint(0, 10**9), t=rng.randint(1, 250), ms=rng.randint(1, 999))
        out.append(line)
        total += len(line) + 1
    return "\n".join(out).encode()[:size]


class CodeModel:
    """Machine-code-like bytes: a skewed vocabulary of short byte sequences ("instructions") mixed with
    random operands and short zero runs, which deflate compresses about as well as real ELF text (~2-3x)."""

    def __init__(self, rng):
        self.tokens = [rng.randbytes(rng.randint(1, 7)) for _ in range(8192)]
        weights, acc = [], 0.0
        for i in range(len(self.tokens)):
            acc += 1.0 / (i + 1) ** 1.05
            weights.append(acc)
        self.cum_weights = weights

    def file(self, rng, size):
        parts, total = [], 0
        while total < size:
            chunk = rng.choices(self.tokens, cum_weights=self.cum_weights, k=4096)
            parts.extend(chunk)
            total += sum(len(t) for t in chunk)
            parts.append(rng.randbytes(rng.randint(8, 48)))  # operands, addresses, constants
            parts.append(bytes(rng.choice((0, 0, 8, 16, 64))))  # alignment padding
            total += len(parts[-1]) + len(parts[-2])
        return b"".join(parts)[:size]


def sparse_file(rng, size):
    """Data files with long runs of zeros and repeated records (locale archives, fonts, databases)."""
    record = rng.randbytes(64)
    parts, total = [], 0
    while total < size:
        kind = rng.random()
        if kind < 0.5:
            part = bytes(rng.randint(256, 8192))
        elif kind < 0.8:
            part = record * rng.randint(4, 64)
        else:
            part = rng.randbytes(rng.randint(64, 1024))
        parts.append(part)
        total += len(part)
    return b"".join(parts)[:size]


def random_file(rng, size):
    """Already-compressed assets (jars, images, archives): incompressible."""
    return rng.randbytes(size)


# Layers as (name, share of the total size, [(content kind, share within the layer, path prefix)]).
LAYERS = [
    ("base", 0.20, [("text", 0.35, "usr/share/doc"), ("code", 0.45, "usr/bin"), ("sparse", 0.20, "usr/lib/locale")]),
    ("libs", 0.30, [("code", 0.70, "usr/lib"), ("sparse", 0.30, "usr/share/fonts")]),
    ("deps", 0.25, [("random", 0.85, "app/lib"), ("text", 0.15, "app/lib/META-INF")]),
    ("app", 0.20, [("code", 0.40, "app/bin"), ("log", 0.40, "app/samples"), ("random", 0.20, "app/static")]),
    ("config", 0.05, [("text", 0.50, "etc"), ("log", 0.50, "var/log")]),
]


def tar_add(archive, name, data, mode=0o644):
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode, info.uid, info.gid = len(data), MTIME, mode, 0, 0
    archive.addfile(info, io.BytesIO(data))


def layer_tar(rng, code, size, plan):
    """One layer's tar, in memory (layers are at most a few hundred MiB)."""
    makers = {"text": text_file, "log": log_file, "code": code.file, "sparse": sparse_file, "random": random_file}
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as layer:
        for kind, share, prefix in plan:
            remaining, index = int(size * share), 0
            while remaining > 0:
                n = min(FILE_SIZE, remaining)
                mode = 0o755 if kind == "code" else 0o644
                tar_add(layer, "%s/%s-%04d.%s" % (prefix, kind, index, "bin" if kind != "text" else "txt"),
                        makers[kind](rng, n), mode)
                remaining -= n
                index += 1
    return buffer.getvalue()


def main():
    if len(sys.argv) < 3:
        sys.exit("usage: make_image.py OUTPUT.tar SIZE_MB [SEED] [TAG]")
    output, size_mb = sys.argv[1], int(sys.argv[2])
    seed = int(sys.argv[3]) if len(sys.argv) > 3 else 42
    tag = sys.argv[4] if len(sys.argv) > 4 else "bench:1.0.0"
    if size_mb < 1:
        sys.exit("SIZE_MB must be at least 1")
    rng = random.Random(seed)
    code = CodeModel(rng)
    total = size_mb * MIB

    partial = output + ".partial"
    layer_ids, diff_ids, history, parent = [], [], [], ""
    with tarfile.open(partial, mode="w", format=tarfile.PAX_FORMAT) as image:
        for name, share, plan in LAYERS:
            data = layer_tar(rng, code, int(total * share), plan)
            diff_id = "sha256:" + hashlib.sha256(data).hexdigest()
            layer_id = hashlib.sha256((parent + diff_id).encode()).hexdigest()
            layer_json = {"id": layer_id, "created": "2026-11-22T00:00:00Z", "os": "linux"}
            if parent:
                layer_json["parent"] = parent
            tar_add(image, layer_id + "/VERSION", b"1.0")
            tar_add(image, layer_id + "/json", json.dumps(layer_json).encode())
            tar_add(image, layer_id + "/layer.tar", data)
            layer_ids.append(layer_id)
            diff_ids.append(diff_id)
            history.append({"created": "2026-11-22T00:00:00Z", "created_by": "bench layer " + name})
            parent = layer_id
            print("  layer %-6s %7.1f MiB %s" % (name, len(data) / MIB, diff_id[:19]), file=sys.stderr)
        config = json.dumps({
            "architecture": "amd64",
            "os": "linux",
            "config": {"Entrypoint": ["/app/bin/code-0000.bin"], "ExposedPorts": {"80/tcp": {}},
                       "Labels": {"berth.bench": "1", "berth.test": "1"}},
            "created": "2026-11-22T00:00:00Z",
            "history": history,
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        }).encode()
        config_name = hashlib.sha256(config).hexdigest() + ".json"
        tar_add(image, config_name, config)
        repo, _, version = tag.rpartition(":")
        manifest = [{"Config": config_name, "RepoTags": [tag], "Layers": [i + "/layer.tar" for i in layer_ids]}]
        tar_add(image, "manifest.json", json.dumps(manifest).encode())
        tar_add(image, "repositories", json.dumps({repo: {version: layer_ids[-1]}}).encode())
    os.replace(partial, output)


if __name__ == "__main__":
    main()
