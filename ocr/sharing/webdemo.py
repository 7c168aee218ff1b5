"""A static web demo of a model: a folder any static host (GitHub Pages) serves as it is. The page has a canvas to
write on; ``model.onnx`` runs in the browser with ONNX Runtime Web (WebAssembly, the pinned npm package's files copied
beside the page, no CDN), and ``hwr.js`` does the project's preprocessing and decoding in JavaScript from the model's
``config.json`` (character set, input height and width).

    python -m ocr export-web --model CKPT_OR_FOLDER --out site/
"""

from __future__ import annotations

import base64
import hashlib
import shutil
import subprocess
import tarfile
from pathlib import Path

ORT_WEB_VERSION = "1.30.0"
# npm's dist.integrity of onnxruntime-web@1.30.0: the tarball is checked against it whoever fetched it
ORT_WEB_INTEGRITY = "sha512-q0y+JrrtukXSzsBWEMccVfqX25LRmosXHF+CaRJmg8pZClzcV7svNc4rKY3jL02Vb7QmRMDs1SigqR4CXAfKYQ=="
# the WebAssembly CPU build only (the WebGPU/JSEP builds are 16-28 MB more each)
ORT_WEB_FILES = ("ort.wasm.min.js", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm")
PAGE_FILES = ("index.html", "hwr.js", "app.js")
PAGE_DIR = Path(__file__).parent / "web"


class WebExportError(RuntimeError):
    """The demo cannot be written; one line saying why."""


def _integrity(path: Path) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(path.read_bytes()).digest()).decode()


def runtime_files(cache: Path | None = None) -> Path:
    """The folder holding ``ORT_WEB_FILES`` of onnxruntime-web ``ORT_WEB_VERSION``: from the cache, or fetched once
    with ``npm pack`` (the npm registry) and checked against ``ORT_WEB_INTEGRITY``."""
    from ocr.data.names import building, cache_dir

    folder = (cache or cache_dir()) / f"onnxruntime-web-{ORT_WEB_VERSION}"
    if all((folder / name).is_file() for name in ORT_WEB_FILES):
        return folder
    with building(folder):  # one fetch when several exports start at once
        return _fetch_runtime(folder)


def _fetch_runtime(folder: Path) -> Path:
    if all((folder / name).is_file() for name in ORT_WEB_FILES):
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    tarball = folder / f"onnxruntime-web-{ORT_WEB_VERSION}.tgz"
    if not tarball.is_file():
        npm = shutil.which("npm")
        if npm is None:
            raise WebExportError(f"the web demo needs onnxruntime-web {ORT_WEB_VERSION} from npm, and npm is not "
                                 f"installed: install Node.js, or put the package's tarball at {tarball}")
        try:
            subprocess.run([npm, "pack", f"onnxruntime-web@{ORT_WEB_VERSION}", "--pack-destination", str(folder)],
                           check=True, capture_output=True, text=True, timeout=300)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
            err = (getattr(exc, "stderr", "") or "").strip().splitlines()
            raise WebExportError(f"npm could not fetch onnxruntime-web {ORT_WEB_VERSION}"
                                 f"{': ' + err[-1][:200] if err else ''}") from None
    if _integrity(tarball) != ORT_WEB_INTEGRITY:
        tarball.unlink()
        raise WebExportError(f"the onnxruntime-web {ORT_WEB_VERSION} tarball does not match npm's integrity hash; "
                             "it was removed, run again to fetch it anew")
    with tarfile.open(tarball) as tar:
        for name in ORT_WEB_FILES:
            member = tar.getmember(f"package/dist/{name}")
            source = tar.extractfile(member)
            if source is None:
                raise WebExportError(f"onnxruntime-web {ORT_WEB_VERSION} lacks dist/{name}")
            (folder / name).write_bytes(source.read())
    return folder


def export_web(model: str | Path, out: str | Path) -> dict:
    """Write the demo folder for ``model`` (a checkpoint, a model folder or a Hub id); returns its files and sizes."""
    from ocr.sharing.export import export

    out = Path(out)
    runtime = runtime_files()
    out.mkdir(parents=True, exist_ok=True)
    export(model, out, formats=["onnx"])  # model.onnx + config.json (the character set, preprocessing, figures)
    for name in PAGE_FILES:
        shutil.copyfile(PAGE_DIR / name, out / name)
    for name in ORT_WEB_FILES:
        shutil.copyfile(runtime / name, out / name)
    (out / ".nojekyll").write_text("")  # GitHub Pages: serve every file as it is
    (out / "THIRD_PARTY.txt").write_text(f"onnxruntime-web {ORT_WEB_VERSION} (MIT License, Microsoft): "
                                         f"{', '.join(ORT_WEB_FILES)}\n")
    sizes = {p.name: p.stat().st_size for p in sorted(out.iterdir()) if p.is_file()}
    return {"folder": str(out), "files": sizes, "model_bytes": sizes["model.onnx"],
            "total_bytes": sum(sizes.values())}


__all__ = ["ORT_WEB_VERSION", "WebExportError", "export_web", "runtime_files"]
