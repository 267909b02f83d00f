"""Language-aware text handling: BM25 tokens and the dense encoder's view of Han text."""

from __future__ import annotations

import re
import threading
from functools import lru_cache

_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_LATIN_WORD = re.compile(r"[a-z0-9]+(?:['’][a-z]+)?")
_HAN_OR_WORD = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+|[A-Za-z0-9]+")

# Shop vocabulary jieba would otherwise split; the NLU tokenizer (bot/nlu/tokenizer.py) uses the same idea.
SHOP_WORDS = (
    "卡密",
    "点卡",
    "转人工",
    "人工客服",
    "点券",
    "充值卡",
    "礼品卡",
    "兑换码",
    "激活码",
    "直充",
    "到账",
    "话费",
    "区服",
    "星卡",
    "小卡",
    "电子发票",
    "退款",
    "扣款",
    "重复扣款",
    "盗号",
    "改绑",
    "会员",
    "自动续费",
    "优惠券",
    "余额",
    "风控",
    "安全审核",
    "验证码",
    "两步验证",
    "注销",
    "发票",
)

# Words that carry no meaning for retrieval; kept short on purpose (BM25's idf does the rest).
EN_STOPWORDS = frozenset(
    "a an the and or but if of to in on at for from by with about as is are was were be been being am "
    "do does did i me my we our you your it its this that these those there here can could would should "
    "will just so than then too very what which who how when where why not no yes please hi hello".split()
)
ZH_STOPWORDS = frozenset(
    (
        "的 了 吗 呢 吧 啊 呀 么 嘛 是 我 你 您 在 有 和 就 都 也 还 要 会 能 这 那 个 一 怎么 什么 请问 一下"
    ).split()
)

_jieba_lock = threading.Lock()
_jieba_ready = False


def has_han(text: str) -> bool:
    return bool(_HAN.search(text))


def _jieba():  # type: ignore[no-untyped-def]
    global _jieba_ready
    import jieba

    with _jieba_lock:
        if not _jieba_ready:
            jieba.setLogLevel(60)
            for word in SHOP_WORDS:
                jieba.add_word(word, freq=20000)
            _jieba_ready = True
    return jieba


@lru_cache(maxsize=1)
def _stemmer():  # type: ignore[no-untyped-def]
    import snowballstemmer

    return snowballstemmer.stemmer("english")


def tokens_en(text: str) -> list[str]:
    """Lower-cased Snowball stems without stop words ('refunded' finds 'refund')."""
    words = [w for w in _LATIN_WORD.findall(text.lower()) if w not in EN_STOPWORDS]
    return list(_stemmer().stemWords(words))


def tokens_zh(text: str) -> list[str]:
    """jieba words for Han text, plus English words for the mixed zh/en customers write."""
    jieba = _jieba()
    out: list[str] = []
    for run in _HAN_OR_WORD.findall(text):
        if _HAN.match(run):
            out.extend(w for w in jieba.lcut_for_search(run) if w.strip() and w not in ZH_STOPWORDS)
        else:
            out.extend(tokens_en(run))
    return out


def bm25_tokens(text: str, language: str) -> list[str]:
    return tokens_zh(text) if language == "zh" else tokens_en(text)


@lru_cache(maxsize=4096)
def _pinyin_run(run: str) -> str:
    from pypinyin import lazy_pinyin

    return " ".join(lazy_pinyin(run))


def romanise(text: str) -> str:
    """Han runs as toneless pinyin syllables, the rest unchanged.

    The default English MiniLM has no Han characters in its vocabulary (every
    one becomes [UNK]); pinyin gives it syllables it can compare.
    """
    if not has_han(text):
        return text
    return re.sub(
        r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+", lambda m: f" {_pinyin_run(m.group(0))} ", text
    )
