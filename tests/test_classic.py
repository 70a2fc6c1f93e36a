"""The classic releases, ml-100k, ml-1m and ml-10m, read from their own files (headerless,
latin-1 or UTF-8, their own separators) into the same typed, validated frames as today's CSV
releases."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from movierec import data, synth
from movierec.data import DATASETS, RATING_COLUMNS, DataError, load_movielens
from movierec.experiment import Experiment
from movierec.features import GENRES
from movierec.prepare import prepare

U_ITEM = ("1|Toy Story (1995)|01-Jan-1995||http://x|0|0|0|1|1|1|0|0|0|0|0|0|0|0|0|0|0|0|0\n"
          "2|Misérables, Les (1995)|01-Jan-1995||http://x|0|0|0|0|0|0|0|0|1|0|0|0|0|0|1|0|0|0|0\n"
          "3|unknown|||http://x|1|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0\n")
U_DATA = "7\t1\t5\t881250949\n7\t2\t3\t881250950\n9\t3\t1\t891717742\n9\t1\t4\t878887116\n"
MOVIES_DAT = ("1::Toy Story (1995)::Animation|Children's|Comedy\n"
              "2::Misérables, Les (1995)::Drama|Musical\n")
RATINGS_DAT = "1::1::5::978300760\n1::2::3::978302109\n2::1::4::978301968\n"
# ml-10m: ml-latest's genre names (IMAX, none listed), half stars, UTF-8, and tags.dat, whose
# tag is free text (it may hold the separator; an empty one is dropped and counted)
MOVIES_10M = ("1::Toy Story (1995)::Adventure|Animation|Children|Comedy|Fantasy\n"
              "2::Misérables, Les (1995)::Drama|IMAX\n"
              "3::Nothing Listed (2007)::(no genres listed)\n")
RATINGS_10M = "5::1::4.5::838985046\n5::3::0.5::838983525\n8::2::3::1115858432\n"
TAGS_10M = ("5::1::pixar::1139045764\n5::2::Victor Hugo::1139045765\n"
            "8::2::::1188263867\n8::3::ratio::2.35:1::1188263868\n")


def write(folder: Path, files: dict[str, str], encoding: str = "latin-1") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_bytes(text.encode(encoding))
    return folder


def ml_10m(tmp_path: Path, **files: str) -> Path:
    """An ml-10m folder (UTF-8) with its files, ``files`` replacing some."""
    return write(tmp_path / "ml-10M100K", {"movies.dat": MOVIES_10M, "ratings.dat": RATINGS_10M,
                                           "tags.dat": TAGS_10M, **{k.replace("_", "."): v
                                                                    for k, v in files.items()}},
                 "utf-8")


def test_ml_100k_native_files_load_typed_with_ml_latest_genres(tmp_path):
    ds = load_movielens(write(tmp_path / "ml-100k", {"u.item": U_ITEM, "u.data": U_DATA}))
    assert ds.movies.genres.tolist() == ["Animation|Children|Comedy", "Drama|Romance",
                                         "(no genres listed)"]
    assert ds.movies.title[1] == "Misérables, Les (1995)"  # latin-1 decoded
    assert ds.movies.movieId.dtype == np.int32 and ds.ratings.rating.dtype == np.float32
    assert ds.ratings.timestamp.dtype == np.int64 and ds.ratings.userId.dtype == np.int32
    assert ds.ratings.rating.tolist() == [5.0, 3.0, 1.0, 4.0] and len(ds.tags) == 0
    assert set(ds.checksums) == {"u.data", "u.item"} and ds.summary()["users"] == 2
    features = prepare(ds).features  # every mapped genre is one of ml-latest's
    assert set(features.genres.indices) <= set(range(len(GENRES)))


def test_ml_1m_native_files_load_typed_with_ml_latest_genres(tmp_path):
    ds = load_movielens(write(tmp_path / "ml-1m", {"movies.dat": MOVIES_DAT,
                                                   "ratings.dat": RATINGS_DAT}))
    assert ds.movies.genres.tolist() == ["Animation|Children|Comedy", "Drama|Musical"]
    assert ds.movies.title[1] == "Misérables, Les (1995)"
    assert ds.ratings[["userId", "movieId"]].values.tolist() == [[1, 1], [1, 2], [2, 1]]
    assert ds.ratings.timestamp.tolist() == [978300760, 978302109, 978301968]
    assert set(ds.checksums) == {"movies.dat", "ratings.dat"}


def test_ml_10m_native_files_load_with_their_tags(tmp_path):
    ds = load_movielens(ml_10m(tmp_path))
    assert ds.movies.genres.tolist() == ["Adventure|Animation|Children|Comedy|Fantasy",
                                         "Drama|IMAX", "(no genres listed)"]
    assert ds.movies.title[1] == "Misérables, Les (1995)"  # UTF-8 decoded
    assert ds.ratings.rating.tolist() == [4.5, 0.5, 3.0]
    assert ds.tags.tag.tolist() == ["pixar", "Victor Hugo", "ratio::2.35:1"]
    assert ds.tags.timestamp.tolist() == [1139045764, 1139045765, 1188263868]
    assert ds.tags.userId.dtype == np.int32 and ds.dropped == {"nan_tags": 1}
    assert set(ds.checksums) == {"movies.dat", "ratings.dat", "tags.dat"}
    prep = prepare(ds)  # the tags reach the features as tags.csv's do
    assert prep.features.tags.indices.size > 0 and prep.features.blocks() == ["genres", "tags"]
    assert set(prep.features.genres.indices) <= set(range(len(GENRES)))


@pytest.mark.parametrize("files,match", [
    ({"tags_dat": TAGS_10M + "8::1::1188263869\n"},
     r"tags.dat: expected 4 fields separated by '::' .*\(1 row; first at line 5\)"),
    ({"tags_dat": TAGS_10M + "8::44::gone::1188263869\n"},  # after the empty tag's line
     r"tags.dat, column 'movieId': movieId absent from movies.dat \(1 row; first at line 5\)"),
    ({"tags_dat": TAGS_10M.replace("8::2::::", "8::x::::")},
     r"tags.dat, column 'movieId': expected a number .*line 3\)"),
    ({"ratings_dat": RATINGS_10M + "8::1::3.7::1115858433\n"},
     r"ratings.dat, column 'rating': rating is not a half star .*line 4\)"),
])
def test_bad_ml_10m_files_name_file_column_and_line(tmp_path, files, match):
    with pytest.raises(DataError, match=match):
        prepare(load_movielens(ml_10m(tmp_path, **files)))


@pytest.mark.parametrize("layout,files,match", [
    ("ml-100k", {"u.item": U_ITEM, "u.data": U_DATA.replace("\t3\t1\t", "\t3\tx\t")},
     r"u.data, column 'rating': expected a number \(1 row; first at line 3\)"),
    ("ml-100k", {"u.item": U_ITEM, "u.data": U_DATA + "9\t2\t6\t891717743\n"},
     r"u.data, column 'rating': rating is not a half star .*line 5\)"),
    ("ml-100k", {"u.item": U_ITEM, "u.data": U_DATA + "9\t44\t4\t891717743\n"},
     r"u.data, column 'movieId': movieId absent from u.item .*line 5\)"),
    ("ml-100k", {"u.item": U_ITEM, "u.data": U_DATA + "7\t1\t2\t891717743\n"},
     r"u.data, column 'userId, movieId': duplicate \(userId, movieId\) rating .*line 5\)"),
    ("ml-100k", {"u.item": U_ITEM, "u.data": U_DATA.replace("9\t3\t1\t", "9\t3 1\t")},
     r"u.data: expected 4 fields separated by '\\t' .*line 3\)"),
    ("ml-100k", {"u.item": U_ITEM.replace("|1|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0\n",
                                          "|2|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0\n"),
                 "u.data": U_DATA},
     r"u.item, column 'unknown': genre flag not 0 or 1 \(1 row; first at line 3\)"),
    ("ml-100k", {"u.item": U_ITEM.replace("|1|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0\n",
                                          "|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0\n"),
                 "u.data": U_DATA},
     r"u.item, column 'genres': no genre flag set .*line 3\)"),
    ("ml-1m", {"movies.dat": MOVIES_DAT + "1::Again (1995)::Drama\n", "ratings.dat": RATINGS_DAT},
     r"movies.dat, column 'movieId': duplicate movieId \(1 row; first at line 3\)"),
    ("ml-1m", {"movies.dat": MOVIES_DAT, "ratings.dat": RATINGS_DAT.replace("2::1::4", "2::1")},
     r"ratings.dat: expected 4 fields separated by '::' .*line 3\)"),
    ("ml-1m", {"movies.dat": MOVIES_DAT.replace("Drama|Musical", "Drama|Polka"),
               "ratings.dat": RATINGS_DAT},
     r"movies.dat, column 'genres': unknown genre\(s\) \['Polka'\].*line 2\)"),
])
def test_bad_native_files_name_file_column_and_line(tmp_path, layout, files, match):
    folder = write(tmp_path / layout, files)
    with pytest.raises(DataError, match=match):
        prepare(load_movielens(folder))


def test_a_missing_native_file_is_named(tmp_path):
    with pytest.raises(DataError, match=r"u.data: file not found"):
        load_movielens(write(tmp_path / "ml-100k", {"u.item": U_ITEM}))


@pytest.mark.parametrize("name, files", [("ml-100k", {"u.item": U_ITEM, "u.data": U_DATA}),
                                         ("ml-1m", {"movies.dat": MOVIES_DAT,
                                                    "ratings.dat": RATINGS_DAT}),
                                         ("ml-10m", {"movies.dat": MOVIES_10M,
                                                     "ratings.dat": RATINGS_10M,
                                                     "tags.dat": TAGS_10M})])
def test_classic_releases_are_fetched_from_grouplens_and_checked_against_its_md5(
        tmp_path, monkeypatch, name, files):
    """A classic release is downloaded from GroupLens and refused unless the zip has the MD5
    GroupLens published for it (the registry's); the archive GroupLens would serve is
    extracted and loads from its native files. No network: the opener is a fake."""
    import dataclasses
    import hashlib
    import re

    from movierec import data

    from .test_data import FakeResponse, zip_bytes

    payload = zip_bytes({f: text.encode("utf-8") for f, text in files.items()},
                        prefix=f"{DATASETS[name].folder or name}/")  # ml-10m's: ml-10M100K/
    urls = []

    def opener(url):
        urls.append(url)
        return FakeResponse(payload)

    published = DATASETS[name].zip_md5
    assert re.fullmatch(r"[0-9a-f]{32}", published)
    with pytest.raises(DataError, match=f"MD5 mismatch: expected {published}"):
        data.fetch(name, tmp_path, opener=opener)
    assert urls == [f"https://files.grouplens.org/datasets/movielens/{name}.zip"]
    assert list(tmp_path.iterdir()) == []  # nothing a later run would trust is left
    ours = hashlib.md5(payload).hexdigest()
    monkeypatch.setitem(DATASETS, name, dataclasses.replace(DATASETS[name], zip_md5=ours))
    ds = load_movielens(data.fetch(name, tmp_path, opener=opener))
    assert set(ds.checksums) == set(files) and len(ds.ratings) == files[
        next(f for f in files if f in ("u.data", "ratings.dat"))].count("\n")


@pytest.mark.parametrize("layout", ["ml-100k", "ml-1m", "ml-10m"])
def test_generated_data_in_a_classic_layout_prepares_as_the_csv_does(tiny_dir, tmp_path,
                                                                      layout):
    native = load_movielens(synth.to_layout(tiny_dir, tmp_path / layout, layout))
    csv = load_movielens(tiny_dir)
    assert native.ratings.equals(csv.ratings)
    for column in ("movieId", "title"):
        assert native.movies[column].tolist() == csv.movies[column].tolist()
    assert native.tags.equals(csv.tags) if layout == "ml-10m" else len(native.tags) == 0
    prep = prepare(native, leak_free_tags=True)
    assert prep.split.sizes() == prepare(csv).split.sizes() and prep.features.blocks() == [
        "genres", "tags"]
    exp = Experiment(prep, torch.device("cpu"))
    assert len(exp.test_users) > 0


# ratings files the fast path (pyarrow) may misread: each must load as the checked path
# (each line split in Python) loads it, or fail with its message
R = "5::1::4.5::838985046\n5::3::0.5::838983525\n"
TRICKY_RATINGS = {
    "clean": R, "no final newline": R.rstrip("\n"), "CRLF": R.replace("\n", "\r\n"),
    "CR": R.replace("\n", "\r"), "blank line": R.replace("\n", "\n\n", 1),
    "blank last line": R + "\n", "empty file": "", "only a newline": "\n",
    "a tab inside a field": "5::1\t4.5\t838985046\n" + R,
    "quoted": '"5"::1::4.5::838985046\n' + R, "NA": R.replace("4.5", "NA"),
    "nan": R.replace("4.5", "nan"), "inf": R.replace("4.5", "inf"),
    "byte-order mark": "\ufeff" + R, "id 5.0": R.replace("5::1", "5.0::1"),
    "negative id": R.replace("5::1", "-5::1"), "id above int32": R.replace("5::1", "3000000000::1"),
    "timestamp above 2**53": R.replace("838985046", str(2**53 + 1)),
    "timestamp above 2**62": R.replace("838985046", str(2**62 + 2**40)),
    "timestamp at int64's least": R.replace("838985046", str(-(2**63))),
    "three colons": R.replace("5::1", "5:::1"), "one colon": R.replace("5::1", "5:1"),
    "leading space": " " + R, "vertical tab between lines": R.replace("\n", "\x0b", 1),
    "decimals": R.replace("4.5", "3.3").replace("0.5", "2.7182818284590452"),
    "a float32 midpoint": R.replace("4.5", "3.3663276433944702"),  # rounded twice as checked
    "latin-1 byte": R.replace("4.5", "4.5\xe9"), "five fields": R.replace("::0.5", "::0.5::1"),
    "hex id": R.replace("5::1", "0x10::1"), "HEX id": R.replace("5::1", "0X1F::1"),
    "hex float": R.replace("4.5", "0x1p2"), "plus": R.replace("5::1", "+5::1"),
    "trailing space": R.replace("5::1", "5 ::1"), "no-break space": R.replace("5::1", "5\xa0::1"),
    "underscores": R.replace("838985046", "838_985_046"), "id 5e0": R.replace("5::1", "5e0::1"),
    "timestamp 8.38985046e8": R.replace("838985046", "8.38985046e8"),
    "Arabic-Indic digit": R.replace("5::1", "\u0665::1"),
    "leading zeros": R.replace("5::", "005::"),
    "ratings .5, 5., 1E0, -0": R.replace("0.5", ".5").replace("4.5", "5.")
    + R.replace("0.5", "1E0").replace("4.5", "-0"), "Infinity": R.replace("4.5", "Infinity"),
    "decimal comma": R.replace("4.5", "4,5"), "empty field": R.replace("::4.5", "::"),
    "NULL": R.replace("838985046", "NULL"), "True": R.replace("4.5", "True"),
}


def _loaded(path, reader):
    try:
        return reader(path)
    except DataError as error:
        return str(error)


@pytest.mark.parametrize("name", sorted(TRICKY_RATINGS))
def test_the_fast_path_reads_numbers_as_the_checked_path_does(tmp_path, name):
    path = tmp_path / "ratings.dat"
    path.write_bytes(TRICKY_RATINGS[name].encode("latin-1" if "latin" in name else "utf-8"))
    fast = _loaded(path, lambda p: data.read_fields(p, "::", RATING_COLUMNS))
    checked = _loaded(path, lambda p: data._read_fields_checked(
        p, p.read_bytes(), "::", RATING_COLUMNS, None))
    if isinstance(checked, str) or isinstance(fast, str):
        assert fast == checked
    else:
        pd.testing.assert_frame_equal(fast, checked, check_exact=True)


@pytest.mark.parametrize("sep,text", [("::", R), ("\t", U_DATA),
                                      ("::", RATINGS_DAT.replace("\n", "\r\n"))])
def test_a_clean_numbers_file_takes_the_fast_path(tmp_path, monkeypatch, sep, text):
    """The fast path is taken on clean files (else the test above proves nothing)."""
    path = tmp_path / "ratings"
    path.write_text(text)
    monkeypatch.setattr(data, "_read_fields_checked", None)  # not called
    fast = data.read_fields(path, sep, RATING_COLUMNS)
    assert len(fast) == text.count("\n")
    assert [str(t) for t in fast.dtypes] == ["int32", "int32", "float32", "int64"]
