#!/usr/bin/env python3
"""The dependency rule of shared/src (ARCHITECTURE.md), checked over `crate::` paths.

Every file's folder says what it may use:

    domain/    -> domain                         (no I/O, depends on nothing else)
    ports/     -> domain, ports
    usecases/  -> domain, ports, usecases
    adapters/  -> domain, ports, adapters
    lib.rs, config.rs, wiring.rs                  (the composition root: anything)

A path counts wherever it appears in code or doc comments (`use crate::x`, `crate::x::y(...)`,
[`crate::x`] links), and `super::` may not climb out of a layer. Exit status 1 on a violation,
listing each as file:line. `--self-test` proves the checker catches what it should.
"""

import pathlib
import re
import sys
import tempfile

ALLOWED = {
    "domain": {"domain"},
    "ports": {"domain", "ports"},
    "usecases": {"domain", "ports", "usecases"},
    "adapters": {"domain", "ports", "adapters"},
}
ROOT_FILES = {"lib.rs", "config.rs", "wiring.rs"}
CRATE_PATH = re.compile(r"\bcrate::([a-z_][a-z0-9_]*)")
USE_GROUP = re.compile(r"\buse\s+crate::\{([^}]*)\}", re.S)
SUPER_CHAIN = re.compile(r"\b((?:super::)+)")


def layer_of(rel: pathlib.PurePosixPath) -> str | None:
    return rel.parts[0] if len(rel.parts) > 1 and rel.parts[0] in ALLOWED else None


def violations(src: pathlib.Path) -> list[str]:
    found = []
    for path in sorted(src.rglob("*.rs")):
        rel = pathlib.PurePosixPath(path.relative_to(src).as_posix())
        if len(rel.parts) == 1:
            if rel.name not in ROOT_FILES:
                found.append(f"{rel}: files at the top of shared/src must be lib.rs, config.rs or wiring.rs")
            continue
        layer = layer_of(rel)
        if layer is None:
            found.append(f"{rel}: not inside a layer folder ({', '.join(sorted(ALLOWED))})")
            continue
        text = path.read_text(encoding="utf-8")
        allowed = ALLOWED[layer]
        for lineno, line in enumerate(text.splitlines(), 1):
            for target in CRATE_PATH.findall(line):
                if target not in allowed:
                    found.append(f"{rel}:{lineno}: {layer} may not use crate::{target}")
            # `domain/event.rs` is module level 2 (domain::event), `domain/mod.rs` level 1; k
            # `super::` go up k levels, and level 0 is the crate root, outside every layer.
            level = len(rel.parts) - (1 if rel.name == "mod.rs" else 0)
            for chain in SUPER_CHAIN.findall(line):
                if chain.count("super::") >= level:
                    found.append(f"{rel}:{lineno}: `super::` climbs out of {layer}")
        for group in USE_GROUP.findall(text):
            for item in re.split(r"[,\s]+", group):
                head = item.split("::")[0].strip()
                if head and head not in allowed and re.fullmatch(r"[a-z_][a-z0-9_]*", head):
                    found.append(f"{rel}: {layer} may not use crate::{head} (in a `use crate::{{…}}` group)")
    return found


def self_test() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        src = pathlib.Path(tmp)
        files = {
            "lib.rs": "pub mod domain;\nuse crate::adapters::x;\n",
            "domain/mod.rs": "pub mod event;\n",
            "domain/event.rs": "use crate::ports::Clock;\nuse crate::domain::jobs;\n",
            "domain/deep/x.rs": "use super::super::super::adapters;\n",
            "ports/mod.rs": "use crate::{domain::event, usecases::receive};\n",
            "usecases/receive.rs": "/// See [`crate::wiring`].\nfn f() { crate::ports::x(); }\n",
            "adapters/sqs.rs": "use crate::usecases::receive::Receiver;\n",
            "stray.rs": "",
            "other/thing.rs": "",
        }
        for name, body in files.items():
            p = src / name
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(body)
        got = violations(src)
        expected = [
            "domain/event.rs:1: domain may not use crate::ports",
            "domain/deep/x.rs:1: `super::` climbs out of domain",
            "ports/mod.rs: ports may not use crate::usecases (in a `use crate::{…}` group)",
            "usecases/receive.rs:1: usecases may not use crate::wiring",
            "adapters/sqs.rs:1: adapters may not use crate::usecases",
            "stray.rs: files at the top of shared/src must be lib.rs, config.rs or wiring.rs",
            "other/thing.rs: not inside a layer folder (adapters, domain, ports, usecases)",
        ]
        missing = [e for e in expected if e not in got]
        allowed_lines = [
            g
            for g in got
            if g.startswith("lib.rs") or g.endswith("crate::domain") or g.startswith("usecases/receive.rs:2")
        ]
        if missing or allowed_lines:
            print("self-test FAILED", file=sys.stderr)
            for m in missing:
                print(f"  not reported: {m}", file=sys.stderr)
            for a in allowed_lines:
                print(f"  wrongly reported: {a}", file=sys.stderr)
            return 1
    print("check-layers self-test: ok")
    return 0


def main() -> int:
    if "--self-test" in sys.argv[1:]:
        return self_test()
    src = pathlib.Path(__file__).resolve().parent.parent / "shared" / "src"
    found = violations(src)
    for v in found:
        print(f"layer rule: shared/src/{v}", file=sys.stderr)
    if found:
        print(f"{len(found)} import(s) against the layer rule (see ARCHITECTURE.md)", file=sys.stderr)
        return 1
    print("layer rule: shared/src imports only point inward")
    return 0


if __name__ == "__main__":
    sys.exit(main())
