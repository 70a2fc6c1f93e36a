import io
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest

from movierec import data
from movierec.data import DataError, load_movielens

from .conftest import write_csv

MOVIES = ("movieId,title,genres\n1,A (1999),Comedy\n2,B (2000),Drama|Comedy\n"
          "3,C (2001),(no genres listed)\n")
RATINGS = "userId,movieId,rating,timestamp\n1,1,4.0,10\n1,2,3.5,11\n2,1,0.5,12\n2,3,5.0,13\n"
TAGS = "userId,movieId,tag,timestamp\n1,1,funny,10\n2,1,Funny,11\n2,2,,12\n"


def make_dataset(folder: Path, movies=MOVIES, ratings=RATINGS, tags=TAGS) -> Path:
    write_csv(folder, "movies.csv", movies)
    write_csv(folder, "ratings.csv", ratings)
    write_csv(folder, "tags.csv", tags)
    return folder


def test_load_valid_dataset_types_and_dropped_tags(tmp_path):
    ds = load_movielens(make_dataset(tmp_path / "d"))
    assert ds.ratings.dtypes.to_dict() == {"userId": np.int32, "movieId": np.int32,
                                          "rating": np.float32, "timestamp": np.int64}
    assert ds.ratings["rating"].tolist() == [4.0, 3.5, 0.5, 5.0]
    assert len(ds.tags) == 2 and ds.dropped == {"nan_tags": 1}
    assert not ds.has_genome
    assert set(ds.checksums) == {"movies.csv", "ratings.csv", "tags.csv"}


def test_crlf_and_bom_are_read(tmp_path):
    folder = tmp_path / "d"
    folder.mkdir()
    (folder / "movies.csv").write_bytes(("\ufeff" + MOVIES).replace("\n", "\r\n").encode())
    (folder / "ratings.csv").write_bytes(RATINGS.replace("\n", "\r\n").encode())
    (folder / "tags.csv").write_bytes(TAGS.replace("\n", "\r\n").encode())
    ds = load_movielens(folder)
    assert ds.movies["movieId"].tolist() == [1, 2, 3]
    assert len(ds.ratings) == 4


@pytest.mark.parametrize(
    ("file", "text", "column", "problem", "lines"),
    [
        ("ratings.csv", RATINGS.replace("3.5", "abc"), "rating", "expected a number", [3]),
        ("ratings.csv", RATINGS.replace("3.5", "6.0"), "rating", "half star", [3]),
        ("ratings.csv", RATINGS.replace("3.5", "3.3"), "rating", "half star", [3]),
        ("ratings.csv", RATINGS.replace("0.5", "0.0"), "rating", "half star", [4]),
        ("ratings.csv", RATINGS.replace("2,3,5.0", ",3,5.0"), "userId", "missing", [5]),
        ("ratings.csv", RATINGS.replace("1,2,3.5", "1,1,3.5"), "userId, movieId", "duplicate",
         [3]),
        ("ratings.csv", RATINGS.replace("2,3,5.0", "2,9,5.0"), "movieId", "absent", [5]),
        ("ratings.csv", RATINGS.replace("2,3,5.0", "2,99999999999,5.0"), "movieId", "outside",
         [5]),
        ("ratings.csv", RATINGS.replace("2,3,5.0", "2,3.5,5.0"), "movieId", "integer", [5]),
        ("ratings.csv", RATINGS.replace("2,3,5.0", "2,3,nan"), "rating", "non-finite", [5]),
        ("tags.csv", TAGS.replace("2,2,,12", "2,7,x,12"), "movieId", "absent", [4]),
        # an unknown movie after an empty tag: the line is the file's own, not the kept rows'
        ("tags.csv", TAGS + "3,9,late,13\n", "movieId", "absent", [5]),
        ("movies.csv", MOVIES.replace("3,C", "2,C"), "movieId", "duplicate", [4]),
        ("movies.csv", MOVIES.replace("Drama|Comedy", ""), "genres", "empty genres", [3]),
    ],
)
def test_bad_input_names_file_column_and_lines(tmp_path, file, text, column, problem, lines):
    folder = make_dataset(tmp_path / "d")
    write_csv(folder, file, text)
    with pytest.raises(DataError) as err:
        load_movielens(folder)
    e = err.value
    assert e.file.endswith(file) and e.column == column and e.lines == lines
    assert problem in str(e) and file in str(e) and f"line {lines[0]}" in str(e)
    assert e.count == len(lines)


def test_missing_file_and_column(tmp_path):
    folder = make_dataset(tmp_path / "d")
    (folder / "tags.csv").unlink()
    with pytest.raises(DataError, match=r"tags\.csv: file not found"):
        load_movielens(folder)
    make_dataset(folder, ratings=RATINGS.replace("rating,", "stars,"))
    with pytest.raises(DataError, match=r"ratings\.csv: missing column\(s\) \['rating'\]"):
        load_movielens(folder)


def test_empty_and_non_utf8_files_raise_data_error(tmp_path):
    folder = make_dataset(tmp_path / "d")
    write_csv(folder, "ratings.csv", "")
    with pytest.raises(DataError, match=r"ratings\.csv"):
        load_movielens(folder)
    make_dataset(folder)
    (folder / "movies.csv").write_bytes(MOVIES.replace("A (1999)", "Am\xe9lie").encode("latin-1"))
    with pytest.raises(DataError, match=r"movies\.csv"):
        load_movielens(folder)


@pytest.mark.realdata
def test_real_small_dataset(small_dir):
    ds = load_movielens(small_dir)
    assert ds.summary() == {"movies": 9742, "ratings": 100836, "tags": 3683, "users": 610}
    assert ds.dropped == {"nan_tags": 0}
    for name, digest in ds.checksums.items():
        assert data.DATASETS["ml-latest-small"].sha256[name] == digest


# --- download: never the network; a fake opener serves bytes -----------------------------


class FakeResponse(io.BytesIO):
    def __init__(self, payload: bytes, length: int | None = None):
        super().__init__(payload)
        self.headers = {"Content-Length": str(len(payload) if length is None else length)}


def zip_bytes(files: dict[str, bytes], prefix: str = "ml-latest-small/") -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, content in files.items():
            zf.writestr(prefix + name, content)
    return buf.getvalue()


def real_small_files(small_dir) -> dict[str, bytes]:
    return {n: (small_dir / n).read_bytes()
            for n in ("movies.csv", "ratings.csv", "tags.csv", "links.csv")}


def never_called(url):
    raise AssertionError(f"network touched: {url}")


def test_fetch_skips_when_present(tmp_path):
    root = tmp_path / "root"
    make_dataset(root / "ml-latest-small")
    assert data.fetch("ml-latest-small", root, opener=never_called) == root / "ml-latest-small"


@pytest.mark.realdata
def test_fetch_downloads_verifies_and_extracts(tmp_path, small_dir):
    payload = zip_bytes(real_small_files(small_dir))
    calls = []

    def opener(url):
        calls.append(url)
        return FakeResponse(payload)

    folder = data.fetch("ml-latest-small", tmp_path, opener=opener)
    assert calls == [data.DATASETS["ml-latest-small"].url]
    assert (folder / "ratings.csv").read_bytes() == (small_dir / "ratings.csv").read_bytes()
    assert "ratings.csv" in (folder / "SHA256SUMS").read_text()
    assert [p.name for p in tmp_path.iterdir()] == ["ml-latest-small"]  # no temp leftovers
    data.fetch("ml-latest-small", tmp_path, opener=never_called)  # second run: offline


@pytest.mark.realdata
def test_fetch_rejects_checksum_mismatch_and_leaves_nothing(tmp_path, small_dir):
    files = real_small_files(small_dir)
    files["ratings.csv"] = files["ratings.csv"].replace(b"4.0", b"3.0", 1)
    with pytest.raises(DataError, match="SHA-256 mismatch"):
        data.fetch("ml-latest-small", tmp_path, opener=lambda url: FakeResponse(zip_bytes(files)))
    assert list(tmp_path.iterdir()) == []


def test_truncated_download_leaves_nothing(tmp_path):
    payload = zip_bytes({"movies.csv": MOVIES.encode()})
    with pytest.raises(DataError, match="truncated download"):
        data.fetch("ml-latest-small", tmp_path,
                   opener=lambda url: FakeResponse(payload[:50], length=len(payload)))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.realdata
def test_download_cut_midway_then_next_run_completes(tmp_path, small_dir):
    payload = zip_bytes(real_small_files(small_dir))

    class CutResponse(FakeResponse):
        def read(self, n=-1):
            if self.tell() > len(payload) // 2:
                raise ConnectionResetError("connection cut")
            return super().read(n)

    with pytest.raises(ConnectionResetError):
        data.fetch("ml-latest-small", tmp_path, opener=lambda url: CutResponse(payload))
    assert list(tmp_path.iterdir()) == []  # nothing a later run would trust
    folder = data.fetch("ml-latest-small", tmp_path, opener=lambda url: FakeResponse(payload))
    assert (folder / "ratings.csv").read_bytes() == (small_dir / "ratings.csv").read_bytes()


@pytest.mark.parametrize("name", ["ml-32m", "ml-25m", "ml-20m"])
def test_zip_md5_mismatch_for_frozen_release(tmp_path, name):
    payload = zip_bytes({"movies.csv": MOVIES.encode()}, prefix=f"{name}/")
    urls = []

    def opener(url):
        urls.append(url)
        return FakeResponse(payload)

    with pytest.raises(DataError, match=f"MD5 mismatch: expected {data.DATASETS[name].zip_md5}"):
        data.fetch(name, tmp_path, opener=opener)
    assert urls == [f"https://files.grouplens.org/datasets/movielens/{name}.zip"]
    assert list(tmp_path.iterdir()) == []


def test_safe_extract_refuses_escaping_members_and_symlinks(tmp_path):
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as zf:
        zf.writestr("../outside.txt", "x")
    with pytest.raises(DataError, match="escapes"):
        data.safe_extract(evil, tmp_path / "out")
    assert not (tmp_path / "outside.txt").exists()
    link = tmp_path / "link.zip"
    with zipfile.ZipFile(link, "w") as zf:
        info = zipfile.ZipInfo("ml/link")
        info.external_attr = (0o120777 << 16)
        zf.writestr(info, "/etc/passwd")
    with pytest.raises(DataError, match="symbolic link"):
        data.safe_extract(link, tmp_path / "out2")


def test_unknown_dataset_name(tmp_path):
    with pytest.raises(KeyError, match="unknown dataset"):
        data.fetch("ml-1b", tmp_path)


def test_genome_is_loaded_and_validated(tiny_dir, tmp_path):
    ds = load_movielens(tiny_dir)
    assert ds.has_genome and ds.summary()["genome_tags"] == 64
    folder = tmp_path / "g"
    shutil.copytree(tiny_dir, folder)
    scores = (folder / "genome-scores.csv").read_text().splitlines()
    movie, _, rel = scores[2].split(",")
    cases = {
        "relevance outside": [*scores[:2], f"{movie},2,1.5", *scores[3:]],
        "incomplete movie x tag grid": scores[:-1],
        "duplicate \\(movieId, tagId\\)": [*scores, scores[-1]],
        "tagId not in genome-tags": [*scores[:2], f"{movie},999,{rel}", *scores[3:]],
    }
    for problem, lines in cases.items():
        (folder / "genome-scores.csv").write_text("\n".join(lines) + "\n")
        with pytest.raises(DataError, match=f"genome-scores.csv.*{problem}"):
            load_movielens(folder)


def test_missing_dataset_folder_and_incomplete_archive(tmp_path):
    with pytest.raises(DataError, match="dataset folder not found"):
        load_movielens(tmp_path / "nowhere")
    payload = zip_bytes({"movies.csv": MOVIES.encode()})  # no ratings.csv, tags.csv
    lacks = r"archive lacks expected files \['ratings.csv', 'tags.csv'\]"
    with pytest.raises(DataError, match=lacks):
        data.fetch("ml-latest-small", tmp_path, opener=lambda url: FakeResponse(payload))
    assert list(tmp_path.iterdir()) == []
