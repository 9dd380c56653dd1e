"""Karpathy-split caption files: the world's retrieval split, strict reading, keying rules."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lxmert.data import DataFormatError
from lxmert.data.karpathy import SPLITS, dataset_json, image_entry, read_karpathy, tokenize
from lxmert.features.store import FeatureStore
from lxmert.features.tsv import read_tsv

from support.world import make_world

# Two images in the layout of dataset_coco.json (fields and order as the published file).
COCO = {
    "images": [
        {"filepath": "val2014", "sentids": [770337, 771687], "filename": "COCO_val2014_000000391895.jpg",
         "imgid": 0, "split": "test",
         "sentences": [
             {"tokens": ["a", "man", "with", "a", "red", "helmet"], "raw": "A man with a red helmet. ",
              "imgid": 0, "sentid": 770337},
             {"tokens": ["man", "riding", "a", "motor", "bike"], "raw": "Man riding a motor bike.",
              "imgid": 0, "sentid": 771687}],
         "cocoid": 391895},
        {"filepath": "train2014", "sentids": [1, 2], "filename": "COCO_train2014_000000000009.jpg",
         "imgid": 1, "split": "restval",
         "sentences": [
             {"tokens": ["a", "plate"], "raw": "A plate.", "imgid": 1, "sentid": 1},
             {"tokens": ["some", "food"], "raw": "Some food.", "imgid": 1, "sentid": 2}],
         "cocoid": 9},
    ],
    "dataset": "coco",
}


def write(tmp_path: Path, data, name: str = "dataset_coco.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    return make_world(tmp_path_factory.mktemp("karpathy"), images=30, store=True)


def test_the_world_writes_a_retrieval_split_keyed_to_its_store(world: Path):
    path = world / "retrieval/dataset_world.json"
    store = FeatureStore.open(world / "features/store")
    pretrain = {e["img_id"]: e["sentf"]["mscoco"]
                for f in ("mscoco_train", "mscoco_minival") for e in json.loads((world / f"lxmert/{f}.json").read_text())}
    for split, tsv in (("train", "train"), ("val", "val"), ("test", "test")):
        got = read_karpathy(path, split)
        assert got.source == "world" and got.splits == (split,)
        assert list(got.image_ids) == [r["img_id"] for r in read_tsv(world / f"features/{tsv}_obj36.tsv")]
        assert all(i in store for i in got.image_ids)
        per_image = got.image_sentences()
        assert all(len(s) == 5 for s in per_image), "five captions per image, as COCO and Flickr30k"
        for i, img in enumerate(got.image_ids):
            captions = [got.sentences[j] for j in per_image[i]]
            assert len(set(captions)) == len(captions)
            if split != "test":  # the captions are the pre-training "mscoco" sentences
                assert captions == pretrain[img]
            else:
                assert img not in pretrain
    raw = json.loads(path.read_text())
    first = raw["images"][0]
    assert first.keys() == {"filepath", "sentids", "filename", "imgid", "split", "sentences"}
    assert first["filepath"] == "images" and first["filename"] == "synth_train_000000.png"
    assert first["sentences"][0].keys() == {"tokens", "raw", "imgid", "sentid"}
    assert " ".join(first["sentences"][0]["tokens"]) in first["sentences"][0]["raw"].replace(",", "")
    sentids = [s["sentid"] for im in raw["images"] for s in im["sentences"]]
    assert sentids == list(range(len(sentids)))


def test_coco_layout_and_keying_rules(tmp_path: Path):
    path = write(tmp_path, COCO)
    test = read_karpathy(path, "test")
    assert test.image_ids == ("COCO_val2014_000000391895",)  # the LXMERT release's feature ids
    assert test.sentences == ("A man with a red helmet. ", "Man riding a motor bike.")
    assert test.sentence_image == (0, 0) and test.sentence_ids == (770337, 771687)
    both = read_karpathy(path, ("train", "restval"))
    assert both.image_ids == ("COCO_train2014_000000000009",) and both.sentence_image == (0, 0)
    assert read_karpathy(path, "val").image_ids == ()
    assert read_karpathy(path, SPLITS, "COCO_{filepath}_{cocoid:012d}").image_ids == (
        "COCO_val2014_000000391895", "COCO_train2014_000000000009")
    assert read_karpathy(path, "test", "{cocoid}").image_ids == ("391895",)
    assert read_karpathy(path, "test", "img{imgid}").image_ids == ("img0",)


@pytest.mark.parametrize("image_key, message", [
    ("cocoid", "must be 'stem' or a template"),
    ("{coco_id}", r"unknown field\(s\) \['coco_id'\]"),
    ("{cocoid", "not a format template"),
])
def test_bad_image_keys(tmp_path: Path, image_key: str, message: str):
    with pytest.raises(ValueError, match=message):
        read_karpathy(write(tmp_path, COCO), "test", image_key)


@pytest.mark.parametrize("split", ["testing", "", ()])
def test_bad_split_names(tmp_path: Path, split):
    with pytest.raises(ValueError, match="split must be among"):
        read_karpathy(write(tmp_path, COCO), split)


def _set(path: tuple, value):
    def edit(data):
        target = data
        for key in path[:-1]:
            target = target[key]
        if value is _DELETE:
            del target[path[-1]]
        else:
            target[path[-1]] = value
        return data
    return edit


_DELETE = object()


@pytest.mark.parametrize("edit, message", [
    (lambda d: [1, 2], "the top level must be an object"),
    (_set(("dataset",), _DELETE), "missing key 'dataset'"),
    (_set(("images",), {}), "'images' must be a list, got dict"),
    (_set(("images", 1), "x"), r"images\[1\]: must be an object"),
    (_set(("images", 1, "filename"), _DELETE), r"images\[1\]: missing key 'filename'"),
    (_set(("images", 1, "imgid"), "1"), r"images\[1\]: 'imgid' must be an integer, got str"),
    (_set(("images", 1, "imgid"), True), r"images\[1\]: 'imgid' must be an integer, got bool"),
    (_set(("images", 1, "imgid"), 0), r"images\[1\]: 'imgid' 0 repeats images\[0\]"),
    (_set(("images", 1, "split"), "dev"), r"images\[1\]: 'split' must be one of"),
    (_set(("images", 1, "sentences"), None), r"images\[1\]: 'sentences' must be a list, got NoneType"),
    (_set(("images", 1, "filename"), "COCO_val2014_000000391895.png"),
     r"images\[1\]: image id 'COCO_val2014_000000391895' \(image_key 'stem'\) repeats images\[0\]"),
    (_set(("images", 1, "sentids"), [2, 1]), r"images\[1\]: 'sentids' \[2, 1\] differ"),
    (_set(("images", 1, "cocoid"), "9"), r"images\[1\]: 'cocoid' must be an integer"),
    (_set(("images", 1, "sentences", 1, "raw"), _DELETE), r"images\[1\]\.sentences\[1\]: missing key 'raw'"),
    (_set(("images", 1, "sentences", 1, "raw"), "  "), r"images\[1\]\.sentences\[1\]: 'raw' is empty"),
    (_set(("images", 1, "sentences", 1, "raw"), ["x"]), r"images\[1\]\.sentences\[1\]: 'raw' must be a string"),
    (_set(("images", 1, "sentences", 1, "sentid"), 770337),
     r"images\[1\]\.sentences\[1\]: 'sentid' 770337 repeats images\[0\]\.sentences\[0\]"),
    (_set(("images", 1, "sentences", 1, "tokens"), "some food"), r"sentences\[1\]: 'tokens' must be a list"),
    (_set(("images", 1, "sentences", 1, "imgid"), 0), r"sentences\[1\]: 'imgid' 0 differs from its image's 1"),
    (_set(("images", 1, "sentences", 0), 3), r"images\[1\]\.sentences\[0\]: must be an object"),
])
def test_bad_files_name_the_file_image_and_key(tmp_path: Path, edit, message: str):
    path = write(tmp_path, edit(copy.deepcopy(COCO)))
    with pytest.raises(DataFormatError, match=message) as err:
        read_karpathy(path, "test")  # the whole file is checked, not only the split asked for
    assert str(err.value).startswith(f"{path}: ")


@pytest.mark.parametrize("image_key, field", [("{cocoid}", "cocoid"), ("{filepath}/{stem}", "filepath")])
def test_a_key_field_missing_from_an_image(tmp_path: Path, image_key: str, field: str):
    data = copy.deepcopy(COCO)
    del data["images"][1][field]
    with pytest.raises(DataFormatError, match=rf"images\[1\]: missing key '{field}' \(image_key"):
        read_karpathy(write(tmp_path, data), "test", image_key)
    with pytest.raises(DataFormatError, match=r"images\[0\]: image_key '\{stem:d\}' does not apply"):
        read_karpathy(write(tmp_path, COCO), "test", "{stem:d}")


def test_not_json_and_missing_files(tmp_path: Path):
    path = tmp_path / "bad.json"
    path.write_text('{"images": [')
    with pytest.raises(DataFormatError, match=f"{path}: not valid JSON"):
        read_karpathy(path, "test")
    with pytest.raises(FileNotFoundError, match="nope.json"):
        read_karpathy(tmp_path / "nope.json", "test")


@pytest.mark.parametrize("raw, tokens", [
    ("a large purple wooden pyramid to the right of a gray ball.", "a large purple wooden pyramid to the right of a gray ball"),
    ("a red ball, a blue cone and a green star.", "a red ball a blue cone and a green star"),
    ("A man with a red helmet on a small moped on a dirt road. ", "a man with a red helmet on a small moped on a dirt road"),
    ("Two 3-year-olds", "two 3 year olds"),
])
def test_tokenize(raw: str, tokens: str):
    assert tokenize(raw) == tokens.split()


_WORDS = st.text(alphabet="abcdefghij ,.", min_size=1, max_size=30).filter(lambda s: s.strip(" ,."))
_IMAGE = st.tuples(st.sampled_from(SPLITS), st.lists(_WORDS, min_size=0, max_size=6))


@settings(max_examples=60, deadline=None)
@given(images=st.lists(_IMAGE, min_size=1, max_size=12), first=st.integers(0, 10**6))
def test_written_files_read_back(tmp_path_factory, images, first: int):
    """image_entry/dataset_json round-trip through read_karpathy for every split choice."""
    entries, sentid = [], first
    for k, (split, sentences) in enumerate(images):
        entries.append(image_entry(f"img{k:03d}.jpg", k, split, sentences, sentid, cocoid=1000 + k))
        sentid += len(sentences)
    path = write(tmp_path_factory.mktemp("prop"), dataset_json("prop", entries))
    for wanted in [(s,) for s in SPLITS] + [SPLITS]:
        got = read_karpathy(path, wanted)
        keep = [k for k, (split, _) in enumerate(images) if split in wanted]
        assert got.image_ids == tuple(f"img{k:03d}" for k in keep)
        assert got.sentences == tuple(s for k in keep for s in images[k][1])
        assert [got.image_ids[i] for i in got.sentence_image] == [f"img{k:03d}" for k in keep for _ in images[k][1]]
        assert len(got.sentence_ids) == len(set(got.sentence_ids)) == len(got.sentences)
        assert read_karpathy(path, wanted, "{cocoid}").image_ids == tuple(str(1000 + k) for k in keep)
    for entry in entries:
        for sent in entry["sentences"]:
            assert sent["tokens"] == tokenize(sent["raw"]) and sent["imgid"] == entry["imgid"]
