"""SecretBox: authenticated encryption, key sources, key rotation, and the 0600 key file."""

from __future__ import annotations

import os
import pickle
import stat
import threading
from pathlib import Path

import pytest

from dash_ray.auth.secretbox import SecretBox, read_or_create_private_file
from dash_ray.errors import SecretKeyError


def test_round_trip_hides_the_plaintext() -> None:
    box = SecretBox([SecretBox.generate_key()])
    sealed = box.encrypt("whsec_plain")
    assert b"whsec_plain" not in sealed
    assert box.encrypt("whsec_plain") != sealed  # a fresh IV each time
    assert box.decrypt(sealed) == "whsec_plain"


def test_tampered_data_does_not_decrypt() -> None:
    box = SecretBox([SecretBox.generate_key()], source="test keys")
    sealed = bytearray(box.encrypt("whsec_plain"))
    sealed[-5] ^= 1
    with pytest.raises(SecretKeyError, match="test keys"):
        box.decrypt(bytes(sealed))


def test_the_env_value_wins_and_no_file_is_made(tmp_path: Path) -> None:
    key = SecretBox.generate_key()
    box = SecretBox.from_env_or_file(f"  {key}\n", tmp_path / "secret.key")
    assert box.source == "$DASH_SECRET_KEY"
    assert not (tmp_path / "secret.key").exists()
    assert SecretBox([key]).decrypt(box.encrypt("s")) == "s"


def test_a_missing_key_file_is_created_private_and_then_reused(tmp_path: Path) -> None:
    path = tmp_path / "home" / "secret.key"
    first = SecretBox.from_env_or_file(None, path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert first.source == f"key file {path}"
    second = SecretBox.from_env_or_file("", path)  # blank env means unset
    assert second.decrypt(first.encrypt("s")) == "s"
    assert [p.name for p in path.parent.iterdir()] == ["secret.key"]  # no temporary file left


def test_concurrent_creators_all_get_the_same_key(tmp_path: Path) -> None:
    path = tmp_path / "secret.key"
    boxes: list[SecretBox] = []
    barrier = threading.Barrier(8)

    def create() -> None:
        barrier.wait()
        boxes.append(SecretBox.from_env_or_file(None, path))

    threads = [threading.Thread(target=create) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    sealed = boxes[0].encrypt("s")
    assert len(boxes) == 8 and all(box.decrypt(sealed) == "s" for box in boxes)
    assert len(path.read_text().split()) == 1


def test_a_wrong_key_names_its_source_and_nothing_secret(tmp_path: Path) -> None:
    sealed = SecretBox([SecretBox.generate_key()]).encrypt("whsec_topsecret")
    key = SecretBox.generate_key()
    path = tmp_path / "secret.key"
    path.write_text(key + "\n")

    for box, source in [
        (SecretBox.from_env_or_file(key, path), "$DASH_SECRET_KEY"),
        (SecretBox.from_env_or_file(None, path), f"key file {path}"),
    ]:
        with pytest.raises(SecretKeyError) as caught:
            box.decrypt(sealed, what="pipeline 'weather'")
        message = str(caught.value)
        assert source in message and "pipeline 'weather'" in message
        assert key not in message and "whsec_topsecret" not in message
        assert caught.value.__cause__ is None and caught.value.__suppress_context__
        assert str(pickle.loads(pickle.dumps(caught.value))) == message


def test_a_malformed_key_is_refused_without_quoting_it(tmp_path: Path) -> None:
    with pytest.raises(SecretKeyError) as caught:
        SecretBox.from_env_or_file("not-a-real-key-but-secret", tmp_path / "k", env_name="MY_KEY")
    assert "$MY_KEY" in str(caught.value) and "not-a-real-key" not in str(caught.value)
    with pytest.raises(SecretKeyError, match="no secret key"):
        SecretBox([])
    with pytest.raises(TypeError):
        SecretBox(SecretBox.generate_key())  # type: ignore[arg-type]


def test_an_empty_key_file_is_an_error_not_replaced(tmp_path: Path) -> None:
    path = tmp_path / "secret.key"
    path.write_text("\n")
    with pytest.raises(SecretKeyError, match="is empty"):
        SecretBox.from_env_or_file(None, path)
    assert path.read_text() == "\n"


def test_rotation_decrypts_with_any_key_and_encrypts_with_the_first(tmp_path: Path) -> None:
    old, new = SecretBox.generate_key(), SecretBox.generate_key()
    sealed_old = SecretBox([old]).encrypt("before")

    from_env = SecretBox.from_env_or_file(f"{new},{old}", tmp_path / "k")
    path = tmp_path / "secret.key"
    path.write_text(f"{new}\n{old}\n")
    from_file = SecretBox.from_env_or_file(None, path)

    for box in (from_env, from_file):
        assert box.decrypt(sealed_old) == "before"
        assert SecretBox([new]).decrypt(box.encrypt("after")) == "after"


def test_repr_shows_no_key() -> None:
    key = SecretBox.generate_key()
    box = SecretBox([key, SecretBox.generate_key()], source="$DASH_SECRET_KEY")
    assert repr(box) == "SecretBox(source='$DASH_SECRET_KEY', keys=2)"
    assert key not in repr(box) and key not in str(vars(box))


def test_private_file_keeps_what_another_process_wrote_first(tmp_path: Path) -> None:
    path = tmp_path / "token"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, b"theirs\n")
    os.close(fd)
    assert read_or_create_private_file(path, lambda: "mine", what="token") == "theirs"
