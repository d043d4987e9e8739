"""Benchmarks that come as their authors' archives: ``probe data get imagenet1k`` (and coco-karpathy,
coco-val2017, flickr30k-karpathy, winoground) turns the files a user downloaded into the layout the benchmark's
reader takes, in the benchmark's data folder (``$PROBE_DATA/...``, see ``probe benchmarks``).

Unlike the recipes in :mod:`probe.recipes.sources`, nothing is re-encoded or re-split: these
benchmarks are only comparable with published numbers when their images and splits are exactly the
published ones. Each preparation unpacks, converts the annotation file where the reader wants another
(Flickr30k's CSV to Karpathy's JSON), checks the result, and writes ``probe-prepared.json`` with the
counts and the source files it used. Files on the Hugging Face hub are fetched only with
``--allow-download``; the others (ImageNet, COCO) need a login on their authors' sites, so the error
says where to get them.
"""

from __future__ import annotations

import csv
import json
import shutil
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from probe.errors import ProbeError
from probe.io import write_json

MARKER = "probe-prepared.json"


@dataclass(frozen=True)
class Published:
    """One benchmark's published files and how they become its reader's layout."""

    name: str
    #: file names that must be in the source folder (``A|B``: either will do)
    needs: tuple[str, ...]
    #: how to get them (shown when they are missing)
    download: str
    prepare: Callable[[Path, Path, bool], dict[str, int]]
    #: a Hugging Face dataset repo holding ``needs``, fetched with --allow-download
    hub_repo: str = ""
    #: the downloads sit beside the data folder (ImageNet's archives beside ``val/``), not in it
    source_beside: bool = False

    def missing(self, source: Path) -> list[str]:
        return [need for need in self.needs if not any((source / option).exists() for option in need.split("|"))]


def _swap_in(made: Path, target: Path) -> None:
    """Put the finished folder ``made`` at ``target``, the old one removed only once the new one is
    in place (a failure before leaves the old data; nothing outside the two folders is touched)."""
    old = target.with_name(f".{target.name}.old")
    if old.exists():
        shutil.rmtree(old)
    if target.exists():
        target.rename(old)
    shutil.move(str(made), str(target))
    if old.exists():
        shutil.rmtree(old)


def _first(source: Path, need: str) -> Path:
    return next(source / option for option in need.split("|") if (source / option).exists())


#: what a zip that is not one, or is cut short, raises while it is read
_ZIP_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, zlib.error, NotImplementedError)


def _damaged(archive: Path, exc: BaseException) -> ProbeError:
    return ProbeError(f"{archive}: not a readable zip archive ({type(exc).__name__}: {exc}); download it again")


def _unzip(archive: Path, target: Path, progress: bool, strip: str = "") -> int:
    """Extract ``archive`` into ``target`` (members under ``strip``/ lose that prefix); files written.
    Member names are checked, so an archive cannot write outside ``target``."""
    from tqdm.auto import tqdm

    count = 0
    root = target.resolve()
    try:
        with zipfile.ZipFile(archive) as zf:
            members = [m for m in zf.infolist() if not m.is_dir()]
            for member in members:  # every name checked before anything is written
                name = member.filename[len(strip):] if strip and member.filename.startswith(strip) else member.filename
                if root not in (target / name).resolve().parents:
                    raise ProbeError(f"{archive}: member {member.filename!r} would be written outside {target}")
            for member in tqdm(members, desc=f"unpacking {archive.name}", unit=" files",
                               disable=None if progress else True, leave=False):
                name = member.filename[len(strip):] if strip and member.filename.startswith(strip) else member.filename
                out = (target / name).resolve()
                out.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(member) as src, out.open("wb") as dst:
                    shutil.copyfileobj(src, dst)
                count += 1
    except _ZIP_ERRORS as exc:
        raise _damaged(archive, exc) from None
    return count


def _zip_prefix(archive: Path, folder: str) -> str:
    """``folder/`` when every member of ``archive`` sits under it (so it is stripped), else ''."""
    try:
        with zipfile.ZipFile(archive) as zf:
            names = [n for n in zf.namelist() if not n.endswith("/")]
    except _ZIP_ERRORS as exc:
        raise _damaged(archive, exc) from None
    return f"{folder}/" if names and all(n.startswith(f"{folder}/") for n in names) else ""


def prepare_imagenet(source: Path, target: Path, progress: bool) -> dict[str, int]:
    """torchvision's own ImageNet parser: checks both archives' MD5 against the official ones, reads
    the devkit's meta.mat and validation ground truth, and sorts the 50,000 images into wnid folders
    (``source/val``), which then move to ``target`` if that is elsewhere."""
    from torchvision.datasets import ImageNet

    try:
        ImageNet(str(source), split="val")
    except RuntimeError as exc:  # torchvision's message for a wrong or damaged archive
        raise ProbeError(f"ImageNet archives in {source}: {' '.join(str(exc).split())}") from None
    made = source / "val"
    if made.resolve() != target.resolve():
        target.parent.mkdir(parents=True, exist_ok=True)
        _swap_in(made, target)
    folders = [p for p in target.iterdir() if p.is_dir()]
    return {"classes": len(folders), "images": sum(1 for f in folders for _ in f.iterdir())}


def prepare_winoground(source: Path, target: Path, progress: bool) -> dict[str, int]:
    """facebook/winoground's ``examples.jsonl`` and ``images.zip`` -> ``examples.jsonl`` + ``images/``."""
    target.mkdir(parents=True, exist_ok=True)
    examples = _first(source, "examples.jsonl|data/examples.jsonl")
    if examples.resolve() != (target / "examples.jsonl").resolve():
        shutil.copy2(examples, target / "examples.jsonl")
    archive = _first(source, "images.zip|data/images.zip")
    images = _unzip(archive, target / "images", progress, strip=_zip_prefix(archive, "images"))
    n = sum(1 for line in (target / "examples.jsonl").read_text(encoding="utf-8").splitlines() if line.strip())
    return {"examples": n, "images": images}


def prepare_flickr30k(source: Path, target: Path, progress: bool) -> dict[str, int]:
    """nlphuji/flickr30k's ``flickr_annotations_30k.csv`` (columns raw: the five captions as a JSON
    list, split: Karpathy's train/val/test, filename) and ``flickr30k-images.zip`` -> Karpathy's
    ``dataset_flickr30k.json`` + ``flickr30k-images/``."""
    table = _first(source, "flickr_annotations_30k.csv")
    images = []
    with table.open(newline="", encoding="utf-8") as handle:
        for number, row in enumerate(csv.DictReader(handle), start=2):
            try:
                captions = json.loads(row["raw"])
                images.append({"filepath": "flickr30k-images", "filename": row["filename"], "split": row["split"],
                               "imgid": int(row["img_id"]),
                               "sentences": [{"raw": c, "tokens": c.lower().rstrip(".").split()} for c in captions]})
            except (KeyError, ValueError, TypeError) as exc:
                raise ProbeError(f"{table}:{number}: not a Flickr30k annotation row ({type(exc).__name__}: {exc}); "
                                 "expected columns raw, split, filename, img_id") from None
    target.mkdir(parents=True, exist_ok=True)
    archive = _first(source, "flickr30k-images.zip")
    files = _unzip(archive, target / "flickr30k-images", progress, strip=_zip_prefix(archive, "flickr30k-images"))
    write_json(target / "dataset_flickr30k.json", {"dataset": "flickr30k", "images": images})
    return {"images": files, "test": sum(1 for im in images if im["split"] == "test")}


def _nlphuji_captions(table: Path) -> list[tuple[str, list[str]]]:
    """``(filename, captions)`` per row of an nlphuji retrieval CSV (columns ``filename`` and ``raw``,
    the captions as a JSON list), in the file's order: the order Hugging Face datasets serves them."""
    rows = []
    with table.open(newline="", encoding="utf-8") as handle:
        for number, row in enumerate(csv.DictReader(handle), start=2):
            try:
                captions = json.loads(row["raw"])
                name = row["filename"]
                if not (isinstance(captions, list) and captions and all(isinstance(c, str) and c.strip()
                                                                       for c in captions)):
                    raise ValueError("raw is not a list of caption strings")
                if not name or Path(name).name != name:
                    raise ValueError(f"filename {name!r} is not a plain file name")
            except (KeyError, ValueError, TypeError) as exc:
                raise ProbeError(f"{table}:{number}: not an nlphuji retrieval row ({type(exc).__name__}: {exc}); "
                                 "expected columns filename and raw (a JSON list of captions)") from None
            rows.append((name, captions))
    if not rows:
        raise ProbeError(f"{table}: no rows")
    return rows


def nlphuji_retrieval(name: str, repo: str, table: str, archive: str, out: str) -> Published:
    """One of the nlphuji retrieval sets DataComp scores (``eval_utils/retr_eval.py`` loads
    ``nlphuji/<task>``'s test split), prepared from the hub repository ``repo``'s CSV ``table`` and image
    zip ``archive`` into Karpathy's JSON ``out`` (every image in split ``test``, captions in the CSV's
    order) + the images folder, which the Karpathy reader takes."""
    folder = archive.removesuffix(".zip")

    def prepare(source: Path, target: Path, progress: bool) -> dict[str, int]:
        rows = _nlphuji_captions(_first(source, table))
        target.mkdir(parents=True, exist_ok=True)
        zipped = _first(source, archive)
        files = _unzip(zipped, target / folder, progress, strip=_zip_prefix(zipped, folder))
        missing = [name for name, _ in rows if not (target / folder / name).is_file()]
        if missing:
            raise ProbeError(f"{zipped}: {len(missing)} image(s) the CSV lists are not in it (e.g. {missing[0]}); "
                             "download it again")
        images = [{"filepath": folder, "filename": name, "split": "test", "imgid": i,
                   "sentences": [{"raw": c, "tokens": c.lower().rstrip(".").split()} for c in captions]}
                  for i, (name, captions) in enumerate(rows)]
        write_json(target / out, {"dataset": folder, "images": images})
        return {"images": files, "test": len(rows), "captions": sum(len(c) for _, c in rows)}

    return Published(name, (table, archive),
                     f"huggingface-cli download {repo} --repo-type dataset --local-dir SOURCE", prepare, hub_repo=repo)


def prepare_coco(source: Path, target: Path, progress: bool) -> dict[str, int]:
    """Karpathy's ``caption_datasets.zip`` (or its ``dataset_coco.json``) and COCO's ``train2014.zip``
    and ``val2014.zip`` -> ``dataset_coco.json`` + ``train2014/`` + ``val2014/``."""
    target.mkdir(parents=True, exist_ok=True)
    annotations = _first(source, "dataset_coco.json|caption_datasets.zip")
    if annotations.suffix == ".zip":
        try:
            with zipfile.ZipFile(annotations) as zf:
                if "dataset_coco.json" not in zf.namelist():
                    raise ProbeError(f"{annotations} holds no dataset_coco.json (Karpathy's caption_datasets.zip does)")
                (target / "dataset_coco.json").write_bytes(zf.read("dataset_coco.json"))
        except _ZIP_ERRORS as exc:
            raise _damaged(annotations, exc) from None
    elif annotations.resolve() != (target / "dataset_coco.json").resolve():
        shutil.copy2(annotations, target / "dataset_coco.json")
    counts = {}
    for folder in ("train2014", "val2014"):
        archive = _first(source, f"{folder}.zip")
        counts[folder] = _unzip(archive, target / folder, progress, strip=_zip_prefix(archive, folder))
    return counts


def prepare_coco2017(source: Path, target: Path, progress: bool) -> dict[str, int]:
    """COCO's ``val2017.zip`` and ``annotations_trainval2017.zip`` (or its ``captions_val2017.json``) ->
    ``val2017/`` + ``annotations/captions_val2017.json``, COCO's own layout (:mod:`probe.data.coco`)."""
    (target / "annotations").mkdir(parents=True, exist_ok=True)
    captions = target / "annotations" / "captions_val2017.json"
    annotations = _first(source, "annotations_trainval2017.zip|captions_val2017.json")
    if annotations.suffix == ".zip":
        try:
            with zipfile.ZipFile(annotations) as zf:
                if "annotations/captions_val2017.json" not in zf.namelist():
                    raise ProbeError(f"{annotations} holds no annotations/captions_val2017.json "
                                     "(COCO's annotations_trainval2017.zip does)")
                captions.write_bytes(zf.read("annotations/captions_val2017.json"))
        except _ZIP_ERRORS as exc:
            raise _damaged(annotations, exc) from None
    elif annotations.resolve() != captions.resolve():
        shutil.copy2(annotations, captions)
    archive = _first(source, "val2017.zip")
    return {"val2017": _unzip(archive, target / "val2017", progress, strip=_zip_prefix(archive, "val2017"))}


PUBLISHED: dict[str, Published] = {
    "imagenet1k": Published(
        "imagenet1k", ("ILSVRC2012_img_val.tar", "ILSVRC2012_devkit_t12.tar.gz"),
        "log in at https://image-net.org, download 'Validation images (all tasks)' and 'Development kit "
        "(Task 1 & 2)' of ILSVRC2012 into the source folder", prepare_imagenet, source_beside=True),
    "coco-karpathy": Published(
        "coco-karpathy", ("dataset_coco.json|caption_datasets.zip", "train2014.zip", "val2014.zip"),
        "Karpathy's caption_datasets.zip (cs.stanford.edu/people/karpathy/deepimagesent) and train2014.zip, "
        "val2014.zip from https://cocodataset.org/#download", prepare_coco),
    "coco-val2017": Published(
        "coco-val2017", ("val2017.zip", "annotations_trainval2017.zip|captions_val2017.json"),
        "val2017.zip and annotations_trainval2017.zip from https://cocodataset.org/#download", prepare_coco2017),
    "flickr30k-karpathy": Published(
        "flickr30k-karpathy", ("flickr_annotations_30k.csv", "flickr30k-images.zip"),
        "huggingface-cli download nlphuji/flickr30k --repo-type dataset --local-dir SOURCE", prepare_flickr30k,
        hub_repo="nlphuji/flickr30k"),
    "datacomp-flickr": nlphuji_retrieval(
        "datacomp-flickr", "nlphuji/flickr_1k_test_image_text_retrieval", "test_1k_flickr.csv",
        "images_flickr_1k_test.zip", "dataset_flickr_1k_test.json"),
    "datacomp-mscoco": nlphuji_retrieval(
        "datacomp-mscoco", "nlphuji/mscoco_2014_5k_test_image_text_retrieval", "test_5k_mscoco_2014.csv",
        "images_mscoco_2014_5k_test.zip", "dataset_mscoco_2014_5k_test.json"),
    "winoground": Published(
        "winoground", ("examples.jsonl|data/examples.jsonl", "images.zip|data/images.zip"),
        "accept Winoground's terms at https://huggingface.co/datasets/facebook/winoground, then "
        "huggingface-cli download facebook/winoground --repo-type dataset --local-dir SOURCE", prepare_winoground,
        hub_repo="facebook/winoground"),
}


def prepare_clip_wds(source: Path, target: Path, progress: bool) -> dict[str, int]:
    """clip_benchmark's webdataset sets are published in the layout their reader takes: check it.
    A copy is made beside the target and swapped in when complete, so the old data stays until then."""
    if source.resolve() != target.resolve():
        if target.resolve().is_relative_to(source.resolve()):
            raise ProbeError(f"--source {source} holds the benchmark's data folder {target}; a copy into it would "
                             "copy itself: point --source at the downloaded folder alone")
        staging = target.with_name(f".{target.name}.copying")
        if staging.exists():
            shutil.rmtree(staging)
        shutil.copytree(source, staging)
        _swap_in(staging, target)
    shards = sorted((target / "test").glob("*.tar"))
    if not shards:
        raise ProbeError(f"{target / 'test'} holds no .tar shards (clip_benchmark's layout: test/0.tar ...)")
    from probe.data.published import retrieval_type

    return {"test shards": len(shards), **({"retrieval": 1} if retrieval_type(target) == "retrieval" else {})}


def published(name: str) -> Published | None:
    """How benchmark ``name`` is prepared: one of :data:`PUBLISHED`, or a clip_benchmark webdataset set
    (any catalogue entry read by ``clip-wds``, fetched from the hub's ``clip-benchmark/<folder>`` or
    the repo the entry names, such as DataComp's ``djghosh/wds_<task>_test``)."""
    if name in PUBLISHED:
        return PUBLISHED[name]
    from probe.evaluation.catalogue import Catalogue

    entry = Catalogue.load().benchmarks.get(name)
    if entry is None or entry.reader != "clip-wds" or entry.unsupported:
        return None
    repo = entry.hub_repo or f"clip-benchmark/{Path(entry.data).name}"
    metadata = "dataset_type.txt" if "retrieval" in entry.task else "classnames.txt"
    return Published(name, ("test", metadata),
                     f"huggingface-cli download {repo} --repo-type dataset --local-dir SOURCE", prepare_clip_wds,
                     hub_repo=repo)


def prepare(name: str, source: str | Path | None = None, allow_download: bool = False,
            progress: bool = True) -> tuple[Path, dict[str, int]]:
    """Put benchmark ``name``'s published files into its reader's layout; ``(data folder, counts)``.

    ``source`` holds the downloaded files (default: the data folder's parent, where they usually are
    downloaded to). With ``allow_download`` a hub-hosted benchmark's files are fetched there first.
    """
    from filelock import FileLock

    from probe.evaluation.catalogue import Catalogue
    from probe.io import sha256_file

    found = published(name)
    if found is None:
        raise ProbeError(f"{name!r} is not a published benchmark probe can prepare")
    entry = Catalogue.load().benchmarks[name]
    data, target = entry.data_path(), entry.data_folder()  # the folder the reader's files go in
    folder = Path(source).expanduser() if source else (target.parent if found.source_beside else target)
    if folder.resolve() != target.resolve() and folder.resolve().is_relative_to(target.resolve()):
        raise ProbeError(f"--source {folder} is inside the benchmark's data folder {target}, which the preparation "
                         "writes (and may replace): move the downloads out of it first")
    missing = found.missing(folder)
    if missing and allow_download and found.hub_repo:
        from huggingface_hub import snapshot_download

        snapshot_download(found.hub_repo, repo_type="dataset", local_dir=str(folder))
        missing = found.missing(folder)
    if missing:
        hint = found.download.replace("SOURCE", str(folder))
        raise ProbeError(f"{name}: {', '.join(missing)} not in {folder}; {hint}"
                         + (" (or pass --allow-download)" if found.hub_repo else "")
                         + ", or point --source at the folder holding them")
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target.parent / f".{target.name}.prepare.lock")):  # a second run waits
        used = [_first(folder, need) for need in found.needs]
        preparing = entry.preparing_marker()
        preparing.write_text(f"probe data get {name} started; the data is trusted once it finishes\n")
        (target / MARKER).unlink(missing_ok=True)  # complete only when written again, last
        counts = found.prepare(folder, target, progress)
        write_json(target / MARKER, {"benchmark": name, "counts": counts, "source": str(folder),
                             "source_files": {p.name: {"bytes": p.stat().st_size, "sha256": sha256_file(p)}
                                              for p in used if p.is_file()}})
        preparing.unlink()
    return data, counts
