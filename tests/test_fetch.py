"""Downloads and unpacking against a local HTTP server on 127.0.0.1 (evseg.fetch)."""

import gzip
import hashlib
import io
import re
import stat
import tarfile
import zipfile
from collections import namedtuple

import pytest

from evseg.errors import DataError
from evseg.fetch import archives, auth, http
from evseg.fetch.archives import extract, unpack_all
from evseg.fetch.dsec import assemble_night_sequence, assemble_sequence
from evseg.fetch.http import FetchError, download
from evseg.fetch.manifest import manifest, placed_by_hand, weights, with_mirrors
from tests.http_server import FileServer

PAYLOAD = bytes(range(256)) * 4000  # 1 MB, every byte position distinguishable
DIGEST = hashlib.sha256(PAYLOAD).hexdigest()
FAST = dict(retries=3, timeout_s=5, backoff_s=0.01)


@pytest.fixture
def server():
    with FileServer() as srv:
        srv.files["/data.bin"] = PAYLOAD
        yield srv


def leftovers(folder):
    return sorted(p.name for p in folder.iterdir())


def test_download_verifies_and_renames(server, tmp_path):
    target = tmp_path / "sub" / "data.bin"
    assert download(server.url + "/data.bin", target, sha256=DIGEST, size=len(PAYLOAD), **FAST) == DIGEST
    assert target.read_bytes() == PAYLOAD and leftovers(target.parent) == ["data.bin"]
    assert server.gets("/data.bin") == [None]


def test_cut_connection_resumes_with_range(server, tmp_path):
    server.cut["/data.bin"] = [300_000, 250_000]  # two cuts, then the rest
    target = tmp_path / "data.bin"
    download(server.url + "/data.bin", target, sha256=DIGEST, **FAST)
    assert target.read_bytes() == PAYLOAD
    first, second, third = server.gets("/data.bin")
    starts = [int(r.removeprefix("bytes=").rstrip("-")) for r in (second, third)]
    # each retry asks for the bytes after what arrived (less at most the block in flight when the cut came)
    assert first is None and 300_000 - http.CHUNK < starts[0] <= 300_000
    assert starts[0] + 250_000 - http.CHUNK < starts[1] <= starts[0] + 250_000


def test_partial_file_of_a_killed_run_is_resumed(server, tmp_path):
    target = tmp_path / "data.bin"
    http.partial_path(target).write_bytes(PAYLOAD[:123_456])
    download(server.url + "/data.bin", target, sha256=DIGEST[:6], **FAST)  # a torch.hub-style prefix
    assert target.read_bytes() == PAYLOAD and server.gets("/data.bin") == ["bytes=123456-"]


def test_complete_partial_file_is_only_verified(server, tmp_path):
    target = tmp_path / "data.bin"
    http.partial_path(target).write_bytes(PAYLOAD)  # killed between the last byte and the rename
    download(server.url + "/data.bin", target, sha256=DIGEST, **FAST)
    assert target.read_bytes() == PAYLOAD and server.gets("/data.bin") == [f"bytes={len(PAYLOAD)}-"]


def test_server_ignoring_range_restarts_from_zero(server, tmp_path):
    server.ignore_range.add("/data.bin")
    target = tmp_path / "data.bin"
    http.partial_path(target).write_bytes(b"x" * 1000)  # would corrupt the file if appended to
    download(server.url + "/data.bin", target, sha256=DIGEST, **FAST)
    assert target.read_bytes() == PAYLOAD


def test_checksum_mismatch_leaves_nothing_that_looks_complete(server, tmp_path):
    target = tmp_path / "data.bin"
    with pytest.raises(FetchError, match="sha256 is " + DIGEST) as err:
        download(server.url + "/data.bin", target, sha256="0" * 64, **FAST)
    assert "rerun" in err.value.fix
    assert leftovers(tmp_path) == []


def test_wrong_size_is_refused_before_downloading(server, tmp_path):
    with pytest.raises(FetchError, match=f"offers {len(PAYLOAD)} bytes.*expects 99"):
        download(server.url + "/data.bin", tmp_path / "data.bin", size=99, **FAST)
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("status, message", [(401, "refused access"), (403, "refused access"), (404, "HTTP 404")])
def test_http_errors_are_clear_and_not_retried(server, tmp_path, status, message):
    server.status["/data.bin"] = status
    with pytest.raises(FetchError, match=message) as err:
        download(server.url + "/data.bin", tmp_path / "data.bin", auth_fix="log in first", **FAST)
    assert len(server.gets("/data.bin")) == 1
    assert ("log in first" in err.value.fix) == (status != 404)
    assert leftovers(tmp_path) == []


def test_server_errors_are_retried_then_reported(server, tmp_path):
    server.status["/data.bin"] = 503
    with pytest.raises(FetchError, match="gave up after 4 attempts: HTTP 503"):
        download(server.url + "/data.bin", tmp_path / "data.bin", **FAST)
    assert len(server.gets("/data.bin")) == 4


def test_a_web_page_instead_of_the_file_is_refused(server, tmp_path):
    server.content_type = "text/html; charset=utf-8"
    with pytest.raises(FetchError, match="web page instead of the file"):
        download(server.url + "/data.bin", tmp_path / "data.bin", **FAST)
    assert leftovers(tmp_path) == []


def test_present_file_is_not_downloaded_again(server, tmp_path):
    target = tmp_path / "data.bin"
    target.write_bytes(PAYLOAD)
    assert download(server.url + "/data.bin", target, **FAST) == DIGEST
    assert server.requests == []


def test_disk_space_is_checked_before_writing(server, tmp_path, monkeypatch):
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(http.shutil, "disk_usage", lambda _: usage(2**40, 2**40, 2**20))
    with pytest.raises(FetchError, match="only 0.0 GiB are free"):
        download(server.url + "/data.bin", tmp_path / "data.bin", **FAST)
    assert leftovers(tmp_path) == []


def test_wrong_checksum_prefix_is_refused_like_a_full_one(server, tmp_path):
    wrong = format(int(DIGEST[:8], 16) ^ 1, "08x")  # differs from the digest in its last hex digit only
    with pytest.raises(FetchError, match=f"but {wrong} was expected"):
        download(server.url + "/data.bin", tmp_path / "data.bin", sha256=wrong, **FAST)
    assert leftovers(tmp_path) == []


def test_bytes_are_stored_as_sent_without_decoding(server, tmp_path):
    archive = gzip.compress(PAYLOAD)  # a .tar.gz labelled Content-Encoding: gzip by a misconfigured server
    server.files["/data.tar.gz"] = archive
    server.gzip_labelled.add("/data.tar.gz")
    download(server.url + "/data.tar.gz", tmp_path / "data.tar.gz", size=len(archive), **FAST)
    assert (tmp_path / "data.tar.gz").read_bytes() == archive
    assert server.headers[-1]["Accept-Encoding"] == "identity"


def test_chunked_answer_without_length_resumes_and_is_checked_against_the_manifest(server, tmp_path):
    server.chunked.add("/data.bin")
    server.etag["/data.bin"] = '"v1"'  # without a version or a checksum a partial file is started over
    server.cut["/data.bin"] = [300_000]  # cut inside a chunk: the missing end of the chunked body is noticed
    download(server.url + "/data.bin", tmp_path / "data.bin", size=len(PAYLOAD), **FAST)
    assert (tmp_path / "data.bin").read_bytes() == PAYLOAD and len(server.gets("/data.bin")) == 2
    with pytest.raises(FetchError, match=f"ended after {len(PAYLOAD)} bytes.*expects {len(PAYLOAD) + 1}"):
        download(server.url + "/data.bin", tmp_path / "other.bin", size=len(PAYLOAD) + 1, **FAST)
    assert leftovers(tmp_path) == ["data.bin"]


def test_range_answer_from_another_offset_restarts(server, tmp_path):
    server.shifted_range.add("/data.bin")
    target = tmp_path / "data.bin"
    http.partial_path(target).write_bytes(PAYLOAD[:5000])
    download(server.url + "/data.bin", target, sha256=DIGEST, **FAST)
    assert target.read_bytes() == PAYLOAD and server.gets("/data.bin") == ["bytes=5000-", None]


def test_partial_file_longer_than_the_remote_file_restarts(server, tmp_path):
    target = tmp_path / "data.bin"
    http.partial_path(target).write_bytes(PAYLOAD + b"junk")  # answered 416 with the remote length
    download(server.url + "/data.bin", target, sha256=DIGEST, **FAST)
    assert target.read_bytes() == PAYLOAD and server.gets("/data.bin") == [f"bytes={len(PAYLOAD) + 4}-", None]


def test_resume_asks_if_the_remote_file_is_unchanged(server, tmp_path):
    server.etag["/data.bin"] = '"v1"'
    server.cut["/data.bin"] = [300_000]
    target = tmp_path / "data.bin"
    with pytest.raises(FetchError, match="gave up after 1 attempts"):
        download(server.url + "/data.bin", target, sha256=DIGEST, retries=0, timeout_s=5, backoff_s=0.01)
    assert server.headers[-1].get("If-Range") is None
    server.files["/data.bin"] = changed = PAYLOAD[::-1]  # changed upstream before the resume
    server.etag["/data.bin"] = '"v2"'
    download(server.url + "/data.bin", target, **FAST)
    assert server.headers[-1]["If-Range"] == '"v1"' and target.read_bytes() == changed
    assert leftovers(tmp_path) == ["data.bin"]  # the validator beside the partial file is gone too


def test_partial_file_without_version_or_checksum_is_started_over(server, tmp_path):
    target = tmp_path / "data.bin"
    http.partial_path(target).write_bytes(b"x" * 5000)  # from a file that may have changed upstream since
    download(server.url + "/data.bin", target, size=len(PAYLOAD), **FAST)
    assert target.read_bytes() == PAYLOAD and server.gets("/data.bin") == [None]


def test_given_up_download_does_not_leak_a_token_in_its_traceback(tmp_path):
    with pytest.raises(FetchError) as err:
        download("http://127.0.0.1:9/f.zip?token=SECRET123", tmp_path / "f.zip", retries=0, timeout_s=2)
    # no chained network error, whose message would carry the raw URL into the job's log
    assert err.value.__cause__ is None and err.value.__suppress_context__
    assert "SECRET123" not in str(err.value) and "token=***" in str(err.value)


def test_urls_in_messages_hide_credentials():
    shown = http.shown_url("https://user:pw@host.org/f.zip?packageID=3&token=abc&X-Amz-Signature=def")
    assert shown == "https://host.org/f.zip?packageID=3&token=***&X-Amz-Signature=***"


# ------------------------------------------------------------------ Cityscapes login


@pytest.fixture
def home(tmp_path, monkeypatch):
    """An empty home folder (for ~/.netrc) and no Cityscapes environment variables."""
    monkeypatch.delenv("CITYSCAPES_USERNAME", raising=False)
    monkeypatch.delenv("CITYSCAPES_PASSWORD", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    return tmp_path / "home"


def write_netrc(home, text):
    (home / ".netrc").write_text(text)
    (home / ".netrc").chmod(0o600)


def test_cityscapes_login_from_netrc_then_download(server, tmp_path, home):
    server.login = ("alice", "s3cret")
    server.protected.add("/data.bin")
    write_netrc(home, "machine 127.0.0.1 login alice password s3cret\n")
    session = auth.cityscapes_session(server.url + "/login/")
    download(server.url + "/data.bin", tmp_path / "data.bin", session=session, **FAST)
    assert (tmp_path / "data.bin").read_bytes() == PAYLOAD


def test_environment_credentials_go_only_to_the_official_host(server, home, monkeypatch):
    monkeypatch.setenv("CITYSCAPES_USERNAME", "alice")
    monkeypatch.setenv("CITYSCAPES_PASSWORD", "s3cret")
    assert auth.credentials(auth.CITYSCAPES_HOST, auth.CITYSCAPES_ENV) == ("alice", "s3cret")
    server.login = ("alice", "s3cret")
    with pytest.raises(PermissionError, match="none was found for 127.0.0.1.*machine 127.0.0.1") as err:
        auth.cityscapes_session(server.url + "/login/")  # a mirror: it needs its own ~/.netrc entry
    assert server.requests == [] and "s3cret" not in str(err.value)
    write_netrc(home, f"machine {auth.CITYSCAPES_HOST} login bob password hunter2\n")
    monkeypatch.delenv("CITYSCAPES_PASSWORD")
    assert auth.credentials(auth.CITYSCAPES_HOST, auth.CITYSCAPES_ENV) == ("bob", "hunter2")


def test_cityscapes_wrong_password_is_clear_and_secret(server, home):
    server.login = ("alice", "s3cret")
    write_netrc(home, "machine 127.0.0.1 login alice password wrong-pass\n")
    with pytest.raises(PermissionError, match="login at 127.0.0.1 was refused .*login form came back") as err:
        auth.cityscapes_session(server.url + "/login/")  # answered with a cookie and the form, as the site does
    assert "wrong-pass" not in str(err.value) and "~/.netrc" in str(err.value)


def test_broken_netrc_is_reported(server, home):
    write_netrc(home, "machine 127.0.0.1 login a password b\nmachine\n")  # a machine line without a name
    with pytest.raises(PermissionError, match="~/.netrc cannot be read"):
        auth.cityscapes_session(server.url + "/login/")


def test_cityscapes_without_login_gets_a_login_page(server, tmp_path):
    server.protected.add("/data.bin")
    with pytest.raises(FetchError, match="web page instead of the file"):
        download(server.url + "/data.bin", tmp_path / "data.bin", auth_fix=auth.cityscapes_fix("h"), **FAST)


# ------------------------------------------------------------------ archives


def make_zip(path, entries, links=()):
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
        for name, target in links:
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, target)
    return path


def make_tar(path, entries, special=()):
    """``special``: (name, tarfile type, link target) members: links, devices, fifos."""
    with tarfile.open(path, "w:gz") as tf:
        for name, data in entries.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        for name, kind, target in special:
            info = tarfile.TarInfo(name)
            info.type, info.linkname = kind, target
            tf.addfile(info)
    return path


def test_zip_and_tar_extract(tmp_path):
    entries = {"a/b.txt": b"one", "c.bin": PAYLOAD}
    for archive in (make_zip(tmp_path / "x.zip", entries), make_tar(tmp_path / "x.tar.gz", entries)):
        out = tmp_path / f"out_{archive.name}"
        extract(archive, out)
        assert {str(p.relative_to(out)): p.read_bytes() for p in out.rglob("*") if p.is_file()} == entries
        with pytest.raises(FileExistsError):
            extract(archive, out)


@pytest.mark.parametrize("name", ["../evil.txt", "a/../../evil.txt", "/etc/evil.txt", "C:/evil.txt"])
def test_zip_slip_is_refused_before_writing(tmp_path, name):
    archive = make_zip(tmp_path / "evil.zip", {"fine.txt": b"ok", name: b"pwned"})
    out = tmp_path / "deep" / "out"
    with pytest.raises(DataError, match="outside the destination") as err:
        extract(archive, out)
    assert name in str(err.value) and "nothing was extracted" in err.value.fix
    assert not (tmp_path / "deep").exists() and not (tmp_path / "evil.txt").exists()


def test_links_are_refused(tmp_path):
    with pytest.raises(DataError, match="symbolic link"):
        extract(make_zip(tmp_path / "l.zip", {"f": b"x"}, links=[("link", "/etc/passwd")]), tmp_path / "o1")
    refused = [("link", tarfile.SYMTYPE, "../../x", "is a link"), ("hard", tarfile.LNKTYPE, "/etc/passwd", "is a link"),
               ("dev", tarfile.CHRTYPE, "", "is a special file"), ("pipe", tarfile.FIFOTYPE, "", "is a special file")]
    for name, kind, target, message in refused:
        with pytest.raises(DataError, match=f"member '{name}' {message}"):
            extract(make_tar(tmp_path / f"{name}.tar.gz", {"f": b"x"}, [(name, kind, target)]), tmp_path / "o2")
    with pytest.raises(DataError, match="outside the destination"):
        extract(make_tar(tmp_path / "t.tar.gz", {"../up": b"x"}), tmp_path / "o3")
    with pytest.raises(DataError, match="file without a name"):
        extract(make_tar(tmp_path / "dot.tar.gz", {".": b"x"}), tmp_path / "o4")
    assert leftovers(tmp_path) == sorted(["l.zip", "t.tar.gz", "dot.tar.gz"] + [f"{r[0]}.tar.gz" for r in refused])


def test_damaged_or_foreign_archives(tmp_path):
    page = tmp_path / "page.zip"
    page.write_bytes(b"<html>login</html>")
    with pytest.raises(DataError, match="neither a zip nor a tar"):
        extract(page, tmp_path / "o")
    good = make_zip(tmp_path / "g.zip", {"big.bin": PAYLOAD}).read_bytes()
    broken = tmp_path / "broken.zip"
    i = good.index(PAYLOAD[1000:1100])  # stored uncompressed: flip payload bytes, the CRC check fails
    broken.write_bytes(good[:i] + bytes(100) + good[i + 100:])
    with pytest.raises(DataError, match="is damaged"):
        extract(broken, tmp_path / "o")
    assert not (tmp_path / "o").exists() and not list(tmp_path.glob(".o*"))


def test_unpack_all_merges_archives_and_identical_files(tmp_path):
    first = make_zip(tmp_path / "gt.zip", {"gtFine/train/a.png": b"1", "license.txt": b"L"})
    second = make_zip(tmp_path / "img.zip", {"leftImg8bit/train/a.png": b"2", "license.txt": b"L"})
    unpack_all([first, second], tmp_path / "cityscapes")
    files = {str(p.relative_to(tmp_path / "cityscapes")) for p in (tmp_path / "cityscapes").rglob("*") if p.is_file()}
    assert files == {"gtFine/train/a.png", "leftImg8bit/train/a.png", "license.txt"}
    other = make_zip(tmp_path / "other.zip", {"license.txt": b"different"})
    with pytest.raises(DataError, match="with other content"):
        unpack_all([first, other], tmp_path / "mixed")
    page = tmp_path / "page.zip"
    page.write_bytes(b"<html>login</html>")
    with pytest.raises(DataError, match="neither a zip nor a tar"):
        unpack_all([first, page], tmp_path / "mixed")
    assert not list(tmp_path.glob("*mixed*"))  # neither the folder nor its staging sibling


def test_dsec_sequence_is_assembled_whole_or_not_at_all(tmp_path):
    labels = tmp_path / "labels"
    (labels / "train/zurich_city_00_a/11classes").mkdir(parents=True)
    (labels / "train/zurich_city_00_a/11classes/000000.png").write_bytes(b"png")
    events = make_zip(tmp_path / "ev.zip", {"events.h5": b"e", "rectify_map.h5": b"r"})
    destination = tmp_path / "dsec/train/zurich_city_00_a"
    assemble_sequence(destination, events, labels)
    assert sorted(str(p.relative_to(destination)) for p in destination.rglob("*") if p.is_file()) == [
        "11classes/000000.png", "events/left/events.h5", "events/left/rectify_map.h5"]
    for zip_entries, seq, message in [({"events.h5": b"e"}, "zurich_city_00_a", "does not hold"),
                                      ({"events.h5": b"e", "rectify_map.h5": b"r"}, "zurich_city_01_a", "holds no")]:
        with pytest.raises(DataError, match=message):
            assemble_sequence(tmp_path / "dsec/train" / seq, make_zip(tmp_path / "bad.zip", zip_entries), labels)
        assert leftovers(tmp_path / "dsec/train") == ["zurich_city_00_a"]  # no half-assembled folder


def test_night_sequence_joins_dsec_files_and_the_authors_archive(tmp_path):
    night = tmp_path / "DSEC_Night"
    seq = night / "DSEC_Night/zurich_city_09_b"  # the archive's own top folder: found at any depth
    (seq / "wrap_images").mkdir(parents=True)  # the misspelling of older copies
    (seq / "wrap_images/000002.png").write_bytes(b"w")
    (seq / "labels").mkdir()
    (seq / "labels/zurich_city_09_b_000002_grey_gtFine_labelTrainIds.png").write_bytes(b"l")
    events = make_zip(tmp_path / "ev.zip", {"events.h5": b"e", "rectify_map.h5": b"r"})
    images = make_zip(tmp_path / "im.zip", {"000000.png": b"0", "000001.png": b"1"})
    stamps = tmp_path / "stamps.txt"
    stamps.write_text("10\n20\n")
    destination = tmp_path / "dsec_night/zurich_city_09_b"
    assemble_night_sequence(destination, events, images, stamps, night)
    assert sorted(str(p.relative_to(destination)) for p in destination.rglob("*") if p.is_file()) == [
        "events/left/events.h5", "events/left/rectify_map.h5", "images/left/rectified/000000.png",
        "images/left/rectified/000001.png", "images/timestamps.txt",
        "labels/zurich_city_09_b_000002_grey_gtFine_labelTrainIds.png", "warp_images/000002.png"]
    with pytest.raises(DataError, match="holds no folder zurich_city_09_c/ with warp_images"):
        assemble_night_sequence(tmp_path / "dsec_night/zurich_city_09_c", events, images, stamps, night)
    assert leftovers(tmp_path / "dsec_night") == ["zurich_city_09_b"]


def test_unpack_space_check(tmp_path, monkeypatch):
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(http.shutil, "disk_usage", lambda _: usage(2**40, 2**40, 2**20))
    with pytest.raises(FetchError, match="unpacking big.zip needs"):
        extract(make_zip(tmp_path / "big.zip", {"x": PAYLOAD}), tmp_path / "o")
    assert archives.members(tmp_path / "big.zip")[0].size == len(PAYLOAD)


# ------------------------------------------------------------------ manifest


def test_manifest_entries():
    assert with_mirrors("https://a.org/x/y.zip", {"https://a.org": "http://m", "https://a.org/x": "http://n"}) \
        == "http://n/y.zip"
    found = weights(["data/weights/E2VID_lightweight.pth.tar", "w/sam_vit_h_4b8939.pth", "w/other.pth", ""])
    assert sorted(found) == ["data/weights/E2VID_lightweight.pth.tar", "w/sam_vit_h_4b8939.pth"]
    assert found["w/sam_vit_h_4b8939.pth"].sha256 == "4b8939"
    assert "SegFormer" in placed_by_hand(["data/weights/mit_b5.pth"])["data/weights/mit_b5.pth"]
    for name, entry in manifest()["weights"].items():  # torch.hub names carry their sha256 prefix
        if entry["sha256"]:
            assert re.search(f"[-_]{entry['sha256']}$", name.split(".")[0])
