"""A small bilingual corpus in a temporary directory, and configs that index it there."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from knowledge.config import KnowledgeConfig

ARTICLES = {
    "en/refunds.md": """---
id: refunds
title: Refund policy
language: en
category: refunds
tags: [refund, money back]
updated: 2026-11-01
---
# Refund policy

Unredeemed card codes can be refunded within 7 days of purchase.

## How long does a refund take?
The money returns to the original payment method in 1-7 business days.
""",
    "en/topup.md": """---
id: topup
title: How to top up a game
language: en
category: recharge
tags: [top-up, UID]
updated: 2026-11-01
---
Choose the game, enter your UID and server, then pay. Top-ups arrive within 5 minutes.
""",
    "en/hours.md": """---
id: hours
title: Support hours
language: en
category: support
tags: [agents, hours]
updated: 2026-11-01
---
Agents answer from 09:00 to 22:00 Beijing time every day.
""",
    "zh/refunds.md": """---
id: refunds
title: 退款规则
language: zh
category: refunds
tags: [退款]
updated: 2026-11-01
---
未兑换的卡密购买后 7 天内可以退款。

## 退款多久到账？
款项原路退回，1-7 个工作日到账。
""",
    "zh/topup.md": """---
id: topup
title: 游戏直充步骤
language: zh
category: recharge
tags: [充值, UID]
updated: 2026-11-01
---
选择游戏，填写 UID 和区服，然后付款。直充一般 5 分钟内到账。
""",
    "zh/hours.md": """---
id: hours
title: 人工客服时间
language: zh
category: support
tags: [人工, 时间]
updated: 2026-11-01
---
人工客服每天 09:00-22:00（北京时间）在线。
""",
}


def write_corpus(root: Path, articles: dict[str, str] | None = None) -> Path:
    for name, text in (articles or ARTICLES).items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


@pytest.fixture(scope="session")
def encoder_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One ONNX export of the model for the whole test session."""
    return tmp_path_factory.mktemp("encoders")


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    return write_corpus(tmp_path / "articles")


@pytest.fixture
def config(tmp_path: Path, corpus: Path, encoder_cache: Path) -> KnowledgeConfig:
    return replace(
        KnowledgeConfig(),
        articles_dir=corpus,
        eval_dir=tmp_path / "no-eval",
        index_root=tmp_path / "index",
        encoder_cache=encoder_cache,
    )
